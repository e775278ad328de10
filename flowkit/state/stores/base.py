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
import stat
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from flowkit.exceptions import StateError
from flowkit.outcome import Status
from flowkit.state.history import HistoryRun, RunEnd, RunHead, RunRow, TaskEnd, medians

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CacheEntry", "Outcome", "Store", "belongs_to", "check_path", "create_private", "open_state",
]


_OPEN_FLAGS = (
    getattr(os, "O_CLOEXEC", 0)
    # Never block opening a FIFO, nor make a terminal ours: such paths are refused below.
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
)
_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular(path: str, mode: int, *, kind: str) -> StateError | None:
    """The error for a state path whose file (after symlinks) is not a regular file."""
    if stat.S_ISREG(mode):
        return None
    what = next((name for test, name in _NOT_REGULAR if test(mode)), "not a file")
    return StateError(
        f"{kind} {path!r} is not a regular file (it is {what}); flowkit keeps state only "
        "in regular files, and never writes to anything else. Pass the path of a state "
        "file, or a new path.",
        path=path,
    )


def check_path(path: str, *, kind: str) -> None:
    """Refuse early a path that exists and is not a regular file (FIFO, device, ...).

    Raises:
        StateError: naming the path and what it is.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing (created later), or reported when opened
        return
    error = not_regular(path, mode, kind=kind)
    if error is not None:
        raise error


def open_state(path: str, *, write: bool, shown: str, kind: str) -> int | None:
    """Open a state file: to write, created private (0600) if missing; to read, read-only.

    Whatever is at ``path`` is checked to be a regular file (or a symlink to one)
    before anything is read or written: a FIFO or a device is refused, never
    blocked on nor written to.

    Returns:
        the file descriptor; ``None`` when reading a file that does not exist.

    Raises:
        StateError: naming ``shown`` (the path as the user gave it) and what to do.
    """
    check_path(path, kind=f"{kind} {shown!r} (as {path!r})" if path != shown else kind)
    flags = _OPEN_FLAGS | (os.O_RDWR | os.O_APPEND | os.O_CREAT if write else os.O_RDONLY)
    try:
        fd = os.open(path, flags, 0o600)
    except ValueError as exc:  # a NUL byte in the path
        raise StateError(f"invalid {kind} path {shown!r}: {exc}", path=shown) from exc
    except FileNotFoundError as exc:
        if not write:
            return None
        raise _cannot_open(exc, shown, kind) from exc
    except OSError as exc:
        raise _cannot_open(exc, shown, kind) from exc
    try:
        error = not_regular(shown, os.fstat(fd).st_mode, kind=kind)
        if error is not None:  # it changed since check_path looked
            raise error
        if fcntl is not None and _OPEN_FLAGS & getattr(os, "O_NONBLOCK", 0):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private(path: str, *, kind: str) -> None:
    """Create ``path`` empty and private (0600) if nothing is there; an existing
    file is only checked to be a regular one, never opened.

    For a file another library opens itself (SQLite): closing a descriptor of
    a file drops every POSIX lock this process holds on it, those of the
    library's other connections to it included.

    Raises:
        StateError: naming ``path`` and what to do.
    """
    flags = _OPEN_FLAGS | os.O_RDWR | os.O_CREAT
    try:
        try:
            fd = os.open(path, flags | os.O_EXCL, 0o600)
        except FileExistsError:
            if os.path.exists(path):
                check_path(path, kind=kind)
                return
            # A symlink to a file yet to be made: make it (new, so nothing holds a lock on it).
            fd = os.open(path, flags, 0o600)
    except ValueError as exc:  # a NUL byte in the path
        raise StateError(f"invalid {kind} path {path!r}: {exc}", path=path) from exc
    except OSError as exc:
        raise _cannot_open(exc, path, kind) from exc
    os.close(fd)  # new and empty: no connection to it can hold a lock yet


def _cannot_open(exc: OSError, shown: str, kind: str) -> StateError:
    advice = (
        "Check that you may read it." if isinstance(exc, PermissionError)
        else "Check that its directory exists and is writable."
    )
    return StateError(f"cannot open {kind} {shown!r}: {exc.strerror or exc}. {advice}", path=shown)


# --- what a record read back may hold ------------------------------------------------------
#
# A state file can be damaged, edited by hand or planted: every record a store
# reads is checked field by field with these, and one that fails is reported as
# a StateError naming the file and the record, never as whatever exception the
# bad value would cause further on. Each store keeps one table of its records'
# fields (``journal._FIELDS``, ``sqlite._COLUMNS``): a new kind of record adds
# its row there.

#: The name (and status) of the record that keeps a run's parameters beside its
#: outcomes. Task names in angle brackets are refused, so no task can take it.
PARAMS = "<params>"
STATUSES = frozenset(s.value for s in Status if s.is_final) | {PARAMS}

_LIMIT = 1e300  # a time beyond it is damage, whatever clock wrote it


def is_text(value: object) -> bool:
    """text"""
    return type(value) is str


def is_time(value: object) -> bool:
    """a finite number of seconds"""
    # Compared, not converted: float() of a huge int raises OverflowError.
    kind = type(value)
    return (kind is float or kind is int) and -_LIMIT <= value <= _LIMIT  # type: ignore[operator]


def is_ttl(value: object) -> bool:
    """null or a number of seconds >= 0"""
    return value is None or (is_time(value) and value >= 0)  # type: ignore[operator]


def is_size(value: object) -> bool:
    """a whole number >= 0"""
    return type(value) is int and value >= 0


def is_status(value: object) -> bool:
    """a task status"""
    return type(value) is str and value in STATUSES


def is_anything(value: object) -> bool:
    """any JSON value"""
    return True


def shown(value: object) -> str:
    """A short text of a value read from a file, for an error message."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**50 else "a huge int"
    return text if len(text) <= 60 else text[:57] + "..."


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
    #: and skips, and their run history records, in one batch when something
    #: first reads the state — for a store that a crash wipes anyway, where
    #: most runs then never pay for the records.
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

    def history_tasks_add(self, tasks: Iterable[TaskEnd]) -> None:
        """:meth:`history_task` for many records at once (a run's deferred ones, at its end)."""
        for task in tasks:
            self.history_task(task)

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


    def history_durations(self, dag: str, runs: int) -> dict[str, float]:
        """Each task's median duration over its successful records in the ``runs``
        latest runs of ``dag`` (tasks without one are left out)."""
        latest = {row[0] for row in self.history_rows(dag)[:runs]}
        return medians(t for t in self.history_tasks(dag, None) if t.run_id in latest)
