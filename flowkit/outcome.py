"""What became of a task in a run: the :class:`Outcome` of one attempt, the
task's :class:`Status` and :class:`TaskState`, the :data:`SKIPPED` placeholder,
and :class:`Remote`, a value that lives where its task ran (a Dask cluster).

An :class:`Outcome` is what a worker reports (see ``flowkit.worker``); the
scheduler turns outcomes into statuses. What a store keeps is another thing
again (``flowkit.state``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, NamedTuple, final

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    from flowkit.task import Task

__all__ = [
    "NOT_KEPT",
    "SKIPPED",
    "Attempt",
    "Decided",
    "Outcome",
    "PoolWait",
    "Remote",
    "Status",
    "TaskState",
    "UpstreamFailed",
    "apply_trigger",
    "fetch_remote",
    "is_remote",
    "item_of",
    "root_cause",
]


class Status(enum.Enum):
    """The status of a task in a run.

    ``PENDING`` and ``RUNNING`` are only seen while a run is in progress (by hooks);
    a finished run holds one of the six final statuses.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    CACHED = "cached"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"

    @property
    def produced_value(self) -> bool:
        """True for the statuses that come with a value (SUCCESS and CACHED)."""
        return self is _SUCCESS or self is _CACHED

    @property
    def is_final(self) -> bool:
        """True once the task will not change any more in this run."""
        return self is not _PENDING and self is not _RUNNING

    def __str__(self) -> str:
        return self.value


# Members as module constants: ``Status.SUCCESS`` goes through the enum
# metaclass (a few hundred ns), and these are read on every task's path.
_PENDING, _RUNNING = Status.PENDING, Status.RUNNING
_SUCCESS, _CACHED = Status.SUCCESS, Status.CACHED


@final
class _SkippedType:
    """Type of :data:`SKIPPED`, the value passed for an upstream that produced none."""

    __slots__ = ()
    _instance: _SkippedType | None = None

    def __new__(cls) -> _SkippedType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SKIPPED"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        # Pickle by reference so ``value is flowkit.SKIPPED`` holds in worker processes.
        return "SKIPPED"


SKIPPED: Final = _SkippedType()
"""Passed (under the ``none_failed`` and ``all_done`` trigger rules) in place of the
value of an upstream task that was skipped. It is falsy. An upstream task that
failed, was upstream-failed or cancelled is passed as an :class:`UpstreamFailed`."""


@final
class UpstreamFailed:
    """Passed to an ``all_done`` task in place of the value of an upstream task
    that FAILED, was UPSTREAM_FAILED or was CANCELLED; falsy, like :data:`SKIPPED`.

    Attributes:
        task: the upstream task's name.
        status: its :class:`Status` (``FAILED``, ``UPSTREAM_FAILED`` or ``CANCELLED``).
        error: what it raised when it FAILED, else ``None``.
        cause: the task at the root of it (itself when it FAILED).

    >>> marker = UpstreamFailed("load", Status.FAILED, ValueError("disk full"))
    >>> bool(marker), marker.status.name, str(marker.error)
    (False, 'FAILED', 'disk full')
    """

    __slots__ = ("cause", "error", "status", "task")

    def __init__(
        self, task: str, status: Status, error: BaseException | None = None,
        cause: str | None = None,
    ):
        self.task = task
        self.status = status
        self.error = error
        self.cause = cause if cause is not None else task

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UpstreamFailed):
            return NotImplemented
        return (self.task, self.status, self.cause) == (other.task, other.status, other.cause) \
            and self.error is other.error

    __hash__ = None  # type: ignore[assignment]  # mutable attributes: not a dict key

    def __repr__(self) -> str:
        error = f", {self.error!r}" if self.error is not None else ""
        cause = f", cause={self.cause!r}" if self.cause != self.task else ""
        return f"UpstreamFailed({self.task!r}, {self.status.name}{error}{cause})"

    def __reduce__(self) -> tuple[Any, ...]:
        # To a worker process: an error that does not pickle travels as its text.
        return (UpstreamFailed, (self.task, self.status, _portable(self.error), self.cause))


def _portable(error: BaseException | None) -> BaseException | None:
    if error is None:
        return None
    import pickle  # only when a marker travels: ``import flowkit`` stays light

    try:
        pickle.dumps(error)
    except Exception:
        return Exception(f"{type(error).__qualname__}: {error}")
    return error


def item_of(name: str) -> tuple[str, int] | None:
    """``("work", 3)`` for the name of a mapped task's item ``"work[3]"``, else ``None``."""
    if name.endswith("]"):
        head, bracket, index = name[:-1].rpartition("[")
        if bracket and head and index.isdigit():
            return head, int(index)
    return None


