"""Absurd numbers and plausible mistakes in the arguments of ``@task``, ``DAG(...)``
and ``run(...)``: accepted where they mean something (``math.inf`` for "never"),
refused when the task or the run is defined otherwise — never a crash mid-run."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowkit import (
    DAG,
    FlowkitError,
    StateManager,
    Status,
    Task,
    TaskDefinitionError,
    TaskExecutionError,
)
from flowkit.retry import backoff_delay


def fails() -> None:
    raise ConnectionError("down")


def one() -> int:
    return 1


class FakeTime:
    """A clock that moves only when the run sleeps; records each sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# --- numbers: infinity where it means "never" --------------------------------------------


@pytest.mark.parametrize("executor", ["sync", "thread"])
def test_an_infinite_timeout_is_no_timeout(executor: str) -> None:
    slow = Task(one, timeout=math.inf)
    assert slow.options.timeout is None
    assert DAG([slow]).run(executor=executor)["one"] == 1


def test_an_infinite_max_delay_is_no_cap() -> None:
    assert Task(one, max_delay=math.inf).options.max_delay is None


def test_a_huge_finite_timeout_runs_normally() -> None:
    run = DAG([Task(one, timeout=1e300)]).run(executor="thread")
    assert run["one"] == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retry_delay", math.inf), ("backoff", math.inf), ("jitter", math.inf),
        ("retry_delay", math.nan), ("timeout", math.nan), ("cache_ttl", math.nan),
        ("retry_delay", 10**400), ("timeout", -math.inf), ("max_delay", -1),
    ],
)
def test_numbers_no_run_could_use_are_refused_when_the_task_is_defined(
    option: str, value: float
) -> None:
    with pytest.raises(TaskDefinitionError, match=option) as error:
        Task(fails, **{option: value})
    assert error.value.option == option
    assert error.value.task_name == "fails"


# --- numbers: retry delays without overflow --------------------------------------------------


def test_two_thousand_retries_with_backoff_do_not_overflow() -> None:
    fake = FakeTime()
    flaky = Task(fails, retries=2000, backoff=2, retry_delay=0.001, max_delay=5.0)
    with pytest.raises(TaskExecutionError) as error:
        DAG([flaky]).run(executor="sync", clock=fake.clock, sleep=fake.sleep)
    assert error.value.attempts == 2001
    assert isinstance(error.value.__cause__, ConnectionError)
    assert max(fake.slept) == pytest.approx(5.0)  # a capped delay stays capped


def test_retries_without_a_delay_never_wait_however_many() -> None:
    fake = FakeTime()
    flaky = Task(fails, retries=1500, backoff=2)
    with pytest.raises(TaskExecutionError):
        DAG([flaky]).run(executor="sync", clock=fake.clock, sleep=fake.sleep)
    assert set(fake.slept) <= {0.0}


@pytest.mark.parametrize("retry", [1, 2, 1024, 1025, 5000, 10**9])
def test_the_delay_schedule_is_capped_and_never_nan(retry: int) -> None:
    delay = backoff_delay(retry, retry_delay=1e300, backoff=1e300, max_delay=30, jitter=1e300,
                          random=lambda: 0.0)
    assert delay == 30
    assert backoff_delay(retry, retry_delay=0.0, backoff=2.0) == 0.0
    uncapped = backoff_delay(retry, retry_delay=1.0, backoff=2.0, jitter=0.5, random=lambda: 1.0)
    assert not math.isnan(uncapped) and uncapped >= 1.0


