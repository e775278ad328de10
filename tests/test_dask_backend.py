"""On a Dask cluster, data stays on the cluster: two worker processes on loopback,
shared by the module.

Task functions are module-level: the workers are spawned with this process's
``sys.path`` (which holds ``tests/``), so they import them as ``test_dask_backend``.
Values are a few tens of MB where it matters that they do not come back: the
driver's peak memory tells whether they did.
"""

from __future__ import annotations

import functools
import math
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip(
    "distributed",
    reason="dask.distributed is not installed: pip install 'dask[distributed]' "
    "(or poetry install --with dist)",
)
from file_counter import bump  # noqa: E402

from flowkit import (  # noqa: E402
    DAG,
    SKIPPED,
    FlowkitError,
    RunResult,
    StateManager,
    Status,
    Task,
    TaskExecutionError,
)

pytestmark = pytest.mark.dask

MB = 1_000_000
SIZE = 30 * MB  # one value: the driver must never hold one


# --- task functions (run on the workers) -----------------------------------------------


def produce(size: int) -> bytes:
    return b"\x00" * size


def step(previous: bytes) -> bytes:
    return bytes([(previous[0] + 1) % 256]) * len(previous)


def first_byte(data: bytes) -> int:
    return data[0]


def length(data: bytes) -> int:
    return len(data)


def not_on(driver: int, *_: Any) -> bool:
    """A condition that holds only away from the driver process."""
    return os.getpid() != driver


def never(*_: Any) -> bool:
    return False


def counted_length(path: str, data: bytes) -> int:
    bump(path)
    return len(data)


def chunks(count: int, size: int) -> list[bytes]:
    return [bytes([k]) * size for k in range(count)]


def fails(*_: Any) -> int:
    raise ValueError("this task always fails")


def flaky_length(path: str, data: bytes) -> int:
    if bump(path) == 1:
        raise ConnectionError("first attempt fails")
    return len(data)


def die_once_length(path: str, data: bytes) -> int:
    """Kill the worker process on the first call; succeed afterwards."""
    if bump(path) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return len(data)


def pid(*_: Any) -> int:
    return os.getpid()


# --- measuring the driver ---------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    with open("/proc/self/status") as status:
        found = re.search(r"VmHWM:\s+(\d+) kB", status.read())
    assert found is not None
    return int(found.group(1)) * 1024


class PeakGrowth:
    """How far this process's resident memory rose within a ``with`` block (Linux)."""

    def __enter__(self) -> PeakGrowth:
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # the kernel's peak starts again from here
        except OSError:
            pytest.skip("the peak resident memory cannot be reset on this system")
        self.start = _rss()
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = _peak() - self.start


# --- the cluster -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(dask_cluster: Any) -> Any:
    """The session's two single-threaded worker processes (see conftest.py)."""
    return dask_cluster


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    dask_client = distributed.Client(cluster, set_as_default=False)
    try:
        yield dask_client
    finally:
        dask_client.close()


@pytest.fixture
def executor(client: Any) -> Any:
    # A test that killed a worker waits for its return here, not when it ends:
    # that test is the module's last, so nothing waits for it.
    client.wait_for_workers(2, timeout=120)
    return client.get_executor()


def chain(size: int, steps: int) -> list[Task[bytes, bytes]]:
    tasks: list[Task[Any, Any]] = [Task(functools.partial(produce, size), name="step_0")]
    for k in range(1, steps):
        tasks.append(Task(step, name=f"step_{k}"))
        tasks[-2] >> tasks[-1]
    return tasks


# --- the data stays on the cluster ------------------------------------------------------


def test_a_chain_of_big_values_never_comes_back_to_the_driver(client: Any, executor: Any) -> None:
    tasks = chain(SIZE, 4)
    with PeakGrowth() as peak:
        run = DAG([tasks[-1]]).run(executor=executor)
    # Today's executor path brings every value back: 4 x 30 MB, pickled and unpickled.
    assert peak.growth < SIZE // 2, f"the driver grew by {peak.growth / MB:.0f} MB"
    last = run.futures["step_3"]
    assert isinstance(last, distributed.Future)
    assert client.submit(first_byte, last).result() == 3
    assert run.states["step_3"].status is Status.SUCCESS
    assert run.states["step_3"].history[-1].worker.startswith("pid ")


