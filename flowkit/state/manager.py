"""StateManager: result caching with TTL, and resume, over a pluggable store.

The state manager is the first hook of every run. It records each task's
outcome *as the task finishes* — so a run that fails, is interrupted by Ctrl-C
or dies outright can be resumed — and stores the results of tasks that have
``cache_ttl`` under their cache key (see ``flowkit.cachekey``).

Where it keeps things is a :class:`~flowkit.stores.Store`: in memory (the
default), a JSON-lines file, an SQLite database, or a store of your own::

    StateManager()                       # in memory
    StateManager("state.json")           # JSON journal
    StateManager("state.db")             # SQLite (also .sqlite, .sqlite3)
    StateManager(path, backend="sqlite") # any file name
    StateManager(store=MyStore())        # your own backend

Every state also keeps the history of the last runs of each DAG (see
:mod:`flowkit.state.history`): :meth:`StateManager.runs`,
:meth:`StateManager.task_stats` and :meth:`StateManager.expected_durations`
read it.

Results written to a file go through a serializer (JSON by default, see
``flowkit.serializers``); a result it cannot represent is reported once, by
task name and type, through the ``flowkit.state`` logger, and that task is
then simply neither cached nor restorable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from flowkit.context import RunContext
from flowkit.exceptions import StateError
from flowkit.outcome import NOT_KEPT, Remote, Status, TaskState, item_of
from flowkit.state import history as _history
from flowkit.state.cachekey import (
    UncacheableInput,
    cache_key,
    code_hash,
    input_hash,
    inputs_digest,
    task_version,
)
from flowkit.state.history import (
    DEFAULT_KEEP,
    RunEnd,
    RunRecord,
    RunSummary,
    TaskEnd,
    TaskRecord,
    TaskStats,
)
from flowkit.state.stores import CacheEntry, MemoryStore, Outcome, Store
from flowkit.state.stores.base import PARAMS
from flowkit.task import Task

if TYPE_CHECKING:  # pragma: no cover - loaded on first use (see StateManager.serializer)
    from flowkit.graph import Graph
    from flowkit.state.serializers import Serializer

__all__ = ["CacheInfo", "StateManager"]

logger = logging.getLogger("flowkit.state")

Backend = Literal["memory", "json", "sqlite"]
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_WITH_VALUE = ("success", "cached")


class CacheInfo(NamedTuple):
    """One cache entry, as :meth:`StateManager.entries` lists it.

    Attributes:
        name: the task's name.
        key: the cache key.
        created: when it was stored (the state manager's clock, by default ``time.time()``).
        age: seconds since it was stored.
        expires_in: seconds left before it expires under the TTL it was stored
            with (``<= 0``: expired), or ``None`` if it never expires.
        size: bytes it takes in the store (``None`` in memory).
    """

    name: str
    key: str
    created: float
    age: float
    expires_in: float | None
    size: int | None


class _RunBook:
    """What the state manager remembers about a run in progress."""

    __slots__ = ("dag", "pending", "restored", "run_id", "started", "versions")

    def __init__(self, dag: str, run_id: str):
        self.dag = dag
        self.run_id = run_id
        self.restored: set[str] = set()
        self.started = False  # recorded in the store
        # With an in-memory store, finished tasks wait here until something
        # reads their outcomes (see StateManager._flush).
        self.pending: list[TaskState] = []
        # Each task's version (see task_version), worked out once for the run:
        # its code and wiring cannot change while it runs.
        self.versions: dict[Task[..., Any], str] = {}

    def version(self, task: Task[..., Any]) -> str:
        """``task_version(task)``, worked out once per run."""
        version = self.versions.get(task)
        if version is None:
            version = self.versions[task] = task_version(task)
        return version


class StateManager:
    """Caching and resume for DAG runs. Pass it as ``DAG(state=...)`` or ``run(state=...)``.

    Args:
        path: a file to keep the state in; ``None`` keeps it in memory.
            ``.db``, ``.sqlite`` and ``.sqlite3`` files use SQLite, others JSON.
        backend: ``"memory"``, ``"json"`` or ``"sqlite"``, overriding the choice by suffix.
        store: a :class:`~flowkit.stores.Store` of your own (without ``path``).
        serializer: how results are written to a file (default
            :class:`~flowkit.serializers.JSONSerializer`); the in-memory store
            keeps the objects themselves.
        clock: the time source for cache ages and TTLs (default ``time.time``).
        history: how many runs of each DAG name the run history keeps (``0``: none).

    Raises:
        StateError: contradictory arguments. Problems with the file itself are
            reported when it is first used.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        backend: Backend | None = None,
        store: Store | None = None,
        serializer: Serializer | None = None,
        clock: Callable[[], float] = time.time,
        history: int = DEFAULT_KEEP,
    ):
        if type(history) is not int or history < 0:
            raise StateError(
                f"history={history!r}: pass how many runs of each DAG to keep, an int >= 0"
            )
        self._store = _make_store(path, backend, store)
        self.history_size = history
        self.path: str | None = None if path is None else os.fspath(path)
        self._serializer = serializer
        self.clock = clock
        self._lock = threading.RLock()
        self._books: dict[str, _RunBook] = {}
        self._hits: dict[str, Any] = {}  # cache key -> stored payload, until reported
        self._lazy = self._store.lazy_records
        # Finished runs whose outcomes wait to be recorded until something reads
        # them (see _record), by DAG name.
        self._unflushed: dict[str, _RunBook] = {}
        # Finished runs whose waiting outcomes' history records wait too: they
        # are made the next time the state is used (see _using).
        self._unrecorded: list[_RunBook] = []

    @property
    def serializer(self) -> Serializer:
        """How results are written to a file (the in-memory store keeps the objects)."""
        if self._serializer is None:
            # Made on first use: most states are in memory and never need one.
            from flowkit.state.serializers import JSONSerializer

            self._serializer = JSONSerializer()
        return self._serializer

    @serializer.setter
    def serializer(self, serializer: Serializer) -> None:
        self._serializer = serializer

    @property
    def store(self) -> Store:
        """The backend holding the state (with every finished run's history in it)."""
        with self._lock:
            self._record_history()
        return self._store

    @property
    def backend(self) -> str:
        """``"memory"``, ``"json"``, ``"sqlite"``, or ``"custom"``."""
        kind = type(self._store)
        return _BACKENDS.get(f"{kind.__module__}.{kind.__qualname__}", "custom")

    def __repr__(self) -> str:
        where = "" if self.path is None else f"{self.path!r}, "
        return f"StateManager({where}backend={self.backend!r})"

    def __enter__(self) -> StateManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file or connection; it is reopened when needed."""
        with self._lock:
            self._store.close()

    # --- what the scheduler calls ---------------------------------------------------

    def begin_run(
        self, run: RunContext, graph: Graph, *, resume: bool
    ) -> Mapping[str, tuple[Status, Any]]:
        """Start recording ``run`` of ``graph``; with ``resume``, return the tasks to restore.

        Restored are the tasks that succeeded, were cached or were skipped in
        the DAG's latest recorded run with the same parameters, whose code and upstream tasks are
        unchanged, and whose upstream tasks are all restored too.

        Returns:
            task name -> ``(Status.CACHED, value)`` or ``(Status.SKIPPED, None)``.

        Raises:
            StateError: the state file is unreadable, corrupt or foreign.
        """
        params = self._params_record(run)
        slot = params.dag  # the DAG's name, with its parameters' digest when it has some
        book = _RunBook(slot, run.run_id)
        restored: dict[str, tuple[Status, Any]] = {}
        carried: list[Outcome] = []
        with self._using():  # a failure here (a damaged file) leaves the file closed
            if resume:
                self._check_comparable(run, params)
                self._flush(slot)
            else:
                self._unflushed.pop(slot, None)  # superseded before anyone read it
            previous = None
            if resume:
                latest = self._store.latest_run(slot)
                if latest is not None:
                    previous = latest[0]
                    restored, carried = self._restorable(graph.tasks, latest[1])
                    book.restored.update(restored)
            self._store.start_run(slot, run.run_id, self.clock(), [params, *carried])
            self._books[run.run_id] = book
            book.started = True
            if self.history_size:
                self._start_history(run, graph, restored, previous)
        return restored

    def _start_history(
        self,
        run: RunContext,
        graph: Graph,
        restored: Mapping[str, tuple[Status, Any]],
        previous: str | None,
    ) -> None:
        # The graph's own upstream names, a view made once per graph: a DAG run
        # again shares it with its earlier runs' records (which never change it).
        # A store that writes the graph out gets plain data.
        upstream = graph.upstream_names
        head = _history.make_head(
            run.run_id, run.dag_name, run.started_at, run.params,
            upstream if self._store.keeps_objects else dict(upstream), self.history_size,
        )
        ends = [
            _history.restored_end(run.run_id, name, status, previous or "?")
            for name, (status, _) in restored.items()
        ]
        _history.started(run.run_id)  # before any reader can see the run
        self._store.history_start(head, ends)

    def _params_record(self, run: RunContext) -> Outcome:
        """The run parameters, kept with the run; its ``dag`` is the run's slot (see
        :func:`_slot`)."""
        slot, digest = _slot(run.dag_name, run.params)
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(run.params.items())) or "none"
        return Outcome(slot, run.run_id, PARAMS, PARAMS, digest, True, shown, self.clock())

    def _check_comparable(self, run: RunContext, params: Outcome) -> None:
        if params.version == _INCOMPARABLE:
            raise StateError(
                f"cannot resume DAG {run.dag_name!r} with the parameters ({params.value}): "
                "they hold values flowkit cannot compare with a recorded run's (only plain "
                "data can be); run without resume=True.",
                path=None if self._store.keeps_objects else self._store.location,
            )

    def _restorable(
        self, tasks: Sequence[Task[..., Any]], outcomes: Mapping[str, Outcome]
    ) -> tuple[dict[str, tuple[Status, Any]], list[Outcome]]:
        """What a resumed run restores (by task name) and the outcomes it carries over."""
        restored: dict[str, tuple[Status, Any]] = {}
        carried: list[Outcome] = []
        rerun: list[Task[..., Any]] = []
        for task in tasks:  # topological order: upstream tasks are decided first
            outcome = outcomes.get(task.name)
            value = self._restore_one(task, outcome, restored)
            if value is None:
                rerun.append(task)
                continue
            assert outcome is not None
            restored[task.name] = value
            if value[0] is Status.CACHED:  # what it is in the new run
                outcome = outcome._replace(status=Status.CACHED.value)
            carried.append(outcome)
        self._restore_items(tasks, outcomes, restored, carried)
        carried.extend(_still_valid(tasks, outcomes, restored, rerun))
        return restored, carried

    def _restore_items(
        self,
        tasks: Sequence[Task[..., Any]],
        outcomes: Mapping[str, Outcome],
        restored: dict[str, tuple[Status, Any]],
        carried: list[Outcome],
    ) -> None:
        """Restore the items that ended of a mapped task that did not finish.

        Its upstream tasks were restored, so its items are the same ones.
        """
        for task in tasks:
            if not task.is_map or task.name in restored:
                continue
            if any(up.name not in restored for up in task.upstream):
                continue
            for name, outcome in outcomes.items():
                if _owner(name) == task.name and name != task.name:
                    value = self._restore_item(task, outcome)
                    if value is not None:
                        restored[name] = value
                        carried.append(outcome)

    def _restore_item(self, task: Task[..., Any], outcome: Outcome) -> tuple[Status, Any] | None:
        if not _has_result(outcome) or outcome.version != task_version(task):
            return None
        return self._decode_outcome(task, outcome)

    def _restore_one(
        self,
        task: Task[..., Any],
        outcome: Outcome | None,
        restored: Mapping[str, tuple[Status, Any]],
    ) -> tuple[Status, Any] | None:
        if outcome is None or not _has_result(outcome):
            return None
        if any(up.name not in restored for up in task.upstream):
            return None  # an upstream task runs again: so does this one
        if outcome.version != task_version(task):
            logger.info("task %r changed since run %s: it runs again", task.name, outcome.run_id)
            return None
        return self._decode_outcome(task, outcome)

    def _decode_outcome(self, task: Task[..., Any], outcome: Outcome) -> tuple[Status, Any] | None:
        if outcome.status == Status.SKIPPED.value:
            return (Status.SKIPPED, None)
        if self._store.keeps_objects:
            return (Status.CACHED, outcome.value)
        try:
            return (Status.CACHED, self.serializer.decode(outcome.value))
        except Exception as exc:
            logger.warning(
                "task %r: its result recorded in %s cannot be read back (%s); it runs again",
                task.name, self._store.location, exc,
            )
            return None

    def lookup(
        self,
        task: Task[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        inputs: str | UncacheableInput | None = None,
    ) -> tuple[str | None, bool, Any]:
        """The cache key of ``task`` for these inputs, and a fresh cached value if any.

        Args:
            inputs: the digest of the inputs (:func:`~flowkit.state.cachekey.inputs_digest`)
                when it was computed where they live (a Dask worker), or why it
                could not be; ``args`` and ``kwargs`` are then not read.

        Returns:
            ``(key, hit, value)``; ``key`` is ``None`` when the inputs cannot be
            hashed stably (a warning says why) and the task is then not cached.
        """
        key = self._key(task, args, kwargs, inputs)
        if key is None:
            return None, False, None
        try:
            with self._lock:
                entry = self._store.get_entry(key)
        except StateError as exc:  # e.g. a database locked for too long: run the task
            logger.warning("task %r: the cache cannot be read (%s); it runs", task.name, exc)
            return key, False, None
        if entry is None:
            return key, False, None
        ttl = task.options.cache_ttl
        if ttl is not None and self.clock() - entry.created >= ttl:
            return key, False, None  # expired; the next success overwrites it
        if self._store.keeps_objects:
            return key, True, entry.value
        try:
            value = self.serializer.decode(entry.value)
        except Exception as exc:
            logger.warning(
                "task %r: its cached result in %s cannot be read back (%s); it runs again",
                task.name, self._store.location, exc,
            )
            return key, False, None
        with self._lock:
            self._hits[key] = entry.value
        return key, True, value

    def _key(
        self,
        task: Task[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        inputs: str | UncacheableInput | None,
    ) -> str | None:
        custom = task.options.cache_key
        try:
            if inputs is None:
                inputs = inputs_digest(custom, args, kwargs)
            elif isinstance(inputs, UncacheableInput):
                raise inputs
        except UncacheableInput as exc:
            how = (
                "make cache_key return plain data" if custom is not None
                else "pass cache_key=fn returning plain data (str, numbers, tuples...)"
            )
            logger.warning("task %r is not cached: %s; %s", task.name, exc, how)
            return None
        return cache_key(task.name, code_hash(task.fn), inputs)

    # --- hooks: record each outcome as it happens ------------------------------------

    def on_task_success(self, run: RunContext, state: TaskState) -> None:
        """Record the result, and store it in the cache when the task has a cache key."""
        book = self._books.get(run.run_id)
        if book is None or not book.started:
            return
        if self._lazy and state.cache_key is None:
            # Its outcome waits in the book and is encoded only if written: what
            # _record does, without its call (this runs for nearly every task).
            book.pending.append(state)
            return
        stored, payload = self._encode(state)
        entry = None
        if stored and state.cache_key is not None:
            ttl = state.task.options.cache_ttl
            ttl = None if ttl is None or math.isinf(ttl) else float(ttl)
            entry = CacheEntry(state.cache_key, state.name, self.clock(), ttl, None, payload)
        self._record(book, state, _SUCCESS, stored, payload, entry, state.cache_key)

    def on_task_cached(self, run: RunContext, state: TaskState) -> None:
        """Record a task served from the cache (restored tasks were recorded at the start)."""
        book = self._books.get(run.run_id)
        if book is None or not book.started or state.name in book.restored:
            return
        with self._lock:
            payload = self._hits.pop(state.cache_key, _MISSING) if state.cache_key else _MISSING
        if payload is _MISSING:
            stored, payload = self._encode(state)
        else:
            stored = True
        self._record(book, state, Status.CACHED, stored, payload, None, state.cache_key)

    def on_task_failure(self, run: RunContext, state: TaskState) -> None:
        """Record a failure (failed tasks are never restored)."""
        book = self._books.get(run.run_id)
        if book is not None and book.started:
            self._record(book, state, Status.FAILED, False, None, None, None)

    def on_task_skip(self, run: RunContext, state: TaskState) -> None:
        """Record a skip, an upstream failure or a cancellation."""
        book = self._books.get(run.run_id)
        if book is not None and book.started and state.name not in book.restored:
            self._record(book, state, state.status, False, None, None, None)

    def on_dag_end(self, run: RunContext, result: object) -> None:
        """Sync the state to disk and release the file until the next use."""
        with self._lock:
            book = self._books.pop(run.run_id, None)
            if not self._books:
                self._hits.clear()
            if book is not None and book.started:
                if book.pending:
                    self._unflushed[book.dag] = book
                try:
                    if self.history_size:
                        if book.pending:
                            self._unrecorded.append(book)
                        end = RunEnd(book.run_id, _run_status(result), time.time())
                        self._store.history_end(end)
                finally:
                    _history.ended(book.run_id)
                    self._store.end_run(book.dag, book.run_id)
            elif not self._books:
                self._store.close()  # the run never started: e.g. an unreadable file

    def _record_history(self) -> None:
        """The history records of the outcomes that wait in finished runs' books
        (see ``_record``): made in one batch per run, when the state is next used,
        rather than one per finished task. A run nothing reads after it, the most
        common kind with a state in memory, never pays for them."""
        while self._unrecorded:
            book = self._unrecorded.pop(0)
            run_id, task_end = book.run_id, _history.task_end
            # A generator: the store keeps each record as it comes, so a run's
            # records are never all in memory twice.
            self._store.history_tasks_add(task_end(run_id, s, s.status) for s in book.pending)

    def _encode(self, state: TaskState) -> tuple[bool, Any]:
        kept, value = _local(state.value)
        if not kept:  # it stayed on a cluster (its backend warned if it was wanted)
            return False, None
        if self._store.keeps_objects:
            return True, value
        try:
            return True, self.serializer.encode(value)
        except Exception as exc:
            self._warn_unstorable(state, exc)
            return False, None

    def _warn_unstorable(self, state: TaskState, exc: BaseException) -> None:
        kind = type(state.value)
        logger.warning(
            "task %r returned a %s.%s that the %s serializer cannot store (%s); it is not "
            "cached and will run again on resume. Return plain data, or use another serializer.",
            state.name, kind.__module__, kind.__qualname__,
            getattr(self.serializer, "name", type(self.serializer).__name__), exc,
        )

    def _record(
        self,
        book: _RunBook,
        state: TaskState,
        status: Status,
        stored: bool,
        payload: Any,
        entry: CacheEntry | None,
        key: str | None,
    ) -> None:
        """The one way an outcome reaches the store: now, or batched by ``_flush``.

        A store is written as each task finishes, so that a crash can be resumed,
        unless it declares ``lazy_records`` (the in-memory one: a crash wipes it
        anyway): then successes and skips wait in the run's book until a resume or
        a listing reads them, and most runs never pay for the records. Their
        status, value and key are final by now. Failures and new cache entries are
        written at once all the same: entries are looked up during the run, and
        failures are rare and hold whole tracebacks. The task's history record
        goes with its outcome, in the same write; a waiting outcome's record is
        built with the others' when the state is next used (``_record_history``).
        """
        if self._lazy and entry is None and status._value_ in _DEFERRABLE:
            book.pending.append(state)
            return
        ended = _history.task_end(book.run_id, state, status) if self.history_size else None
        self._write(book, state, status, stored, payload, entry, key, self.clock(), ended)

    def _write(
        self,
        book: _RunBook,
        state: TaskState,
        status: Status,
        stored: bool,
        payload: Any,
        entry: CacheEntry | None,
        key: str | None,
        now: float,
        ended: TaskEnd | None = None,
    ) -> None:
        outcome = Outcome(
            book.dag, book.run_id, state.name, status.value, book.version(state.task),
            stored, payload if stored else None, now, key if stored else None,
        )
        with self._lock:
            try:
                self._put(outcome, entry, ended)
            except (TypeError, ValueError) as exc:  # a serializer's output JSON cannot hold
                self._warn_unstorable(state, exc)
                self._put(outcome._replace(has_value=False, value=None, key=None), None, ended)

    def _put(self, outcome: Outcome, entry: CacheEntry | None, ended: TaskEnd | None) -> None:
        if ended is None:
            self._store.record(outcome, entry)
        else:
            self._store.record_task(outcome, entry, ended)

    def _flush(self, dag: str) -> None:
        """Write the outcomes that ``dag``'s last finished run left waiting (see ``_record``)."""
        book = self._unflushed.pop(dag, None)
        if book is None:
            return
        now = self.clock()
        for state in book.pending:
            status = state.status
            stored, payload = self._encode(state) if status.produced_value else (False, None)
            self._write(book, state, status, stored, payload, None, state.cache_key, now)

    # --- looking and cleaning ----------------------------------------------------------

    def entries(self) -> list[CacheInfo]:
        """Every cache entry, oldest first, with its age, TTL left and size."""
        now = self.clock()
        with self._using():
            found = self._store.entries()
        return [
            CacheInfo(
                e.name, e.key, e.created, now - e.created,
                None if e.ttl is None else e.created + e.ttl - now, e.size,
            )
            for e in found
        ]

    def latest_run(
        self, dag_name: str, params: Mapping[str, Any] | None = None
    ) -> tuple[str, dict[str, Status]] | None:
        """The id of the latest recorded run of ``dag_name`` with run parameters
        ``params`` (none by default), and each task's status in it — the run that
        ``resume=True`` would continue.

        Tasks restored or carried over from earlier runs are included.
        """
        slot = _slot(dag_name, params or {})[0]
        with self._using():
            self._flush(slot)
            latest = self._store.latest_run(slot)
        if latest is None:
            return None
        run_id, outcomes = latest
        return run_id, {
            name: Status(o.status) for name, o in outcomes.items()
            if name != PARAMS and o.status != PARAMS
        }

    def task_names(self) -> list[str]:
        """Every task this state knows, sorted: those with cache entries or recorded in
        a run. A mapped task's items (``"m[3]"``) count under the map's name ``"m"``."""
        names = {e.name for e in self.entries()}
        for run in self.runs():
            names.update(run.tasks)
        return sorted({item[0] if (item := item_of(n)) else n for n in names} - {PARAMS})

    def invalidate(self, name: str | None = None) -> int:
        """Forget the cached results of task ``name``, or of every task.

        Their recorded outcomes are forgotten too, so a resumed run runs them
        (and everything downstream of them) again.

        Returns:
            how many cache entries were dropped.
        """
        with self._using():
            for dag in list(self._unflushed):
                self._flush(dag)
            dropped = self._store.invalidate(name)
        return dropped

    def clear(self) -> None:
        """Forget everything: cache entries and recorded runs."""
        with self._using():
            self._hits.clear()
            self._unflushed.clear()
            self._store.clear()

    @contextlib.contextmanager
    def _using(self) -> Iterator[None]:
        """Hold the lock, with every finished run's history recorded; afterwards,
        even after an error, release the file unless a run is in progress (a
        listing must not keep the file open)."""
        with self._lock:
            try:
                self._record_history()
                yield
            finally:
                if not self._books:
                    self._store.close()

    # --- run history -----------------------------------------------------------------

    def runs(
        self, dag: str | None = None, limit: int | None = None, *, tasks: bool = True
    ) -> list[RunRecord]:
        """The recorded runs of ``dag`` (of every DAG for ``None``), newest first.

        A run still in progress is ``"running"``; one whose process died without
        ending it is ``"interrupted"`` (see :mod:`flowkit.state.history` for how
        that is told). Cached results are never read.

        Args:
            limit: at most this many runs.
            tasks: ``False`` leaves the task records and the graph out (both
                are then empty), for a quick listing of many runs.

        Raises:
            StateError: the state file is unreadable, or ``limit`` is not an int >= 0.
        """
        if limit is not None and (type(limit) is not int or limit < 0):
            raise StateError(f"limit={limit!r}: pass how many runs to return, an int >= 0")
        with self._using():
            found = self._store.history_runs(dag, limit, tasks=tasks)
        return [
            self._settled(_history.run_record(run, full=tasks), tasks=tasks) for run in found
        ]

    def _settled(self, record: RunRecord, *, tasks: bool) -> RunRecord:
        """``record``, read again if it looks interrupted: its process may have ended
        it between the read and the look at the process (a writer ends a run in the
        store before it stops counting as alive)."""
        if record.status != "interrupted" or record.ended is not None:
            return record
        with self._using():
            again = self._store.history_run(record.run_id)
        if again is None or again.end is None:
            return record
        fresh = _history.run_record(again, full=tasks)
        return fresh if tasks else dataclasses.replace(fresh, tasks={})

    def run_index(self, dag: str | None = None) -> list[RunSummary]:
        """Every recorded run (of ``dag``, or of every DAG), newest first, as a light
        :class:`~flowkit.state.history.RunSummary`: id, DAG, status, start, end.

        Much cheaper than :meth:`runs` for thousands of runs (the web UI lists
        them so); read a run in full with :meth:`get_run`.
        """
        with self._using():
            rows = self._store.history_rows(dag)
        found = _history.summaries(rows)
        for i, summary in enumerate(found):
            if summary.status == "interrupted" and summary.ended is None:
                with self._using():  # it may have ended between the read and the look
                    again = self._store.history_run(summary.run_id)
                if again is not None and again.end is not None:
                    found[i] = summary._replace(status=again.end.status, ended=again.end.ended)
        return found

    def get_run(self, run_id: str) -> RunRecord | None:
        """The recorded run ``run_id``, with its tasks, or ``None`` if there is none."""
        with self._using():
            found = self._store.history_run(run_id)
        return None if found is None else self._settled(_history.run_record(found), tasks=True)

    def task_stats(self, name: str, dag: str | None = None) -> TaskStats:
        """How task ``name`` did over the recorded runs (of ``dag``, or of every DAG).

        Returns:
            a :class:`~flowkit.state.history.TaskStats`: in how many runs it has a
            record, how many times it failed, and the median and 90th percentile
            of its durations when it succeeded (``None`` without data).
        """
        with self._using():
            found = self._store.history_tasks(dag, name)
        return _history.task_stats(found)

    def task_history(
        self, name: str, dag: str | None = None, limit: int | None = None
    ) -> list[tuple[str, TaskRecord]]:
        """The records of task ``name`` in the recorded runs (of ``dag``, or of every
        DAG), newest first, as ``(run_id, record)`` pairs; at most ``limit``."""
        with self._using():
            found = self._store.history_tasks(dag, name)
        if limit is not None:
            found = found[:limit]
        return [(end.run_id, _history.task_record(end)) for end in found]

    def expected_durations(self, dag_name: str) -> dict[str, float]:
        """Each task's median duration (seconds) over its successful runs among the
        latest runs recorded for ``dag_name`` (five: see ``DURATION_RUNS``); tasks
        without one are left out."""
        with self._using():
            return self._store.history_durations(dag_name, _history.DURATION_RUNS)


