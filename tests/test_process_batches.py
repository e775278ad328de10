"""Short tasks on a process pool travel in batches; each call keeps its own outcome."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import flowkit.backends.futures as futures
import flowkit.executors as executors
from flowkit import DAG, StateManager, Status, TaskExecutionError, task
from flowkit.worker import call_batch

ITEMS: list[Any] = []  # what `items` returns (read in a fresh worker process each run)
FAIL: dict[int, str] = {}  # item -> "once" | "always", and where calls are noted
PARENT = os.getpid()


@task
def items() -> list[Any]:
    return list(ITEMS)


@task(retries=1)
def work(item: Any) -> int:
    """Square an item; note the call; fail as FAIL says."""
    number = int(item)
    if "sleep" in FAIL:
        time.sleep(float(FAIL["sleep"]))
    if FAIL.get("slow") == str(number):
        time.sleep(0.05)  # longer than BATCH_BELOW_SECONDS
    note = Path(FAIL["dir"]) / f"ran-{number}" if "dir" in FAIL else None
    if note is not None:
        first = not note.exists()
        note.touch()
        if FAIL.get(number) == "always" or (FAIL.get(number) == "once" and first):
            raise ValueError(f"item {number} failed")
    return number * number


work_each = work.map()
items >> work_each


@task
def brittle(item: Any) -> int:
    """work, without retries."""
    return int(work.fn(item))


brittle_each = brittle.map()
items >> brittle_each


@task(timeout=30)
def timed(item: int) -> int:
    return item


timed_each = timed.map()
items >> timed_each


class Touchy:
    """An item that pickles in a worker, not in the calling process (as an input)."""

    def __init__(self, number: int):
        self.number = number

    def __int__(self) -> int:
        return self.number

    def __reduce__(self) -> tuple[type[Touchy], tuple[int]]:
        if os.getpid() == PARENT:
            raise TypeError("cannot pickle 'Touchy' object here")
        return (Touchy, (self.number,))


def noting_batch(
    calls: list[tuple[Callable[..., Any], tuple[Any, ...], Mapping[str, Any], tuple[str, ...]]],
    pickle_only: bool = False,
) -> list[tuple[Any, ...]]:
    """call_batch, noting each batch's size in the directory FAIL["sizes"], and
    its items' first inputs in FAIL["sizes"]/items."""
    with open(Path(FAIL["sizes"]) / f"{os.getpid()}", "a") as out:
        out.write(f"{len(calls)}\n")
    with open(Path(FAIL["sizes"]) / "items" / f"{os.getpid()}", "a") as out:
        out.write(" ".join(str(args[0]) if args else "-" for _, args, _, _ in calls) + "\n")
    return call_batch(calls, pickle_only)


@pytest.fixture
def batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The sizes of the batches sent (read after the run)."""
    sizes_dir = tmp_path / "sizes"
    (sizes_dir / "items").mkdir(parents=True)
    FAIL.clear()
    FAIL["sizes"] = str(sizes_dir)
    monkeypatch.setattr(futures, "call_batch", noting_batch)
    sizes: list[int] = []
    yield sizes
    FAIL.clear()
    ITEMS.clear()


def sizes_in(directory: str) -> list[int]:
    return [int(n) for f in Path(directory).iterdir() if f.is_file()
            for n in f.read_text().split()]


def batches_sent() -> list[list[str]]:
    """Each batch sent, as its items' first inputs."""
    return [line.split() for f in (Path(FAIL["sizes"]) / "items").iterdir()
            for line in f.read_text().splitlines()]


def learned(dag: DAG, count: int) -> None:
    """A first run of ``count`` items on processes, which records their durations."""
    ITEMS[:] = range(count)
    dag.run(executor="process", max_workers=2)


def test_short_items_travel_in_batches_with_their_own_outcomes(batches: list[int]) -> None:
    dag = DAG([work_each], name="batches", state=StateManager())
    learned(dag, 200)
    assert sizes_in(FAIL["sizes"]) == []  # nothing known yet: each call alone
    run = dag.run(executor="process", max_workers=2)
    sizes = sizes_in(FAIL["sizes"])
    assert sum(sizes) == 201 and max(sizes) > 1  # the items and `items`
    assert run[work_each.name] == [k * k for k in range(200)]
    items_states = run.map_items(work_each.name)
    assert all(s.status is Status.SUCCESS and s.attempts == 1 for s in items_states)


