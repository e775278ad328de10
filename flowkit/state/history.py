"""Run history: what every run of every DAG did, kept beside the cache in the state.

A run is recorded as it goes, in three kinds of record, each written once:

- a :class:`RunHead` when it starts (DAG name, params, graph, host, pid...),
- a :class:`TaskEnd` as each task ends (status, attempts, timings, error —
  never its result),
- a :class:`RunEnd` when it ends (its final status).

Stores keep these records (see :class:`~flowkit.state.stores.Store`); the
memory and JSON stores index them with a :class:`HistoryIndex`. Readers get
:class:`RunRecord` objects from :func:`run_record`.

A run without an end record is either still running or its process died.
Which one is decided when it is read: its head names the host and the pid of
the recording process plus a token telling that process from a later one with
the same pid (Linux: the boot id and the process's start time). On the same
host, a run whose process is gone (or whose pid now belongs to another
process) is ``"interrupted"``; one recorded by a process on another host
cannot be checked from here and shows as ``"running"``.
"""

from __future__ import annotations

import math
import os
import traceback
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

from flowkit.graph import UpstreamNames
from flowkit.outcome import Status, TaskState

__all__ = [
    "DEFAULT_KEEP",
    "HistoryIndex",
    "HistoryRun",
    "RunEnd",
    "RunHead",
    "RunRecord",
    "RunRow",
    "RunSummary",
    "TaskEnd",
    "TaskRecord",
    "TaskStats",
    "percentile",
    "run_record",
    "task_stats",
]

DEFAULT_KEEP = 100
"""Runs kept per DAG name unless ``StateManager(history=N)`` says otherwise."""
# How many of a DAG's latest runs a task's expected duration is the median over:
# recent enough to follow a task that got slower, and a bounded cost per run.
DURATION_RUNS = 5
# A module constant: the enum lookup is slow, and this is read per task.
_FAILED = Status.FAILED

RUN_STATUSES = ("success", "failed", "interrupted", "running")


# --- public records ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """How one task ended in a recorded run.

    Attributes:
        status: a :class:`~flowkit.Status` value (``"success"``, ``"failed"``...).
        attempts: how many times its function was called.
        duration: seconds spent running (all attempts); ``None`` if it never ran.
        started: when its first attempt started (UTC), if it ran.
        ended: when its last attempt ended (UTC), if it ran.
        cause: for a task that did not run, the task at the root of it.
        error_type: the class name of its last error, for a failed task.
        error: the message of that error.
        reason: a short explanation for a task that did not run.
        traceback: the formatted traceback of its last error.
    """

    status: str
    attempts: int
    duration: float | None
    started: datetime | None
    ended: datetime | None
    cause: str | None
    error_type: str | None
    error: str | None
    reason: str | None = None
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One recorded run of a DAG, as :meth:`StateManager.runs` returns it.

    Attributes:
        run_id: the run's id.
        dag_name: the DAG's name.
        status: ``"success"``, ``"failed"``, ``"interrupted"`` or ``"running"``.
        started: when it started (UTC).
        ended: when it ended (UTC); ``None`` while it runs or if it died.
        params: its run parameters (values that are not plain data as their ``repr``).
        tasks: task name -> :class:`TaskRecord`, for the tasks that ended so far.
        flowkit_version: the flowkit version that ran it.
        host: the machine it ran on.
        pid: the process that ran it.
        graph: each task of the run -> its upstream task names.
    """

    run_id: str
    dag_name: str
    status: str
    started: datetime
    ended: datetime | None
    params: dict[str, Any]
    tasks: dict[str, TaskRecord]
    flowkit_version: str
    host: str
    pid: int
    graph: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, ``None`` until it ended."""
        return None if self.ended is None else (self.ended - self.started).total_seconds()


@dataclass(frozen=True, slots=True)
class TaskStats:
    """A task's record over the retained runs (see :meth:`StateManager.task_stats`).

    Attributes:
        count: runs in which the task has a record.
        failures: how many of those it FAILED.
        median: median duration of its successful runs, in seconds (``None``: no data).
        p90: 90th percentile of those durations (``None``: no data).
    """

    count: int
    failures: int
    median: float | None
    p90: float | None


# --- what stores keep ------------------------------------------------------------------


class RunHead(NamedTuple):
    """The record written when a run starts.

    ``token`` tells the recording process from a later one with the same pid;
    ``keep`` is how many runs of the DAG to retain, this one included.
    """

    run_id: str
    dag: str
    started: float
    params: dict[str, Any]
    graph: Mapping[str, Sequence[str]]
    version: str
    host: str
    pid: int
    token: str
    keep: int


class TaskEnd(NamedTuple):
    """The record written when a task of a run ends (times are ``time.time()`` values)."""

    run_id: str
    name: str
    status: str
    attempts: int
    duration: float | None
    started: float | None
    ended: float | None
    cause: str | None
    reason: str | None
    error_type: str | None
    error: str | None
    traceback: str | None


class RunEnd(NamedTuple):
    """The record written when a run ends."""

    run_id: str
    status: str
    ended: float


class RunSummary(NamedTuple):
    """A run in a quick listing (:meth:`StateManager.run_index`): enough to filter,
    count and draw trends. Times are ``time.time()`` values."""

    run_id: str
    dag_name: str
    status: str
    started: float
    ended: float | None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, ``None`` until it ended."""
        return None if self.ended is None else self.ended - self.started


