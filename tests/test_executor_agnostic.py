"""Any ``concurrent.futures.Executor`` runs a DAG with every feature, and stays the caller's.

The same features (retries, timeouts, ``when``, trigger rules, fail-fast,
caching) run on a caller's ``ThreadPoolExecutor``, ``ProcessPoolExecutor`` and a
minimal custom executor whose plain futures are completed from its own threads.
After every test the executor must still take work: flowkit never shuts it down.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from endings import assert_lost, bounded
from file_counter import bump, flaky

import flowkit.executors
from flowkit import (
    DAG,
    SKIPPED,
    FlowkitError,
    StateManager,
    Status,
    Task,
    TaskExecutionError,
    TaskTimeoutError,
    UpstreamFailed,
)

# --- task functions: module level, so process pools import them by name ------


def const(value: Any) -> Any:
    return value


def double(x: int) -> int:
    return 2 * x


def total(*values: int) -> int:
    return sum(values)


def counted(path: str) -> str:
    return f"call {bump(path)}"


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


def fail(_: Any = None) -> None:
    raise ValueError("boom")


def describe(*values: Any) -> list[str]:
    """What a task received, in a form that compares across processes."""
    return [
        "SKIPPED" if v is SKIPPED
        else f"{v.task} {v.status.name}" if isinstance(v, UpstreamFailed)
        else repr(v)
        for v in values
    ]


def numbers(n: int) -> list[int]:
    return list(range(n))


def lock() -> Any:
    return threading.Lock()  # no pickle can carry this


def _explode() -> None:
    raise ImportError("no module named 'only_on_the_worker'")


class Unloadable:
    """Pickles fine, but cannot be unpickled (like a class only the worker can import)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_explode, ())


def unloadable() -> Unloadable:
    return Unloadable()


def killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# --- executors -----------------------------------------------------------------


