"""Runs that must neither hang nor misreport: stuck timeouts, odd exceptions,
timeouts that count from the start of an attempt, cancellation of arun."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import flowkit
from flowkit import (
    DAG,
    SKIPPED,
    DAGValidationError,
    Status,
    Task,
    TaskExecutionError,
    TaskTimeoutError,
    task,
)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def three_tenths() -> float:
    return 0.3


def test_a_stuck_timed_out_thread_does_not_starve_the_pool() -> None:
    release = threading.Event()

    @task(timeout=0.2)
    def stuck() -> None:
        release.wait(10)  # a network call that never answers

    others = [Task(lambda k=k: k, name=f"other{k}") for k in range(3)]
    started = time.monotonic()
    try:
        with pytest.raises(TaskExecutionError) as info:
            DAG([stuck, *others]).run(max_workers=1, fail_fast=False)
    finally:
        release.set()
    assert time.monotonic() - started < 2
    run = info.value.result
    assert run is not None
    assert isinstance(run.states["stuck"].error, TaskTimeoutError)
    assert [run[f"other{k}"] for k in range(3)] == [0, 1, 2]


def test_system_exit_in_a_worker_thread_fails_the_task() -> None:
    @task
    def quits() -> None:
        sys.exit(3)

    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="thread", max_workers=2)
    assert isinstance(info.value.__cause__, SystemExit)
    assert info.value.result is not None
    assert info.value.result.states["quits"].status is Status.FAILED


def test_an_async_task_that_raises_cancelled_error_fails() -> None:
    @task
    async def awaits_a_cancelled_future() -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    started = time.monotonic()
    with pytest.raises(TaskExecutionError) as info:
        DAG().run()
    assert time.monotonic() - started < 2
    assert isinstance(info.value.__cause__, asyncio.CancelledError)


def test_an_async_task_that_blocks_its_loop_still_times_out() -> None:
    @task(timeout=0.1)
    async def blocks() -> None:
        time.sleep(0.6)  # never yields to the loop

    started = time.monotonic()
    with pytest.raises(TaskExecutionError) as info:
        DAG().run()
    assert isinstance(info.value.__cause__, TaskTimeoutError)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_timeout_counts_from_when_the_attempt_starts(executor: str) -> None:
    # One worker, two tasks of 0.3 s with a 0.5 s timeout: the second waits
    # 0.3 s for the worker, which is not its own running time.
    first = Task(nap, name="first", timeout=0.5)
    second = Task(nap, name="second", timeout=0.5)
    Task(three_tenths, name="length") >> [first, second]
    run = DAG([first, second]).run(executor=executor, max_workers=1)
    assert run["first"] == run["second"] == 0.3


def test_an_outcome_that_arrived_is_not_timed_out_by_a_slow_scheduler() -> None:
    class SlowHook:
        def on_task_success(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
            if state.name == "quick":
                time.sleep(0.5)  # a slow log handler, say

    @task
    def quick() -> int:
        return 1

    @task(timeout=0.3)
    def in_time() -> int:
        time.sleep(0.1)
        return 2

    run = DAG().run(executor="thread", hooks=[SlowHook()])
    assert run["in_time"] == 2


def test_items_do_not_start_after_a_fail_fast_stop() -> None:
    calls: list[int] = []

    @task
    def items() -> list[int]:
        return [0, 1, 2]

    @task(when=lambda x: 1 / x)
    def invert(x: int) -> float:
        calls.append(x)
        return 1 / x

    items >> invert.map()
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="thread")
    run = info.value.result
    assert run is not None
    assert calls == []
    assert {s.status for s in run.states.values()} <= {
        Status.SUCCESS, Status.FAILED, Status.CANCELLED, Status.UPSTREAM_FAILED
    }


def test_a_generator_that_raises_while_mapped_fails_the_map_node() -> None:
    @task
    def lazy() -> object:
        return (10 // x for x in [1, 0])

    @task
    def double(x: int) -> int:
        return 2 * x

    lazy >> double.map()
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="sync")
    assert info.value.task_name == "double"
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_a_map_over_a_skipped_input_is_skipped() -> None:
    @task(when=lambda: False)
    def source() -> list[int]:
        return [1]

    @task(trigger="none_failed")
    def double(x: int) -> int:
        return 2 * x

    source >> double.map()
    run = DAG().run(executor="sync")
    assert run.states["double"].status is Status.SKIPPED
    assert run.states["double"].cause == "source"


def test_mapping_a_function_without_parameters_is_refused() -> None:
    @task
    def items() -> list[int]:
        return [1]

    @task
    def nothing() -> int:
        return 0

    items >> nothing.map()
    with pytest.raises(DAGValidationError, match="no parameters"):
        DAG()


def test_positional_only_parameters_are_not_run_parameters() -> None:
    @task
    def scaled(scale: int = 1, /) -> int:
        return scale

    with pytest.raises(DAGValidationError, match="'scale'"):
        DAG().run(executor="sync", params={"scale": 5})
    assert DAG().run(executor="sync")["scaled"] == 1


def test_cancelling_arun_stops_the_run() -> None:
    started: list[str] = []

    @task
    async def slow() -> int:
        started.append("slow")
        await asyncio.sleep(5)
        return 1

    @task
    def after(x: int) -> int:
        started.append("after")
        return x

    slow >> after

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(DAG().arun(), 0.2)

    began = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - began < 2
    time.sleep(0.1)
    assert started == ["slow"]


def test_skipped_sentinel_is_still_falsy_and_unique() -> None:
    assert not SKIPPED and repr(SKIPPED) == "SKIPPED"


def fails_late() -> None:
    time.sleep(0.3)
    raise RuntimeError("late failure")


def records(path: str) -> str:
    with open(path, "a") as out:
        out.write("ran\n")
    return "ran"


def test_fail_fast_on_a_process_pool_starts_nothing_queued(tmp_path: Path) -> None:
    log = tmp_path / "log"
    first = Task(fails_late, name="first")
    others = [Task(functools.partial(records, str(log)), name=f"other{k}") for k in range(3)]
    with pytest.raises(TaskExecutionError) as info:
        DAG([first, *others]).run(executor="process", max_workers=1)
    run = info.value.result
    assert run is not None
    assert not log.exists()
    assert {run.states[f"other{k}"].status for k in range(3)} == {Status.CANCELLED}


def _inc(value: int) -> int:
    return value + 1


def test_a_one_worker_pool_goes_on_when_its_thread_pauses_after_handing_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool's thread may lose the CPU right after it hands a result back: the
    scheduler it woke must already see the worker free, or it waits for nothing."""
    from flowkit.backends import base

    made = base.Inbox.__init__

    def pausing_inbox(inbox: base.Inbox) -> None:
        made(inbox)
        put = inbox.put

        def put_then_pause(call: base.Call) -> None:
            put(call)
            if threading.current_thread().name != "runner":  # the pool's thread
                time.sleep(0.05)

        inbox.put = put_then_pause  # type: ignore[method-assign]

    monkeypatch.setattr(base.Inbox, "__init__", pausing_inbox)
    first = Task(functools.partial(_inc, 0), name="first")
    second = Task(_inc, name="second")
    third = Task(_inc, name="third")
    first >> second >> third
    results: list[object] = []
    runner = threading.Thread(
        target=lambda: results.append(DAG([third]).run(executor="process", max_workers=1)["third"]),
        name="runner", daemon=True,
    )
    runner.start()
    runner.join(120)
    assert results == [3], "the run stalled"


