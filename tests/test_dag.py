"""DAGs: construction and validation, data flow, scheduling, RunResult, fail-fast,
timeouts, and the executors (sync, thread, process, or a caller's Executor)."""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import functools
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowkit
from flowkit import (
    DAG,
    DAGCycleError,
    FlowkitError,
    Status,
    Task,
    TaskExecutionError,
    TaskNotFoundError,
    TaskTimeoutError,
    task,
)

# --- module-level functions (importable by worker processes) ------------------


def const(value: Any) -> Any:
    return value


def collect(*inputs: Any) -> list[Any]:
    return list(inputs)


def tag(label: str, *inputs: Any) -> tuple[str, tuple[Any, ...]]:
    return (label, inputs)


def total(*inputs: int) -> int:
    return sum(inputs)


def pair(x: Any, y: Any) -> tuple[Any, Any]:
    return (x, y)


def inc(x: int) -> int:
    return x + 1


def nothing() -> str:
    return "ran"


def boom() -> None:
    raise ValueError("boom: bad row 7")


def sleeper(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


def sleep_then_touch(path: Path, seconds: float) -> None:
    time.sleep(seconds)
    path.touch()


def wait_for_file(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() >= deadline:
            return "gave up"
        time.sleep(0.002)
    return "saw it"


def touch_then_wait(started: Path, failed: Path, timeout: float) -> str:
    started.touch()
    return wait_for_file(failed, timeout)


def fail_once_started(started: Path) -> None:
    wait_for_file(started, 5)
    raise ValueError("boom: bad row 7")


def die() -> None:
    os._exit(1)


def die_once(marker: Path) -> str:
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return "survived"


def unpicklable_result() -> Any:
    return threading.Lock()


def takes_lock(lock: Any) -> str:
    return "never called: the lock cannot reach the worker process"


def const_task(name: str, value: Any) -> Task[..., Any]:
    return Task(functools.partial(const, value), name=name)


def labelled(name: str) -> Task[..., Any]:
    """A task that returns ``(name, inputs)``."""
    return Task(functools.partial(tag, name), name=name)


def states_of(run: flowkit.RunResult) -> dict[str, Status]:
    return {name: state.status for name, state in run.states.items()}


def raised_run(info: pytest.ExceptionInfo[TaskExecutionError]) -> flowkit.RunResult:
    assert info.value.result is not None
    return info.value.result


class TouchOnFailure:
    """A hook that creates a file when a task fails (after its retries)."""

    def __init__(self, path: Path):
        self.path = path

    def on_task_failure(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
        self.path.touch()


# --- construction -------------------------------------------------------------


def test_dag_without_tasks_takes_the_whole_registry() -> None:
    a, b = labelled("a"), labelled("b")
    labelled("c")
    a >> b
    dag = DAG()
    assert {t.name for t in dag} == {"a", "b", "c"}
    assert len(dag) == 3
    assert dag["a"] is a
    assert "c" in dag
    assert "zzz" not in dag
    assert dag.name == "default"
    assert repr(dag) == "<DAG 'default' with 3 tasks>"


def test_dag_from_a_list_adds_everything_upstream() -> None:
    a, b, c, d = labelled("a"), labelled("b"), labelled("c"), labelled("d")
    a >> b >> c
    dag = DAG([c], name="partial")
    assert [t.name for t in dag.tasks] == ["a", "b", "c"]
    assert "d" not in dag
    assert d.name not in DAG([b]).run(executor="sync")


def test_dag_from_a_single_task() -> None:
    a, b = labelled("a"), labelled("b")
    a >> b
    assert [t.name for t in DAG(b).tasks] == ["a", "b"]
    assert DAG(b).run(executor="sync")["b"] == ("b", (("a", ()),))


@pytest.mark.parametrize(
    ("tasks", "hint"), [("etl", r"DAG\(name='etl'\)"), (42, "a task or a list of tasks")]
)
def test_dag_says_what_to_pass_for_tasks(tasks: Any, hint: str) -> None:
    with pytest.raises(FlowkitError, match=hint):
        DAG(tasks)


def test_dag_tasks_are_in_topological_order() -> None:
    d, c, b, a = labelled("d"), labelled("c"), labelled("b"), labelled("a")
    a >> [b, c] >> d
    names = [t.name for t in DAG().tasks]
    assert names.index("a") < names.index("b") < names.index("d")
    assert names.index("c") < names.index("d")


def test_unknown_task_name_raises_task_not_found() -> None:
    labelled("extract")
    dag = DAG()
    with pytest.raises(TaskNotFoundError) as info:
        dag["extarct"]
    assert isinstance(info.value, KeyError)
    assert info.value.task_name == "extarct"
    assert "'extract'" in str(info.value)


def test_two_task_cycle_names_it() -> None:
    a, b = labelled("a"), labelled("b")
    a >> b >> a
    with pytest.raises(DAGCycleError) as info:
        DAG()
    assert info.value.cycle == ["a", "b", "a"]
    assert "a -> b -> a" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, FlowkitError)


def test_longer_cycle_is_reported_along_the_edges() -> None:
    start, a, b, c, end = (labelled(n) for n in ("start", "a", "b", "c", "end"))
    start >> a >> b >> c >> end
    c >> a
    with pytest.raises(DAGCycleError) as info:
        DAG([end])
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["a", "b", "c"]
    tasks = {t.name: t for t in (a, b, c)}
    for before, after in itertools.pairwise(cycle):
        assert tasks[before] in tasks[after].upstream  # each step is an edge before >> after
    assert " -> ".join(cycle) in str(info.value)


def test_two_distinct_tasks_with_one_name_are_refused() -> None:
    first = labelled("extract")
    second = labelled("extract")  # replaces the first in the registry...
    join = labelled("join")
    [first, second] >> join  # ...but both are still wired
    with pytest.raises(FlowkitError, match="'extract'"):
        DAG([join])


def test_a_dag_wired_to_a_redefined_task_says_so() -> None:
    """A notebook: the cell defining extract runs again, the wiring cell does not."""

    @task
    def extract() -> int:
        return 1

    @task
    def transform(x: int) -> int:
        return x * 10

    extract >> transform

    @task  # type: ignore[no-redef]
    def extract() -> int:
        return 2

    with pytest.warns(UserWarning, match=r"'transform' is wired to an old definition of "
                      r"'extract'.*extract >> transform") as caught:
        dag = DAG([transform])
    assert caught[0].filename == __file__  # points at the DAG(...) call
    assert dag.run(executor="sync")["transform"] == 10  # as it said: the old one

    @task  # type: ignore[no-redef]
    def transform(x: int) -> int:
        return x * 10

    extract >> transform  # every cell run again: no warning, the new code runs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert DAG([transform]).run(executor="sync")["transform"] == 20


def test_a_mapped_template_or_a_fresh_dag_gives_no_warning() -> None:
    @task
    def items() -> list[int]:
        return [1, 2]

    @task
    def double(x: int) -> int:
        return 2 * x

    items >> double
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        double.map()  # takes the name 'double' over in the registry: no redefinition
        assert DAG([double]).run(executor="sync")["double"] == 2 * [1, 2]


def test_dag_name_must_be_a_non_empty_string() -> None:
    with pytest.raises(FlowkitError, match="name"):
        DAG(name="")


def test_too_many_upstream_values_is_found_at_construction() -> None:
    a, b = const_task("a", 1), const_task("b", 2)
    single = Task(const, name="single")
    [a, b] >> single
    with pytest.raises(FlowkitError) as info:
        DAG([single])
    message = str(info.value)
    assert "'single'" in message
    assert "a, b" in message
    assert "(value" in message  # the signature
    assert "2 upstream" in message


def test_too_few_upstream_values_is_found_before_anything_runs() -> None:
    called: list[str] = []

    def first() -> int:
        called.append("first")
        return 1

    def needs_two(x: int, y: int) -> int:
        called.append("needs_two")
        return x + y

    a, b = Task(first), Task(needs_two)
    a >> b
    with pytest.raises(FlowkitError) as info:
        DAG().run(executor="sync")
    message = str(info.value)
    assert "'needs_two'" in message
    assert "first" in message  # its upstream
    assert "(x: 'int', y: 'int')" in message  # its signature (annotations are strings here)
    assert called == []


def test_function_with_defaults_or_varargs_takes_what_it_gets() -> None:
    def with_default(x: int, y: int = 10) -> int:
        return x + y

    a, b, c = const_task("a", 1), const_task("b", 2), const_task("c", 3)
    d = Task(with_default)
    e = Task(total, name="e")
    a >> d
    [a, b, c] >> e
    run = DAG().run(executor="sync")
    assert run["with_default"] == 11
    assert run["e"] == 6


def test_unknown_executor_name_is_refused() -> None:
    labelled("a")
    with pytest.raises(FlowkitError, match=r"'threads'.*'thread'"):
        DAG().run(executor="threads")


@pytest.mark.parametrize("max_workers", [0, -1, 1.5, True, "2"])
def test_invalid_max_workers_is_refused(max_workers: Any) -> None:
    labelled("a")
    with pytest.raises(FlowkitError, match="max_workers"):
        DAG().run(max_workers=max_workers)


# --- data flow --------------------------------------------------------------------


def test_documented_etl_example(executor: str) -> None:
    extract = const_task("extract", [1, 2, 3])
    transform = Task(functools.partial(collect), name="transform")
    load = Task(len, name="load")
    extract >> transform >> load
    run = DAG(name="etl").run(executor=executor)
    assert run["extract"] == [1, 2, 3]
    assert run["transform"] == [[1, 2, 3]]
    assert run["load"] == 1
    assert run.ok
    assert run.dag_name == "etl"


def test_inputs_arrive_positionally_in_declaration_order(executor: str) -> None:
    a, b, c = const_task("a", "A"), const_task("b", "B"), const_task("c", "C")
    join = labelled("join")
    c >> join
    a >> join
    b >> join
    run = DAG().run(executor=executor)
    assert run["join"] == ("join", ("C", "A", "B"))


def test_zero_parameter_function_is_only_ordered(executor: str) -> None:
    a = const_task("a", 1)
    b = Task(nothing, name="b")
    c = Task(pair, name="c")
    a >> b
    [a, b] >> c
    run = DAG().run(executor=executor)
    assert run["b"] == "ran"
    assert run["c"] == (1, "ran")


def test_sync_executor_runs_in_plan_order() -> None:
    order: list[str] = []

    def record(name: str) -> Task[..., Any]:
        return Task(lambda *_: order.append(name), name=name)

    a, b, c, d, e = (record(n) for n in "abcde")
    a >> [b, c]
    c >> d
    b >> e
    dag = DAG()
    dag.run(executor="sync")
    assert order == dag.plan().order
    assert dag.plan().excluded == []


def test_plan_with_targets_lists_what_is_left_out() -> None:
    a, b, c, d, _ = (labelled(n) for n in "abcde")
    a >> [b, c] >> d
    plan = DAG().plan(targets=["b"])
    assert plan.order == ["a", "b"]
    assert plan.excluded == ["c", "d", "e"]
    assert "not run (outside targets): c, d, e" in str(plan)
    assert "1. a" in str(plan)


def test_targets_run_only_their_upstream_closure(executor: str) -> None:
    a, b, c, d = labelled("a"), labelled("b"), labelled("c"), labelled("d")
    a >> b >> c
    a >> d
    run = DAG().run(executor=executor, targets=["b"])
    assert set(run.states) == {"a", "b"}
    assert run["b"] == ("b", (("a", ()),))


def test_targets_may_be_a_single_name() -> None:
    a, b = labelled("a"), labelled("b")
    labelled("c")
    a >> b
    run = DAG().run(executor="sync", targets="b")
    assert list(run.states) == ["a", "b"]


def test_targets_may_be_task_objects() -> None:
    a, b, c = labelled("a"), labelled("b"), labelled("c")
    a >> b
    dag = DAG()
    assert list(dag.run(executor="sync", targets=[b]).states) == ["a", "b"]
    assert list(dag.run(executor="sync", targets=c).states) == ["c"]
    assert dag.plan([a, "c"]).order == ["a", "c"]


def test_a_target_task_that_is_not_the_dags_own_is_refused() -> None:
    old = labelled("load")
    dag = DAG()
    new = labelled("load")  # a redefinition, after the DAG was built
    assert dag.run(executor="sync", targets=[old]).ok
    with pytest.raises(FlowkitError, match="'load' is not the one in DAG"):
        dag.run(executor="sync", targets=[new])
    with pytest.raises(FlowkitError, match="task names or Task objects"):
        dag.run(executor="sync", targets=[3])  # type: ignore[list-item]
    with pytest.raises(FlowkitError, match="task names or Task objects"):
        dag.plan(3)  # type: ignore[arg-type]


def test_unknown_target_raises_task_not_found() -> None:
    labelled("load")
    with pytest.raises(TaskNotFoundError, match=r"'lod'.*'load'"):
        DAG().run(executor="sync", targets=["lod"])
    with pytest.raises(TaskNotFoundError):
        DAG().plan(targets=["lod"])


def test_running_the_same_dag_twice_gives_fresh_results() -> None:
    calls: list[int] = []
    Task(lambda: calls.append(1), name="a")
    dag = DAG()
    first, second = dag.run(executor="sync"), dag.run(executor="sync")
    assert len(calls) == 2
    assert first.run_id != second.run_id


# --- scheduling -------------------------------------------------------------------


def test_task_starts_as_soon_as_its_own_upstream_finish() -> None:
    # Not level by level: the successor of the fast branch runs while the slow
    # branch, at the same depth, is still running (it waits for that successor).
    successor_ran = threading.Event()

    root = const_task("root", 0)
    slow = Task(lambda _: successor_ran.wait(5), name="slow")
    fast = Task(lambda _: "fast", name="fast")
    after_fast = Task(lambda _: successor_ran.set(), name="after_fast")
    root >> [slow, fast]
    fast >> after_fast
    run = DAG().run(executor="thread", max_workers=4)
    assert run["slow"] is True


def test_join_waits_for_every_upstream() -> None:
    fast_done, slow_done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def slow() -> str:
        fast_done.wait(5)  # finish after ``fast``
        slow_done.set()
        return "slow"

    def fast() -> str:
        fast_done.set()
        return "fast"

    join = Task(lambda x, y: seen.append(slow_done.is_set()) or (x, y), name="join")
    [Task(slow), Task(fast)] >> join
    run = DAG().run(executor="thread", max_workers=2)
    assert run["join"] == ("slow", "fast")
    assert seen == [True]


def test_thread_max_workers_bounds_concurrency() -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def work() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.005)
        with lock:
            running[0] -= 1

    for n in range(6):
        Task(work, name=f"w{n}")
    DAG().run(executor="thread", max_workers=1)
    assert peak[0] == 1


def test_thread_max_workers_allows_that_many_at_once() -> None:
    barrier = threading.Barrier(3, timeout=5)
    for n in range(3):
        Task(barrier.wait, name=f"w{n}")
    run = DAG().run(executor="thread", max_workers=3)
    assert sorted(run.values()) == [0, 1, 2]


def test_a_hundred_thousand_task_chain_validates_and_runs() -> None:
    registry = flowkit.Registry()
    previous = Task(functools.partial(const, 0), name="t0", registry=registry)
    for n in range(1, 100_000):
        current = Task(inc, name=f"t{n}", registry=registry)
        previous >> current
        previous = current
    dag = DAG(registry=registry)
    assert len(dag) == 100_000
    assert dag.tasks[0].name == "t0"
    assert dag.tasks[-1].name == "t99999"
    run = dag.run(executor="sync")
    assert run.ok
    assert len(run) == 100_000
    assert run["t99999"] == 99_999


def test_a_wide_fan_out_runs_every_task_once() -> None:
    registry = flowkit.Registry()
    root = Task(functools.partial(const, 1), name="root", registry=registry)
    leaves = [Task(collect, name=f"leaf{n}", registry=registry) for n in range(20_000)]
    root >> leaves
    run = DAG(registry=registry).run(executor="sync")
    assert len(run) == 20_001
    assert all(run[f"leaf{n}"] == [1] for n in range(20_000))


# --- RunResult ------------------------------------------------------------------------


def test_run_result_is_a_mapping_of_values() -> None:
    a = const_task("a", 1)
    b = Task(lambda x: x + 1, name="b")
    skipped = Task(nothing, name="skipped", when=lambda: False)
    a >> b
    run = DAG(name="numbers").run(executor="sync")
    assert run["a"] == 1
    assert run["b"] == 2
    assert "a" in run
    assert "skipped" not in run
    assert run.get("b") == 2
    assert run.get("skipped") is None
    assert run.get("missing", "default") == "default"
    assert len(run) == 2
    assert sorted(run) == ["a", "b"]
    assert dict(run) == {"a": 1, "b": 2}
    assert set(run.states) == {"a", "b", "skipped"}
    assert skipped.name in run.states


def test_run_result_key_errors_say_why() -> None:
    Task(nothing, name="skipped", when=lambda: False)
    run = DAG().run(executor="sync")
    with pytest.raises(KeyError, match="'skipped' produced no value: it is SKIPPED"):
        run["skipped"]
    with pytest.raises(KeyError, match="no task named 'missing'"):
        run["missing"]


def test_run_result_states_status_ok_and_ids() -> None:
    a = const_task("a", 1)
    skipped = Task(nothing, name="skipped", when=lambda: False)
    a >> skipped
    run = DAG(name="ids").run(executor="sync")
    assert run.states["a"].status is Status.SUCCESS
    assert run.states["a"].attempts == 1
    assert run.states["a"].error is None
    assert run.states["a"].duration >= 0
    assert run.states["skipped"].status is Status.SKIPPED
    assert run.states["skipped"].attempts == 0
    assert run.ok  # skips are fine
    assert run.dag_name == "ids"
    assert isinstance(run.run_id, str) and run.run_id
    assert run.counts == {Status.SUCCESS: 1, Status.SKIPPED: 1}


def test_run_result_repr_and_summary_are_readable() -> None:
    const_task("extract", 1)
    Task(boom, name="parse")
    with pytest.raises(TaskExecutionError) as info:
        DAG(name="etl").run(executor="sync", fail_fast=False)
    run = raised_run(info)
    text = repr(run)
    assert text.startswith("RunResult(dag='etl'")
    assert f"run_id={run.run_id!r}" in text
    assert "ok=False" in text
    assert "1 success" in text and "1 failed" in text
    summary = run.summary()
    lines = summary.splitlines()
    assert lines[0].split() == ["task", "status", "attempts", "duration", "cause"]
    assert any(line.split()[:3] == ["extract", "SUCCESS", "1"] for line in lines)
    parse_line = next(line for line in lines if line.startswith("parse"))
    assert "FAILED" in parse_line
    assert "ValueError: boom: bad row 7" in parse_line
    assert "'etl'" in lines[-1] and "FAILED" in lines[-1]


def test_run_ids_are_unique() -> None:
    const_task("a", 1)
    dag = DAG()
    ids = {dag.run(executor="sync").run_id for _ in range(20)}
    assert len(ids) == 20


# --- failures -----------------------------------------------------------------------


def test_fail_fast_settles_dependants_and_cancels_the_rest(
    executor: str, tmp_path: Path
) -> None:
    started, failed = tmp_path / "started", tmp_path / "failed"
    # ``running`` is running when ``bad`` fails and waits until the failure is
    # recorded; the sync executor runs one call at a time, so it has nothing to wait for
    # (its priority makes it start before ``bad``, whose path to the end is longer).
    running = Task(
        functools.partial(touch_then_wait, started, failed, 0 if executor == "sync" else 5),
        name="running", priority=1,
    )
    bad = Task(functools.partial(fail_once_started, started), name="bad")
    dep, dep2, dep_both, after_running = (labelled(n) for n in
                                          ("dep", "dep2", "dep_both", "after_running"))
    bad >> dep >> dep2
    [running, bad] >> dep_both
    running >> after_running

    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor=executor, hooks=[TouchOnFailure(failed)])

    run = raised_run(info)
    assert states_of(run) == {
        "running": Status.SUCCESS,
        "bad": Status.FAILED,
        "dep": Status.UPSTREAM_FAILED,
        "dep2": Status.UPSTREAM_FAILED,
        "dep_both": Status.UPSTREAM_FAILED,
        "after_running": Status.CANCELLED,
    }
    if executor != "sync":
        assert run["running"] == "saw it"  # it was running when ``bad`` failed, and finished
    for name in ("dep", "dep2", "dep_both", "after_running"):
        assert run.states[name].cause == "bad"
        assert run.states[name].attempts == 0
    assert not run.ok
    error = info.value
    assert error.task_name == "bad"
    assert error.attempts == 1
    assert isinstance(error.__cause__, ValueError)
    assert str(error.__cause__) == "boom: bad row 7"
    assert "'bad'" in str(error)
    assert "boom: bad row 7" in str(error)
    assert run.states["bad"].error is error.__cause__