def test_a_retry_delay_longer_than_any_sleep_waits_in_slices() -> None:
    """1e300 seconds cannot be passed to a sleep or a queue wait: the run waits in
    slices of at most an hour instead of crashing, and Ctrl-C still ends it."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            raise KeyboardInterrupt

    lucky = Task(fails, retries=1, retry_delay=1e300)
    with pytest.raises(KeyboardInterrupt):
        DAG([lucky]).run(executor="sync", clock=lambda: 0.0, sleep=sleep)
    assert slept == [3600.0, 3600.0, 3600.0]


def test_a_huge_jitter_does_not_crash_the_run() -> None:
    fake = FakeTime()
    flaky = Task(fails, retries=3, jitter=1e300, retry_delay=1e-300)
    with pytest.raises(TaskExecutionError) as error:
        DAG([flaky]).run(executor="sync", clock=fake.clock, sleep=fake.sleep)
    assert error.value.attempts == 4


# --- the arguments of DAG(...) and run(...) -----------------------------------------------


def test_a_path_is_accepted_as_the_state_of_a_run(tmp_path: Path) -> None:
    cached = Task(one, cache_ttl=math.inf)
    path = tmp_path / "x.json"
    DAG([cached]).run(executor="sync", state=str(path))
    again = DAG([cached]).run(executor="sync", state=path)
    assert again.states["one"].status is Status.CACHED
    assert [e.name for e in StateManager(path).entries()] == ["one"]


def test_a_path_is_accepted_as_the_state_of_a_dag(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    dag = DAG([Task(one, cache_ttl=60)], state=os.fspath(path))
    assert isinstance(dag.state, StateManager)
    dag.run(executor="sync")
    assert DAG([dag["one"]], state=path).run(executor="sync").states["one"].status \
        is Status.CACHED


BAD_RUN_ARGUMENTS: list[tuple[str, Any, str]] = [
    ("state", 5, "state"),
    ("state", object(), "state"),
    ("targets", 5, "targets"),
    ("hooks", 5, "hooks"),
    ("hooks", "logger", "hooks"),
    ("hooks", [None], "hooks"),
    ("fail_fast", "no", "fail_fast"),
    ("fail_fast", None, "fail_fast"),
    ("resume", "yes", "resume"),
    ("resume", 1, "resume"),
    ("max_workers", 0, "max_workers"),
    ("max_workers", True, "max_workers"),
    ("max_workers", 2.5, "max_workers"),
    ("executor", "threads", "executor"),
    ("executor", 5, "executor"),
    ("params", ["day"], "params"),
    ("rng", 42, "rng"),
    ("clock", 0.0, "clock"),
    ("sleep", "no", "sleep"),
    ("max_concurrency", -1, "max_concurrency"),
    ("address", 8786, "address"),
]


@pytest.mark.parametrize(("argument", "value", "named"), BAD_RUN_ARGUMENTS)
def test_bad_run_arguments_are_refused_before_anything_runs(
    argument: str, value: Any, named: str
) -> None:
    ran: list[int] = []
    first = Task(lambda: ran.append(1), name="first")
    with pytest.raises((FlowkitError, TypeError)) as error:
        DAG([first]).run(executor="sync", **{argument: value})  # type: ignore[arg-type]
    assert named in str(error.value)
    assert ran == []


@pytest.mark.parametrize(("argument", "value", "named"), BAD_RUN_ARGUMENTS)
def test_bad_arun_arguments_are_refused_too(argument: str, value: Any, named: str) -> None:
    import asyncio

    first = Task(one, name="first")
    with pytest.raises((FlowkitError, TypeError)) as error:
        asyncio.run(DAG([first]).arun(executor="sync", **{argument: value}))
    assert named in str(error.value)


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: DAG(5), "tasks"),  # type: ignore[arg-type]
        (lambda: DAG([5]), "Task"),  # type: ignore[list-item]
        (lambda: DAG(name=5), "name"),  # type: ignore[arg-type]
        (lambda: DAG(state=5), "state"),  # type: ignore[arg-type]
        (lambda: DAG(registry={}), "registry"),  # type: ignore[arg-type]
    ],
)
def test_bad_dag_arguments_are_refused(make: Callable[[], DAG], named: str) -> None:
    Task(one)
    with pytest.raises((FlowkitError, TypeError)) as error:
        make()
    assert named in str(error.value)


def test_an_unknown_run_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="fail_fest"):
        DAG([Task(one)]).run(fail_fest=False)  # type: ignore[call-arg]