def test_values_are_gathered_when_read(executor: Any) -> None:
    tasks = chain(1_000, 3)
    run = DAG([tasks[-1]]).run(executor=executor)
    assert run["step_2"] == b"\x02" * 1_000
    assert dict(run.items()) == {f"step_{k}": bytes([k]) * 1_000 for k in range(3)}
    assert run.futures["step_1"].result() == b"\x01" * 1_000


def test_a_value_read_after_its_client_closed_is_a_clear_error(cluster: Any) -> None:
    own = distributed.Client(cluster, set_as_default=False)
    try:
        run = DAG(chain(10, 2)).run(executor=own.get_executor())
    finally:
        own.close()
    with pytest.raises(FlowkitError, match=r"step_1.*client.*closed"):
        run["step_1"]


def test_executor_dask_gathers_the_final_values_before_closing(client: Any) -> None:
    tasks = chain(1_000, 3)
    run = DAG([tasks[-1]]).run(executor="dask", address=client.scheduler.address)
    assert run["step_2"] == b"\x02" * 1_000  # its client is closed: the value came first
    assert run.states["step_1"].status is Status.SUCCESS
    with pytest.raises(FlowkitError, match="step_1"):
        run["step_1"]  # not a final task: it stayed on the cluster, which is gone for it


def test_futures_are_empty_off_dask() -> None:
    run = DAG(chain(10, 2)).run(executor="thread")
    assert dict(run.futures) == {}
    assert run["step_1"] == b"\x01" * 10


# --- when, cache, map, resume, retries, fail-fast on remote values ----------------------


def test_when_is_evaluated_on_the_worker(executor: Any) -> None:
    big = Task(functools.partial(produce, SIZE), name="big")
    kept = Task(length, name="kept", when=functools.partial(not_on, os.getpid()))
    dropped = Task(first_byte, name="dropped", when=never)
    after = Task(pid, name="after")
    big >> [kept, dropped]
    dropped >> after
    with PeakGrowth() as peak:
        run = DAG([kept, after]).run(executor=executor)
    assert peak.growth < SIZE // 2
    assert run["kept"] == SIZE  # the condition held: it ran away from the driver
    assert run.states["dropped"].status is Status.SKIPPED
    assert run.states["dropped"].cause == "dropped"
    assert run.states["after"].status is Status.SKIPPED  # all_success: skipped upstream


def test_a_raising_condition_fails_the_task(executor: Any) -> None:
    data = Task(functools.partial(produce, 10), name="data")
    guarded = Task(length, name="guarded", when=fails)
    data >> guarded
    with pytest.raises(TaskExecutionError) as caught:
        DAG([guarded]).run(executor=executor)
    assert caught.value.task_name == "guarded"
    assert isinstance(caught.value.__cause__, ValueError)


def test_the_cache_keys_remote_inputs_without_fetching_them(
    executor: Any, tmp_path: Path
) -> None:
    big = Task(functools.partial(produce, SIZE), name="big")
    measured = Task(functools.partial(counted_length, str(tmp_path)), name="measured",
                    cache_ttl=math.inf)
    big >> measured
    dag = DAG([measured], state=StateManager())
    with PeakGrowth() as peak:
        first = dag.run(executor=executor)
        second = dag.run(executor=executor)
    assert peak.growth < SIZE // 2
    assert first["measured"] == second["measured"] == SIZE
    assert second.states["measured"].status is Status.CACHED
    assert (tmp_path / "calls").read_text() == "1"