def test_without_fail_fast_independent_branches_go_on(executor: str) -> None:
    bad = Task(boom, name="bad")
    dep = labelled("dep")
    good = const_task("good", 1)
    after_good, after_after = labelled("after_good"), labelled("after_after")
    bad >> dep
    good >> after_good >> after_after
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor=executor, fail_fast=False)
    run = raised_run(info)
    assert states_of(run) == {
        "bad": Status.FAILED,
        "dep": Status.UPSTREAM_FAILED,
        "good": Status.SUCCESS,
        "after_good": Status.SUCCESS,
        "after_after": Status.SUCCESS,
    }
    assert run["after_after"] == ("after_after", (("after_good", (1,)),))
    assert run.states["dep"].cause == "bad"
    assert info.value.task_name == "bad"
    assert isinstance(info.value.__cause__, ValueError)


def test_without_fail_fast_the_error_counts_other_failures() -> None:
    Task(boom, name="first")
    Task(boom, name="second")
    with pytest.raises(TaskExecutionError, match=r"'first'.*1 other task") as info:
        DAG().run(executor="sync", fail_fast=False)
    assert len(raised_run(info).failed) == 2


@pytest.mark.parametrize("use_pool", [False, True], ids=["thread", "ThreadPoolExecutor"])
def test_fail_fast_really_cancels_queued_work(use_pool: bool) -> None:
    # One worker; ``bad`` fails first, ``blocker`` then holds the worker until the
    # queued tasks have been cancelled: they must never be called.
    called: list[str] = []
    released = threading.Event()

    class ReleaseOnCancel:
        def on_task_skip(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
            released.set()  # first called after the queued work was cancelled

    Task(boom, name="bad")
    Task(lambda: released.wait(5), name="blocker")
    for n in range(10):
        Task(functools.partial(called.append, f"t{n}"), name=f"t{n}")

    pool = cf.ThreadPoolExecutor(max_workers=1) if use_pool else None
    try:
        with pytest.raises(TaskExecutionError) as info:
            DAG().run(executor=pool or "thread", max_workers=1, hooks=[ReleaseOnCancel()])
    finally:
        if pool is not None:
            pool.shutdown()
    run = raised_run(info)
    assert called == []
    assert run.states["blocker"].status in (Status.SUCCESS, Status.CANCELLED)
    for n in range(10):
        state = run.states[f"t{n}"]
        assert state.status is Status.CANCELLED
        assert state.attempts == 0
        assert state.cause == "bad"


# --- timeouts ----------------------------------------------------------------------


def test_timeout_fails_the_attempt_and_the_run_moves_on(executor: str) -> None:
    stuck = Task(functools.partial(sleeper, 2), name="stuck", timeout=0.2)
    after = labelled("after")
    const_task("quick", 1)
    stuck >> after
    started = time.monotonic()
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor=executor, fail_fast=False)
    assert time.monotonic() - started < 1.5
    run = raised_run(info)
    assert run.states["stuck"].status is Status.FAILED
    assert run.states["after"].status is Status.UPSTREAM_FAILED
    assert run["quick"] == 1
    error = run.states["stuck"].error
    assert isinstance(error, TaskTimeoutError)
    assert isinstance(info.value.__cause__, TaskTimeoutError)
    assert error.task_name == "stuck"
    assert error.timeout == 0.2
    assert "'stuck'" in str(error) and "0.2s" in str(error)