# --- pools never get more workers than can be used ---------------------------------


def _pid() -> int:
    return os.getpid()


class _CountChildren:
    """Notes how many worker processes exist each time a task succeeds."""

    def __init__(self) -> None:
        self.before = self._children()  # left by other tests: not this run's
        self.most = 0

    @staticmethod
    def _children() -> set[int]:
        import multiprocessing

        return {p.pid for p in multiprocessing.active_children() if p.pid is not None}

    def on_task_success(self, run: object, state: object) -> None:
        self.most = max(self.most, len(self._children() - self.before))


def test_a_process_pool_gets_no_more_workers_than_tasks_can_use() -> None:
    tasks = [flowkit.Task(_pid, name=f"pid{i}") for i in range(2)]
    counter = _CountChildren()
    run = flowkit.DAG(tasks).run(executor="process", max_workers=40, hooks=[counter])
    assert run.ok
    assert 1 <= counter.most <= 2  # not 40


def _pass_on(pid: int) -> int:
    return os.getpid()


def test_a_chain_gets_one_worker_process() -> None:
    first = flowkit.Task(_pid, name="first")
    links = [first]
    for k in range(3):
        links.append(flowkit.Task(_pass_on, name=f"link{k}"))
        links[-2] >> links[-1]
    counter = _CountChildren()
    run = flowkit.DAG(links).run(executor="process", max_workers=4, hooks=[counter])
    assert counter.most == 1  # one task runs at a time: one worker is enough
    assert len({run[t.name] for t in links}) == 1