RunRow = tuple[str, str, float, "float | None", "str | None", str, int, str]
"""A stored run in a listing: id, DAG, started, ended, status (``None`` until it
ended), host, pid, token."""


class HistoryRun(NamedTuple):
    """A run as a store returns it: its head, its task records and its end if any."""

    head: RunHead
    tasks: list[TaskEnd]
    end: RunEnd | None


# --- records to and from plain data (the JSON journal's lines) --------------------------


def head_to_data(head: RunHead) -> dict[str, Any]:
    """A JSON object for ``head`` (``"t": "hs"``); see :func:`head_from_data`."""
    return {"t": "hs", **head._asdict()}


def task_to_data(task: TaskEnd) -> dict[str, Any]:
    """A JSON object for ``task`` (``"t": "ht"``), leaving out empty fields."""
    data: dict[str, Any] = {"t": "ht"}
    data.update((k, v) for k, v in task._asdict().items() if v is not None)
    return data


def end_to_data(end: RunEnd) -> dict[str, Any]:
    """A JSON object for ``end`` (``"t": "he"``)."""
    return {"t": "he", **end._asdict()}


def head_from_data(rec: Mapping[str, Any]) -> RunHead:
    """The :class:`RunHead` of a ``"hs"`` object; ``ValueError`` if it is malformed."""
    graph = rec["graph"]
    if not isinstance(graph, dict) or not all(
        # lists when read back from JSON; tuples when a store applies its own record
        isinstance(ups, list | tuple) and all(isinstance(u, str) for u in ups)
        for ups in graph.values()
    ):
        raise ValueError("a run's graph must map task names to lists of names")
    params = rec["params"]
    if not isinstance(params, dict):
        raise ValueError("a run's params must be an object")
    return RunHead(
        _str(rec["run_id"]), _str(rec["dag"]), _num(rec["started"]), params, graph,
        _str(rec["version"]), _str(rec["host"]), _int(rec["pid"]), _str(rec["token"]),
        _int(rec["keep"]),
    )


def task_from_data(rec: Mapping[str, Any]) -> TaskEnd:
    """The :class:`TaskEnd` of a ``"ht"`` object; ``ValueError`` if it is malformed."""
    get = rec.get
    return checked_task((
        rec["run_id"], rec["name"], rec["status"], rec["attempts"], get("duration"),
        get("started"), get("ended"), get("cause"), get("reason"), get("error_type"),
        get("error"), get("traceback"),
    ))