_MISSING: Any = object()
# Our stores by qualified name, so that telling them apart loads none of them.
_BACKENDS = {
    "flowkit.state.stores.memory.MemoryStore": "memory",
    "flowkit.state.stores.journal.JSONStore": "json",
    "flowkit.state.stores.sqlite.SQLiteStore": "sqlite",
}
# By value: a str's hash is C code, an Enum member's is not (this is on every task's path).
_DEFERRABLE = frozenset({Status.SUCCESS.value, Status.CACHED.value, Status.SKIPPED.value})
_SUCCESS = Status.SUCCESS  # a module constant: cheaper than the enum lookup, per task
_INCOMPARABLE = "incomparable"


def _slot(dag: str, params: Mapping[str, Any]) -> tuple[str, str]:
    """Where a run's outcomes are kept for resume, and its parameters' digest.

    Each DAG name *and parameters* has its own latest run, so that resume
    continues the run with the same parameters even when runs with other
    parameters came since (the partitions of a backfill). Runs without
    parameters use the DAG's name itself.
    """
    try:
        digest = input_hash((), params)
    except UncacheableInput:
        # Values without a stable form match no later run: such runs share one
        # slot, which resume refuses (see _check_comparable).
        digest = _INCOMPARABLE
    return (f"{dag} [params {digest}]" if params else dag), digest


