"""async def tasks: run on an event loop, with dag.run() and await dag.arun()."""

from __future__ import annotations

import asyncio
import threading

import pytest

from flowkit import DAG, Status, TaskExecutionError, TaskTimeoutError, task


def test_async_tasks_run_concurrently_with_run() -> None:
    both_started = asyncio.Event  # type alias for readability below
    del both_started
    started: list[str] = []

    @task
    async def left() -> int:
        started.append("left")
        await asyncio.sleep(0.05)
        return 1

    @task
    async def right() -> int:
        started.append("right")
        await asyncio.sleep(0.05)
        return 2

    @task
    def add(a: int, b: int) -> int:
        return a + b

    [left, right] >> add
    run = DAG().run()
    assert run["add"] == 3
    assert sorted(started) == ["left", "right"]


def test_calling_an_async_task_returns_the_coroutine() -> None:
    @task
    async def fetch(x: int) -> int:
        return x + 1

    coroutine = fetch(1)
    assert asyncio.iscoroutine(coroutine)
    assert asyncio.run(coroutine) == 2


def test_arun_uses_the_callers_loop_and_threads_for_sync_tasks() -> None:
    loops: list[asyncio.AbstractEventLoop] = []
    threads: list[str] = []

    @task
    async def fetch() -> int:
        loops.append(asyncio.get_running_loop())
        return 20

    @task
    def double(x: int) -> int:
        threads.append(threading.current_thread().name)
        return x * 2

    fetch >> double

    async def main() -> tuple[int, asyncio.AbstractEventLoop]:
        run = await DAG().arun()
        return run["double"], asyncio.get_running_loop()

    value, loop = asyncio.run(main())
    assert value == 40
    assert loops == [loop]
    assert threads and threads[0] != "MainThread"


def test_max_concurrency_limits_coroutines_at_once() -> None:
    running = 0
    peak = 0

    async def body() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    tasks = []
    for k in range(6):

        @task(name=f"job{k}")
        async def job() -> None:
            await body()

        tasks.append(job)
    DAG().run(max_concurrency=2)
    assert peak == 2


def test_timeout_cancels_the_coroutine_for_real() -> None:
    cancelled = threading.Event()

    @task(timeout=0.05)
    async def slow() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TaskExecutionError) as info:
        DAG().run()
    assert isinstance(info.value.__cause__, TaskTimeoutError)
    assert cancelled.wait(1)


def test_async_retries_and_failures_use_the_scheduler() -> None:
    attempts: list[int] = []

    @task(retries=2)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("again")
        return "ok"

    run = DAG().run(executor="sync")
    assert run["flaky"] == "ok"
    assert run.states["flaky"].attempts == 3
    assert run.states["flaky"].status is Status.SUCCESS


def test_arun_rejects_a_bad_max_concurrency() -> None:
    @task
    async def job() -> None:
        return None

    with pytest.raises(Exception, match="max_concurrency"):
        asyncio.run(DAG().arun(max_concurrency=0))
