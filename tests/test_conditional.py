"""Conditions (``when=``) and trigger rules: skips, joins after a branch, cleanup,
and the root cause every task that did not run records."""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import flowkit
from flowkit import DAG, SKIPPED, Status, Task, TaskExecutionError, UpstreamFailed

# --- module-level functions (importable by worker processes) ------------------


def const(value: Any) -> Any:
    return value


def show(label: str, *inputs: Any) -> tuple[str, tuple[Any, ...]]:
    """``(label, inputs)`` with ``flowkit.SKIPPED`` shown as the string "<skipped>"
    and an ``UpstreamFailed`` as "<failed>", "<upstream_failed>" or "<cancelled>",
    so the checks happen where the function runs."""
    return (label, tuple(_shown(x) for x in inputs))


def _shown(value: Any) -> Any:
    if value is SKIPPED:
        return "<skipped>"
    if isinstance(value, UpstreamFailed):
        return f"<{value.status.value}>"
    return value


def touch(path: Path, *inputs: Any) -> str:
    path.touch()
    return "touched"


def boom(*inputs: Any) -> None:
    raise ValueError("boom")


def const_task(name: str, value: Any, **options: Any) -> Task[..., Any]:
    return Task(functools.partial(const, value), name=name, **options)


def show_task(name: str, **options: Any) -> Task[..., Any]:
    return Task(functools.partial(show, name), name=name, **options)


def statuses(run: flowkit.RunResult) -> dict[str, Status]:
    return {name: state.status for name, state in run.states.items()}


def run_expecting_failure(**kwargs: Any) -> flowkit.RunResult:
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(**kwargs)
    assert info.value.result is not None
    return info.value.result


# --- when= -------------------------------------------------------------------------


def test_when_runs_in_the_scheduler_with_the_task_inputs(executor: str, tmp_path: Path) -> None:
    seen: list[tuple[int, int, tuple[Any, ...]]] = []

    def predicate(*inputs: Any) -> bool:
        seen.append((os.getpid(), threading.get_ident(), inputs))
        return True

    a, b = const_task("a", 1), const_task("b", "two")
    c = show_task("c", when=predicate)
    [a, b] >> c
    run = DAG().run(executor=executor)
    assert run["c"] == ("c", (1, "two"))
    assert seen == [(os.getpid(), threading.get_ident(), (1, "two"))]


@pytest.mark.parametrize("falsy", [False, 0, "", [], None, SKIPPED])
def test_falsy_condition_skips_without_calling(falsy: Any, tmp_path: Path) -> None:
    marker = tmp_path / "called"
    Task(functools.partial(touch, marker), name="guarded", when=lambda: falsy)
    run = DAG().run(executor="sync")
    state = run.states["guarded"]
    assert state.status is Status.SKIPPED
    assert state.attempts == 0
    assert state.cause == "guarded"
    assert "when" in (state.reason or "")
    assert not marker.exists()
    assert run.ok


@pytest.mark.parametrize("truthy", [True, 1, "yes", [0]])
def test_truthy_condition_runs_the_task(truthy: Any, tmp_path: Path) -> None:
    marker = tmp_path / "called"
    Task(functools.partial(touch, marker), name="guarded", when=lambda: truthy)
    assert DAG().run(executor="sync")["guarded"] == "touched"
    assert marker.exists()


def test_skipped_task_is_skipped_on_every_executor(executor: str, tmp_path: Path) -> None:
    marker = tmp_path / "called"
    rows = const_task("rows", [])
    load = Task(functools.partial(touch, marker), name="load", when=lambda rows: len(rows) > 0)
    rows >> load
    run = DAG().run(executor=executor)
    assert statuses(run) == {"rows": Status.SUCCESS, "load": Status.SKIPPED}
    assert not marker.exists()


def test_raising_condition_fails_the_task(executor: str, tmp_path: Path) -> None:
    marker = tmp_path / "called"
    problem = LookupError("no such column")

    def predicate(rows: list[int]) -> bool:
        raise problem

    rows = const_task("rows", [1])
    guarded = Task(functools.partial(touch, marker), name="guarded", when=predicate)
    after = show_task("after")
    rows >> guarded >> after
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor=executor)
    assert info.value.__cause__ is problem
    assert info.value.task_name == "guarded"
    assert info.value.attempts == 0
    assert "'guarded'" in str(info.value)
    assert "no such column" in str(info.value)
    run = info.value.result
    assert run is not None
    assert run.states["guarded"].status is Status.FAILED
    assert run.states["guarded"].error is problem
    assert run.states["after"].status is Status.UPSTREAM_FAILED
    assert run.states["after"].cause == "guarded"
    assert not marker.exists()


