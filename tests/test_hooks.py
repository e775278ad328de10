"""Pluggable hooks: which methods are called, in what order, with what, and what
happens when a hook raises."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import flowkit


@pytest.fixture(autouse=True)
def _reset_flowkit_logging() -> Iterator[None]:
    logger = logging.getLogger("flowkit")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


class Recorder:
    """Records every hook call as (label, method, task name or None)."""

    def __init__(self, label: str, calls: list[tuple[str, str, str | None]]):
        self.label = label
        self.calls = calls
        self.threads: set[int] = set()

    def _note(self, method: str, state: flowkit.TaskState | None = None) -> None:
        self.threads.add(threading.get_ident())
        self.calls.append((self.label, method, state.name if state is not None else None))

    def on_dag_start(self, run: flowkit.RunContext) -> None:
        self._note("on_dag_start")

    def on_task_start(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
        self._note("on_task_start", state)

    def on_task_retry(
        self,
        run: flowkit.RunContext,
        state: flowkit.TaskState,
        error: BaseException,
        delay: float,
    ) -> None:
        self._note("on_task_retry", state)

    def on_task_success(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
        self._note("on_task_success", state)

    def on_task_failure(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
        self._note("on_task_failure", state)

    def on_task_skip(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
        self._note("on_task_skip", state)

    def on_task_cached(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
        self._note("on_task_cached", state)

    def on_dag_end(self, run: flowkit.RunContext, result: flowkit.RunResult) -> None:
        self._note("on_dag_end")


def test_hooks_are_called_in_order_for_every_event() -> None:
    attempts = {"n": 0}

    @flowkit.task(retries=1)
    def extract() -> int:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise ConnectionError("flaky")
        return 1

    @flowkit.task(when=lambda x: False)
    def gated(x: int) -> int:
        return x

    @flowkit.task(cache_ttl=math.inf)
    def cached(x: int) -> int:
        return x

    extract >> [gated, cached]
    calls: list[tuple[str, str, str | None]] = []
    first, second = Recorder("first", calls), Recorder("second", calls)
    dag = flowkit.DAG()
    dag.run(executor="sync", hooks=[first, second])
    calls.clear()
    dag.run(executor="sync", hooks=[first, second])  # extract runs, cached is served

    # Each event reaches the hooks in the order they were given, one after the other.
    assert [c[0] for c in calls] == ["first", "second"] * (len(calls) // 2)
    assert calls[::2] == [("first", m, t) for _, m, t in calls[1::2]]
    assert [(m, t) for label, m, t in calls if label == "first"] == [
        ("on_dag_start", None),
        ("on_task_start", "extract"),
        ("on_task_success", "extract"),
        ("on_task_skip", "gated"),
        ("on_task_cached", "cached"),
        ("on_dag_end", None),
    ]
    assert first.threads == second.threads == {threading.get_ident()}


def test_retry_and_failure_hooks_get_the_error_and_delay() -> None:
    seen: list[Any] = []

    class Watcher:
        def on_task_retry(
            self,
            run: flowkit.RunContext,
            state: flowkit.TaskState,
            error: BaseException,
            delay: float,
        ) -> None:
            seen.append(("retry", state.attempts, type(error).__name__, delay))

        def on_task_failure(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
            seen.append(("failure", state.attempts, type(state.error).__name__, run.failed))

    @flowkit.task(retries=1, retry_delay=2.0)
    def broken() -> None:
        raise KeyError("k")

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(flowkit.TaskExecutionError):
        flowkit.DAG().run(executor="sync", hooks=[Watcher()], clock=lambda: now[0], sleep=sleep)
    assert seen == [("retry", 1, "KeyError", 2.0), ("failure", 2, "KeyError", 1)]


def test_hooks_see_progress_already_counted() -> None:
    done: list[tuple[int, int]] = []

    class Progress:
        def on_task_success(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
            done.append((run.done, run.total))

    for name in ("a", "b", "c"):
        flowkit.Task(lambda: 1, name=name)
    flowkit.DAG().run(executor="sync", hooks=[Progress()])
    assert done == [(1, 3), (2, 3), (3, 3)]


def test_skip_hook_sees_status_cause_and_reason() -> None:
    skipped: list[tuple[str, flowkit.Status, str | None, str | None]] = []

    class Skips:
        def on_task_skip(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
            skipped.append((state.name, state.status, state.cause, state.reason))

    @flowkit.task
    def root() -> None:
        raise ValueError("x")

    @flowkit.task
    def child(x: None) -> None:
        return None

    root >> child
    with pytest.raises(flowkit.TaskExecutionError):
        flowkit.DAG().run(executor="sync", hooks=[Skips()])
    ((name, status, cause, reason),) = skipped
    assert (name, status, cause) == ("child", flowkit.Status.UPSTREAM_FAILED, "root")
    assert reason and "root" in reason


def test_a_raising_hook_is_reported_once_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def on_task_success(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
            raise RuntimeError("hook bug")

    calls: list[tuple[str, str, str | None]] = []
    after = Recorder("after", calls)
    for name in ("a", "b", "c"):
        flowkit.Task(lambda: 1, name=name)
    with caplog.at_level(logging.ERROR, logger="flowkit"):
        result = flowkit.DAG(name="h").run(executor="thread", hooks=[Broken(), after])
    assert result.ok and dict(result) == {"a": 1, "b": 1, "c": 1}
    # The hook after the broken one still hears every success.
    assert sorted(str(t) for _, m, t in calls if m == "on_task_success") == ["a", "b", "c"]
    (record,) = [r for r in caplog.records if r.name == "flowkit.hooks"]
    assert record.levelno == logging.ERROR
    assert "on_task_success" in record.getMessage() and "Broken" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert record.event == "hook.error" and record.hook_method == "on_task_success"
    assert record.dag == "h" and record.run_id == result.run_id and record.task in "abc"


def test_each_raising_method_is_reported_once() -> None:
    class Broken:
        def on_dag_start(self, run: flowkit.RunContext) -> None:
            raise RuntimeError("start")

        def on_task_start(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
            raise RuntimeError("task")

        def on_dag_end(self, run: flowkit.RunContext, result: flowkit.RunResult) -> None:
            raise RuntimeError("end")

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("flowkit.hooks").addHandler(handler)
    try:
        for name in ("a", "b"):
            flowkit.Task(lambda: 1, name=name)
        assert flowkit.DAG().run(executor="sync", hooks=[Broken()]).ok
    finally:
        logging.getLogger("flowkit.hooks").removeHandler(handler)
    assert [r.hook_method for r in records] == ["on_dag_start", "on_task_start", "on_dag_end"]
    assert not hasattr(records[-1], "task")


def test_a_hook_may_define_any_subset_or_nothing() -> None:
    class Nothing:
        pass

    class NotCallable:
        on_task_success = "not a method"

    flowkit.Task(lambda: 1, name="a")
    assert flowkit.DAG().run(executor="sync", hooks=[Nothing(), NotCallable()]).ok