def _run_status(result: object) -> str:
    """The final status of a run from its RunResult."""
    if getattr(result, "interrupted", False):
        return "interrupted"
    return "success" if getattr(result, "ok", False) else "failed"


def _local(value: Any) -> tuple[bool, Any]:
    """``(True, value)`` with any :class:`~flowkit.outcome.Remote` replaced by the copy
    its backend kept here; ``(False, None)`` when one stayed remote only."""
    if type(value) is list and any(isinstance(v, Remote) for v in value):  # a map's items
        items = [_local(v) for v in value]
        if not all(kept for kept, _ in items):
            return False, None
        return True, [v for _, v in items]
    if isinstance(value, Remote):
        return (False, None) if value.kept is NOT_KEPT else (True, value.kept)
    return True, value


def _owner(name: str) -> str:
    """The task an outcome belongs to: ``"m"`` for a mapped item ``"m[3]"``, else ``name``."""
    if name.endswith("]"):
        head, bracket, index = name[:-1].rpartition("[")
        if bracket and index.isdigit():
            return head
    return name


def _still_valid(
    tasks: Sequence[Task[..., Any]],
    outcomes: Mapping[str, Outcome],
    restored: Mapping[str, tuple[Status, Any]],
    rerun: list[Task[..., Any]],
) -> list[Outcome]:
    """Outcomes of tasks outside this run, unless they depend on one that runs again.

    An item ``"m[k]"`` goes with its mapped task ``"m"``: carried over only if
    ``"m"`` is outside this run and not stale (items of ``"m"`` in this run were
    decided already).
    """
    names = {t.name for t in tasks}
    stale: set[str] = set()
    frontier = list(rerun)
    while frontier:
        for down in frontier.pop().downstream:
            if down.name not in stale:
                stale.add(down.name)
                frontier.append(down)
    return [
        o for name, o in outcomes.items()
        if name not in restored
        and _owner(name) not in names
        and _owner(name) not in stale
        and _has_result(o)
    ]