class OwnThreadsExecutor(cf.Executor):
    """A minimal executor: plain ``Future``s, completed by its own threads."""

    def __init__(self, workers: int = 2):
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"own-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: cf.Future[Any] = cf.Future()
        self._calls.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while (item := self._calls.get()) is not None:
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        for _ in self._threads:
            self._calls.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class RecordingExecutor(OwnThreadsExecutor):
    """Pickles what each ``submit`` receives and records its size and the types in it."""

    def __init__(self) -> None:
        super().__init__()
        self.payloads: list[tuple[int, set[type]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        seen: set[type] = set()

        class Recorder(pickle.Pickler):
            def reducer_override(self, obj: Any) -> Any:
                seen.add(type(obj))
                return NotImplemented

        buffer = _Sink()
        Recorder(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump((fn, args, kwargs))
        self.payloads.append((buffer.size, seen))
        return super().submit(fn, *args, **kwargs)


class _Sink:
    size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)


class CancellingExecutor(OwnThreadsExecutor):
    """Cancels every call behind the scheduler's back (as a shutdown by other code would)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        future.cancel()
        return future


class RefusingExecutor(OwnThreadsExecutor):
    """Fails every ``submit`` with ``error``, as an executor may when it cannot take a call."""

    def __init__(self, error: Exception):
        super().__init__()
        self.error = error

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        raise self.error


EXECUTORS: dict[str, Callable[[], cf.Executor]] = {
    "ThreadPoolExecutor": lambda: cf.ThreadPoolExecutor(max_workers=2),
    "ProcessPoolExecutor": lambda: cf.ProcessPoolExecutor(max_workers=2),
    "custom": OwnThreadsExecutor,
}


@pytest.fixture(params=list(EXECUTORS))
def pool(request: pytest.FixtureRequest) -> Iterator[cf.Executor]:
    """A caller's executor; after the test it must still take work (flowkit never shuts it down)."""
    executor = EXECUTORS[request.param]()
    try:
        yield executor
        assert executor.submit(pow, 2, 5).result(timeout=10) == 32
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def where(path: Path) -> Task[[], str]:
    """A root task handing ``path`` to its dependants (a picklable partial)."""
    return Task(functools.partial(const, str(path)), name="where")


# --- every feature, on every executor --------------------------------------------


def test_values_flow_through_fan_out_and_fan_in(pool: cf.Executor) -> None:
    source = Task(functools.partial(const, 3), name="source")
    doubles = [Task(double, name=f"double_{n}") for n in range(4)]
    added = Task(total, name="total")
    source >> doubles >> added
    run = DAG([added]).run(executor=pool)
    assert run.ok
    assert run["total"] == 24
    assert run.states["total"].attempts == 1


def test_retries_run_the_task_again(pool: cf.Executor, tmp_path: Path) -> None:
    retried = Task(flaky, retries=2, retry_on=ConnectionError)
    where(tmp_path) >> retried
    run = DAG([retried]).run(executor=pool)
    assert run["flaky"] == "recovered"
    assert run.states["flaky"].attempts == 2
    assert isinstance(run.states["flaky"].history[0].error, ConnectionError)


def test_timeout_fails_the_attempt_without_waiting_for_it(pool: cf.Executor) -> None:
    sleepy = Task(functools.partial(nap, 0.5), name="sleepy", timeout=0.1)
    started = time.monotonic()
    with pytest.raises(TaskExecutionError) as caught:
        DAG([sleepy]).run(executor=pool)
    assert time.monotonic() - started < 0.45
    assert caught.value.task_name == "sleepy"
    assert isinstance(caught.value.__cause__, TaskTimeoutError)
    assert caught.value.result is not None
    assert caught.value.result.states["sleepy"].status is Status.FAILED


def test_when_and_trigger_rules(pool: cf.Executor) -> None:
    root = Task(functools.partial(const, 1), name="root")
    bad = Task(fail, name="bad")
    good = Task(double, name="good")
    maybe = Task(double, name="maybe", when=lambda x: x > 5)
    after_bad = Task(describe, name="after_bad")
    join = Task(describe, name="join", trigger="none_failed")
    cleanup = Task(describe, name="cleanup", trigger="all_done")
    root >> [bad, good, maybe]
    bad >> after_bad
    [good, maybe] >> join
    [bad, good] >> cleanup
    with pytest.raises(TaskExecutionError) as caught:
        DAG([after_bad, join, cleanup]).run(executor=pool, fail_fast=False)
    run = caught.value.result
    assert run is not None
    status = {name: state.status for name, state in run.states.items()}
    assert status == {
        "root": Status.SUCCESS,
        "bad": Status.FAILED,
        "good": Status.SUCCESS,
        "maybe": Status.SKIPPED,
        "after_bad": Status.UPSTREAM_FAILED,
        "join": Status.SUCCESS,
        "cleanup": Status.SUCCESS,
    }
    assert run["join"] == ["2", "SKIPPED"]
    assert run["cleanup"] == ["bad FAILED", "2"]
    assert caught.value.task_name == "bad"
    assert isinstance(caught.value.__cause__, ValueError)


def test_fail_fast_cancels_what_has_not_started(pool: cf.Executor) -> None:
    bad = Task(fail, name="bad")
    dependant = Task(double, name="dependant")
    bad >> dependant
    slow = [Task(functools.partial(nap, 0.2), name=f"slow_{n}") for n in range(10)]
    started = time.monotonic()
    with pytest.raises(TaskExecutionError) as caught:
        DAG([bad, dependant, *slow]).run(executor=pool)
    assert time.monotonic() - started < 10 * 0.2 / 2  # not every slow task ran
    run = caught.value.result
    assert run is not None
    assert caught.value.task_name == "bad"
    assert run.states["dependant"].status is Status.UPSTREAM_FAILED
    statuses = [run.states[t.name].status for t in slow]
    assert Status.CANCELLED in statuses
    assert set(statuses) <= {Status.SUCCESS, Status.CANCELLED}
    for t in slow:
        if run.states[t.name].status is Status.CANCELLED:
            assert run.states[t.name].attempts == 0


def test_cache_serves_the_second_run(pool: cf.Executor, tmp_path: Path) -> None:
    cached = Task(counted, cache_ttl=60)
    where(tmp_path) >> cached
    dag = DAG([cached], state=StateManager())
    first = dag.run(executor=pool)
    second = dag.run(executor=pool)
    assert first["counted"] == second["counted"] == "call 1"
    assert first.states["counted"].status is Status.SUCCESS
    assert second.states["counted"].status is Status.CACHED
    assert (tmp_path / "calls").read_text() == "1"


# --- what travels, and what does not ----------------------------------------------


def test_a_worker_gets_one_small_call_and_nothing_of_the_scheduler(tmp_path: Path) -> None:
    class Hook:
        """A hook holding something big: none of it may travel to a worker."""

        ballast = b"x" * 100_000

        def on_task_success(self, run: Any, state: Any) -> None:
            pass

    source = Task(functools.partial(const, 21), name="source")
    doubled = Task(double, name="doubled", retries=1)
    source >> doubled
    executor = RecordingExecutor()
    try:
        state = StateManager()
        run = DAG([doubled], state=state).run(executor=executor, hooks=[Hook()])
        assert run["doubled"] == 42
    finally:
        executor.shutdown()
    assert len(executor.payloads) == 2
    from flowkit.context import RunContext
    from flowkit.dag import DAG as DAGClass
    from flowkit.executors import Backend
    from flowkit.hooks import HookDispatcher
    from flowkit.outcome import TaskState
    from flowkit.scheduler import Scheduler

    forbidden = (Scheduler, Backend, HookDispatcher, RunContext, TaskState, DAGClass,
                 StateManager, Hook, queue.SimpleQueue, logging.Logger)
    for size, types in executor.payloads:
        assert size < 1000, f"a payload of {size} bytes"
        assert not [t for t in types if issubclass(t, forbidden)], types
        modules = {t.__module__ for t in types}
        assert modules <= {"builtins", "functools", "flowkit.context", "flowkit.worker",
                           "flowkit.task", __name__}, modules


def test_results_that_do_not_pickle_still_work_on_an_in_process_executor() -> None:
    made = Task(lock)
    executor = OwnThreadsExecutor()
    try:
        run = DAG([made]).run(executor=executor)
    finally:
        executor.shutdown()
    assert hasattr(run["lock"], "acquire")


def test_an_attempt_cancelled_behind_flowkits_back_fails_instead_of_hanging() -> None:
    lone = Task(functools.partial(const, 1), name="lone", retries=1)
    executor = CancellingExecutor()
    try:
        with pytest.raises(TaskExecutionError) as caught:
            DAG([lone]).run(executor=executor)
    finally:
        executor.shutdown()
    assert caught.value.task_name == "lone"
    assert caught.value.attempts == 2
    assert "cancelled" in str(caught.value.__cause__)


def test_a_result_that_cannot_be_unpickled_fails_the_task_clearly() -> None:
    made = Task(unloadable)
    executor = OwnThreadsExecutor()
    try:
        with pytest.raises(TaskExecutionError) as caught:
            DAG([made]).run(executor=executor)
    finally:
        executor.shutdown()
    cause = caught.value.__cause__
    assert isinstance(cause, TaskExecutionError)
    assert "result of task 'unloadable'" in str(cause)
    assert "cannot be unpickled here" in str(cause)
    assert isinstance(cause.__cause__, ImportError)


def test_an_executor_that_cannot_take_a_call_fails_the_attempt() -> None:
    one = Task(functools.partial(const, 1), name="one")
    executor = RefusingExecutor(TypeError("cannot pickle 'generator' object"))
    try:
        with pytest.raises(TaskExecutionError) as caught:
            DAG([one]).run(executor=executor)
    finally:
        executor.shutdown()
    assert caught.value.task_name == "one"
    assert "'one' could not be sent to its worker" in str(caught.value.__cause__)


def test_an_executor_shut_down_during_the_run_is_a_clear_error() -> None:
    one = Task(functools.partial(const, 1), name="one")
    executor = RefusingExecutor(RuntimeError("cannot schedule new futures after shutdown"))
    try:
        with pytest.raises(FlowkitError, match="do not shut it down during the run"):
            DAG([one]).run(executor=executor)
    finally:
        executor.shutdown()


def test_a_lambda_task_on_a_process_pool_is_refused_clearly() -> None:
    anonymous = Task(lambda: 1, name="anonymous")
    with cf.ProcessPoolExecutor(max_workers=1) as executor:
        with pytest.raises(FlowkitError, match="'anonymous' cannot run on a process pool"):
            DAG([anonymous]).run(executor=executor)
        assert executor.submit(pow, 2, 3).result() == 8


# --- an executor that can run nothing more -------------------------------------------


class ShutDownOnceQueued(cf.ThreadPoolExecutor):
    """Shut down, its queue cancelled, right after it queued a call (as other code may do)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self.shutdown(wait=False, cancel_futures=True)
        return future


class ShutDownAfter:
    """A hook that shuts ``pool`` down once task ``name`` succeeded."""

    def __init__(self, pool: cf.Executor, name: str):
        self.pool, self.name = pool, name

    def on_task_success(self, run: Any, state: Any) -> None:
        if state.name == self.name:
            self.pool.shutdown(wait=False, cancel_futures=True)


def failed_run(dag: DAG, executor: cf.Executor, **options: Any) -> dict[str, Any]:
    """The states of ``dag``'s run, which fails, once it returned (fail_fast=False)."""
    with pytest.raises(TaskExecutionError) as caught:
        bounded(lambda: dag.run(executor=executor, fail_fast=False, **options))
    assert caught.value.result is not None
    return dict(caught.value.result.states)


def test_a_thread_pool_shut_down_by_a_task_fails_the_tasks_left_clearly() -> None:
    pool = cf.ThreadPoolExecutor(max_workers=2)
    try:
        stopper = Task(lambda: pool.shutdown(wait=False), name="stopper")
        after = Task(describe, name="after", retries=2)
        last = Task(describe, name="last")
        stopper >> after >> last
        states = failed_run(DAG([last]), pool)
    finally:
        pool.shutdown()
    assert states["stopper"].status is Status.SUCCESS
    assert_lost(states["after"], "the ThreadPoolExecutor was shut down during the run",
                "do not shut it down during the run")
    assert states["last"].status is Status.UPSTREAM_FAILED


def test_a_call_waiting_in_a_pool_shut_down_meanwhile_fails_clearly() -> None:
    pool = ShutDownOnceQueued(max_workers=1)
    release = threading.Event()
    busy = cf.ThreadPoolExecutor.submit(pool, release.wait, 60)  # its one thread is taken
    try:
        waiting = Task(functools.partial(const, 1), name="waiting", retries=2)
        states = failed_run(DAG([waiting]), pool)
    finally:
        release.set()
        pool.shutdown()
    assert busy.result() is True
    assert_lost(states["waiting"], "the ShutDownOnceQueued was shut down during the run")
    assert isinstance(states["waiting"].error.__cause__, cf.CancelledError)  # in its queue


def test_a_process_pool_shut_down_mid_run_fails_the_tasks_left_clearly() -> None:
    first = Task(functools.partial(const, 1), name="first")
    second = Task(double, name="second", retries=2)
    third = Task(double, name="third")
    first >> second >> third
    with cf.ProcessPoolExecutor(max_workers=1) as pool:
        states = failed_run(DAG([third]), pool, hooks=[ShutDownAfter(pool, "first")])
    assert states["first"].status is Status.SUCCESS
    assert_lost(states["second"], "the ProcessPoolExecutor was shut down during the run")
    assert states["third"].status is Status.UPSTREAM_FAILED


def refuse_to_start() -> None:
    raise OSError("no database connection for this worker")


def test_a_thread_pool_whose_initializer_failed_fails_the_tasks_clearly() -> None:
    one = Task(functools.partial(const, 1), name="one", retries=2)
    two = Task(double, name="two")
    one >> two
    with cf.ThreadPoolExecutor(max_workers=1, initializer=refuse_to_start) as pool:
        states = failed_run(DAG([two]), pool)
    assert_lost(states["one"], "the ThreadPoolExecutor it ran on is broken",
                "initializer failed", "cannot replace an executor it was given")
    assert states["two"].status is Status.UPSTREAM_FAILED


def test_a_process_pool_whose_worker_was_killed_fails_the_tasks_left_clearly() -> None:
    victim = Task(killed, name="victim", retries=2)
    after = Task(describe, name="after")
    cleanup = Task(describe, name="cleanup", trigger="all_done", retries=2)
    victim >> [after, cleanup]
    with cf.ProcessPoolExecutor(max_workers=1) as pool:
        states = failed_run(DAG([after, cleanup]), pool)
    assert_lost(states["victim"], "the ProcessPoolExecutor it ran on is broken",
                "worker processes died abruptly", "cannot replace an executor it was given")
    assert states["after"].status is Status.UPSTREAM_FAILED
    assert_lost(states["cleanup"], "is broken")  # it ran after the failure: sent to a broken pool



# --- large results ------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def executor_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the ``flowkit.executors`` logger."""
    handler = _Collect()
    log = logging.getLogger("flowkit.executors")
    level = log.level
    log.setLevel(logging.WARNING)
    log.addHandler(handler)
    try:
        yield handler.records
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def test_large_results_from_a_process_pool_are_reported_once_per_run(
    executor_log: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowkit.executors, "LARGE_RESULT_BYTES", 1_000)
    bigs = [Task(functools.partial(numbers, 2_000), name=f"big_{n}") for n in range(3)]
    small = Task(functools.partial(numbers, 3), name="small")
    dag = DAG([*bigs, small])
    with cf.ProcessPoolExecutor(max_workers=2) as executor:
        run = dag.run(executor=executor)
        assert run["big_0"] == list(range(2_000))
        assert run["small"] == [0, 1, 2]
        assert len(executor_log) == 1
        message = executor_log[0].getMessage()
        assert executor_log[0].levelno == logging.WARNING
        assert "LARGE_RESULT_BYTES" in message and "return the path" in message
        dag.run(executor=executor)
        assert len(executor_log) == 2  # once per run


def test_large_results_on_threads_are_not_reported(
    executor_log: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowkit.executors, "LARGE_RESULT_BYTES", 1_000)
    big = Task(functools.partial(numbers, 2_000), name="big")
    with cf.ThreadPoolExecutor(max_workers=1) as executor:
        assert len(DAG([big]).run(executor=executor)["big"]) == 2_000
    assert executor_log == []


# --- executors by name ----------------------------------------------------------------


def test_dask_is_an_executor_name() -> None:
    assert "dask" in flowkit.executors.EXECUTOR_NAMES


def test_executor_dask_without_dask_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import dask` fail
    one = Task(functools.partial(const, 1), name="one")
    with pytest.raises(FlowkitError, match=r"pip install 'dask\[distributed\]'"):
        DAG([one]).run(executor="dask")


def test_address_without_dask_is_refused() -> None:
    one = Task(functools.partial(const, 1), name="one")
    with pytest.raises(FlowkitError, match="only applies to executor='dask'"):
        DAG([one]).run(executor="thread", address="tcp://127.0.0.1:8786")


def test_the_worker_pid_is_recorded_on_a_process_pool() -> None:
    pid = Task(os.getpid, name="pid")
    with cf.ProcessPoolExecutor(max_workers=1) as executor:
        run = DAG([pid]).run(executor=executor)
    assert run["pid"] != os.getpid()
    assert run.states["pid"].history[-1].worker == f"pid {run['pid']}"
