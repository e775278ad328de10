"""Run history: records in every store, retention, liveness of unfinished runs,
statistics, old state files, and reading history without reading results."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import flowkit
from flowkit import DAG, StateError, StateManager, Status, Task, TaskExecutionError, task
from flowkit.state.history import RunRecord, TaskEnd, TaskStats, medians, percentile, task_stats
from flowkit.stores import MemoryStore

REPO = Path(__file__).resolve().parent.parent
SUFFIX = {"memory": None, "json": "state.json", "sqlite": "state.db"}


@pytest.fixture(params=["memory", "json", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _state(backend: str, tmp_path: Path, **kwargs: Any) -> StateManager:
    name = SUFFIX[backend]
    return StateManager(None if name is None else tmp_path / name, **kwargs)


def _etl(fail: bool = False) -> DAG:
    @task
    def extract(day: str = "today") -> list[int]:
        return [1, 2, 3]

    @task(retries=1)
    def transform(rows: list[int]) -> list[int]:
        if fail:
            raise ValueError("bad row <7>")
        return [r * 2 for r in rows]

    @task
    def load(rows: list[int]) -> int:
        return len(rows)

    extract >> transform >> load
    return DAG(name="etl")


def test_a_recorded_graph_is_the_one_that_ran_whatever_is_wired_later(
    backend: str, tmp_path: Path
) -> None:
    state = _state(backend, tmp_path)
    with flowkit.registry.isolated():
        dag = _etl()
        first = dag.run(executor="sync", state=state)
        dag.run(executor="sync", state=state)
        extra = Task(lambda *rows: None, name="audit")
        flowkit.registry["load"] >> extra
        flowkit.registry["extract"] >> extra  # after the runs: not part of what ran
    ran = {"extract": (), "transform": ("extract",), "load": ("transform",)}
    assert [run.graph for run in state.runs()] == [ran, ran]
    assert dict(first.graph) == ran and first.graph["load"] == ("transform",)
    assert "audit" not in first.graph and len(first.graph) == 3
    assert DAG([extra], name="etl").run(executor="sync", state=state).graph["audit"] == (
        "load", "extract",
    )
    assert state.runs()[0].graph["audit"] == ("load", "extract")


def test_every_store_records_each_run(backend: str, tmp_path: Path) -> None:
    state = _state(backend, tmp_path)
    before = dt.datetime.now(dt.UTC)
    ok = _etl().run(executor="sync", state=state, params={"day": "2026-01-02"})
    with pytest.raises(TaskExecutionError):
        _etl(fail=True).run(executor="sync", state=state)
    runs = state.runs()
    assert [r.run_id for r in runs][1] == ok.run_id
    failed, good = runs
    assert (good.status, failed.status) == ("success", "failed")
    assert good.dag_name == "etl"
    assert good.params == {"day": "2026-01-02"}
    assert good.flowkit_version == flowkit.__version__
    assert good.pid == os.getpid() and good.host
    assert good.started >= before - dt.timedelta(seconds=1)
    assert good.started.tzinfo is dt.UTC
    assert good.ended is not None and good.ended >= good.started
    assert good.duration is not None and good.duration >= 0
    assert good.graph == {"extract": (), "transform": ("extract",), "load": ("transform",)}
    assert set(good.tasks) == {"extract", "transform", "load"}
    load = good.tasks["load"]
    assert (load.status, load.attempts, load.error) == ("success", 1, None)
    assert load.duration is not None and load.started is not None and load.ended is not None
    bad = failed.tasks["transform"]
    assert (bad.status, bad.attempts) == ("failed", 2)
    assert (bad.error_type, bad.error) == ("ValueError", "bad row <7>")
    assert bad.traceback is not None and "bad row <7>" in bad.traceback
    after = failed.tasks["load"]
    assert (after.status, after.cause, after.duration) == ("upstream_failed", "transform", None)
    assert state.get_run(ok.run_id) == good
    quick = state.runs(tasks=False)[1]  # what backfills compare partitions with
    assert (quick.params, quick.tasks, quick.graph) == ({"day": "2026-01-02"}, {}, {})
    assert state.get_run("no-such-run") is None


def test_a_success_after_a_retry_is_recorded_with_all_its_attempts(
    backend: str, tmp_path: Path
) -> None:
    state = _state(backend, tmp_path)
    calls = []

    @task(retries=2)
    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("not yet")
        return 7

    @task
    def after(value: int) -> int:
        return value + 1

    flaky >> after
    result = DAG([after], name="retried").run(executor="sync", state=state)
    (record,) = state.runs()
    run_state = result.states["flaky"]
    first, *_, last = run_state.history
    recorded = record.tasks["flaky"]
    assert (recorded.status, recorded.attempts, recorded.error) == ("success", 3, None)
    assert recorded.started == dt.datetime.fromtimestamp(first.started_at, dt.UTC)
    assert recorded.ended == dt.datetime.fromtimestamp(last.finished_at, dt.UTC)
    assert recorded.duration == pytest.approx(run_state.duration)
    assert (run_state.started_at, run_state.finished_at) == (first.started_at, last.finished_at)
    assert record.tasks["after"].attempts == 1


def test_history_survives_reopening_the_file(tmp_path: Path) -> None:
    for name in ("state.json", "state.db"):
        run = _etl().run(executor="sync", state=StateManager(tmp_path / name))
        (record,) = StateManager(tmp_path / name).runs()
        assert record.run_id == run.run_id and record.status == "success"
        assert record.tasks["load"].status == "success"


def test_runs_filter_by_dag_and_limit(backend: str, tmp_path: Path) -> None:
    state = _state(backend, tmp_path)
    a = Task(lambda: 1, name="a")
    ids = []
    for name in ("one", "two", "one", "two", "one"):
        ids.append(DAG([a], name=name).run(executor="sync", state=state).run_id)
    assert [r.run_id for r in state.runs()] == ids[::-1]
    assert [r.run_id for r in state.runs(dag="one")] == [ids[4], ids[2], ids[0]]
    assert [r.run_id for r in state.runs(dag="two", limit=1)] == [ids[3]]
    assert state.runs(dag="three") == []
    assert state.runs(limit=0) == []
    quick = state.runs(tasks=False)
    assert [r.run_id for r in quick] == ids[::-1] and all(r.tasks == {} for r in quick)
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(StateError, match="limit"):
            state.runs(limit=bad)  # type: ignore[arg-type]


def test_run_index_is_a_light_listing(backend: str, tmp_path: Path) -> None:
    state = _state(backend, tmp_path)
    ok = _etl().run(executor="sync", state=state)
    with pytest.raises(TaskExecutionError):
        _etl(fail=True).run(executor="sync", state=state)
    other = DAG([Task(lambda: 1, name="a")], name="other").run(executor="sync", state=state)
    index = state.run_index()
    assert [(s.run_id, s.dag_name, s.status) for s in index] == [
        (other.run_id, "other", "success"), (index[1].run_id, "etl", "failed"),
        (ok.run_id, "etl", "success"),
    ]
    full = state.get_run(ok.run_id)
    assert full is not None and full.ended is not None
    assert index[2].started == pytest.approx(full.started.timestamp(), abs=1e-5)
    assert index[2].duration == pytest.approx(full.duration, abs=1e-5)
    assert [s.run_id for s in state.run_index(dag="other")] == [other.run_id]


def test_retention_keeps_the_last_runs_of_each_dag(backend: str, tmp_path: Path) -> None:
    state = _state(backend, tmp_path, history=3)
    a = Task(lambda: 1, name="a")
    kept = [DAG([a], name="many").run(executor="sync", state=state).run_id for _ in range(7)]
    other = DAG([a], name="other").run(executor="sync", state=state).run_id
    assert [r.run_id for r in state.runs(dag="many")] == kept[:3:-1]
    assert [r.run_id for r in state.runs(dag="other")] == [other]
    assert state.get_run(kept[0]) is None


def test_forgotten_runs_are_compacted_out_of_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateManager(path, history=2)
    tasks = [Task(lambda i=i: i, name=f"t{i}") for i in range(20)]
    ids = [DAG(tasks, name="d").run(executor="sync", state=state).run_id for _ in range(30)]
    text = path.read_text()
    assert ids[-1] in text and ids[0] not in text
    assert text.count('"t":"hs"') <= 2 + 256 // 22 + 1


def test_task_records_of_every_shape_read_back_as_written(tmp_path: Path) -> None:
    # Successes are kept in columns, anything else whole: each must read back exactly.
    path = tmp_path / "state.json"
    run = _etl().run(executor="sync", state=StateManager(path))
    lines = [
        # an integer duration and times, as another writer may produce
        {"name": "load", "status": "success", "attempts": 1, "duration": 2, "started": 10,
         "ended": 12},
        # a task the run's graph does not name
        {"name": "ghost", "status": "success", "attempts": 3, "duration": 0.5},
        # recorded again: as a failure with its details, then as a success once more
        {"name": "extract", "status": "failed", "attempts": 2, "error_type": "ValueError",
         "error": "bad <row>"},
        {"name": "transform", "status": "failed", "attempts": 1, "error": "no"},
        {"name": "transform", "status": "success", "attempts": 2**40, "duration": 1.5,
         "started": 1.0, "ended": 2.5},
    ]
    with open(path, "a") as file:
        for line in lines:
            file.write(json.dumps({"t": "ht", "run_id": run.run_id, **line}) + "\n")
    state = StateManager(path)
    (record,) = state.runs()
    assert list(record.tasks) == ["extract", "transform", "load", "ghost"]
    load, ghost = record.tasks["load"], record.tasks["ghost"]
    assert (load.duration, type(load.duration), load.started) == (
        2, int, dt.datetime.fromtimestamp(10, dt.UTC))
    assert (ghost.status, ghost.attempts, ghost.duration, ghost.started) == (
        "success", 3, 0.5, None)
    extract = record.tasks["extract"]
    assert (extract.status, extract.attempts, extract.error_type, extract.error) == (
        "failed", 2, "ValueError", "bad <row>")
    transform = record.tasks["transform"]
    assert (transform.status, transform.attempts, transform.duration, transform.error) == (
        "success", 2**40, 1.5, None)
    assert state.expected_durations("etl") == {"transform": 1.5, "load": 2, "ghost": 0.5}
    assert state.task_stats("extract", dag="etl").failures == 1
    assert state.task_stats("nothing", dag="etl").count == 0


def test_no_history_with_zero_and_bad_values_refused(tmp_path: Path) -> None:
    state = StateManager(tmp_path / "state.json", history=0)
    _etl().run(executor="sync", state=state)
    assert state.runs() == []
    assert '"hs"' not in (tmp_path / "state.json").read_text()
    for bad in (-1, 2.0, "10", None, True):
        with pytest.raises(StateError, match="history="):
            StateManager(history=bad)  # type: ignore[arg-type]


def test_a_store_without_history_lists_no_runs() -> None:
    class Plain(MemoryStore):
        history_start = flowkit.stores.Store.history_start
        history_task = flowkit.stores.Store.history_task
        history_runs = flowkit.stores.Store.history_runs
        history_run = flowkit.stores.Store.history_run
        history_tasks = flowkit.stores.Store.history_tasks
        history_end = flowkit.stores.Store.history_end

    state = StateManager(store=Plain())
    with pytest.raises(TaskExecutionError):
        _etl(fail=True).run(executor="sync", state=state)
    _etl().run(executor="sync", state=state)
    assert state.runs() == [] and state.task_stats("load") == TaskStats(0, 0, None, None)
    assert state.get_run("x") is None


def test_in_memory_history_is_complete_whenever_it_is_read() -> None:
    # The records of a run's successes are made when the state is next used.
    state = StateManager(history=2)
    dag = _etl()
    first = dag.run(executor="sync", state=state)
    assert state.get_run(first.run_id).tasks["load"].attempts == 1  # type: ignore[union-attr]
    second = dag.run(executor="sync", state=state)
    third = dag.run(executor="sync", state=state)
    assert [r.run_id for r in state.runs()] == [third.run_id, second.run_id]
    stored = state.store.history_run(third.run_id)  # the store itself has them too
    assert stored is not None and len(stored.tasks) == 3
    assert state.task_stats("load").count == 2
    assert set(state.expected_durations("etl")) == {"extract", "transform", "load"}

    seen: list[str] = []

    class Watching(MemoryStore):  # a store that watches each record as it comes
        def history_task(self, task: TaskEnd) -> None:
            seen.append(task.name)
            super().history_task(task)

    watched = StateManager(store=Watching())
    dag.run(executor="sync", state=watched)
    assert seen == ["extract", "transform", "load"]  # by the end of the run, unread


def test_a_timed_out_attempt_counts_exactly_its_timeout(tmp_path: Path) -> None:
    release = threading.Event()

    @task(timeout=0.05, retries=1, retry_delay=0)
    def stuck() -> None:
        release.wait(5)

    state = StateManager(tmp_path / "state.json")
    try:
        with pytest.raises(TaskExecutionError):
            DAG([stuck], name="stuck").run(executor="thread", state=state)
    finally:
        release.set()
    (record,) = state.runs()
    assert record.tasks["stuck"].duration == 0.05 + 0.05
    assert record.tasks["stuck"].attempts == 2


def test_params_that_are_not_plain_data_are_kept_as_text(tmp_path: Path) -> None:
    state = StateManager(tmp_path / "state.db")
    def a(day: Any, n: Any, xs: Any, nan: Any, at: Any, obj: Any) -> None:
        pass

    a = Task(a)
    params = {"day": dt.date(2026, 1, 2), "n": 3, "xs": (1, 2.5, None), "nan": float("nan"),
              "at": dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC), "obj": Task}
    DAG([a], name="p").run(executor="sync", state=state, params=params)
    (record,) = state.runs()
    # dates and times in ISO-8601, other values as their repr
    assert record.params == {"day": "2026-01-02", "n": 3, "xs": [1, 2.5, None], "nan": "nan",
                             "at": "2026-01-02T03:04:00+00:00", "obj": repr(Task)}


def test_resume_records_restored_tasks_as_cached(backend: str, tmp_path: Path) -> None:
    state = _state(backend, tmp_path)
    with pytest.raises(TaskExecutionError):
        _etl(fail=True).run(executor="sync", state=state)
    first = state.runs()[0].run_id
    second = _etl().run(executor="sync", state=state, resume=True)
    record = state.runs()[0]
    assert record.run_id == second.run_id and record.status == "success"
    extract = record.tasks["extract"]
    assert (extract.status, extract.attempts, extract.duration) == ("cached", 0, None)
    assert extract.reason == f"restored from run {first}"
    assert record.tasks["transform"].status == "success"


def test_mapped_items_are_recorded(tmp_path: Path) -> None:
    state = StateManager(tmp_path / "state.json")

    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task
    def square(x: int) -> int:
        return x * x

    numbers >> square.map()
    DAG(name="m").run(executor="sync", state=state)
    record = state.runs()[0]
    assert {"square[0]", "square[1]", "square[2]", "square"} <= set(record.tasks)


def test_task_stats_and_expected_durations(backend: str, tmp_path: Path) -> None:
    state = _state(backend, tmp_path)
    for _ in range(3):
        _etl().run(executor="sync", state=state)
    with pytest.raises(TaskExecutionError):
        _etl(fail=True).run(executor="sync", state=state)
    stats = state.task_stats("transform", dag="etl")
    assert (stats.count, stats.failures) == (4, 1)
    assert stats.median is not None and stats.p90 is not None and stats.p90 >= stats.median
    assert state.task_stats("transform", dag="other") == TaskStats(0, 0, None, None)
    assert state.task_stats("load").count == 4
    expected = state.expected_durations("etl")
    assert set(expected) == {"extract", "transform", "load"}
    assert all(v >= 0 for v in expected.values())
    assert state.expected_durations("nothing") == {}


def _end(name: str, status: str, duration: float | None) -> TaskEnd:
    return TaskEnd("r", name, status, 1, duration, None, None, None, None, None, None, None)


def test_statistics_are_exact() -> None:
    ends = [_end("t", "success", d) for d in (4.0, 1.0, 3.0, 2.0)]
    ends += [_end("t", "failed", 100.0), _end("t", "skipped", None)]
    assert task_stats(ends) == TaskStats(6, 1, 2.5, 3.7)
    assert percentile([5.0], 90) == 5.0
    assert medians([*ends, _end("u", "success", 7.0)]) == {"t": 2.5, "u": 7.0}


# --- runs that did not end ----------------------------------------------------------------

_LIVE = """
import sys, time, pathlib
from flowkit import DAG, StateManager, task

