"""flowkit.testing: run_task, FakeClock, the isolated registry and the pytest fixture."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import flowkit
from flowkit import Registry, Status, task
from flowkit.testing import FakeClock, TaskRun, isolated_registry, run_task


@task
def double(x: int) -> int:
    """Module level, so that the process executor can pickle it by name."""
    return 2 * x


def test_run_task_returns_the_value_and_the_state() -> None:
    run = run_task(double, 21)
    assert isinstance(run, TaskRun)
    assert run.result() == 42 and run.value == 42
    assert run.status is Status.SUCCESS and run.ok
    assert run.attempts == 1 and len(run.history) == 1 and run.error is None
    assert run.duration >= 0 and run.reason is None
    assert run.state.inputs == (21,)
    assert "double" in repr(run)


def test_retries_with_their_delays_in_no_time() -> None:
    calls: list[int] = []

    @task(retries=3, retry_delay=1.0, backoff=2.0, retry_on=ConnectionError)
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise ConnectionError("down")
        return x

    slept: list[float] = []
    run = run_task(flaky, 7, sleep=slept.append)  # no clock: run_task fakes one
    assert run.result() == 7
    assert run.attempts == 3 and slept == [1.0, 2.0]
    assert [a.error is None for a in run.history] == [False, False, True]

    calls.clear()
    clock = FakeClock(start=100.0)
    assert run_task(flaky, 8, clock=clock, sleep=clock.sleep).attempts == 3
    assert clock.sleeps == [1.0, 2.0] and clock() == 103.0
    assert "sleeps=[1.0, 2.0]" in repr(clock)


def test_retry_on_limits_what_is_retried() -> None:
    @task(retries=3, retry_on=ConnectionError)
    def picky() -> None:
        raise KeyError("not retried")

    run = run_task(picky)
    assert run.status is Status.FAILED and run.attempts == 1
    with pytest.raises(KeyError):
        run.result()


def test_failure_is_returned_and_raised_by_result() -> None:
    @task(retries=1)
    def broken(x: int) -> int:
        raise ValueError(f"bad {x}")

    run = run_task(broken, 3, sleep=lambda s: None)
    assert run.status is Status.FAILED and not run.ok
    assert run.attempts == 2 and isinstance(run.error, ValueError)
    with pytest.raises(ValueError, match="bad 3"):
        run.result()


def test_when_false_skips_without_calling() -> None:
    called: list[int] = []

    @task(when=lambda rows: len(rows) > 0)
    def load(rows: list[int]) -> int:
        called.append(1)
        return len(rows)

    run = run_task(load, [])
    assert run.status is Status.SKIPPED and run.attempts == 0 and not called
    assert run.reason is not None and "when=" in run.reason
    with pytest.raises(flowkit.FlowkitError, match="SKIPPED"):
        run.result()
    assert run_task(load, [1, 2]).result() == 2


def test_timeout_fails_the_attempt() -> None:
    release = threading.Event()

    @task(timeout=0.05)
    def stuck() -> None:
        release.wait(5)

    try:
        run = run_task(stuck)
    finally:
        release.set()
    assert run.status is Status.FAILED
    assert isinstance(run.error, flowkit.TaskTimeoutError)
    with pytest.raises(flowkit.TaskTimeoutError, match=r"timed out after 0\.05s"):
        run.result()


def test_the_task_wiring_is_left_alone() -> None:
    ran: list[str] = []

    @task
    def upstream() -> int:
        ran.append("upstream")
        return 1

    @task
    def downstream(x: int) -> int:
        return x + 1

    upstream >> downstream
    assert run_task(downstream, 41).result() == 42
    assert not ran  # the real upstream task did not run
    assert downstream.upstream == (upstream,) and upstream.downstream == (downstream,)


def test_inputs_must_fit_the_signature() -> None:
    with pytest.raises(flowkit.DAGValidationError, match="double"):
        run_task(double, 1, 2)
    assert double.upstream == ()


def test_params_and_hooks_pass_through() -> None:
    @task
    def scale(x: int, *, factor: int) -> int:
        return x * factor

    seen: list[str] = []

    class Spy:
        def on_task_success(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
            seen.append(state.name)

    assert run_task(scale, 2, params={"factor": 5}, hooks=[Spy()]).result() == 10
    assert seen == ["scale"]


def test_refuses_options_that_do_not_apply() -> None:
    with pytest.raises(TypeError, match="state"):
        run_task(double, 1, state=flowkit.StateManager())
    with pytest.raises(TypeError, match="targets"):
        run_task(double, 1, targets=["double"])
    with pytest.raises(TypeError, match="@task"):
        run_task(lambda: 1)  # type: ignore[arg-type]


def test_runs_on_the_thread_and_process_executors() -> None:
    assert run_task(double, 4, executor="thread").result() == 8
    run = run_task(double, 5, executor="process", max_workers=1)
    assert run.result() == 10 and run.history[0].worker.startswith("pid ")


def test_mapped_and_async_tasks() -> None:
    @task
    def square(x: int) -> int:
        return x * x

    assert run_task(square.map(), [1, 2, 3]).result() == [1, 4, 9]

    @task
    async def later(x: int) -> int:
        return x + 1

    assert run_task(later, 1).result() == 2


def test_isolated_registry_restores_the_tasks(flowkit_registry: Registry) -> None:
    @task
    def outer() -> None:
        return None

    with isolated_registry() as inner:
        assert len(inner) == 0

        @task
        def temporary() -> None:
            return None

        assert "temporary" in flowkit.registry
    assert "temporary" not in flowkit.registry and "outer" in flowkit.registry
    assert flowkit_registry is flowkit.registry


def test_the_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys, flowkit.testing\n"
        "heavy = [m for m in ('dask', 'distributed', 'numpy', 'pandas') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