def test_condition_of_a_zero_parameter_task_gets_no_inputs() -> None:
    seen: list[tuple[Any, ...]] = []
    a = const_task("a", 1)
    b = Task(lambda: "b", name="b", when=lambda *inputs: seen.append(inputs) or True)
    a >> b
    assert DAG().run(executor="sync")["b"] == "b"
    assert seen == [()]


# --- trigger="all_success" ---------------------------------------------------------


def test_skip_propagates_under_all_success_with_its_root_cause() -> None:
    a = const_task("a", 1)
    gate = show_task("gate", when=lambda x: False)
    b, c = show_task("b"), show_task("c")
    a >> gate >> b >> c
    run = DAG().run(executor="sync")
    assert statuses(run) == {
        "a": Status.SUCCESS,
        "gate": Status.SKIPPED,
        "b": Status.SKIPPED,
        "c": Status.SKIPPED,
    }
    assert [run.states[n].cause for n in ("gate", "b", "c")] == ["gate", "gate", "gate"]
    assert run.ok


def test_failure_makes_dependants_upstream_failed_with_its_root_cause(executor: str) -> None:
    bad = Task(boom, name="bad")
    b, c, d = show_task("b"), show_task("c"), show_task("d")
    bad >> b >> c >> d
    run = run_expecting_failure(executor=executor, fail_fast=False)
    assert statuses(run) == {
        "bad": Status.FAILED,
        "b": Status.UPSTREAM_FAILED,
        "c": Status.UPSTREAM_FAILED,
        "d": Status.UPSTREAM_FAILED,
    }
    assert [run.states[n].cause for n in ("b", "c", "d")] == ["bad", "bad", "bad"]
    assert all(run.states[n].attempts == 0 for n in ("b", "c", "d"))


def test_cancelled_tasks_record_the_failure_that_stopped_the_run() -> None:
    bad = Task(boom, name="bad")
    dependant = show_task("dependant")
    first, later = const_task("first", 1), show_task("later")
    first >> later  # the sync executor runs one call at a time: ``first`` waits behind ``bad``
    bad >> dependant
    run = run_expecting_failure(executor="sync")
    assert run.states["dependant"].status is Status.UPSTREAM_FAILED
    assert run.states["later"].status is Status.CANCELLED
    assert run.states["later"].cause == "bad"
    assert run.states["dependant"].cause == "bad"


# --- trigger="none_failed" ---------------------------------------------------------


def test_join_after_a_branch_gets_skipped_for_the_branch_not_taken(executor: str) -> None:
    choice = const_task("choice", "left")
    left = show_task("left", when=lambda c: c == "left")
    right = show_task("right", when=lambda c: c == "right")
    join = show_task("join", trigger="none_failed")
    choice >> [left, right] >> join
    run = DAG().run(executor=executor)
    assert run.states["right"].status is Status.SKIPPED
    # The identity check ran where the join ran, in a worker process for "process".
    assert run["join"] == ("join", (("left", ("left",)), "<skipped>"))
    assert run.ok


def test_none_failed_runs_when_every_upstream_was_skipped() -> None:
    a = show_task("a", when=lambda: False)
    b = show_task("b", when=lambda: False)
    join = show_task("join", trigger="none_failed")
    [a, b] >> join
    assert DAG().run(executor="sync")["join"] == ("join", ("<skipped>", "<skipped>"))


def test_none_failed_does_not_run_after_a_failure() -> None:
    bad = Task(boom, name="bad")
    good = const_task("good", 1)
    join = show_task("join", trigger="none_failed")
    [good, bad] >> join
    run = run_expecting_failure(executor="sync", fail_fast=False)
    assert run.states["join"].status is Status.UPSTREAM_FAILED
    assert run.states["join"].cause == "bad"


def test_skipped_value_reaches_a_worker_process_as_the_same_sentinel() -> None:
    skipped = show_task("skipped", when=lambda: False)
    join = show_task("join", trigger="none_failed")
    skipped >> join
    assert DAG().run(executor="process")["join"] == ("join", ("<skipped>",))


def test_condition_of_a_join_sees_the_skipped_sentinel() -> None:
    seen: list[tuple[Any, ...]] = []
    a = show_task("a", when=lambda: False)
    b = const_task("b", 2)
    join = show_task("join", trigger="none_failed",
                     when=lambda *inputs: seen.append(inputs) or True)
    [a, b] >> join
    DAG().run(executor="sync")
    assert len(seen) == 1
    assert seen[0][0] is SKIPPED
    assert seen[0][1] == 2


# --- trigger="all_done" ----------------------------------------------------------