path, gate = sys.argv[1], pathlib.Path(sys.argv[2])

@task
def first():
    return 1

@task
def wait(x):
    gate.write_text("waiting")
    while gate.read_text() != "go":
        time.sleep(0.01)
    return x

first >> wait
DAG(name="live").run(executor="sync", state=StateManager(path))
"""


@pytest.mark.parametrize("name", ["state.json", "state.db"])
def test_a_running_run_is_running_and_a_killed_one_interrupted(
    name: str, tmp_path: Path
) -> None:
    script = tmp_path / "live.py"
    script.write_text(_LIVE)
    gate = tmp_path / "gate"
    gate.write_text("")
    path = tmp_path / name
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(gate)], env=env)
    try:
        deadline = time.monotonic() + 60
        while gate.read_text() != "waiting":
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        state = StateManager(path)
        (record,) = state.runs()
        assert record.status == "running" and record.ended is None
        assert record.pid == proc.pid
        assert set(record.tasks) == {"first"} and set(record.graph) == {"first", "wait"}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (record,) = StateManager(path).runs()
    assert record.status == "interrupted" and record.ended is None


def test_ctrl_c_ends_a_run_as_interrupted(tmp_path: Path) -> None:
    state = StateManager(tmp_path / "state.json")

    @task
    def stop() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        DAG([stop], name="stopped").run(executor="sync", state=state)
    (record,) = state.runs()
    assert record.status == "interrupted" and record.ended is not None


def test_a_run_this_process_abandoned_is_interrupted(tmp_path: Path) -> None:
    state = StateManager(tmp_path / "state.json")
    seen: list[RunRecord] = []

    @task
    def look() -> None:
        seen.extend(StateManager(tmp_path / "state.json").runs())

    DAG([look], name="self").run(executor="sync", state=state)
    assert [r.status for r in seen] == ["running"]
    # A record left without an end by this very process (its run is not going on).
    head = json.loads(next(
        line for line in (tmp_path / "state.json").read_text().splitlines() if '"hs"' in line
    ))
    head["run_id"] = "orphan"
    with open(tmp_path / "state.json", "a") as file:
        file.write(json.dumps(head, separators=(",", ":")) + "\n")
    assert StateManager(tmp_path / "state.json").runs()[0].status == "interrupted"


def test_a_run_of_a_dead_process_or_another_host(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _etl().run(executor="sync", state=StateManager(path))
    head = json.loads(next(line for line in path.read_text().splitlines() if '"hs"' in line))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    records = [
        {**head, "run_id": "dead", "pid": dead.pid},
        {**head, "run_id": "reused", "token": "another-process"},
        {**head, "run_id": "elsewhere", "host": "some-other-machine"},
        {**head, "run_id": "damaged", "pid": 0},
    ]
    with open(path, "a") as file:
        for record in records:
            file.write(json.dumps(record, separators=(",", ":")) + "\n")
    statuses = {r.run_id: r.status for r in StateManager(path).runs()}
    assert statuses == {s.run_id: s.status for s in StateManager(path).run_index()}
    assert statuses["dead"] == "interrupted"
    assert statuses["reused"] == "interrupted"
    assert statuses["elsewhere"] == "running"
    assert statuses["damaged"] == "interrupted"


# --- reading history never reads results ----------------------------------------------------


def test_listing_runs_does_not_parse_cached_results(tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    @task(cache_ttl=60)
    def big() -> list[int]:
        return list(range(10))

    run = DAG([big], name="c").run(executor="sync", state=StateManager(path))
    # A damaged result: reading the cache must notice, listing runs must not look.
    with open(path, "a") as file:
        file.write('{"t":"c","k":"x","n":"big","at":1.0,"ttl":null,"v":[1,2,\n')
    state = StateManager(path)
    assert [r.run_id for r in state.runs()] == [run.run_id]
    with pytest.raises(StateError, match="corrupt"):
        state.entries()


def test_sqlite_history_does_not_read_results(tmp_path: Path) -> None:
    path = tmp_path / "state.db"

    @task(cache_ttl=60)
    def big() -> list[int]:
        return list(range(10))

    run = DAG([big], name="c").run(executor="sync", state=StateManager(path))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE blobs SET value = 'not json'")
    state = StateManager(path)
    assert [r.run_id for r in state.runs()] == [run.run_id]
    resumed = DAG([big], name="c").run(executor="sync", state=state, resume=True)
    assert resumed.states["big"].status is Status.SUCCESS  # its damaged result: run again


def test_reading_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    assert StateManager(tmp_path / "nothing.json").runs() == []
    assert not (tmp_path / "nothing.json").exists()


def test_a_damaged_history_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _etl().run(executor="sync", state=StateManager(path))
    with open(path, "a") as file:
        file.write('{"t":"ht","run_id":"x","name":"n","status":"success","attempts":"many"}\n')
    with pytest.raises(StateError, match="corrupt at line"):
        StateManager(path).runs()


def test_history_is_read_while_another_thread_writes(backend: str, tmp_path: Path) -> None:
    state = _state(backend, tmp_path)
    reader = _state(backend, tmp_path) if backend != "memory" else state
    tasks = [Task(lambda i=i: i, name=f"t{i}") for i in range(30)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                for record in reader.runs(limit=3):
                    assert record.status in ("success", "running")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for _ in range(10):
            DAG(tasks, name="busy").run(executor="thread", state=state)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert len(reader.runs()) == 10


# --- old state files -----------------------------------------------------------------------


def test_a_format_1_journal_is_read_and_upgraded_on_write(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    lines = [
        {"flowkit": "state", "format": 1},
        {"t": "c", "k": "k1", "n": "old", "at": 1.0, "ttl": None, "v": 41},
        {"t": "run", "dag": "etl", "run": "r1", "at": 1.0},
        {"t": "o", "dag": "etl", "run": "r1", "n": "old", "s": "success", "ver": "v", "at": 1.0,
         "v": 41},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    state = StateManager(path)
    assert state.runs() == []
    assert [e.name for e in state.entries()] == ["old"]
    assert state.latest_run("etl") == ("r1", {"old": flowkit.Status.SUCCESS})
    run = _etl().run(executor="sync", state=state)
    assert json.loads(path.read_text().splitlines()[0])["format"] == 2
    assert [r.run_id for r in state.runs()] == [run.run_id]
    assert [e.name for e in state.entries()] == ["old"]


_V1_SCHEMA = """
CREATE TABLE cache (key TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, ttl REAL,
    size INTEGER NOT NULL, blob TEXT NOT NULL);