def test_timeouts_are_retried() -> None:
    Task(functools.partial(sleeper, 1), name="stuck", timeout=0.1, retries=1)
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="thread")
    assert info.value.attempts == 2
    state = raised_run(info).states["stuck"]
    assert state.attempts == 2
    assert [type(a.error) for a in state.history] == [TaskTimeoutError, TaskTimeoutError]


def test_task_within_its_timeout_succeeds(executor: str) -> None:
    Task(functools.partial(const, 5), name="fast", timeout=5)
    assert DAG().run(executor=executor)["fast"] == 5


def test_process_timeout_really_stops_the_work(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    Task(functools.partial(sleep_then_touch, marker, 0.5), name="stuck", timeout=0.2)
    started = time.monotonic()
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="process")
    assert isinstance(info.value.__cause__, TaskTimeoutError)
    time.sleep(max(0.0, started + 0.8 - time.monotonic()))  # past when it would have finished
    assert not marker.exists()


# --- process pools and foreign executors ------------------------------------------


def test_process_pool_refuses_a_lambda_before_submitting() -> None:
    Task(lambda: 1, name="anonymous")
    started = time.monotonic()
    with pytest.raises(FlowkitError, match=r"'anonymous'.*lambda") as info:
        DAG().run(executor="process")
    assert "module level" in str(info.value)
    assert time.monotonic() - started < 5