def checked_task(fields: tuple[Any, ...]) -> TaskEnd:
    """The :class:`TaskEnd` of the fields read from a store; ``ValueError`` if any
    has an unexpected type (a damaged or hostile file)."""
    # Plain type tests, unrolled: this runs for every task of every run read.
    kinds = tuple(map(type, fields))
    if kinds not in _TASK_KINDS and not _task_kinds_ok(kinds, fields):
        raise ValueError(f"a task record of unexpected types: {fields!r:.200}")
    return TaskEnd._make(fields)


_NUMBER = (float, int, type(None))
_TEXT = (str, type(None))
# The shapes of most records (a success, a skip, a failure), known good at a glance.
_TASK_KINDS = {
    (str, str, str, int, float, float, float, *(type(None),) * 5),
    (str, str, str, int, *(type(None),) * 8),
    (str, str, str, int, type(None), type(None), type(None), str, str, *(type(None),) * 3),
    (str, str, str, int, float, float, float, *(type(None),) * 2, str, str, str),
}


def _task_kinds_ok(kinds: tuple[type, ...], fields: tuple[Any, ...]) -> bool:
    return (
        kinds[:3] == (str, str, str) and kinds[3] is int
        and all(k in _NUMBER for k in kinds[4:7]) and all(k in _TEXT for k in kinds[7:])
        # an int time or duration must fit a float (it is used as one)
        and all(type(v) is not int or -1e300 <= v <= 1e300 for v in fields[4:7])
    )


def end_from_data(rec: Mapping[str, Any]) -> RunEnd:
    """The :class:`RunEnd` of a ``"he"`` object; ``ValueError`` if it is malformed."""
    status = _str(rec["status"])
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    return RunEnd(_str(rec["run_id"]), status, _num(rec["ended"]))


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _num(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)




# --- the in-memory index (memory and JSON stores) ----------------------------------------


class _Layout(NamedTuple):
    """The task names of a graph and each name's place: what the task tables of
    a DAG's runs share (most runs of a DAG have the same graph)."""

    names: Sequence[str]
    positions: Mapping[str, int]


def _layout(graph: Mapping[str, Sequence[str]]) -> _Layout:
    if isinstance(graph, UpstreamNames):  # a run of this process: the graph's own
        return _Layout(graph.names, graph.positions)
    names = list(graph)
    return _Layout(names, dict(zip(names, range(len(names)), strict=True)))


# A task record's status in the task table: 0 for no record, else its place in
# _STATUSES; _DETAILED for a record kept whole in the table's ``details``.
_STATUSES: tuple[str | None, ...] = (None, *(s.value for s in Status))
_STATUS_CODES = {name: code for code, name in enumerate(_STATUSES) if name is not None}
_DETAILED = 255
_MAX_ATTEMPTS = 2**31 - 1  # what an array("i") holds
_TIMES = 3  # duration, started, ended