class Outcome(NamedTuple):
    """How one attempt of a task ended, as the worker that ran it saw it.

    Attributes:
        ok: True when the function returned, False when it raised.
        value: what it returned (``None`` when it raised). A backend that keeps
            results where they were made may put a handle to the result here.
        error: what it raised (``None`` when it returned).
        started: wall-clock time (``time.time()``) the call began.
        ended: wall-clock time it ended.
        worker: where it ran: a thread's name, ``"pid 123"``, a Dask worker.
    """

    ok: bool
    value: Any
    error: BaseException | None
    started: float
    ended: float
    worker: str


class Remote:
    """A task's value kept where the task ran (a Dask worker), fetched when read.

    The scheduler passes it on to downstream tasks as it is, and the backend
    that made it hands the remote copy to them; :class:`~flowkit.RunResult`
    fetches it when the value is read.

    Attributes:
        handle: the backend's own handle on the value (a Dask future).
        kept: the value itself when it was fetched (small, and wanted by the
            state for caching or resume), else :data:`NOT_KEPT`.
        nbytes: its size where it lives, when known.
        length: for a value a mapped task iterates over: how many items it has,
            or the error that says why it cannot be mapped over (``None``: not asked).
    """

    __slots__ = ("handle", "kept", "length", "nbytes")

    def __init__(self, handle: Any):
        self.handle = handle
        self.kept: Any = NOT_KEPT
        self.nbytes: int | None = None
        self.length: int | Exception | None = None

    def item(self, index: int) -> Any:
        """A stand-in for item ``index`` of the value, which the backend resolves remotely."""
        raise NotImplementedError

    def fetch(self) -> Any:
        """The value, brought into this process."""
        raise NotImplementedError

    @classmethod
    def fetch_all(cls, values: list[Remote]) -> list[Any]:
        """Several values at once (backends override this with one round trip)."""
        return [value.fetch() for value in values]


NOT_KEPT: Final = object()
"""``Remote.kept`` of a value that was not fetched."""


def is_remote(value: Any) -> bool:
    """A :class:`Remote` value, or a mapped task's list holding some."""
    if isinstance(value, Remote):
        return True
    return type(value) is list and any(isinstance(v, Remote) for v in value)


def fetch_remote(values: list[Any]) -> list[Any]:
    """``values`` with every :class:`Remote` in them (or in their lists) fetched, in one go."""
    remote = [v for value in values for v in (value if type(value) is list else [value])
              if isinstance(v, Remote)]
    if not remote:
        return values
    fetched = dict(zip(map(id, remote), type(remote[0]).fetch_all(remote), strict=True))

    def local(v: Any) -> Any:
        return fetched[id(v)] if isinstance(v, Remote) else v

    return [[local(v) for v in value] if type(value) is list else local(value) for value in values]


class Decided(NamedTuple):
    """An attempt's outcome as decided where its inputs live (a Dask worker): its
    condition was false (SKIPPED, function not called), the cache answered
    (CACHED, function not called), or it ran (SUCCESS) under ``cache_key``."""

    status: Status
    value: Any = None
    cache_key: str | None = None


class Attempt(NamedTuple):
    """One attempt of a task: when and where it ran, and how it ended."""

    number: int
    started_at: float  # wall-clock time (time.time())
    finished_at: float
    worker: str
    error: BaseException | None

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at


class PoolWait(NamedTuple):
    """A time a task could have started but waited for a slot of its pool."""

    pool: str
    started_at: float  # wall-clock time (time.time()) it began to wait
    finished_at: float  # when it took its slot (or the run gave up on it)

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at