def test_process_pool_refuses_a_closure() -> None:
    offset = 3

    def add_offset() -> int:
        return offset

    Task(add_offset, name="closure")
    with pytest.raises(FlowkitError, match="'closure'"):
        DAG().run(executor="process")


@pytest.mark.parametrize("own_pool", [False, True])
def test_process_pool_reports_an_unpicklable_result_and_does_not_retry(own_pool: bool) -> None:
    Task(unpicklable_result, name="lock_maker", retries=3)
    with contextlib.ExitStack() as stack:
        executor: Any = "process"
        if own_pool:
            executor = stack.enter_context(cf.ProcessPoolExecutor(max_workers=1))
        with pytest.raises(TaskExecutionError) as info:
            DAG().run(executor=executor)
    assert info.value.task_name == "lock_maker"
    cause = info.value.__cause__
    assert isinstance(cause, TaskExecutionError) and cause.retryable is False
    message = str(cause)
    assert "its result could not be sent back from its worker process" in message
    assert "_thread.lock" in message and "Not retried" in message
    assert "could not be sent to its worker:" not in message
    state = info.value.result.states["lock_maker"]  # type: ignore[union-attr]
    assert state.attempts == 1  # retries=3, but another attempt cannot change it


def test_an_unsendable_input_is_not_retried() -> None:
    Task(takes_lock, name="user", retries=2)
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="process", params={"lock": threading.Lock()})
    assert "'user' could not be sent to its worker" in str(info.value.__cause__)
    assert info.value.result is not None
    assert info.value.result.states["user"].attempts == 1