class _TaskTable:
    """The task records of one run, in columns by the task's place in the run's graph.

    A long history holds a great many task records, nearly all of them
    successes: a status byte, the attempts and three times in flat arrays cost
    about 33 bytes a task, where a tuple per record cost about 120 (and its
    three floats 72 more). A record of any other shape (a failure's details, a
    time that is not a float, a task the graph does not name) is kept whole in
    ``details``.
    """

    __slots__ = ("attempts", "count", "details", "layout", "status", "times")

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        # Grown as records arrive: a run that stops early costs what it recorded.
        self.status = bytearray()
        self.attempts = array("i")
        self.times = array("d")
        self.details: dict[str, tuple[Any, ...]] = {}  # name -> the record without run id, name
        self.count = 0  # tasks with a record

    def put(self, tasks: Iterable[TaskEnd]) -> None:
        """Keep the records of ``tasks``, each replacing an earlier one of the same task."""
        # One loop with its lookups made once: a run's records come in one batch.
        position, code_of, details = self.layout.positions.get, _STATUS_CODES.get, self.details
        status, attempts_of, times = self.status, self.attempts, self.times
        for task in tasks:
            _, name, status_name, attempts, duration, started, ended, *_ = task
            at = position(name)
            if at is None:
                self.count += name not in details
                details[name] = task[2:]
                continue
            if at >= len(status):
                self._grow(at + 1)
            if not status[at]:
                self.count += 1
            elif status[at] == _DETAILED:
                del details[name]
            code = code_of(status_name, _DETAILED)
            if (
                type(duration) is float and type(started) is float and type(ended) is float
                and code != _DETAILED and task[7:] == NO_DETAILS
                and type(attempts) is int and 0 <= attempts <= _MAX_ATTEMPTS
            ):
                status[at] = code
                attempts_of[at] = attempts
                i = at * _TIMES
                times[i] = duration
                times[i + 1] = started
                times[i + 2] = ended
            else:
                status[at] = _DETAILED
                details[name] = task[2:]

    def _grow(self, size: int) -> None:
        # Amortised, like a list's, but never past the graph's size.
        more = max(size, min(2 * len(self.status), len(self.layout.names))) - len(self.status)
        self.status.extend(bytes(more))
        self.attempts.extend(array("i", bytes(4 * more)))
        self.times.extend(array("d", bytes(8 * _TIMES * more)))

    def get(self, run_id: str, name: str) -> TaskEnd | None:
        """The record of task ``name``, or ``None``."""
        at = self.layout.positions.get(name, len(self.status))
        code = self.status[at] if at < len(self.status) else _DETAILED
        if code == _DETAILED:
            row = self.details.get(name)
            return None if row is None else _new(TaskEnd, (run_id, name, *row))
        return None if code == 0 else self._record(run_id, at, name, code)

    def _record(self, run_id: str, at: int, name: str, code: int) -> TaskEnd:
        i = at * _TIMES
        times = self.times
        return _new(TaskEnd, (
            run_id, name, _STATUSES[code], self.attempts[at], times[i], times[i + 1],
            times[i + 2], *NO_DETAILS,
        ))

    def records(self, run_id: str) -> list[TaskEnd]:
        """Every record, in the graph's order, then those of tasks it does not name."""
        names, details, record = self.layout.names, self.details, self._record
        found = [
            record(run_id, at, names[at], code) if code != _DETAILED
            else _new(TaskEnd, (run_id, names[at], *details[names[at]]))
            for at, code in enumerate(self.status) if code
        ]
        if len(found) < self.count:
            positions = self.layout.positions
            found.extend(
                _new(TaskEnd, (run_id, name, *row))
                for name, row in details.items() if name not in positions
            )
        return found

    def durations(self) -> Iterator[tuple[str, str, float | None]]:
        """``(name, status, duration)`` of every record."""
        names, times, success = self.layout.names, self.times, _STATUS_CODES["success"]
        for at, code in enumerate(self.status):
            if code == success:
                yield names[at], "success", times[at * _TIMES]
        for name, row in self.details.items():
            yield name, row[0], row[2]


class _Run:
    __slots__ = ("end", "head", "tasks")

    def __init__(self, head: RunHead, layout: _Layout):
        self.head = head
        self.tasks = _TaskTable(layout)
        self.end: RunEnd | None = None

    def records(self) -> list[TaskEnd]:
        return self.tasks.records(self.head.run_id)


_new = tuple.__new__  # a named tuple's own __new__ is Python code
NO_DETAILS: tuple[None, ...] = (None,) * 5
"""What a :class:`TaskEnd` of a success leaves empty, ``task[7:]``: cause, reason,
error type, error and traceback."""


