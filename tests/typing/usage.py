"""Every documented usage of flowkit, checked by ``mypy --strict`` (not run by pytest).

``assert_type`` pins what mypy infers; each ``# type: ignore[...]`` marks a call
that must be an error — strict mode warns about unused ignores, so an error
that stops being reported fails the check.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import random
from collections.abc import Callable
from typing import Any, assert_type

import flowkit
from flowkit import (
    DAG,
    SKIPPED,
    DAGCycleError,
    FlowkitError,
    Registry,
    RunResult,
    Status,
    Task,
    TaskExecutionError,
    TaskState,
    TaskTimeoutError,
    task,
)

# --- declaring tasks ------------------------------------------------------------


@task
def extract() -> list[int]:
    return [1, 2, 3]


@task(
    retries=3,
    retry_delay=0.5,
    backoff=2.0,
    max_delay=30,
    jitter=0.1,
    retry_on=(ConnectionError,),
    timeout=60,
)
def transform(rows: list[int]) -> list[int]:
    return [r * 2 for r in rows]


@task(when=lambda rows: len(rows) > 0, cache_ttl=3600)
def load(rows: list[int]) -> int:
    return len(rows)


@task(name="notify", trigger="none_failed", retry_on=ConnectionError, cache_ttl=math.inf,
      cache_key=lambda rows: len(rows))
def send(count: int, channel: str = "ops") -> bool:
    return count > 0


def plain(a: int, b: str) -> tuple[int, str]:
    return (a, b)


explicit = Task(plain, name="explicit", retries=1)
called = task(plain, name="called", retries=2)
as_called: Task[[int, str], tuple[int, str]] = called
pooled = Task(plain, name="pooled", priority=2, pool="db", pool_slots=1)
bad_option = task(retries="3")  # type: ignore[call-overload]
my_registry = Registry()
private = Task(plain, registry=my_registry)

# The decorated objects are tasks that keep their function's signature.
as_task: Task[[list[int]], list[int]] = transform
as_explicit: Task[[int, str], tuple[int, str]] = explicit
no_inputs: Task[[], list[int]] = extract
wrong_params: Task[[str], list[int]] = transform  # type: ignore[assignment]
wrong_return: Task[[list[int]], str] = transform  # type: ignore[assignment]
assert_type(transform([1]), list[int])
assert_type(load([1, 2]), int)
assert_type(send(3), bool)
assert_type(send(3, channel="x"), bool)
assert_type(explicit(1, "b"), tuple[int, str])
plain_function: Callable[[list[int]], list[int]] = transform.fn
assert_type(transform.name, str)
assert_type(transform.upstream, tuple[Task[..., Any], ...])

transform("x")  # type: ignore[arg-type]
transform()  # type: ignore[call-arg]
load([1], 2)  # type: ignore[call-arg]
explicit("1", "b")  # type: ignore[arg-type]
send(1, channel=2)  # type: ignore[arg-type]
wrong_result: str = load([1])  # type: ignore[assignment]
task(retries="3")  # type: ignore[call-overload]
task(trigger="sometimes")  # type: ignore[call-overload]
task(plain, retries="3")  # type: ignore[call-overload]
Task(plain, timeout="60")  # type: ignore[arg-type]

# --- wiring ---------------------------------------------------------------------

assert_type(extract >> transform, Task[..., list[int]])
fan_out = extract >> [transform, explicit]
assert_type(fan_out, list[Task[..., Any]])
fan_in: Task[[list[int]], int] = [transform, explicit] >> load
upstream_first: Task[[list[int]], int] = load << transform
fan_in_by_lshift: Task[[list[int]], int] = load << [transform, extract]
targets = [transform, explicit]  # different signatures: inferred as list[object]
extract >> targets
targets >> load
targets << extract
chain: Task[[list[int]], int] = extract >> [transform, explicit] >> load
extract >> transform >> load >> send
extract >> 3  # type: ignore[operator]

# --- running --------------------------------------------------------------------

dag = DAG(name="etl")
dag_of_some = DAG([load], name="partial", registry=my_registry)
dag_of_one = DAG(load, name="one")
assert_type(dag.tasks, tuple[Task[..., Any], ...])
assert_type(dag["load"], Task[..., Any])

run = dag.run()
assert_type(run, RunResult)
run = dag.run(executor="sync", max_workers=2, fail_fast=False, targets=["load"])
run = dag.run(executor="process", targets="load", hooks=[object()])
run = dag.run(targets=[load, "transform"])
run = dag.run(targets=load)
run = dag.run(rng=random.Random(0), clock=lambda: 0.0, sleep=lambda seconds: None)
with cf.ThreadPoolExecutor() as pool:
    run = dag.run(executor=pool)

count: Any = run["load"]
assert "load" in run
maybe: Any | None = run.get("load")
names: list[str] = list(run)
state = run.states["load"]
assert_type(state, TaskState)
assert_type(state.status, Status)
assert_type(state.attempts, int)
assert_type(state.error, BaseException | None)
assert_type(state.duration, float)
assert_type(run.ok, bool)
assert_type(run.run_id, str)
assert_type(run.dag_name, str)
summary: str = run.summary()
is_done = state.status is Status.SUCCESS or state.status is Status.CACHED
skipped_input = SKIPPED
plan = dag.plan(targets=["load"])
order: list[str] = plan.order
excluded: list[str] = plan.excluded

dag.run(executor=3)  # type: ignore[arg-type]
dag.run(fail_fast="yes")  # type: ignore[arg-type]
run["load"] = 1  # type: ignore[index]

# --- errors ---------------------------------------------------------------------

try:
    dag.run()
except TaskTimeoutError as timeout_error:
    limit: float | None = timeout_error.timeout
except TaskExecutionError as error:
    failed_task: str | None = error.task_name
    attempts: int = error.attempts
    partial: RunResult | None = error.result
except DAGCycleError as cycle_error:
    cycle: list[str] = cycle_error.cycle
except FlowkitError:
    pass

delay: float = flowkit.backoff_delay(2, retry_delay=1.0, backoff=2.0, max_delay=10,
                                     jitter=0.1, random=random.random)
flowkit.configure_logging("DEBUG", json=True)
with flowkit.registry.isolated() as isolated:
    assert_type(isolated, Registry)
flowkit.registry.clear()

# --- what an all_done task receives ------------------------------------------------


@task(trigger="all_done")
def teardown(published: object) -> str:
    if isinstance(published, flowkit.UpstreamFailed):
        assert_type(published.status, flowkit.Status)
        assert_type(published.error, BaseException | None)
        assert_type(published.cause, str)
        return published.task
    return "nothing to undo" if published is flowkit.SKIPPED else "cleaned"