class TaskState:
    """Everything a run knows about one task.

    Attributes:
        name: the task's name.
        task: the :class:`~flowkit.Task` itself.
        status: a :class:`Status`.
        attempts: how many times its function was called (0 when it never ran).
        error: the exception of its last failed attempt, else ``None``.
        duration: seconds spent running, summed over its attempts.
        cause: for SKIPPED, UPSTREAM_FAILED and CANCELLED, the name of the task at
            the root of it (itself when its own condition was false).
        reason: a short human explanation for a task that did not run.
        history: one :class:`Attempt` per attempt, in order.
        started_at: wall-clock time its first attempt started; ``None`` if it never ran.
        finished_at: wall-clock time its last attempt ended; ``None`` if it never ran.
        order: its place in the order the scheduler started attempts: 1 for the
            first task it handed to a worker, 2 for the next, …; a retry keeps
            the place of the first attempt. ``None`` when it never started.
        pool_waits: one :class:`PoolWait` per attempt that waited for a slot of
            its pool; ``pool_wait`` is their total, in seconds.
        value: its result, for SUCCESS and CACHED.
        inputs: the positional inputs its function was (or would have been) called with.
    """

    __slots__ = (
        "_duration",
        "_history",
        "_pool_waits",
        "attempts",
        "cache_key",
        "cause",
        "error",
        "finished_at",
        "inputs",
        "name",
        "order",
        "reason",
        "started_at",
        "status",
        "task",
        "value",
    )

    def __init__(self, task: Task[..., Any]):
        self.task = task
        self.name: str = task.name
        self.status = _PENDING
        self.attempts = 0
        self.error: BaseException | None = None
        # None: its times say it (see the duration property), a float per task the less.
        self._duration: float | None = None
        self.cause: str | None = None
        self.reason: str | None = None
        # One attempt is the common case: keep it alone, a list only for retries
        # (a list per task is a lot of objects for the garbage collector to visit).
        # A first attempt that succeeded is only its worker here: its times are
        # started_at and finished_at (see add_first).
        self._history: str | Attempt | list[Attempt] | None = None
        self.value: Any = None
        self.inputs: tuple[Any, ...] = ()
        self.cache_key: str | None = None
        self.order: int | None = None
        # Kept as attributes, not worked out from the attempts: the run history
        # reads them once per task.
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._pool_waits: list[PoolWait] | None = None  # most tasks never wait

    @property
    def history(self) -> list[Attempt]:
        """One :class:`Attempt` per attempt, in order (a new list on each access)."""
        attempts = self._attempts()
        if attempts is None:
            return []
        if isinstance(attempts, Attempt):
            return [attempts]
        return list(attempts)

    def _attempts(self) -> Attempt | list[Attempt] | None:
        if type(self._history) is str:  # see add_first
            assert self.started_at is not None and self.finished_at is not None
            return Attempt(1, self.started_at, self.finished_at, self._history, None)
        return self._history  # type: ignore[return-value]

    @property
    def duration(self) -> float:
        """Seconds spent running, summed over its attempts."""
        if self._duration is not None:
            return self._duration
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return self.finished_at - self.started_at  # its one attempt (see add_first)

    @duration.setter
    def duration(self, seconds: float) -> None:
        self._duration = seconds

    def add_first(self, started: float, ended: float, worker: str) -> None:
        """Record the first attempt, which succeeded: what :meth:`add_attempt`
        does, without making an :class:`Attempt` (``history`` makes it when read)."""
        self.started_at, self.finished_at, self._history = started, ended, worker

    def add_attempt(self, attempt: Attempt, seconds: float | None = None) -> None:
        """Record an ended attempt, which ran for ``seconds`` (by default, from its
        start to its end)."""
        if seconds is None:
            seconds = attempt.finished_at - attempt.started_at
        self._duration = self.duration + seconds
        if type(self._history) is str:
            self._history = self._attempts()
        self.finished_at = attempt.finished_at
        if self._history is None:
            self._history = attempt
            self.started_at = attempt.started_at
        elif isinstance(self._history, Attempt):
            self._history = [self._history, attempt]
        else:
            self._history.append(attempt)  # type: ignore[union-attr]

    @property
    def pool_waits(self) -> list[PoolWait]:
        """One :class:`PoolWait` per attempt that waited for a pool slot (a new list)."""
        return list(self._pool_waits or ())

    @property
    def pool_wait(self) -> float:
        """Seconds it waited for slots of its pool, over all its attempts (0.0: none)."""
        return sum(w.duration for w in self._pool_waits) if self._pool_waits else 0.0

    def add_pool_wait(self, wait: PoolWait) -> None:
        """Record a wait for a pool slot that ended."""
        if self._pool_waits is None:
            self._pool_waits = []
        self._pool_waits.append(wait)

    def __repr__(self) -> str:
        extra = f", cause={self.cause!r}" if self.cause and self.cause != self.name else ""
        error = f", error={self.error!r}" if self.error is not None else ""
        return (
            f"TaskState({self.name!r}, {self.status.name}, attempts={self.attempts}, "
            f"duration={self.duration:.3f}s{extra}{error})"
        )


_BROKEN = (Status.FAILED, Status.UPSTREAM_FAILED, Status.CANCELLED)


def root_cause(state: TaskState) -> str:
    """The task at the root of ``state``'s status: itself, or what it recorded."""
    if state.status is Status.FAILED:
        return state.name
    return state.cause or state.name


def apply_trigger(
    rule: str, upstream: Iterable[TaskState]
) -> tuple[list[Any], Status | None, TaskState | None]:
    """The trigger rule ``rule`` of a task whose ``upstream`` tasks have all ended.

    Returns its inputs (:data:`SKIPPED` for a skipped upstream task, an
    :class:`UpstreamFailed` for a broken one), and the status it takes instead
    of running with the upstream task to blame (``None, None`` when it runs).
    A failure outranks a skip.
    """
    inputs: list[Any] = []
    broken: TaskState | None = None
    skipped: TaskState | None = None
    for up in upstream:
        status = up.status
        if status is _SUCCESS or status is _CACHED:
            inputs.append(up.value)
        elif status in _BROKEN:  # only an all_done task runs with it
            inputs.append(UpstreamFailed(up.name, status, up.error, root_cause(up)))
            broken = broken or up
        else:
            inputs.append(SKIPPED)
            skipped = skipped or up
    if broken is not None and rule != "all_done":
        return inputs, Status.UPSTREAM_FAILED, broken
    if skipped is not None and rule == "all_success":
        return inputs, Status.SKIPPED, skipped
    return inputs, None, None