def test_cleanup_runs_after_a_failure_without_fail_fast(executor: str) -> None:
    setup = const_task("setup", "resource")
    bad = Task(boom, name="bad")
    skipped = show_task("skipped", when=lambda r: False)
    downstream_of_bad = show_task("downstream_of_bad")
    cleanup = show_task("cleanup", trigger="all_done")
    setup >> [bad, skipped]
    bad >> downstream_of_bad
    [setup, bad, skipped, downstream_of_bad] >> cleanup
    run = run_expecting_failure(executor=executor, fail_fast=False)
    assert run.states["cleanup"].status is Status.SUCCESS
    assert run["cleanup"] == (
        "cleanup", ("resource", "<failed>", "<skipped>", "<upstream_failed>")
    )
    assert not run.ok


def test_all_done_after_success_gets_the_values() -> None:
    a, b = const_task("a", 1), const_task("b", 2)
    cleanup = show_task("cleanup", trigger="all_done")
    [a, b] >> cleanup
    assert DAG().run(executor="sync")["cleanup"] == ("cleanup", (1, 2))


# --- precedence and order independence ----------------------------------------------


@pytest.mark.parametrize("failure_first", [True, False], ids=["failure-declared-first",
                                                               "skip-declared-first"])
@pytest.mark.parametrize(
    ("trigger", "expected"),
    [("all_success", Status.UPSTREAM_FAILED), ("none_failed", Status.UPSTREAM_FAILED)],
)
def test_a_failure_outranks_a_skip(failure_first: bool, trigger: str, expected: Status) -> None:
    bad = Task(boom, name="bad")
    skipped = show_task("skipped", when=lambda: False)
    join = show_task("join", trigger=trigger)
    ([bad, skipped] if failure_first else [skipped, bad]) >> join
    run = run_expecting_failure(executor="sync", fail_fast=False)
    assert run.states["join"].status is expected
    assert run.states["join"].cause == "bad"


class Settled:
    """A hook that sets an event per task once the scheduler has settled it."""

    def __init__(self, names: list[str]):
        self.events = {name: threading.Event() for name in names}

    def _settled(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
        if state.name in self.events:
            self.events[state.name].set()

    on_task_success = on_task_failure = on_task_skip = _settled


def upstream_of_kind(name: str, kind: str, gate: Task[..., Any]) -> Task[..., Any]:
    if kind == "fail":
        task = Task(boom, name=name)
    elif kind == "skip":
        task = show_task(name, when=lambda _: False)
    else:
        task = show_task(name)
    gate >> task
    return task


@pytest.mark.parametrize("x_first", [True, False], ids=["x-settles-first", "y-settles-first"])
@pytest.mark.parametrize(
    ("kinds", "trigger", "expected", "inputs"),
    [
        (("fail", "skip"), "all_success", Status.UPSTREAM_FAILED, None),
        (("fail", "skip"), "none_failed", Status.UPSTREAM_FAILED, None),
        (("fail", "skip"), "all_done", Status.SUCCESS, ("<failed>", "<skipped>")),
        (("skip", "success"), "all_success", Status.SKIPPED, None),
        (("skip", "success"), "none_failed", Status.SUCCESS,
         ("<skipped>", ("y", ((),)))),
        (("fail", "success"), "all_success", Status.UPSTREAM_FAILED, None),
    ],
)
def test_outcome_does_not_depend_on_which_upstream_finished_first(
    x_first: bool,
    kinds: tuple[str, str],
    trigger: str,
    expected: Status,
    inputs: tuple[Any, ...] | None,
) -> None:
    hook = Settled(["x", "y"])
    first, second = ("x", "y") if x_first else ("y", "x")
    wait = {first: lambda: (), second: lambda: hook.events[first].wait(5) and ()}
    gate_x = Task(wait["x"], name="gate_x")
    gate_y = Task(wait["y"], name="gate_y")
    x = upstream_of_kind("x", kinds[0], gate_x)
    y = upstream_of_kind("y", kinds[1], gate_y)
    join = show_task("join", trigger=trigger)
    [x, y] >> join

    try:
        run = DAG().run(executor="thread", fail_fast=False, hooks=[hook])
    except TaskExecutionError as error:
        assert error.result is not None
        run = error.result

    assert run[f"gate_{second}"] == ()  # not False: it did wait for the first to settle
    assert run.states["join"].status is expected
    if inputs is not None:
        assert run["join"] == ("join", inputs)
    elif "fail" in kinds:
        assert run.states["join"].cause == ("x" if kinds[0] == "fail" else "y")
    else:
        assert run.states["join"].cause == ("x" if kinds[0] == "skip" else "y")


# --- workflows ------------------------------------------------------------------------


def build_report_workflow(rows: list[int]) -> None:
    """extract -> validate/enrich -> small|large branch -> merge -> report -> notify,
    with a cleanup that always runs."""
    extract = const_task("extract", rows)
    validate = show_task("validate", when=lambda rows: all(r >= 0 for r in rows))
    enrich = show_task("enrich")
    small = show_task("small", when=lambda checked: len(checked[1][0]) < 3)
    large = show_task("large", when=lambda checked: len(checked[1][0]) >= 3)
    merge = show_task("merge", trigger="none_failed")
    report = show_task("report", trigger="none_failed")
    # notify only when a branch ran:
    # report = ("report", (merge, enrich)) and merge = ("merge", (small, large))
    notify = show_task("notify",
                       when=lambda report: report[1][0][1] != ("<skipped>", "<skipped>"))
    cleanup = show_task("cleanup", trigger="all_done")
    extract >> [validate, enrich]
    validate >> [small, large] >> merge
    [merge, enrich] >> report >> notify
    [extract, notify] >> cleanup


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [1, 2],
            {
                "extract": Status.SUCCESS,
                "validate": Status.SUCCESS,
                "enrich": Status.SUCCESS,
                "small": Status.SUCCESS,
                "large": Status.SKIPPED,
                "merge": Status.SUCCESS,
                "report": Status.SUCCESS,
                "notify": Status.SUCCESS,
                "cleanup": Status.SUCCESS,
            },
        ),
        (
            [1, 2, 3, 4],
            {
                "extract": Status.SUCCESS,
                "validate": Status.SUCCESS,
                "enrich": Status.SUCCESS,
                "small": Status.SKIPPED,
                "large": Status.SUCCESS,
                "merge": Status.SUCCESS,
                "report": Status.SUCCESS,
                "notify": Status.SUCCESS,
                "cleanup": Status.SUCCESS,
            },
        ),
        (
            [1, -2],
            {
                "extract": Status.SUCCESS,
                "validate": Status.SKIPPED,
                "enrich": Status.SUCCESS,
                "small": Status.SKIPPED,
                "large": Status.SKIPPED,
                "merge": Status.SUCCESS,
                "report": Status.SUCCESS,
                "notify": Status.SKIPPED,
                "cleanup": Status.SUCCESS,
            },
        ),
    ],
    ids=["small", "large", "invalid"],
)
def test_branching_workflow(rows: list[int], expected: dict[str, Status]) -> None:
    build_report_workflow(rows)
    run = DAG().run(executor="thread")
    assert statuses(run) == expected
    assert run.ok
    if expected["validate"] is Status.SKIPPED:
        assert run["merge"] == ("merge", ("<skipped>", "<skipped>"))
        assert run.states["small"].cause == run.states["large"].cause == "validate"
        assert run.states["notify"].cause == "notify"
        assert run["cleanup"] == ("cleanup", (rows, "<skipped>"))