def test_dead_worker_process_fails_its_task_without_hanging() -> None:
    dead = Task(die, name="dead")
    after = labelled("after")
    dead >> after
    started = time.monotonic()
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="process")
    assert time.monotonic() - started < 10
    assert info.value.task_name == "dead"
    run = raised_run(info)
    assert run.states["dead"].status is Status.FAILED
    assert "'dead'" in str(run.states["dead"].error)
    assert run.states["after"].status is Status.UPSTREAM_FAILED


def test_dead_worker_process_is_replaced_for_the_retry(tmp_path: Path) -> None:
    Task(functools.partial(die_once, tmp_path / "died"), name="fragile", retries=1)
    run = DAG().run(executor="process", max_workers=1)
    assert run["fragile"] == "survived"
    assert run.states["fragile"].attempts == 2


def test_process_pool_runs_module_level_tasks() -> None:
    a, b = const_task("a", 2), const_task("b", 3)
    c = Task(total, name="c")
    [a, b] >> c
    run = DAG().run(executor="process", max_workers=2)
    assert run["c"] == 5
    assert all(state.history[0].worker.startswith("pid ") for state in run.states.values())


def test_caller_executor_is_used_and_never_shut_down() -> None:
    a, b = const_task("a", 2), const_task("b", 3)
    c = Task(total, name="c")
    [a, b] >> c
    with cf.ThreadPoolExecutor(max_workers=2, thread_name_prefix="mine") as pool:
        run = DAG().run(executor=pool)
        assert run["c"] == 5
        assert run.states["c"].history[0].worker.startswith("mine")
        assert pool.submit(int, "7").result(timeout=5) == 7  # still usable