class HistoryIndex:
    """The retained runs, in the order they started; retention applied as heads arrive."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}  # run id -> run, oldest first
        self._by_dag: dict[str, list[str]] = {}  # DAG name -> its run ids, oldest first

    def __len__(self) -> int:
        return len(self._runs)

    def records(self) -> int:
        """How many records the retained runs consist of (heads, tasks and ends)."""
        return sum(1 + r.tasks.count + (r.end is not None) for r in self._runs.values())

    def start(self, head: RunHead) -> None:
        """Add a run, then forget the oldest runs of its DAG beyond ``head.keep``."""
        if head.run_id in self._runs:
            return  # recorded twice (a rewritten file read again): the first counts
        ids = self._by_dag.setdefault(head.dag, [])
        last = self._runs[ids[-1]] if ids else None
        if last is not None and (last.head.graph is head.graph or last.head.graph == head.graph):
            # Most runs of a DAG have the same graph: keep it, and its layout, once.
            head = head._replace(graph=last.head.graph)
            layout = last.tasks.layout
        else:
            layout = _layout(head.graph)
        self._runs[head.run_id] = _Run(head, layout)
        ids.append(head.run_id)
        if len(ids) > head.keep:
            for gone in ids[: len(ids) - head.keep]:
                del self._runs[gone]
            del ids[: len(ids) - head.keep]

    def task(self, task: TaskEnd) -> None:
        """Add a task's record to its run (ignored once the run is forgotten)."""
        run = self._runs.get(task[0])
        if run is not None:
            run.tasks.put((task,))

    def tasks(self, tasks: Iterable[TaskEnd]) -> None:
        """:meth:`task` for many records, typically of one run."""
        for run_id, records in groupby(tasks, itemgetter(0)):
            run = self._runs.get(run_id)
            if run is not None:
                run.tasks.put(records)

    def end(self, end: RunEnd) -> None:
        """Mark a run ended."""
        run = self._runs.get(end.run_id)
        if run is not None:
            run.end = end

    def apply(self, rec: Mapping[str, Any]) -> None:
        """Apply a JSON object of kind ``hs``, ``ht`` or ``he``; ``ValueError`` if malformed."""
        kind = rec["t"]
        if kind == "ht":
            self.task(task_from_data(rec))
        elif kind == "hs":
            self.start(head_from_data(rec))
        elif kind == "he":
            self.end(end_from_data(rec))
        else:
            raise ValueError(f"unknown history record {kind!r}")

    def clear(self) -> None:
        """Forget every run."""
        self._runs.clear()
        self._by_dag.clear()

    def dump(self) -> Iterable[dict[str, Any]]:
        """Every retained record as a JSON object, in an order :meth:`apply` can replay."""
        for run in self._runs.values():
            yield head_to_data(run.head)
            yield from map(task_to_data, run.records())
            if run.end is not None:
                yield end_to_data(run.end)

    def runs(self, dag: str | None, limit: int | None, *, tasks: bool) -> list[HistoryRun]:
        """Runs newest first, of ``dag`` (all for ``None``), at most ``limit``."""
        ids: Sequence[str] = list(self._runs) if dag is None else self._by_dag.get(dag, [])
        chosen = list(reversed(ids))
        if limit is not None:
            chosen = chosen[:limit]
        return [self._view(self._runs[i], tasks=tasks) for i in chosen]

    def rows(self, dag: str | None) -> list[RunRow]:
        """A listing of the runs of ``dag`` (of all for ``None``), newest first."""
        ids: Sequence[str] = list(self._runs) if dag is None else self._by_dag.get(dag, [])
        found: list[RunRow] = []
        for run_id in reversed(ids):
            run = self._runs[run_id]
            head, end = run.head, run.end
            found.append((run_id, head.dag, head.started, end and end.ended, end and end.status,
                          head.host, head.pid, head.token))
        return found

    def run(self, run_id: str) -> HistoryRun | None:
        """One run by id, with its tasks."""
        run = self._runs.get(run_id)
        return None if run is None else self._view(run, tasks=True)

    def task_ends(self, dag: str | None, name: str | None) -> list[TaskEnd]:
        """Records of task ``name`` (every task for ``None``) in runs of ``dag``, newest first."""
        ids: Sequence[str] = list(self._runs) if dag is None else self._by_dag.get(dag, [])
        found: list[TaskEnd] = []
        for run_id in reversed(ids):
            run = self._runs[run_id]
            if name is None:
                found.extend(run.records())
            elif (record := run.tasks.get(run_id, name)) is not None:
                found.append(record)
        return found

    def durations(self, dag: str, runs: int) -> dict[str, float]:
        """:func:`medians` over the task records of the ``runs`` latest runs of ``dag``."""
        latest = self._by_dag.get(dag, [])[-runs:]
        return _medians(
            triple for run_id in latest for triple in self._runs[run_id].tasks.durations()
        )

    @staticmethod
    def _view(run: _Run, *, tasks: bool) -> HistoryRun:
        ends = run.records() if tasks else []
        return HistoryRun(run.head, ends, run.end)