def test_branching_workflow_is_the_same_on_every_executor(executor: str) -> None:
    build_report_workflow([5, 6, 7])
    run = DAG().run(executor=executor)
    with flowkit.registry.isolated():
        build_report_workflow([5, 6, 7])
        reference = DAG().run(executor="sync")
    assert statuses(run) == statuses(reference)
    assert dict(run) == dict(reference)
    assert run["large"] == ("large", (("validate", ([5, 6, 7],)),))
    assert run["merge"] == ("merge", ("<skipped>", run["large"]))


def test_several_joins_and_a_failing_branch() -> None:
    source = const_task("source", 10)
    a1, a2 = show_task("a1"), show_task("a2")  # healthy branch
    b1 = Task(boom, name="b1")  # failing branch
    b2 = show_task("b2")
    c1 = show_task("c1", when=lambda _: False)  # skipped branch
    c2 = show_task("c2")
    join_healthy = show_task("join_healthy", trigger="none_failed")
    join_all = show_task("join_all", trigger="none_failed")
    final = show_task("final", trigger="all_done")
    source >> [a1, b1, c1]
    a1 >> a2
    b1 >> b2
    c1 >> c2
    [a2, c2] >> join_healthy
    [a2, b2, c2] >> join_all
    [join_healthy, join_all] >> final
    run = run_expecting_failure(executor="thread", fail_fast=False)
    assert statuses(run) == {
        "source": Status.SUCCESS,
        "a1": Status.SUCCESS,
        "b1": Status.FAILED,
        "c1": Status.SKIPPED,
        "a2": Status.SUCCESS,
        "b2": Status.UPSTREAM_FAILED,
        "c2": Status.SKIPPED,
        "join_healthy": Status.SUCCESS,
        "join_all": Status.UPSTREAM_FAILED,
        "final": Status.SUCCESS,
    }
    assert run.states["join_all"].cause == "b1"
    assert run.states["c2"].cause == "c1"
    assert run["join_healthy"] == ("join_healthy", (run["a2"], "<skipped>"))
    assert run["final"] == ("final", (run["join_healthy"], "<upstream_failed>"))
