"""State: caching with TTL, invalidation, resume after failure, Ctrl-C and crashes,
the three backends, concurrent writers, bad files and unstorable results."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import importlib.util
import itertools
import json
import logging
import math
import os
import pathlib
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flowkit
from flowkit import DAG, StateError, StateManager, Status, Task, TaskExecutionError, task
from flowkit.cachekey import code_hash, input_hash
from flowkit.serializers import JSONSerializer, PickleSerializer, SerializationError
from flowkit.stores import MemoryStore, Store

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["memory", "json", "sqlite"]
FILE_BACKENDS = ["json", "sqlite"]
SUFFIX = {"json": "state.json", "sqlite": "state.db"}

# --- module-level functions (importable by worker processes) -----------------

CALLS: dict[str, int] = {}
SWITCH: dict[str, Any] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


def source() -> int:
    _count("source")
    return int(SWITCH.get("source", 1))


def double(x: int) -> int:
    _count("double")
    return x * 2


def add_one(x: int) -> int:
    _count("add_one")
    return x + 1


def add_two(x: int) -> int:
    _count("add_two")
    return x + 2


def maybe_fail(x: int) -> int:
    _count("maybe_fail")
    if SWITCH.get("fail"):
        raise RuntimeError("planned failure")
    if SWITCH.get("interrupt"):
        raise KeyboardInterrupt
    return x * 10


def summarize(x: object) -> str:
    _count("summarize")
    if SWITCH.get("fail"):
        raise RuntimeError("planned failure")
    return repr(x)


def pair() -> tuple[int, str]:
    return (7, "seven")


def opaque() -> object:
    _count("opaque")
    return Opaque()


def takes_opaque(value: object) -> str:
    _count("takes_opaque")
    return type(value).__name__


class Opaque:
    """A class JSON knows nothing about."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque)

    __hash__ = object.__hash__


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _reset_globals() -> None:
    CALLS.clear()
    SWITCH.clear()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=FILE_BACKENDS)
def file_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


StateFactory = Callable[..., StateManager]


@pytest.fixture
def make_state(backend: str, tmp_path: Path) -> StateFactory:
    """A new StateManager on the same state each call (the same object in memory)."""
    shared: list[StateManager] = []

    def make(**options: Any) -> StateManager:
        if backend == "memory":
            if not shared:
                shared.append(StateManager(**options))
            return shared[0]
        return StateManager(tmp_path / SUFFIX[backend], **options)

    return make


def chain(*fns: Callable[..., Any], ttl: float | None = None) -> list[Task[..., Any]]:
    tasks = [Task(fn, cache_ttl=ttl) for fn in fns]
    for up, down in itertools.pairwise(tasks):
        up >> down
    return tasks


# --- caching -------------------------------------------------------------------------


def test_cache_hit_serves_the_value_without_calling(backend: str, make_state: StateFactory,
                                                     executor: str) -> None:
    a = Task(pair, cache_ttl=60)
    first = DAG([a], name="hit").run(executor=executor, state=make_state())
    second = DAG([a], name="hit").run(executor=executor, state=make_state())
    assert first.states["pair"].status is Status.SUCCESS
    assert second.states["pair"].status is Status.CACHED
    assert second.states["pair"].attempts == 0
    assert second["pair"] == (7, "seven")  # a tuple stays a tuple


def test_cache_miss_when_an_input_changes(make_state: StateFactory) -> None:
    up = Task(source)
    down = Task(double, cache_ttl=math.inf)
    up >> down
    dag = DAG([down], name="inputs")
    assert dag.run(executor="sync", state=make_state())["double"] == 2
    SWITCH["source"] = 5
    assert dag.run(executor="sync", state=make_state())["double"] == 10
    SWITCH["source"] = 1
    run = dag.run(executor="sync", state=make_state())
    assert run.states["double"].status is Status.CACHED
    assert run["double"] == 2
    assert CALLS["double"] == 2


def test_cache_miss_when_the_code_changes(make_state: StateFactory) -> None:
    first = Task(pair, name="step", cache_ttl=math.inf)
    assert DAG([first], name="code").run(executor="sync", state=make_state()).states[
        "step"].status is Status.SUCCESS
    # Different code under the same task name: the cached value must not be served.
    second = Task(lambda: 100, name="step", cache_ttl=math.inf)
    run = DAG([second], name="code").run(executor="sync", state=make_state())
    assert run.states["step"].status is Status.SUCCESS
    assert run["step"] == 100


def test_ttl_expiry_with_an_injected_clock(make_state: StateFactory) -> None:
    clock = Clock()
    state = make_state(clock=clock)
    a = Task(source, cache_ttl=10)
    b = Task(pair, cache_ttl=math.inf)
    dag = DAG([a, b], name="ttl")
    dag.run(executor="sync", state=state)
    clock.now += 9.5
    run = dag.run(executor="sync", state=state)
    assert run.states["source"].status is Status.CACHED
    clock.now += 1.0  # 10.5 s old: expired
    run = dag.run(executor="sync", state=state)
    assert run.states["source"].status is Status.SUCCESS
    assert CALLS["source"] == 2
    clock.now += 10**9  # math.inf never expires
    assert dag.run(executor="sync", state=state).states["pair"].status is Status.CACHED