def test_a_failing_item_in_a_batch_is_retried_alone(batches: list[int], tmp_path: Path) -> None:
    dag = DAG([work_each], name="retries", state=StateManager())
    learned(dag, 100)
    FAIL.update({"dir": str(tmp_path), 7: "once"})
    run = dag.run(executor="process", max_workers=2)
    assert max(sizes_in(FAIL["sizes"])) > 1
    assert run[work_each.name] == [k * k for k in range(100)]
    seven = run.map_items(work_each.name)[7]
    assert seven.status is Status.SUCCESS and seven.attempts == 2
    assert isinstance(seven.history[0].error, ValueError)
    others = run.map_items(work_each.name)[:7] + run.map_items(work_each.name)[8:]
    assert all(s.attempts == 1 for s in others)


def test_fail_fast_cancels_what_did_not_run(batches: list[int], tmp_path: Path) -> None:
    dag = DAG([brittle_each], name="fail_fast", state=StateManager())
    FAIL["sleep"] = "0.002"  # batches of about 25 calls
    learned(dag, 400)
    FAIL.update({"dir": str(tmp_path), 3: "always"})
    with pytest.raises(TaskExecutionError) as failed:
        dag.run(executor="process", max_workers=2)
    run = failed.value.result
    assert run is not None
    statuses = dict(enumerate(s.status for s in run.map_items(brittle_each.name)))
    assert statuses[3] is Status.FAILED
    cancelled = [k for k, s in statuses.items() if s is Status.CANCELLED]
    assert cancelled  # most of the map never started
    assert set(statuses.values()) <= {Status.SUCCESS, Status.FAILED, Status.CANCELLED}
    ran = {int(p.name.removeprefix("ran-")) for p in tmp_path.glob("ran-*")}
    assert not ran & set(cancelled)  # a cancelled item was never called
    assert {k for k, s in statuses.items() if s is Status.SUCCESS} <= ran


def test_a_longer_call_joins_a_batch_if_it_fits(
    batches: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = DAG([work_each], name="mixed", state=StateManager())
    FAIL["slow"] = "5"
    learned(dag, 40)
    assert 0.01 <= dag.state.expected_durations("mixed")[f"{work_each.name}[5]"] < 0.1
    run = dag.run(executor="process", max_workers=2)
    # Item 5 (about 50 ms, longer than BATCH_BELOW_SECONDS) shared a batch
    # with short items: it used to go alone, the pool drained before it.
    assert [len(b) > 1 for b in batches_sent() if "5" in b] == [True]
    assert run[work_each.name] == [k * k for k in range(40)]
    # A call longer than a whole batch travels alone: no result waits behind it.
    monkeypatch.setattr(executors, "BATCH_SECONDS", 0.02)
    for found in (Path(FAIL["sizes"]) / "items").iterdir():
        found.unlink()
    run = dag.run(executor="process", max_workers=2)
    assert not [b for b in batches_sent() if "5" in b]
    assert run[work_each.name] == [k * k for k in range(40)]


def test_calls_with_a_timeout_travel_alone(batches: list[int]) -> None:
    dag = DAG([timed_each], name="timed", state=StateManager())
    learned(dag, 50)
    run = dag.run(executor="process", max_workers=2)
    assert sizes_in(FAIL["sizes"]) == [1]  # `items` only
    assert run[timed_each.name] == list(range(50))


def test_an_input_that_does_not_pickle_fails_only_its_item(batches: list[int]) -> None:
    dag = DAG([work_each], name="touchy", state=StateManager())
    learned(dag, 60)
    ITEMS[:] = [*range(10), Touchy(10), *range(11, 60)]
    with pytest.raises(TaskExecutionError) as failed:
        dag.run(executor="process", max_workers=2, fail_fast=False)
    run = failed.value.result
    assert run is not None
    touchy = run.map_items(work_each.name)[10]
    assert touchy.status is Status.FAILED and "could not be sent" in str(touchy.error)
    assert touchy.attempts == 1  # not retried: another attempt would fail the same way
    others = run.map_items(work_each.name)[:10] + run.map_items(work_each.name)[11:]
    assert all(s.status is Status.SUCCESS for s in others)