def _has_result(outcome: Outcome) -> bool:
    """Whether an outcome can be restored: a stored result, or a skip."""
    if outcome.status == Status.SKIPPED.value:
        return True
    return outcome.status in _WITH_VALUE and outcome.has_value


def _make_store(
    path: str | os.PathLike[str] | None, backend: str | None, store: Store | None
) -> Store:
    if store is not None:
        if path is not None or backend is not None:
            raise StateError("pass either store= or a path/backend to StateManager, not both")
        if not isinstance(store, Store):
            raise StateError(
                f"store={store!r} is not a flowkit.stores.Store; subclass it to plug in a backend"
            )
        return store
    if backend not in (None, "memory", "json", "sqlite"):
        raise StateError(f"unknown state backend {backend!r}; use 'memory', 'json' or 'sqlite'")
    if path is None:
        if backend in ("json", "sqlite"):
            raise StateError(f"the {backend} state backend needs a path: StateManager(path)")
        return MemoryStore()
    if not isinstance(path, str | os.PathLike):
        raise StateError(f"a state path must be a str or os.PathLike, got {path!r}")
    if backend == "memory":
        raise StateError("the memory state backend takes no path; drop the path or the backend")
    text = os.fspath(path)
    if backend == "sqlite" or (backend is None and text.lower().endswith(_SQLITE_SUFFIXES)):
        from flowkit.state.stores.sqlite import SQLiteStore  # loads sqlite3: only when used

        return SQLiteStore(text)
    from flowkit.state.stores.journal import JSONStore  # loaded only when used

    return JSONStore(text)