def test_zero_ttl_is_never_fresh(make_state: StateFactory) -> None:
    a = Task(source, cache_ttl=0)
    dag = DAG([a], name="zero")
    dag.run(executor="sync", state=make_state())
    assert dag.run(executor="sync", state=make_state()).states["source"].status is Status.SUCCESS


def test_invalidate_one_task_all_tasks_and_clear(make_state: StateFactory) -> None:
    a = Task(source, cache_ttl=math.inf)
    b = Task(pair, cache_ttl=math.inf)
    dag = DAG([a, b], name="inv")
    dag.run(executor="sync", state=make_state())
    state = make_state()
    assert state.invalidate("source") == 1
    run = dag.run(executor="sync", state=make_state())
    assert run.states["source"].status is Status.SUCCESS
    assert run.states["pair"].status is Status.CACHED
    assert make_state().invalidate() == 2
    run = dag.run(executor="sync", state=make_state())
    assert run.counts == {Status.SUCCESS: 2}
    assert make_state().latest_run("inv") is not None
    make_state().clear()
    assert make_state().entries() == []
    assert make_state().latest_run("inv") is None
    assert dag.run(executor="sync", state=make_state()).counts == {Status.SUCCESS: 2}


def test_entries_lists_name_key_age_size_and_expiry(backend: str,
                                                    make_state: StateFactory) -> None:
    clock = Clock(5000.0)
    state = make_state(clock=clock)
    a = Task(source, cache_ttl=60)
    b = Task(pair, cache_ttl=math.inf)
    DAG([a, b], name="list").run(executor="sync", state=state)
    clock.now += 15
    entries = {e.name: e for e in make_state(clock=clock).entries()}
    assert set(entries) == {"source", "pair"}
    assert entries["source"].age == pytest.approx(15)
    assert entries["source"].created == pytest.approx(5000.0)
    assert entries["source"].expires_in == pytest.approx(45)
    assert entries["pair"].expires_in is None
    assert len(entries["source"].key) >= 32
    if backend == "memory":
        assert entries["source"].size is None
    else:
        assert all(isinstance(e.size, int) and e.size > 0 for e in entries.values())


def test_cache_key_function_replaces_the_inputs(make_state: StateFactory) -> None:
    up = Task(source)
    down = Task(double, cache_ttl=math.inf, cache_key=lambda x: x % 2)
    up >> down
    dag = DAG([down], name="custom-key")
    dag.run(executor="sync", state=make_state())
    SWITCH["source"] = 3  # same parity: the custom key says "same inputs"
    run = dag.run(executor="sync", state=make_state())
    assert run.states["double"].status is Status.CACHED
    assert run["double"] == 2


def test_a_dag_reuses_its_own_in_memory_cache() -> None:
    a = Task(source, cache_ttl=math.inf)
    dag = DAG([a], name="own")
    dag.run(executor="sync")
    assert dag.run(executor="sync").states["source"].status is Status.CACHED
    assert dag.state.backend == "memory"  # type: ignore[attr-defined]


def test_uncacheable_input_is_not_cached_and_warned(make_state: StateFactory,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    up = Task(opaque)
    down = Task(takes_opaque, cache_ttl=math.inf)
    up >> down
    dag = DAG([down], name="opaque-in")
    with caplog.at_level(logging.WARNING, logger="flowkit.state"):
        dag.run(executor="sync", state=make_state())
        run = dag.run(executor="sync", state=make_state())
    assert run.states["takes_opaque"].status is Status.SUCCESS
    assert CALLS["takes_opaque"] == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "flowkit.state"]
    assert any("'takes_opaque' is not cached" in m and "Opaque" in m for m in messages)