CREATE INDEX cache_by_name ON cache (name);
CREATE INDEX cache_by_blob ON cache (blob);
CREATE TABLE blobs (hash TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, dag TEXT NOT NULL,
    run_id TEXT NOT NULL, started REAL NOT NULL);
CREATE INDEX runs_by_dag ON runs (dag, seq);
CREATE TABLE outcomes (dag TEXT NOT NULL, run_id TEXT NOT NULL, name TEXT NOT NULL,
    status TEXT NOT NULL, version TEXT NOT NULL, blob TEXT, finished REAL NOT NULL,
    PRIMARY KEY (dag, run_id, name)) WITHOUT ROWID;
CREATE INDEX outcomes_by_name ON outcomes (name);
CREATE INDEX outcomes_by_blob ON outcomes (blob);
INSERT INTO blobs VALUES ('h', '41');
INSERT INTO cache VALUES ('k1', 'old', 1.0, NULL, 2, 'h');
PRAGMA application_id = 1718317940;
PRAGMA user_version = 1;
"""


def test_a_version_1_database_is_read_and_upgraded_on_write(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(_V1_SCHEMA)
    state = StateManager(path)
    assert state.runs() == [] and state.get_run("x") is None
    assert state.task_stats("old") == TaskStats(0, 0, None, None)
    assert [e.name for e in state.entries()] == ["old"]
    run = _etl().run(executor="sync", state=state)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert [r.run_id for r in state.runs()] == [run.run_id]
    assert [e.name for e in state.entries()] == ["old"]


def test_clear_forgets_the_history(backend: str, tmp_path: Path) -> None:
    state = _state(backend, tmp_path)
    _etl().run(executor="sync", state=state)
    state.invalidate()
    assert len(state.runs()) == 1  # invalidating the cache keeps the history
    state.clear()
    assert state.runs() == []


@pytest.mark.parametrize("damage", [
    "UPDATE history_tasks SET attempts = 'many'",
    "UPDATE history_runs SET started = 'yesterday'",
    "UPDATE history_runs SET status = 'exploded'",
])
def test_a_damaged_history_database_is_reported(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "state.db"
    _etl().run(executor="sync", state=StateManager(path))
    with sqlite3.connect(path) as db:
        db.execute(damage)
    state = StateManager(path)
    with pytest.raises(StateError, match="damaged run history"):
        state.runs()
    if "history_runs" in damage:  # the listing reads runs only
        with pytest.raises(StateError, match="damaged run history"):
            state.run_index()


def test_expected_durations_follow_the_latest_runs(backend: str, tmp_path: Path) -> None:
    """A task that got faster is expected to take what its five latest runs took."""
    state = _state(backend, tmp_path)

    @task
    def work(delay: float) -> None:
        time.sleep(delay)

    dag = DAG([work], name="speed")
    for delay in [0.05] * 6 + [0.0] * 5:
        dag.run(executor="sync", state=state, params={"delay": delay})
    assert state.task_stats("work", dag="speed").median == pytest.approx(0.05, abs=0.04)
    assert state.expected_durations("speed")["work"] < 0.04


@pytest.mark.parametrize(
    "record",
    [
        TaskEnd("r1", "load", "success", 1, 0.25, 1.5e9, 1.5e9 + 0.25, None, None, None, None,
                None),
        TaskEnd("r\u00e9", "l\u00f6ad \"x\"", "success", 2, 1e-7, 1.5e9, 1.5e9 + 1e-7, None, None,
                None, None, None),
        TaskEnd("r1", "huge", "success", 1, float("inf"), 1.0, 1e308, None, None, None, None,
                None),
        TaskEnd("r1", "whole", "success", 1, 0.5, 1, 1.5, None, None, None, None, None),
        TaskEnd("r1", "tiny", "success", 1, -0.0, 5e-324, 1e16, None, None, None, None, None),
        TaskEnd("r1", "vast", "success", 1, 1e308, 1e308, 1e308, None, None, None, None, None),
        TaskEnd("r1", "skip", "skipped", 0, None, None, None, "cond",
                "its when= condition was false", None, None, None),
        TaskEnd("r1", "bad \u00e9\u4e2d \"q\"\n", "failed", 3, float("nan"), 1.0, 2, None, None,
                "ValueError", "caf\u00e9 \\ </script>", "Traceback...\n  \u2603\n"),
    ],
)
def test_a_journal_task_line_is_the_json_of_its_record(record: TaskEnd) -> None:
    from flowkit.state.history import task_from_data, task_to_data
    from flowkit.state.stores.journal import _line, _task_line

    line = _task_line(record)
    assert line == _line(task_to_data(record))
    read = task_from_data(json.loads(line))
    assert read[:4] == record[:4] and read[7:] == record[7:]


@pytest.mark.parametrize(
    "value",
    [None, 0, -7, 10**300, 1.5, -0.0, float("inf"), float("nan"), "", "caf\u00e9 \"\\\n",
     True, [1, "a", None], {"k": [1.0]}],
)
def test_a_journal_writes_plain_values_as_the_json_encoder_does(value: object) -> None:
    from flowkit.state.stores.journal import _encode, _json

    assert _json(value) == _encode(value)