def test_a_chain_with_a_timeout_keeps_a_worker_for_a_call_that_may_not_stop() -> None:
    first = flowkit.Task(_pid, name="first", timeout=30)
    second = flowkit.Task(_pass_on, name="second")
    first >> second
    counter = _CountChildren()
    run = flowkit.DAG([second]).run(executor="process", max_workers=4, hooks=[counter])
    assert run.ok
    assert counter.most == 2


def test_an_absurd_max_workers_is_capped() -> None:
    from flowkit.backends import MAX_WORKERS_PER_CPU, usable_workers

    one = flowkit.Task(_pid, name="one")
    assert isinstance(flowkit.DAG([one]).run(executor="process", max_workers=10**9)["one"], int)
    assert usable_workers("process", 10**9, None) == MAX_WORKERS_PER_CPU * (os.cpu_count() or 1)
    assert usable_workers("thread", None, 3) == 3


# --- a killed driver leaves no worker process behind ---------------------------------

SLEEPERS = """
import os
import time
from pathlib import Path

from flowkit import task


def _sleep_and_tell() -> None:
    (Path(os.environ["FLOWKIT_TEST_PIDS"]) / str(os.getpid())).touch()
    time.sleep(120)


@task
def sleeper_a() -> None:
    _sleep_and_tell()


@task
def sleeper_b() -> None:
    _sleep_and_tell()
"""

DRIVER = """
import multiprocessing
import sys

import sleepers
from flowkit import DAG

if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    DAG([sleepers.sleeper_a, sleepers.sleeper_b]).run(executor="process", max_workers=2)
"""


def _running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _poll(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("start_method", multiprocessing.get_all_start_methods())
def test_process_pool_workers_exit_when_the_driver_is_killed(
    tmp_path: Path, start_method: str
) -> None:
    (tmp_path / "sleepers.py").write_text(SLEEPERS)
    (tmp_path / "driver.py").write_text(DRIVER)
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    env = {**os.environ, "FLOWKIT_TEST_PIDS": str(pids_dir)}
    pids: list[int] = []
    with open(tmp_path / "stderr", "w") as stderr:
        driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), start_method],
                                  env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=stderr)
    try:
        started = _poll(lambda: len(os.listdir(pids_dir)) == 2 or driver.poll() is not None, 60)
        pids = [int(name) for name in os.listdir(pids_dir)]
        assert started and len(pids) == 2, (tmp_path / "stderr").read_text()
        driver.kill()  # SIGKILL: nothing of the driver runs any more
        driver.wait(timeout=30)
        assert _poll(lambda: not any(_running(pid) for pid in pids), 20), (
            f"worker processes {[pid for pid in pids if _running(pid)]} outlived their driver"
        )
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
