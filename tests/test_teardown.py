"""all_done tasks as teardown under fail-fast, and the UpstreamFailed marker they get
for an upstream task that failed, was upstream-failed or was cancelled."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import pytest

import flowkit
from flowkit import (
    DAG,
    SKIPPED,
    Status,
    Task,
    TaskExecutionError,
    UpstreamFailed,
    task,
)

# --- module-level functions (importable by worker processes) ------------------


def extract() -> str:
    return "rows"


def publish(rows: str) -> str:
    raise ConnectionError("the warehouse is down")


def cleanup(*inputs: Any) -> list[str]:
    """What it was given: values as they are, markers described."""
    return [describe(x) for x in inputs]


def describe(value: Any) -> str:
    if value is SKIPPED:
        return "SKIPPED"
    if isinstance(value, UpstreamFailed):
        error = f" {type(value.error).__name__}: {value.error}" if value.error else ""
        return f"{value.task} {value.status.name} cause={value.cause}{error}"
    return repr(value)


def locked_failure() -> None:
    error = RuntimeError("holding a lock")
    error.lock = threading.Lock()  # type: ignore[attr-defined]  # does not pickle
    raise error


def run_failing(**options: Any) -> flowkit.RunResult:
    with pytest.raises(TaskExecutionError) as caught:
        DAG().run(**options)
    assert caught.value.result is not None
    return caught.value.result


# --- teardown under fail_fast -----------------------------------------------------


def test_cleanup_runs_after_a_failure_and_the_run_still_raises_it(executor: str) -> None:
    e, p = Task(extract), Task(publish)
    c = Task(cleanup, trigger="all_done")
    e >> p >> c
    with pytest.raises(TaskExecutionError) as caught:
        DAG().run(executor=executor)  # fail_fast=True, the default
    assert caught.value.task_name == "publish"
    assert isinstance(caught.value.__cause__, ConnectionError)
    run = caught.value.result
    assert run is not None
    assert run.states["cleanup"].status is Status.SUCCESS
    assert run["cleanup"] == [
        "publish FAILED cause=publish ConnectionError: the warehouse is down"
    ]


def test_after_the_failure_nothing_new_starts_but_teardown_whose_upstream_ended() -> None:
    calls: list[str] = []

    def step(name: str, fail: bool = False) -> Task[..., Any]:
        def body(*inputs: Any) -> str:
            calls.append(name)
            if fail:
                raise ValueError(f"{name} broke")
            return name
        return Task(body, name=name)

    first, broken = step("first"), step("broken", fail=True)
    queued, later = step("queued"), step("later")
    teardown = Task(cleanup, name="teardown", trigger="all_done")
    after_teardown = step("after_teardown")
    queued >> later
    [first, broken, queued] >> teardown >> after_teardown
    run = run_failing(executor="sync")  # sync: first, broken, queued start in this order
    assert calls == ["first", "broken"]  # queued was cancelled; teardown is no `step`
    states = {name: s.status for name, s in run.states.items()}
    assert states == {
        "first": Status.SUCCESS,
        "broken": Status.FAILED,
        "queued": Status.CANCELLED,
        "later": Status.CANCELLED,
        "teardown": Status.SUCCESS,
        "after_teardown": Status.UPSTREAM_FAILED,  # new work: it does not start
    }
    assert run["teardown"] == [
        "'first'",
        "broken FAILED cause=broken ValueError: broken broke",
        "queued CANCELLED cause=broken",
    ]


def test_teardown_already_queued_at_the_failure_still_runs() -> None:
    order: list[str] = []

    @task
    def quick() -> int:
        order.append("quick")
        return 1

    @task
    def fails() -> None:
        order.append("fails")
        raise RuntimeError("late failure")

    @task(trigger="all_done")
    def release(x: int) -> str:
        order.append("release")
        return f"released {x}"

    quick >> release
    run = run_failing(executor="sync")
    assert order == ["quick", "fails", "release"]  # release was queued behind fails
    assert run["release"] == "released 1" and run.states["release"].attempts == 1


def test_teardown_keeps_its_retries_after_the_failure() -> None:
    attempts: list[int] = []

    @task
    def fails() -> None:
        raise RuntimeError("first failure")

    @task(trigger="all_done", retries=2)
    def flaky_cleanup(marker: Any) -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 2:
            raise OSError("resource busy")
        return "cleaned"

    fails >> flaky_cleanup
    run = run_failing(executor="sync")
    assert run["flaky_cleanup"] == "cleaned" and attempts == [1, 2]


def test_a_teardown_chain_runs_in_order_and_a_failing_teardown_is_reported() -> None:
    @task
    def fails() -> None:
        raise RuntimeError("the first failure")

    @task(trigger="all_done")
    def stop_workers(marker: Any) -> None:
        raise OSError("worker did not stop")

    @task(trigger="all_done")
    def remove_files(marker: Any) -> str:
        return describe(marker)

    fails >> stop_workers >> remove_files
    with pytest.raises(TaskExecutionError) as caught:
        DAG().run(executor="thread")
    assert caught.value.task_name == "fails"  # the first failure, not the teardown's
    assert "1 other task(s) failed too" in str(caught.value)
    run = caught.value.result
    assert run is not None and run.states["stop_workers"].status is Status.FAILED
    assert run["remove_files"] == "stop_workers FAILED cause=stop_workers OSError: worker " \
        "did not stop"


def test_ctrl_c_still_cancels_teardown() -> None:
    @task
    def interrupted() -> None:
        raise KeyboardInterrupt

    @task(trigger="all_done")
    def never(marker: Any) -> None:
        raise AssertionError("Ctrl-C stops everything")

    interrupted >> never
    seen: list[flowkit.RunResult] = []

    class Keep:
        def on_dag_end(self, run: object, result: flowkit.RunResult) -> None:
            seen.append(result)

    with pytest.raises(KeyboardInterrupt):
        DAG().run(executor="sync", hooks=[Keep()])
    assert seen[0].states["never"].status is Status.CANCELLED


# --- the marker ------------------------------------------------------------------------


def test_the_marker_tells_failed_upstream_failed_and_cancelled_from_skipped() -> None:
    seen: dict[str, Any] = {}

    @task
    def bad() -> int:
        raise ValueError("bad input")

    @task
    def after_bad(x: int) -> int:
        return x

    @task(when=lambda: False)
    def skipped() -> int:
        return 0

    @task(trigger="all_done", when=lambda *inputs: seen.setdefault("when", inputs) or True)
    def report(a: Any, b: Any, c: Any) -> str:
        seen["report"] = (a, b, c)
        return "reported"

    bad >> after_bad
    [bad, after_bad, skipped] >> report
    run = run_failing(executor="sync", fail_fast=False)
    a, b, c = seen["report"]
    assert seen["when"] == seen["report"]  # the condition sees the same inputs
    assert isinstance(a, UpstreamFailed) and a.status is Status.FAILED
    assert a.task == "bad" and a.cause == "bad" and isinstance(a.error, ValueError)
    assert a.error is run.states["bad"].error
    assert isinstance(b, UpstreamFailed) and b.status is Status.UPSTREAM_FAILED
    assert (b.task, b.cause, b.error) == ("after_bad", "bad", None)
    assert c is SKIPPED and not isinstance(c, UpstreamFailed)
    assert not a and not b  # falsy, like SKIPPED
    assert repr(a) == "UpstreamFailed('bad', FAILED, ValueError('bad input'))"
    assert repr(b) == "UpstreamFailed('after_bad', UPSTREAM_FAILED, cause='bad')"


def test_the_marker_travels_to_a_worker_process(tmp_path: Path) -> None:
    boom = Task(locked_failure, name="boom")
    c = Task(cleanup, trigger="all_done")
    boom >> c
    run = run_failing(executor="process")
    # The worker's error did not pickle: a stand-in came back, and went out again.
    assert run["cleanup"] == [
        "boom FAILED cause=boom TaskExecutionError: task 'boom' raised RuntimeError: "
        "holding a lock (the original exception could not be pickled back from the worker)"
    ]


def test_the_marker_pickles_and_compares() -> None:
    error = ValueError("x")
    marker = UpstreamFailed("load", Status.FAILED, error)
    assert marker == UpstreamFailed("load", Status.FAILED, error)
    assert marker != UpstreamFailed("load", Status.CANCELLED, error, cause="x")
    assert marker != "load"
    copy = pickle.loads(pickle.dumps(marker))
    assert (copy.task, copy.status, copy.cause, str(copy.error)) == (
        "load", Status.FAILED, "load", "x"
    )
    odd = ValueError("odd")
    odd.lock = threading.Lock()  # type: ignore[attr-defined]
    travelled = pickle.loads(pickle.dumps(UpstreamFailed("t", Status.FAILED, odd)))
    assert str(travelled.error) == "ValueError: odd"


def test_a_resumed_run_runs_teardown_again_after_what_it_cleans_up() -> None:
    calls: list[str] = []
    broken = [True]

    @task
    def prepare() -> str:
        calls.append("prepare")
        return "tmp"

    @task
    def publish(path: str) -> str:
        calls.append("publish")
        if broken[0]:
            raise ConnectionError("down")
        return f"published {path}"

    @task(trigger="all_done")
    def remove(published: Any) -> str:
        calls.append("remove")
        return describe(published)

    prepare >> publish >> remove
    state = flowkit.StateManager()
    dag = DAG(name="resumable", state=state)
    with pytest.raises(TaskExecutionError):
        dag.run(executor="sync")
    assert calls == ["prepare", "publish", "remove"]
    broken[0] = False
    calls.clear()
    run = dag.run(executor="sync", resume=True)
    assert calls == ["publish", "remove"]  # prepare restored; publish ran again, so remove did
    assert run["remove"] == "'published tmp'"