def test_caller_executor_is_not_shut_down_after_a_failure() -> None:
    Task(boom, name="bad")
    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(TaskExecutionError):
            DAG().run(executor=pool)
        assert pool.submit(int, "1").result(timeout=5) == 1


# --- library etiquette ------------------------------------------------------------


def test_a_run_prints_nothing(tmp_path: Path) -> None:
    # In a fresh interpreter with no logging configured, so that the standard
    # library's last-resort handler would show any warning flowkit emits.
    module = tmp_path / "quiet_tasks.py"
    module.write_text(textwrap.dedent("""
        from flowkit import task

        @task
        def extract():
            return [1, 2]

        @task(retries=1)
        def broken(rows):
            raise ValueError("no")

        @task(when=lambda rows: False)
        def skipped(rows):
            return rows

        extract >> [broken, skipped]
    """))
    script = textwrap.dedent("""
        import flowkit, quiet_tasks
        for executor in ("sync", "thread", "process"):
            try:
                flowkit.DAG().run(executor=executor, fail_fast=False)
            except flowkit.TaskExecutionError:
                pass
            else:
                raise SystemExit("expected a failure")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=60, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


# --- random DAGs --------------------------------------------------------------------


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int]]]:
    """(declaration order of tasks 0..n-1, edges i -> j with i < j in declaration order)."""
    n = draw(st.integers(min_value=1, max_value=25))
    index = st.integers(min_value=0, max_value=n - 1)
    raw = draw(st.lists(st.tuples(index, index), max_size=3 * n))
    edges = list(dict.fromkeys((min(p), max(p)) for p in raw if p[0] != p[1]))
    declaration = draw(st.permutations(range(n)))
    return declaration, edges


@pytest.mark.parametrize("executor_name", ["sync", "thread"])
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dag=random_dags())
def test_random_dags_run_every_task_once_after_its_upstream(
    executor_name: str, dag: tuple[list[int], list[tuple[int, int]]]
) -> None:
    declaration, edges = dag
    registry = flowkit.Registry()
    calls: list[tuple[str, tuple[Any, ...]]] = []

    def make(name: str) -> Task[..., Any]:
        def fn(*inputs: Any) -> str:
            calls.append((name, inputs))
            return name

        return Task(fn, name=name, registry=registry)

    tasks = {i: make(f"t{i}") for i in declaration}
    for i, j in edges:
        tasks[i] >> tasks[j]

    run = DAG(registry=registry).run(executor=executor_name)

    expected_inputs = {f"t{j}": tuple(f"t{i}" for i, jj in edges if jj == j) for j in tasks}
    assert run.ok
    assert dict(run) == {name: name for name in expected_inputs}
    counts = collections.Counter(name for name, _ in calls)
    assert counts == dict.fromkeys(expected_inputs, 1)  # every task exactly once
    position = {name: k for k, (name, _) in enumerate(calls)}
    for name, inputs in calls:
        assert inputs == expected_inputs[name]
        assert all(position[up] < position[name] for up in inputs)


def test_a_fake_sleep_without_a_clock_still_moves_retry_waits_on() -> None:
    calls: list[int] = []
    slept: list[float] = []

    @task(retries=2, retry_delay=10.0)
    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("again")
        return 1

    run = DAG().run(executor="sync", sleep=slept.append)
    assert run["flaky"] == 1
    assert len(slept) == 2  # one wait per retry, not a busy loop
    assert slept[0] == pytest.approx(10.0, abs=0.5)
    assert slept[1] == pytest.approx(20.0, abs=0.5)
