"""The store interface: what a state backend keeps, and the records it keeps.

A :class:`Store` holds two kinds of records:

- :class:`CacheEntry`: a task's result under its cache key, with the time it
  was stored;
- :class:`Outcome`: how a task ended in a run of a DAG. Only the *latest* run
  of each DAG matters (it is what ``resume`` continues), so a store may forget
  older runs.

It may also keep the run history (see :mod:`flowkit.state.history`): a record
when a run starts, one as each task ends, one when the run ends, and the last
runs of each DAG. The history methods are optional: a store that does not
implement them keeps no history.

Values reach a store already encoded by the state manager's serializer
(JSON-compatible data), except for stores that set ``keeps_objects`` — the
in-memory one — which get the Python objects themselves.

To plug in a backend of your own (a database, a key-value service), subclass
:class:`Store`, implement its abstract methods and pass an instance as
``StateManager(store=...)``. Every method may be called from any thread, but
one at a time per store instance is enough: the state manager serialises calls.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from flowkit.exceptions import StateError
from flowkit.state.history import HistoryRun, RunEnd, RunHead, RunRow, TaskEnd

__all__ = ["CacheEntry", "Outcome", "Store", "belongs_to", "open_private"]


def open_private(path: str, flags: int, *, shown: str, kind: str) -> int:
    """``os.open(path, flags | O_CREAT, 0o600)``: a state file only its owner reads.

    Raises:
        StateError: naming ``shown`` (the path as the user gave it) and what to do.
    """
    try:
        return os.open(path, flags | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except ValueError as exc:  # a NUL byte in the path
        raise StateError(f"invalid {kind} path {shown!r}: {exc}", path=shown) from exc
    except OSError as exc:
        raise StateError(
            f"cannot open {kind} {shown!r}: {exc.strerror or exc}. "
            "Check that its directory exists and is writable.",
            path=shown,
        ) from exc


def belongs_to(record_name: str, task_name: str | None) -> bool:
    """Whether a record of ``record_name`` goes when task ``task_name`` is invalidated:
    its own, and those of its items (``"m[3]"`` of a mapped task ``"m"``); all for ``None``."""
    if task_name is None or record_name == task_name:
        return True
    return record_name.startswith(task_name + "[") and record_name.endswith("]")


class CacheEntry(NamedTuple):
    """A cached result.

    Attributes:
        key: the cache key (see ``flowkit.cachekey``).
        name: the task's name.
        created: when it was stored, in the state manager's clock (seconds).
        ttl: the task's ``cache_ttl`` when it was stored; ``None`` for never.
        size: bytes it takes in the store, when the store knows.
        value: the encoded value (or the object itself with ``keeps_objects``);
            ``None`` in listings from :meth:`Store.entries`.
    """

    key: str
    name: str
    created: float
    ttl: float | None
    size: int | None
    value: Any


class Outcome(NamedTuple):
    """How a task ended in a run.

    Attributes:
        dag: the DAG's name.
        run_id: the run's id.
        name: the task's name.
        status: a :class:`~flowkit.Status` value (``"success"``, ``"skipped"``, ...).
        version: the task's code-and-wiring hash when it ran.
        has_value: whether ``value`` holds a result that can be restored.
        value: the encoded result (or the object itself with ``keeps_objects``).
        finished: when it was recorded (state manager's clock).
        key: the cache key whose entry was stored with this very value, if any:
            a store may keep the value once and refer to the entry.
    """

    dag: str
    run_id: str
    name: str
    status: str
    version: str
    has_value: bool
    value: Any
    finished: float
    key: str | None = None


class Store(abc.ABC):
    """Where a :class:`~flowkit.StateManager` keeps cache entries and run outcomes."""

    #: True when values are kept as Python objects rather than encoded data.
    keeps_objects: bool = False

    #: False: :meth:`record` is called as each task finishes, so that a crash
    #: can be resumed. True lets the state manager hand over a run's successes
    #: and skips in one batch when something first reads them — for a store that
    #: a crash wipes anyway, where most runs then never pay for the records.
    lazy_records: bool = False

    #: Shown in messages and ``repr``: a path, or a short description.
    location: str = "custom store"

    # --- cache -----------------------------------------------------------------

    @abc.abstractmethod
    def get_entry(self, key: str) -> CacheEntry | None:
        """The entry stored under ``key``, or ``None``."""

    @abc.abstractmethod
    def entries(self) -> list[CacheEntry]:
        """Every cache entry (values may be left out as ``None``), oldest first."""

    # --- runs ------------------------------------------------------------------

    @abc.abstractmethod
    def start_run(
        self, dag: str, run_id: str, started: float, carried: Iterable[Outcome] = ()
    ) -> None:
        """Make ``run_id`` the latest run of ``dag``, holding the ``carried`` outcomes.

        Must be atomic: afterwards ``latest_run(dag)`` returns this run with
        exactly the carried outcomes (plus those recorded since).
        """

    @abc.abstractmethod
    def record(self, outcome: Outcome, entry: CacheEntry | None = None) -> None:
        """Record a task's outcome and, when given, its cache entry.

        Must be durable against a crash of the process once it returns.
        Outcomes of a run that is no longer the DAG's latest may be dropped.
        """

    @abc.abstractmethod
    def latest_run(self, dag: str) -> tuple[str, Mapping[str, Outcome]] | None:
        """The id and the outcomes (by task name) of the latest run of ``dag``."""

    # --- maintenance -----------------------------------------------------------

    @abc.abstractmethod
    def invalidate(self, name: str | None = None) -> int:
        """Forget the cached results of task ``name`` (of every task for ``None``).

        Their recorded outcomes are forgotten too, so resume runs them again.

        Returns:
            how many cache entries were dropped.
        """

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget everything: cache entries and runs."""

    def end_run(self, dag: str, run_id: str) -> None:  # noqa: B027 - optional
        """A run ended: a chance to sync to disk, compact, or release resources."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release files or connections; the store reopens them when used again."""

    # --- run history (optional) --------------------------------------------------

    def history_start(self, head: RunHead, tasks: Iterable[TaskEnd] = ()) -> None:  # noqa: B027
        """Record that a run started (with the records of the tasks it restored),
        then forget the oldest runs of its DAG beyond ``head.keep``."""

    def history_task(self, task: TaskEnd) -> None:  # noqa: B027 - optional
        """Record how a task of a run ended; durable once it returns, like :meth:`record`.

        A record of a run the store has forgotten is dropped.
        """

    def record_task(self, outcome: Outcome | None, entry: CacheEntry | None, task: TaskEnd) -> None:
        """:meth:`record` (when ``outcome`` is given) and :meth:`history_task` together.

        Stores override it to write both at once: this runs once per task.
        """
        if outcome is not None:
            self.record(outcome, entry)
        self.history_task(task)

    def history_end(self, end: RunEnd) -> None:  # noqa: B027 - optional
        """Record that a run ended."""

    def history_runs(
        self, dag: str | None = None, limit: int | None = None, *, tasks: bool = True
    ) -> list[HistoryRun]:
        """The retained runs of ``dag`` (of every DAG for ``None``), newest first.

        Args:
            limit: at most this many.
            tasks: with their task records; ``False`` leaves them out (a quick listing).
        """
        return []

    def history_run(self, run_id: str) -> HistoryRun | None:
        """One retained run, with its task records, or ``None``."""
        return None

    def history_rows(self, dag: str | None = None) -> list[RunRow]:
        """A light listing of the retained runs of ``dag`` (of every DAG for ``None``),
        newest first (see :data:`~flowkit.state.history.RunRow`)."""
        return []

    def history_tasks(self, dag: str | None, name: str | None) -> list[TaskEnd]:
        """The records of task ``name`` (of every task for ``None``) in the retained runs
        of ``dag`` (of every DAG for ``None``), newest run first."""
        return []