def test_raising_cache_key_function_is_not_cached(make_state: StateFactory,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    def broken(x: int) -> int:
        raise ValueError("no key")

    up = Task(source)
    down = Task(double, cache_ttl=math.inf, cache_key=broken)
    up >> down
    with caplog.at_level(logging.WARNING, logger="flowkit.state"):
        run = DAG([down], name="broken-key").run(executor="sync", state=make_state())
    assert run["double"] == 2
    assert "cache_key function raised" in caplog.text


# --- results a file cannot hold --------------------------------------------------------


def test_unserializable_result_is_reported_by_name_and_type(
    backend: str, make_state: StateFactory, caplog: pytest.LogCaptureFixture
) -> None:
    a = Task(opaque, cache_ttl=math.inf)
    dag = DAG([a], name="opaque-out")
    with caplog.at_level(logging.WARNING, logger="flowkit.state"):
        first = dag.run(executor="sync", state=make_state())
        second = dag.run(executor="sync", state=make_state(), resume=True)
    assert isinstance(first["opaque"], Opaque)
    if backend == "memory":  # objects are kept as they are
        assert second.states["opaque"].status is Status.CACHED
        return
    assert second.states["opaque"].status is Status.SUCCESS  # neither cached nor restored
    warning = next(r.getMessage() for r in caplog.records if r.name == "flowkit.state")
    assert "'opaque'" in warning
    assert "test_state.Opaque" in warning


def test_values_round_trip_exactly_through_a_file(file_backend: str, tmp_path: Path) -> None:
    value = {
        "tuple": (1, (2, 3)),
        "list": [1, 2.5, None, True],
        "set": {1, 2},
        "frozenset": frozenset({"a"}),
        "bytes": b"\x00\xff",
        "bytearray": bytearray(b"ab"),
        "int keys": {1: "one", (2, 3): "tuple key"},
        "__flowkit__": "a key that looks like a tag",
        "floats": [math.inf, -math.inf],
        "complex": 1 + 2j,
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "day": datetime.date(2026, 1, 2),
        "time": datetime.time(12, 30),
        "delta": datetime.timedelta(days=1, seconds=2, microseconds=3),
        "money": decimal.Decimal("1.10"),
        "id": uuid.UUID(int=5),
        "path": pathlib.Path("a/b"),
        "pure": pathlib.PurePosixPath("/x"),
        "unicode": "żółw \U0001f422",
    }
    a = Task(lambda: value, name="values", cache_ttl=math.inf)
    path = tmp_path / SUFFIX[file_backend]
    DAG([a], name="values").run(executor="sync", state=StateManager(path))
    run = DAG([a], name="values").run(executor="sync", state=StateManager(path))
    assert run.states["values"].status is Status.CACHED
    assert run["values"] == value
    assert type(run["values"]["bytearray"]) is bytearray
    nan = JSONSerializer().decode(JSONSerializer().encode(math.nan))
    assert math.isnan(nan)


def test_json_serializer_refuses_subclasses_and_objects() -> None:
    class MyDict(dict[str, int]):
        pass

    with pytest.raises(SerializationError, match="MyDict"):
        JSONSerializer().encode(MyDict(a=1))
    with pytest.raises(SerializationError):
        JSONSerializer().decode({"__flowkit__": "os.system", "v": "echo"})


def test_pickle_serializer_is_signed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = b"k" * 32
    path = tmp_path / "state.json"
    a = Task(opaque, cache_ttl=math.inf)
    dag = DAG([a], name="pickled")
    dag.run(executor="sync", state=StateManager(path, serializer=PickleSerializer(key)))
    run = dag.run(executor="sync", state=StateManager(path, serializer=PickleSerializer(key)))
    assert run.states["opaque"].status is Status.CACHED
    assert isinstance(run["opaque"], Opaque)
    # Another key: the payload is refused, never unpickled.
    with caplog.at_level(logging.WARNING, logger="flowkit.state"):
        other = StateManager(path, serializer=PickleSerializer(b"x" * 32))
        run = dag.run(executor="sync", state=other)
    assert run.states["opaque"].status is Status.SUCCESS
    assert "no valid signature" in caplog.text
    with pytest.raises(StateError, match="16 bytes"):
        PickleSerializer(b"short")


# --- cache keys -------------------------------------------------------------------------


def _documented(x: int) -> int:
    """A docstring that does not count."""
    # nor does a comment
    return x + 1


def _plain(x: int) -> int:
    return x + 1  # the same code, another comment


def _different(x: int) -> int:
    return x + 2


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_code_hash_ignores_comments_docstrings_and_names() -> None:
    assert code_hash(_documented) == code_hash(_plain)
    assert code_hash(_plain) != code_hash(_different)
    assert code_hash(lambda: 1) != code_hash(lambda: 2)
    assert code_hash(len) != code_hash(max)


def test_input_hash_is_canonical() -> None:
    h = input_hash
    assert h(({"a": 1, "b": 2},)) == h(({"b": 2, "a": 1},))
    assert h(({3, 1, 2},)) == h(({1, 2, 3},))
    assert h(((1, 2),)) != h(([1, 2],))
    assert len({h((1,)), h((1.0,)), h((True,)), h(("1",))}) == 4
    assert h((Point(1, 2),)) == h((Point(1, 2),)) != h((Point(2, 1),))
    assert h((Color.RED,)) != h((1,))
    assert h((flowkit.SKIPPED,)) != h((None,))
    assert h((1,), {"p": 1}) != h((1,), {"p": 2})
    with pytest.raises(flowkit.cachekey.UncacheableInput, match="Opaque"):
        h((Opaque(),))
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(flowkit.cachekey.UncacheableInput):
        h((loop,))


def test_input_hash_is_the_same_in_other_processes() -> None:
    value = ({"b": {1, "x", (2.5, None)}, "a": frozenset({"p", "q"})}, b"raw")
    code = (
        "from flowkit.cachekey import input_hash; "
        "print(input_hash(({'b': {1, 'x', (2.5, None)}, 'a': frozenset({'p', 'q'})}, b'raw')))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == input_hash(value)


# --- resume -----------------------------------------------------------------------------


def _failing_chain() -> tuple[DAG, list[Task[..., Any]]]:
    tasks = chain(source, add_one, maybe_fail)
    # Independent; its priority starts it before the longer chain in the sync executor.
    extra = Task(pair, priority=1)
    return DAG([*tasks, extra], name="resume"), tasks


def test_resume_after_a_failure(make_state: StateFactory) -> None:
    dag, _ = _failing_chain()
    SWITCH["fail"] = True
    with pytest.raises(TaskExecutionError) as failed:
        dag.run(executor="sync", state=make_state())
    assert failed.value.result is not None
    assert failed.value.result.states["add_one"].status is Status.SUCCESS
    SWITCH["fail"] = False
    run = dag.run(executor="sync", state=make_state(), resume=True)
    assert run.states["source"].status is Status.CACHED
    assert run.states["add_one"].status is Status.CACHED
    assert run.states["maybe_fail"].status is Status.SUCCESS
    assert run["maybe_fail"] == 20
    assert CALLS == {"source": 1, "add_one": 1, "maybe_fail": 2}


def test_resume_twice_carries_restored_outcomes_forward(make_state: StateFactory) -> None:
    dag, _ = _failing_chain()
    SWITCH["fail"] = True
    for _ in range(3):
        with pytest.raises(TaskExecutionError):
            dag.run(executor="sync", state=make_state(), resume=True)
    assert CALLS == {"source": 1, "add_one": 1, "maybe_fail": 3}
    SWITCH["fail"] = False
    assert dag.run(executor="sync", state=make_state(), resume=True)["maybe_fail"] == 20
    assert CALLS["add_one"] == 1


def test_resume_after_ctrl_c(make_state: StateFactory) -> None:
    dag, _ = _failing_chain()
    SWITCH["interrupt"] = True
    with pytest.raises(KeyboardInterrupt):
        dag.run(executor="sync", state=make_state())
    SWITCH["interrupt"] = False
    run = dag.run(executor="sync", state=make_state(), resume=True)
    assert run.states["add_one"].status is Status.CACHED
    assert run["maybe_fail"] == 20
    assert CALLS["add_one"] == 1


def test_resume_reruns_a_changed_task_and_everything_downstream(
    make_state: StateFactory,
) -> None:
    dag, _ = _failing_chain()
    SWITCH["fail"] = True
    with pytest.raises(TaskExecutionError):
        dag.run(executor="sync", state=make_state())
    SWITCH["fail"] = False
    # Same names, but "add_one" now runs other code.
    a = Task(source)
    b = Task(add_two, name="add_one")
    c = Task(maybe_fail)
    a >> b >> c
    run = DAG([c], name="resume").run(executor="sync", state=make_state(), resume=True)
    assert run.states["source"].status is Status.CACHED
    assert run.states["add_one"].status is Status.SUCCESS
    assert run["maybe_fail"] == 30
    assert CALLS == {"source": 1, "add_one": 1, "add_two": 1, "maybe_fail": 2}


def test_resume_without_a_recorded_run_runs_everything(make_state: StateFactory) -> None:
    dag, _ = _failing_chain()
    run = dag.run(executor="sync", state=make_state(), resume=True)
    assert run.counts == {Status.SUCCESS: 4}


def test_resume_restores_skipped_tasks(make_state: StateFactory) -> None:
    a = Task(source)
    b = Task(double, when=lambda x: x > 100)
    c = Task(summarize, trigger="all_done")
    a >> b >> c
    SWITCH["fail"] = True
    with pytest.raises(TaskExecutionError):
        DAG([c], name="skips").run(executor="sync", state=make_state())
    SWITCH["fail"] = False
    run = DAG([c], name="skips").run(executor="sync", state=make_state(), resume=True)
    assert run["summarize"] == "SKIPPED"
    assert run.states["double"].status is Status.SKIPPED
    assert run.states["double"].reason == "skipped in the resumed run"
    assert run.states["source"].status is Status.CACHED
    assert "double" not in CALLS


def test_resume_with_targets_keeps_other_outcomes(make_state: StateFactory) -> None:
    a = Task(source)
    b = Task(add_one)
    c = Task(maybe_fail)
    a >> b
    a >> c
    dag = DAG([b, c], name="targets")
    SWITCH["fail"] = True
    with pytest.raises(TaskExecutionError):
        dag.run(executor="sync", fail_fast=False, state=make_state())
    SWITCH["fail"] = False
    dag.run(executor="sync", state=make_state(), resume=True, targets=["maybe_fail"])
    run = dag.run(executor="sync", state=make_state(), resume=True)
    assert run.counts == {Status.CACHED: 3}
    assert CALLS == {"source": 1, "add_one": 1, "maybe_fail": 2}


def test_invalidate_makes_resume_rerun_the_task_and_its_dependants(
    make_state: StateFactory,
) -> None:
    dag, _ = _failing_chain()
    SWITCH["fail"] = True
    with pytest.raises(TaskExecutionError):
        dag.run(executor="sync", state=make_state())
    SWITCH["fail"] = False
    make_state().invalidate("source")
    run = dag.run(executor="sync", state=make_state(), resume=True)
    assert run.states["pair"].status is Status.CACHED
    for name in ("source", "add_one", "maybe_fail"):
        assert run.states[name].status is Status.SUCCESS


_CRASHING_WORKFLOW = '''
import os, signal, sys
from flowkit import DAG, StateManager, task

MODE, LOG = "ok", os.devnull

def note(name):
    with open(LOG, "a") as f:
        f.write(name + "\\n")

@task
def extract():
    note("extract")
    return [1, 2, 3]

@task
def transform(rows):
    note("transform")
    return [r * 2 for r in rows]

@task
def load(rows):
    note("load")
    if MODE == "exit":
        os._exit(3)
    if MODE == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return sum(rows)

extract >> transform >> load

if __name__ == "__main__":
    MODE, path, LOG = sys.argv[1:]
    DAG(name="crashy").run(executor="sync", state=StateManager(path))
'''


@pytest.mark.parametrize("crash", ["exit", "kill"])
def test_resume_after_a_hard_crash(file_backend: str, crash: str, tmp_path: Path) -> None:
    script = tmp_path / f"crashy_{file_backend}_{crash}.py"
    script.write_text(_CRASHING_WORKFLOW)
    state, log = tmp_path / SUFFIX[file_backend], tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    crashed = subprocess.run([sys.executable, str(script), crash, str(state), str(log)],
                             env=env, capture_output=True, text=True, timeout=60)
    assert crashed.returncode != 0
    assert log.read_text().split() == ["extract", "transform", "load"]
    # Resume here, with the same workflow module (same code, so same versions).
    spec = importlib.util.spec_from_file_location(script.stem, script)
    assert spec is not None and spec.loader is not None
    workflow = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(workflow)
    workflow.LOG = str(log)
    run = DAG(name="crashy").run(executor="sync", state=StateManager(state), resume=True)
    assert {name: s.status for name, s in run.states.items()} == {
        "extract": Status.CACHED, "transform": Status.CACHED, "load": Status.SUCCESS
    }
    assert run["load"] == 12
    assert log.read_text().split() == ["extract", "transform", "load", "load"]


# --- the files ----------------------------------------------------------------------------


_WRITER = '''
import sys
from flowkit import DAG, StateManager, Task

path, worker = sys.argv[1], sys.argv[2]

def value(i=0):
    return i

tasks = [Task(value, name=f"w{worker}-{i}", cache_ttl=float("inf")) for i in range(200)]
state = StateManager(path)
for _ in range(4):  # later runs are cache hits: the journal grows, then compacts
    DAG(tasks, name=f"dag{worker}").run(executor="sync", state=state)
'''


def test_concurrent_writers_from_several_processes(file_backend: str, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    path = tmp_path / SUFFIX[file_backend]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(path), str(w)], env=env,
                         stderr=subprocess.PIPE, text=True)
        for w in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    state = StateManager(path)
    assert len(state.entries()) == 600
    for w in range(3):
        latest = state.latest_run(f"dag{w}")
        assert latest is not None
        statuses = latest[1]
        assert len(statuses) == 200
        assert set(statuses.values()) == {Status.CACHED}
    if file_backend == "json":
        lines = path.read_bytes().splitlines()
        for line in lines:  # every line is whole JSON
            json.loads(line)
        # Live records are 600 entries + 3 runs of 201, plus the history of
        # 12 runs of 202 records: the journal was compacted while the others wrote.
        assert len(lines) <= 2 * (1203 + 12 * 202) + 256 + 1


def test_the_journal_is_compacted_and_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateManager(path, history=1)
    tasks = [Task(pair, name=f"t{i}", cache_ttl=math.inf) for i in range(5)]
    dag = DAG(tasks, name="small")
    for _ in range(60):
        dag.run(executor="sync", state=state)
    lines = path.read_bytes().count(b"\n")
    # Live records: 5 entries, 1 run, 5 outcomes, and 1 run of history (7 records).
    assert lines < 2 * 18 + 256 + 12
    assert dag.run(executor="sync", state=StateManager(path), resume=True).counts == {
        Status.CACHED: 5
    }


def test_state_files_are_private(file_backend: str, tmp_path: Path) -> None:
    path = tmp_path / SUFFIX[file_backend]
    state = StateManager(path)
    DAG([Task(pair, cache_ttl=60)], name="mode").run(executor="sync", state=state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    state.clear()  # rewrites the file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_truncated_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    a = Task(pair, cache_ttl=math.inf)
    DAG([a], name="torn").run(executor="sync", state=StateManager(path))
    with path.open("ab") as f:
        f.write(b'{"t":"c","k":"abc","n":"pair","at":1.0,"tt')  # a crash mid-line
    state = StateManager(path)
    run = DAG([a], name="torn").run(executor="sync", state=state)
    assert run.states["pair"].status is Status.CACHED
    for line in path.read_bytes().splitlines():  # the next writer cut the torn line off
        json.loads(line)
    assert path.read_bytes().endswith(b"\n")


def test_an_empty_file_is_a_new_state(file_backend: str, tmp_path: Path) -> None:
    path = tmp_path / SUFFIX[file_backend]
    path.touch()
    state = StateManager(path)
    assert state.entries() == []
    assert DAG([Task(pair)], name="empty").run(executor="sync", state=state).ok


def test_a_corrupt_journal_line_raises_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    DAG([Task(pair, cache_ttl=60)], name="bad").run(executor="sync", state=StateManager(path))
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(2, b"{not json at all\n")
    path.write_bytes(b"".join(lines))
    with pytest.raises(StateError, match="corrupt at line 3") as error:
        StateManager(path).entries()
    assert str(path) in str(error.value)
    assert error.value.path == str(path)
    assert "move it away" in str(error.value)


@pytest.mark.parametrize("content", [b'{"name": "something else"}\n', b'{"a": 1}', b"\x00\x01"])
def test_a_foreign_json_file_raises_state_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "other.json"
    path.write_bytes(content)
    with pytest.raises(StateError, match="not a flowkit state file") as error:
        DAG([Task(pair)], name="x").run(executor="sync", state=StateManager(path))
    assert str(path) in str(error.value)
    assert path.read_bytes() == content  # left untouched


def test_a_newer_format_raises_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"flowkit": "state", "format": 99}\n')
    with pytest.raises(StateError, match="format 99"):
        StateManager(path).entries()


def test_a_foreign_or_damaged_database_raises_state_error(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    db.close()
    with pytest.raises(StateError, match="another application") as error:
        StateManager(other).entries()
    assert str(other) in str(error.value)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database, just text" * 100)
    with pytest.raises(StateError, match="not a flowkit state database") as error:
        StateManager(garbage).entries()
    assert str(garbage) in str(error.value)


def test_a_database_not_yet_in_wal_mode_waits_for_another_writer(tmp_path: Path) -> None:
    # As while two connections open a new database: one writes while it is not
    # yet in WAL mode. SQLite refuses the switch at once, without its busy wait.
    path = tmp_path / "state.db"
    DAG([Task(lambda: 1, name="a")], name="x").run(executor="sync", state=StateManager(path))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("PRAGMA journal_mode = DELETE")
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.5, other.execute, ["ROLLBACK"])
        release.start()
        try:
            records = StateManager(path).runs()
        finally:
            release.join()
    finally:
        other.close()
    assert [r.dag_name for r in records] == ["x"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def _locks_on(path: Path) -> list[str]:
    """This process's POSIX locks on ``path``'s file, as ``/proc/locks`` lists them."""
    info = os.stat(path)
    inode = f":{info.st_ino}"
    lines = Path("/proc/locks").read_text().splitlines()
    return sorted(
        " ".join(fields[3:4] + fields[6:]) for fields in map(str.split, lines)
        if fields[1] == "POSIX" and fields[4] == str(os.getpid()) and fields[5].endswith(inode)
    )


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="lists locks through /proc")
def test_opening_a_database_keeps_the_locks_of_other_connections_to_it(tmp_path: Path) -> None:
    # Closing any descriptor of a file drops every POSIX lock the process holds
    # on it: a store must never open and close the database file beside SQLite.
    path = tmp_path / "state.db"
    DAG([Task(lambda: 1, name="a")], name="x").run(executor="sync", state=StateManager(path))
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
        held = _locks_on(path)
        assert held  # the reading transaction's shared lock
        assert [r.dag_name for r in StateManager(path).runs()] == ["x"]
        assert _locks_on(path) == held
    finally:
        reader.close()


def test_a_database_behind_a_symlink_to_a_new_file_is_created_there(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    link = tmp_path / "state.db"
    link.symlink_to(tmp_path / "target" / "state.db")  # dangling until the first run
    DAG([Task(lambda: 1, name="a")], name="x").run(executor="sync", state=StateManager(link))
    assert [r.dag_name for r in StateManager(link).runs()] == ["x"]
    assert stat.S_IMODE(os.stat(tmp_path / "target" / "state.db").st_mode) == 0o600


def test_a_missing_directory_raises_state_error(file_backend: str, tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / SUFFIX[file_backend]
    with pytest.raises(StateError, match="directory exists"):
        StateManager(path).entries()


# --- construction ------------------------------------------------------------------------


def test_backend_is_chosen_by_suffix_or_argument(tmp_path: Path) -> None:
    assert StateManager().backend == "memory"
    assert StateManager(tmp_path / "s.json").backend == "json"
    assert StateManager(str(tmp_path / "s.db")).backend == "sqlite"
    assert StateManager(tmp_path / "s.sqlite3").backend == "sqlite"
    assert StateManager(tmp_path / "s.state", backend="sqlite").backend == "sqlite"
    assert StateManager(tmp_path / "s.db", backend="json").backend == "json"
    assert "s.json" in repr(StateManager(tmp_path / "s.json"))


@pytest.mark.parametrize(
    ("args", "options", "match"),
    [
        (("x.json",), {"backend": "memory"}, "takes no path"),
        ((), {"backend": "sqlite"}, "needs a path"),
        ((), {"backend": "redis"}, "unknown state backend"),
        (("x.json",), {"store": MemoryStore()}, "not both"),
        ((), {"store": object()}, "subclass it"),
        ((42,), {}, "str or os.PathLike"),
    ],
)
def test_bad_arguments_raise_state_error(args: tuple[Any, ...], options: dict[str, Any],
                                         match: str) -> None:
    with pytest.raises(StateError, match=match):
        StateManager(*args, **options)


class CountingStore(MemoryStore):
    """A user-defined store (here built on the memory one) that counts what it records."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded = 0

    def record(self, outcome: Any, entry: Any = None) -> None:
        self.recorded += 1
        super().record(outcome, entry)


def test_a_custom_store_plugs_in() -> None:
    store = CountingStore()
    state = StateManager(store=store)
    assert isinstance(store, Store)
    assert state.backend == "custom"
    DAG(chain(source, double), name="custom").run(executor="sync", state=state)
    assert store.recorded == 2


class LazyCountingStore(CountingStore):
    """A store that a crash wipes anyway, and says so: records may come late."""

    lazy_records = True


def test_a_store_with_lazy_records_gets_them_when_they_are_read() -> None:
    store = LazyCountingStore()
    state = StateManager(store=store)
    DAG(chain(source, double), name="lazy").run(executor="sync", state=state)
    assert store.recorded == 0
    latest = state.latest_run("lazy")
    assert latest is not None and set(latest[1]) == {"source", "double"}
    assert store.recorded == 2


def test_the_state_manager_is_a_context_manager(tmp_path: Path) -> None:
    with StateManager(tmp_path / "s.db") as state:
        DAG([Task(pair, cache_ttl=60)], name="ctx").run(executor="sync", state=state)
        assert len(state.entries()) == 1


def test_a_task_module_with_state_in_a_readme_style_script(tmp_path: Path) -> None:
    """The decorator form with cache_ttl, as users write it."""

    @task(cache_ttl=math.inf)
    def numbers() -> list[int]:
        _count("numbers")
        return [1, 2, 3]

    @task
    def total(rows: list[int]) -> int:
        return sum(rows)

    numbers >> total
    state = StateManager(tmp_path / "s.json")
    assert DAG(name="deco").run(executor="sync", state=state)["total"] == 6
    run = DAG(name="deco").run(executor="sync", state=StateManager(tmp_path / "s.json"))
    assert run.states["numbers"].status is Status.CACHED
    assert CALLS["numbers"] == 1


def test_source_text_is_dedented_for_nested_functions() -> None:
    code = textwrap.dedent(
        """
        def outer():
            def inner(x):
                return x
            return inner
        """
    )
    namespace: dict[str, Any] = {}
    exec(compile(code, "<string>", "exec"), namespace)
    # Without source (defined by exec), the bytecode is hashed instead.
    assert code_hash(namespace["outer"]()) == code_hash(namespace["outer"]())


class Scaler:
    """A callable object: its class's __call__ is hashed."""

    def __call__(self, x: int) -> int:
        return x * 3


def test_code_hash_of_partials_methods_and_callable_objects() -> None:
    assert code_hash(functools.partial(_plain, 1)) == code_hash(functools.partial(_plain, 1))
    assert code_hash(functools.partial(_plain, 1)) != code_hash(functools.partial(_plain, 2))
    assert code_hash(functools.partial(_plain, Opaque())) != code_hash(
        functools.partial(_plain, Opaque())
    )  # no stable form: never equal
    assert code_hash(Scaler()) == code_hash(Scaler())
    assert code_hash(Scaler()) != code_hash(_plain)
    assert code_hash(Scaler().__call__) == code_hash(Scaler())


def test_runs_in_threads_can_share_one_state(file_backend: str, tmp_path: Path) -> None:
    state = StateManager(tmp_path / SUFFIX[file_backend])
    dags = [
        DAG([Task(pair, name=f"t{d}-{i}", cache_ttl=math.inf) for i in range(30)], name=f"d{d}")
        for d in range(4)
    ]
    errors: list[BaseException] = []

    def work(dag: DAG) -> None:
        try:
            for _ in range(2):
                dag.run(executor="sync", state=state)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(dag,)) for dag in dags]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(state.entries()) == 120
    latest = state.latest_run("d3")
    assert latest is not None
    assert set(latest[1].values()) == {Status.CACHED}


class UnreadableStore(MemoryStore):
    def get_entry(self, key: str) -> Any:
        raise StateError("database is locked", path="x.db")


def test_an_unreadable_cache_is_a_miss_not_a_failed_run(caplog: pytest.LogCaptureFixture) -> None:
    state = StateManager(store=UnreadableStore())
    with caplog.at_level(logging.WARNING, logger="flowkit.state"):
        run = DAG([Task(pair, cache_ttl=60)], name="locked").run(executor="sync", state=state)
    assert run.states["pair"].status is Status.SUCCESS
    assert "the cache cannot be read" in caplog.text


# --- run parameters and mapped tasks -------------------------------------------------


def dated(day: str) -> str:
    _count("dated")
    return day.upper()


def items_source() -> list[int]:
    _count("items_source")
    return [1, 2, 3, 4]


def fail_on_four(x: int) -> int:
    _count(f"item{x}")
    if x == 4 and "fail" in SWITCH:
        raise RuntimeError("item four fails")
    return x * 10


def test_resume_continues_the_run_with_the_same_parameters(make_state: StateFactory) -> None:
    SWITCH["fail"] = True
    t = Task(dated, name="dated")
    f = Task(maybe_fail, name="maybe_fail")
    t >> f
    for day in ("mon", "tue"):  # two failed runs, one per day
        with pytest.raises(TaskExecutionError):
            DAG([f], name="p").run(executor="sync", state=make_state(), params={"day": day})
    assert CALLS["dated"] == 2
    SWITCH.clear()
    # Monday's run is resumed although Tuesday's came since: its own result is restored.
    run = DAG([f], name="p").run(executor="sync", state=make_state(), params={"day": "mon"},
                                 resume=True)
    assert run.states["dated"].status is Status.CACHED
    assert run["dated"] == "MON" and run["maybe_fail"] == "MON" * 10
    assert CALLS["dated"] == 2
    # Parameters never run before: nothing to restore, everything runs.
    run = DAG([f], name="p").run(executor="sync", state=make_state(), params={"day": "wed"},
                                 resume=True)
    assert run.states["dated"].status is Status.SUCCESS and CALLS["dated"] == 3
    assert make_state().latest_run("p", {"day": "tue"}) is not None
    assert make_state().latest_run("p") is None  # no run without parameters


def test_resume_in_the_middle_of_a_map(make_state: StateFactory) -> None:
    SWITCH["fail"] = True
    source_task = Task(items_source, name="items_source")
    mapped = Task(fail_on_four, name="fail_on_four").map()
    source_task >> mapped
    with pytest.raises(TaskExecutionError):
        DAG([mapped], name="m").run(executor="sync", state=make_state(), fail_fast=False)
    assert [CALLS[f"item{x}"] for x in (1, 2, 3, 4)] == [1, 1, 1, 1]
    SWITCH.clear()
    run = DAG([mapped], name="m").run(executor="sync", state=make_state(), resume=True)
    assert run["fail_on_four"] == [10, 20, 30, 40]
    assert [CALLS[f"item{x}"] for x in (1, 2, 3, 4)] == [1, 1, 1, 2]  # only the failed item ran
    assert run.states["fail_on_four[0]"].status is Status.CACHED
    assert run.states["fail_on_four[3]"].status is Status.SUCCESS
    assert CALLS["items_source"] == 1


def items_v2() -> list[int]:
    _count("items_v2")
    return [10, 20, 30, 40]


def test_items_of_a_map_are_not_restored_when_its_input_reran(make_state: StateFactory) -> None:
    SWITCH["fail"] = True
    source_task = Task(items_source, name="items_source")
    mapped = Task(fail_on_four, name="fail_on_four").map()
    source_task >> mapped
    with pytest.raises(TaskExecutionError):
        DAG([mapped], name="m2").run(executor="sync", state=make_state(), fail_fast=False)
    SWITCH.clear()
    # The source is redefined (new code): it runs again, and so must every item.
    with flowkit.registry.isolated():
        changed = Task(items_v2, name="items_source")
        mapped2 = Task(fail_on_four, name="fail_on_four").map()
        changed >> mapped2
        run = DAG([mapped2], name="m2").run(executor="sync", state=make_state(), resume=True)
    assert run["fail_on_four"] == [100, 200, 300, 400]
    assert {run.states[f"fail_on_four[{k}]"].status for k in range(4)} == {Status.SUCCESS}


def test_invalidating_a_mapped_task_forgets_its_items(make_state: StateFactory) -> None:
    SWITCH["fail"] = True
    source_task = Task(items_source, name="items_source")
    mapped = Task(fail_on_four, name="fail_on_four").map()
    source_task >> mapped
    state = make_state()
    with pytest.raises(TaskExecutionError):
        DAG([mapped], name="m3").run(executor="sync", state=state, fail_fast=False)
    SWITCH.clear()
    state.invalidate("fail_on_four")
    run = DAG([mapped], name="m3").run(executor="sync", state=state, resume=True)
    assert run.states["fail_on_four[0]"].status is Status.SUCCESS
    assert run.states["items_source"].status is Status.CACHED


def test_a_changed_condition_reruns_a_skipped_task(make_state: StateFactory) -> None:
    src = Task(source, name="source")
    quiet = Task(double, name="double", when=lambda n: n > 10)
    src >> quiet
    first = DAG([quiet], name="w").run(executor="sync", state=make_state())
    assert first.states["double"].status is Status.SKIPPED
    with flowkit.registry.isolated():
        src2 = Task(source, name="source")
        loud = Task(double, name="double", when=lambda n: n >= 0)
        src2 >> loud
        again = DAG([loud], name="w").run(executor="sync", state=make_state(), resume=True)
    assert again.states["double"].status is Status.SUCCESS


class Incomparable:
    """A parameter value without a stable form."""


def test_resume_refuses_parameters_it_cannot_compare(make_state: StateFactory) -> None:
    SWITCH["fail"] = True
    t = Task(dated, name="dated")
    f = Task(maybe_fail, name="maybe_fail")
    t >> f

    with pytest.raises(TaskExecutionError):
        DAG([f], name="q").run(executor="sync", state=make_state(),
                               params={"day": "mon"})
    with pytest.raises(StateError):
        DAG([f], name="q").run(executor="sync", state=make_state(),
                               params={"day": Incomparable()}, resume=True)


def test_the_code_hash_sees_through_a_decorator_without_wraps() -> None:
    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            return fn(*args)

        return wrapper

    @timed
    def one() -> str:
        return "v1"

    @timed
    def two() -> str:
        return "v2"

    assert code_hash(one) != code_hash(two)
    assert code_hash(lambda r, limit=3: r) != code_hash(lambda r, limit=1: r)


@pytest.mark.parametrize("name", ["bad\0name.json", "bad\0name.db"])
def test_a_path_with_a_nul_byte_is_a_state_error(name: str) -> None:
    with pytest.raises(StateError, match="invalid state"):
        StateManager(name).entries()


def test_a_symlinked_json_file_stays_a_symlink_after_compaction(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "state.json"
    link = tmp_path / "state.json"
    link.symlink_to(target)
    state = StateManager(link)
    src = Task(source, name="source", cache_ttl=60)
    DAG([src], name="s").run(executor="sync", state=state)
    state.clear()  # rewrites the file
    DAG([src], name="s").run(executor="sync", state=state)
    assert link.is_symlink()
    assert [e.name for e in StateManager(target).entries()] == ["source"]