def test_a_mapped_task_gets_its_items_on_the_cluster(executor: Any) -> None:
    source = Task(functools.partial(chunks, 4, SIZE // 4), name="source")
    lengths = Task(length, name="lengths").map()
    firsts = Task(first_byte, name="firsts").map()
    total = Task(lambda values: sum(values), name="total")
    source >> [lengths, firsts]
    lengths >> total
    with PeakGrowth() as peak:
        run = DAG([total, firsts]).run(executor=executor)
    assert peak.growth < SIZE // 2
    assert run["lengths"] == [SIZE // 4] * 4
    assert run["firsts"] == [0, 1, 2, 3]
    assert run["total"] == SIZE
    assert run.states["lengths[2]"].status is Status.SUCCESS


def test_a_map_over_a_mapped_task_maps_its_items(executor: Any) -> None:
    source = Task(functools.partial(chunks, 3, 10), name="source")
    doubled = Task(step, name="doubled").map()
    firsts = Task(first_byte, name="firsts").map()
    source >> doubled >> firsts
    run = DAG([firsts]).run(executor=executor)
    assert run["firsts"] == [1, 2, 3]
    assert len(run.futures["doubled"]) == 3


def test_resume_restores_small_values_and_reruns_big_ones(
    executor: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    big = Task(functools.partial(produce, SIZE), name="big")
    small = Task(length, name="small")
    tiny = Task(functools.partial(produce, 100), name="tiny")
    broken = Task(fails, name="broken")
    big >> small >> broken
    tiny >> broken
    state = StateManager(tmp_path / "state.json")
    with pytest.raises(TaskExecutionError):
        DAG([broken], name="resumable").run(executor=executor, state=state)
    assert "big" in caplog.text and "not restorable" in caplog.text
    again = Task(pid, name="broken")  # fixed: same name, new code
    big >> small >> again
    tiny >> again
    run = DAG([again], name="resumable").run(executor=executor, state=state, resume=True)
    assert run.states["big"].status is Status.SUCCESS  # too big to store: it ran again
    assert run.states["small"].status is Status.SUCCESS  # downstream of a rerun task
    assert run.states["tiny"].status is Status.CACHED  # small enough: restored
    assert run["tiny"] == b"\x00" * 100
    assert run["broken"] != os.getpid()


def test_a_retried_attempt_gets_its_remote_input_again(executor: Any, tmp_path: Path) -> None:
    big = Task(functools.partial(produce, SIZE), name="big")
    retried = Task(functools.partial(flaky_length, str(tmp_path)), name="retried", retries=1)
    big >> retried
    run = DAG([retried]).run(executor=executor)
    assert run["retried"] == SIZE
    assert run.states["retried"].attempts == 2
    assert isinstance(run.states["retried"].history[0].error, ConnectionError)


def test_fail_fast_on_remote_values(executor: Any) -> None:
    big = Task(functools.partial(produce, 1_000), name="big")
    broken = Task(fails, name="broken")
    downstream = Task(length, name="downstream")
    big >> broken >> downstream
    with pytest.raises(TaskExecutionError) as caught:
        DAG([downstream]).run(executor=executor)
    run = caught.value.result
    assert run is not None
    assert run.states["broken"].status is Status.FAILED
    assert run.states["downstream"].status is Status.UPSTREAM_FAILED
    assert run["big"] == b"\x00" * 1_000


# --- the same DAG, the same results ------------------------------------------------------


def branchy() -> list[Task[..., Any]]:
    data = Task(functools.partial(chunks, 3, 5), name="data")
    firsts = Task(first_byte, name="firsts").map()
    skipped = Task(length, name="skipped", when=never)
    join = Task(lambda values, gone: (sum(values), gone is SKIPPED), name="join",
                trigger="none_failed")
    data >> [firsts, skipped]
    [firsts, skipped] >> join
    return [join]


def test_the_same_dag_gives_the_same_results_on_dask_as_on_threads(executor: Any) -> None:
    on_threads = DAG(branchy(), name="same").run(executor="thread")
    on_dask = DAG(branchy(), name="same").run(executor=executor)
    assert dict(on_dask.items()) == dict(on_threads.items())
    assert {n: s.status for n, s in on_dask.states.items()} == {
        n: s.status for n, s in on_threads.states.items()
    }
    assert on_dask["join"] == (3, True)


def test_run_result_repr_does_not_gather(executor: Any) -> None:
    run = DAG(chain(SIZE, 1)).run(executor=executor)
    with PeakGrowth() as peak:
        text = repr(run) + run.summary()
    assert peak.growth < SIZE // 2
    assert "step_0" in text
    assert isinstance(run, RunResult)


# --- corners ------------------------------------------------------------------------------


class Opaque:
    """A value the cache cannot digest."""


def opaque(*_: Any) -> Opaque:
    return Opaque()


def first_four(data: bytes) -> bytes:
    return data[:4]


def test_a_probe_applies_the_condition_and_a_custom_cache_key(
    executor: Any, tmp_path: Path
) -> None:
    big = Task(functools.partial(produce, SIZE), name="big")
    keyed = Task(functools.partial(counted_length, str(tmp_path)), name="keyed",
                 cache_ttl=math.inf, cache_key=first_four)
    guarded = Task(length, name="guarded", cache_ttl=math.inf, when=never)
    big >> [keyed, guarded]
    dag = DAG([keyed, guarded], state=StateManager())
    first = dag.run(executor=executor)
    second = dag.run(executor=executor)
    assert first["keyed"] == SIZE
    assert second.states["keyed"].status is Status.CACHED
    assert second.states["keyed"].attempts == 0
    assert first.states["guarded"].status is Status.SKIPPED
    assert (tmp_path / "calls").read_text() == "1"


def test_an_input_the_cache_cannot_digest_runs_the_task(
    executor: Any, caplog: pytest.LogCaptureFixture
) -> None:
    made = Task(opaque, name="made")
    cached = Task(pid, name="cached", cache_ttl=60)
    made >> cached
    dag = DAG([cached], state=StateManager())
    assert dag.run(executor=executor).states["cached"].status is Status.SUCCESS
    assert dag.run(executor=executor).states["cached"].status is Status.SUCCESS
    assert "is not cached" in caplog.text


def test_mapping_over_a_remote_value_that_is_not_iterable_fails_clearly(executor: Any) -> None:
    number = Task(functools.partial(length, b"abc"), name="number")
    mapped = Task(pid, name="mapped").map()
    number >> mapped
    with pytest.raises(TaskExecutionError) as caught:
        DAG([mapped]).run(executor=executor)
    assert caught.value.task_name == "mapped"
    assert "type int, which is not iterable" in str(caught.value)


async def async_length(data: bytes) -> int:
    return len(data)


def test_a_coroutine_task_gets_remote_inputs_brought_here(executor: Any) -> None:
    data = Task(functools.partial(produce, 1_000), name="data")
    here = Task(async_length, name="here")
    data >> here
    run = DAG([here]).run(executor=executor)
    assert run["here"] == 1_000


def test_looking_for_a_name_does_not_fetch_its_value(executor: Any) -> None:
    run = DAG(chain(SIZE, 1)).run(executor=executor)
    with PeakGrowth() as peak:
        assert "step_0" in run and "nothing" not in run
    assert peak.growth < SIZE // 2


# --- what runs on the workers, called here -------------------------------------------------


def test_the_worker_side_of_an_attempt() -> None:
    from flowkit.backends import dask_worker as backend
    from flowkit.context import TaskContext

    ctx = TaskContext("t", "run", "dag")

    def spec(fn: Any, when: Any = None, item: bool = False) -> Any:
        return backend.Spec(fn, when, {}, ctx, item, 1, "topic", "key", None)

    assert backend.attempt(spec(length), b"abc") == 3
    assert backend.attempt(spec(length, item=True), [b"a", b"bc"]) == 2
    assert backend.attempt(spec(length, when=never), b"abc") is backend.WHEN_FALSE
    with pytest.raises(ValueError, match="always fails") as caught:
        backend.attempt(spec(fails))
    assert any("Traceback in worker process" in note for note in caught.value.__notes__)
    with pytest.raises(TaskExecutionError, match="SystemExit"):
        backend.attempt(spec(lambda: exit(3)))
    assert backend.probe(spec(length, when=never), b"x") == ("skip", None)
    verdict, digest = backend.probe(spec(length), b"x")
    assert verdict == "key" and isinstance(digest, str)
    assert backend.probe(spec(length), Opaque())[0] == "uncacheable"
    assert backend.describe(spec(length), b"abc", True, 100) == (3, 3, True, b"abc")
    assert backend.describe(spec(length), b"abc", False, 2) == (None, 3, False, None)
    assert backend.describe(spec(length), 7, True, -1)[0] == "int"
    assert backend.describe(spec(length), iter([1, 2]), True, -1)[0] == 2


# --- last: a worker dies (the next test would wait for its replacement) -------------


def test_a_worker_killed_mid_run_fails_the_attempt_and_the_retry_runs(
    executor: Any, tmp_path: Path
) -> None:
    big = Task(functools.partial(produce, SIZE), name="big")
    victim = Task(functools.partial(die_once_length, str(tmp_path)), name="victim", retries=1)
    big >> victim
    run = DAG([victim]).run(executor=executor)
    state = run.states["victim"]
    assert state.status is Status.SUCCESS and state.attempts == 2
    first_error = state.history[0].error
    assert isinstance(first_error, TaskExecutionError)
    assert "Dask worker running task 'victim' died" in str(first_error)
    assert run["victim"] == SIZE  # the input was recomputed if it died with the worker