# --- reading: records for users -----------------------------------------------------------


def run_record(run: HistoryRun, *, full: bool = True) -> RunRecord:
    """The :class:`RunRecord` of a stored run, its status settled (see the module docs);
    without its graph unless ``full`` (a quick listing)."""
    head, end = run.head, run.end
    if end is not None:
        status, ended = end.status, _time(end.ended)
    else:
        status, ended = ("running" if _alive(head) else "interrupted"), None
    return RunRecord(
        run_id=head.run_id,
        dag_name=head.dag,
        status=status,
        started=_when(head.started),
        ended=ended,
        params=dict(head.params),
        tasks={t.name: task_record(t) for t in run.tasks} if run.tasks else {},
        flowkit_version=head.version,
        host=head.host,
        pid=head.pid,
        graph={name: tuple(ups) for name, ups in head.graph.items()} if full else {},
    )


def summaries(rows: Iterable[RunRow]) -> list[RunSummary]:
    """The :class:`RunSummary` of each row, unfinished runs settled as running or
    interrupted (see the module docs)."""
    found = []
    for run_id, dag, started_at, ended_at, status, host, pid, token in rows:
        if status is None:
            status = "running" if alive(run_id, host, pid, token) else "interrupted"
        found.append(RunSummary(run_id, dag, status, started_at, ended_at))
    return found


def task_record(t: TaskEnd) -> TaskRecord:
    """The :class:`TaskRecord` of a stored task record."""
    return TaskRecord(
        status=t.status,
        attempts=t.attempts,
        duration=t.duration,
        started=_time(t.started),
        ended=_time(t.ended),
        cause=t.cause,
        error_type=t.error_type,
        error=t.error,
        reason=t.reason,
        traceback=t.traceback,
    )


def _when(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):  # an absurd time in a damaged file
        return datetime.fromtimestamp(0, UTC)


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else _when(seconds)


def task_stats(records: Iterable[TaskEnd]) -> TaskStats:
    """Count, failures, median and p90 of the durations of the successful ones."""
    count = failures = 0
    durations: list[float] = []
    for record in records:
        count += 1
        if record.status == "failed":
            failures += 1
        elif record.status == "success" and record.duration is not None:
            durations.append(record.duration)
    durations.sort()
    if not durations:
        return TaskStats(count, failures, None, None)
    return TaskStats(count, failures, percentile(durations, 50), percentile(durations, 90))


def medians(records: Iterable[TaskEnd]) -> dict[str, float]:
    """Each task's median duration over its successful ``records``."""
    return _medians((t[1], t[2], t[4]) for t in records)  # name, status, duration


def _medians(records: Iterable[tuple[str, str, float | None]]) -> dict[str, float]:
    """:func:`medians` of ``(name, status, duration)`` triples."""
    durations: dict[str, list[float]] = {}
    for name, status, duration in records:
        if status == "success" and duration is not None:
            durations.setdefault(name, []).append(duration)
    return {name: percentile(sorted(found), 50) for name, found in durations.items()}


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of sorted, non-empty ``ordered`` (linear interpolation)."""
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- writing: records from a run ------------------------------------------------------------

_ACTIVE: set[str] = set()  # ids of the runs this process is recording now
_ERROR_LIMIT = 2_000
_TRACEBACK_LIMIT = 20_000


def started(run_id: str) -> None:
    """Note that this process records ``run_id`` (it is "running" until :func:`ended`)."""
    _ACTIVE.add(run_id)


def ended(run_id: str) -> None:
    """Note that this process stopped recording ``run_id``."""
    _ACTIVE.discard(run_id)


def make_head(
    run_id: str,
    dag: str,
    started_at: float,
    params: Mapping[str, Any],
    graph: Mapping[str, Sequence[str]],
    keep: int,
) -> RunHead:
    """The head record of a run starting now in this process (``graph`` is kept as
    given: each task's upstream task names)."""
    from flowkit import __version__  # the package is imported by now; no cycle at runtime

    return RunHead(
        run_id, dag, started_at, {str(k): plain(v) for k, v in params.items()},
        graph, __version__, _HOST, os.getpid(),
        _own_token(), keep,
    )


def task_end(run_id: str, state: TaskState, status: Status) -> TaskEnd:
    """The record of how ``state``'s task ended: no result, the error as text."""
    started = state.started_at  # None: it never ran
    error = state.error
    error_type = message = trace = None
    if error is not None:
        error_type = type(error).__name__
        message = clip(_text(error), _ERROR_LIMIT)
        if status is _FAILED:  # rare, and worth the whole story
            trace = clip_tail(_text(error, full=True), _TRACEBACK_LIMIT)
    # tuple.__new__ directly: a named tuple's own __new__ is Python code, and
    # this runs once per task of every run.
    return tuple.__new__(TaskEnd, (
        run_id, state.name, status._value_, state.attempts,
        None if started is None else state.duration,
        started,
        None if started is None else state.finished_at,
        state.cause, state.reason, error_type, message, trace,
    ))


def restored_end(run_id: str, name: str, status: Status, previous: str) -> TaskEnd:
    """The record of a task restored on resume from run ``previous``."""
    return TaskEnd(
        run_id, name, status.value, 0, None, None, None, None,
        f"restored from run {previous}", None, None, None,
    )


def _text(error: BaseException, *, full: bool = False) -> str:
    try:
        return "".join(traceback.format_exception(error)) if full else str(error)
    except Exception as exc:  # a broken __str__ must not break the run
        return f"<{type(error).__name__} (str failed: {type(exc).__name__})>"


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON data: plain data as is, dates and times in ISO-8601 (a
    scheduled run's ``interval_start``), anything else as its ``repr``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth < 8 and isinstance(value, list | tuple):
        return [plain(v, depth + 1) for v in value]
    if depth < 8 and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: plain(v, depth + 1) for k, v in value.items()}
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the run
        text = f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"
    return clip(text, _ERROR_LIMIT)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_tail(text: str, limit: int) -> str:
    """``text`` keeping its last ``limit`` characters (a traceback ends with the error)."""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


# --- liveness of a run without an end record -------------------------------------------------

# The host name without importing socket (os.uname is what gethostname reads on POSIX).
_HOST = os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")
_TOKEN: list[str] = []  # this process's token, made once


def _own_token() -> str:
    if not _TOKEN:
        _TOKEN.append(process_token(os.getpid()))
    return _TOKEN[0]


def process_token(pid: int) -> str:
    """What tells process ``pid`` from a later one with the same pid: on Linux, the
    boot id and its start time in clock ticks; ``""`` where that is not known."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
        with open("/proc/sys/kernel/random/boot_id", "rb") as file:
            boot = file.read().strip()
        # Field 22 is the start time; the name (field 2) may hold spaces and parentheses.
        start = stat[stat.rindex(b")") + 2 :].split()[19]
    except (OSError, ValueError, IndexError):
        return ""
    return f"{boot.decode(errors='replace')}:{start.decode(errors='replace')}"


def _alive(head: RunHead) -> bool:
    """Whether the process recording ``head``'s run may still be at it."""
    return alive(head.run_id, head.host, head.pid, head.token)


def alive(run_id: str, host: str, pid: int, token: str) -> bool:
    """Whether process ``pid`` on ``host`` (told apart by ``token``) may still be
    recording run ``run_id``."""
    if host != _HOST:
        return True  # another machine: nothing here can tell
    if type(pid) is not int or not 0 < pid < 2**31:
        return False  # a damaged record (and kill(0 or -1) would mean process groups)
    if pid == os.getpid() and token == _own_token():
        return run_id in _ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        pass
    return not token or process_token(pid) == token
