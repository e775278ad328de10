"""Schedules: run a DAG for each time interval, from a script or a container.

:func:`serve` (``DAG.serve``) loops: it waits for the end of the next
interval of a schedule — a :class:`~flowkit.cron.Cron` expression or a fixed
:class:`Every` period — and runs the DAG for it, with the interval's bounds
as the run parameters ``interval_start`` and ``interval_end``.

- The run for interval ``[start, end)`` starts at ``end`` (the data of an
  interval is complete when it is over). Runs are strictly sequential: a run
  that outlasts its interval delays the next one, never overlaps it.
- Where it left off comes from the state's run history (the ``interval_end``
  of the DAG's latest scheduled run). After downtime, with ``catchup`` every
  missed interval runs, in order; without it only the latest one does. With
  nothing recorded, the latest finished interval runs at once. A latest run
  that was interrupted is resumed first.
- A lock file beside the state file (``STATE.NAME.lock``, an ``flock``) keeps
  a second process from serving the same DAG on the same state; it waits for
  the lock or refuses with :class:`~flowkit.StateLockedError` naming the
  process that holds it.
- The first SIGTERM or Ctrl-C stops starting new runs and lets the current
  one finish; a second one interrupts it (recorded as interrupted, resumable).
  Either way serve returns normally. A failing run is logged and recorded,
  and the schedule goes on.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from flowkit.backfill import PartitionResult, _Interrupted, _notify, run_partition
from flowkit.cron import Cron, resolve_tz
from flowkit.exceptions import FlowkitError, StateLockedError
from flowkit.graph import SCHEDULE_PARAMS

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    from flowkit.dag import DAG
    from flowkit.run_options import StateProtocol

__all__ = [
    "Every",
    "Interval",
    "Schedule",
    "ScheduleParams",
    "ServeResult",
    "parse_duration",
    "serve",
]

logger = logging.getLogger("flowkit.schedule")

INTERVAL_PARAMS = SCHEDULE_PARAMS
KEEP_RESULTS = 100  # results a ServeResult keeps: a serve may run for years

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TICK = dt.timedelta(microseconds=1)


class Schedule(Protocol):
    """What serve needs of a schedule: fire times around an instant, in its zone."""

    @property
    def tz(self) -> dt.tzinfo: ...

    def next(self, after: dt.datetime) -> dt.datetime: ...

    def previous(self, before: dt.datetime) -> dt.datetime: ...


class Every:
    """Fire times every ``period``, aligned on the Unix epoch: ``Every(600)`` fires
    at :00, :10, :20 ... of every hour (UTC), whatever time the server started.

    Args:
        period: seconds (a positive number) or a ``timedelta``; at least a millisecond.
        tz: the zone the returned times are shown in (default UTC); it does not
            move the fire times, which are a fixed period apart.

    Raises:
        FlowkitError: the period is not positive.
    """

    __slots__ = ("period", "tz")

    def __init__(self, period: float | dt.timedelta, tz: str | dt.tzinfo | None = None):
        seconds = period.total_seconds() if isinstance(period, dt.timedelta) else period
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (
            1e-3 <= seconds <= 1e9
        ):
            raise FlowkitError(
                f"every={period!r}: give the period as seconds (a number from 0.001 to 1e9) "
                "or a datetime.timedelta"
            )
        self.period = dt.timedelta(seconds=seconds)
        self.tz = resolve_tz(tz)

    def next(self, after: dt.datetime) -> dt.datetime:
        """The first fire time strictly after ``after``."""
        steps = (_utc(after, self.tz) - _EPOCH) // self.period + 1
        return (_EPOCH + steps * self.period).astimezone(self.tz)

    def previous(self, before: dt.datetime) -> dt.datetime:
        """The last fire time strictly before ``before``."""
        steps = (_utc(before, self.tz) - _TICK - _EPOCH) // self.period
        return (_EPOCH + steps * self.period).astimezone(self.tz)

    def __repr__(self) -> str:
        return f"Every({self.period.total_seconds():g})"


def _utc(moment: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
    return aware.astimezone(dt.UTC)


class Interval(NamedTuple):
    """One data interval of a schedule: ``[start, end)``."""

    start: dt.datetime
    end: dt.datetime


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"10m"`` → 600.0; also ``30s``, ``2h``, ``1d``, ``1w``, ``1h30m``, ``500ms``, or seconds.

    Raises:
        FlowkitError: the text is not a duration.
    """
    stripped = text.strip().lower()
    try:
        return float(stripped)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION.finditer(stripped):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(stripped) or not stripped:
        raise FlowkitError(
            f"{text!r} is not a duration: write it like 30s, 10m, 2h, 1d or 1h30m"
        )
    return total


def make_schedule(
    cron: str | None, every: float | dt.timedelta | None, tz: str | dt.tzinfo | None
) -> Schedule:
    """The schedule of ``serve``'s arguments: exactly one of ``cron`` and ``every``."""
    if (cron is None) == (every is None):
        raise FlowkitError(
            "serve needs exactly one schedule: cron='0 * * * *' (a cron expression) or "
            "every=600 (seconds, or a timedelta)"
        )
    return Cron(cron, tz) if cron is not None else Every(every, tz)  # type: ignore[arg-type]


# --- the result -------------------------------------------------------------------------


@dataclass(slots=True)
class ServeResult:
    """What a :func:`serve` did, once it returned.

    Attributes:
        runs: how many runs it started.
        failed: how many of them failed or were interrupted.
        stopped_by: ``"max_runs"`` or the signal that stopped it (``"SIGTERM"``, ``"SIGINT"``).
        results: the :class:`~flowkit.backfill.PartitionResult` of the last
            runs (at most 100), oldest first; ``params`` holds each interval.
    """

    runs: int = 0
    failed: int = 0
    stopped_by: str = ""
    results: collections.deque[PartitionResult] = field(
        default_factory=lambda: collections.deque(maxlen=KEEP_RESULTS)
    )

    @property
    def ok(self) -> bool:
        """True when no run failed."""
        return self.failed == 0


# --- stopping on a signal -------------------------------------------------------------------


class _Stopper:
    """SIGTERM/SIGINT handling: the first asks to stop, the second interrupts the run."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal = ""
        self.running = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        again = self.event.is_set()
        self.signal = self.signal or signal.Signals(signum).name
        self.event.set()
        if again and self.running:
            raise KeyboardInterrupt  # the run records itself as interrupted
        logger.warning(
            "%s received: no new run starts%s",
            signal.Signals(signum).name,
            "; the current run finishes (send it again to interrupt it)" if self.running else "",
        )


# --- the lock ---------------------------------------------------------------------------------


_memory_locks: dict[tuple[int, str], int] = {}
_memory_guard = threading.Lock()


class _Lock:
    """Who serves a DAG on a state: a lock file beside a state file, or (for an
    in-memory state) a lock of this process."""

    def __init__(self, state: StateProtocol, dag_name: str):
        path = getattr(state, "path", None)
        self.key = (id(state), dag_name)
        self.path = None if path is None else f"{path}.{_safe(dag_name)}.lock"
        self.dag_name = dag_name
        self._fd: int | None = None

    def acquire(self, wait: bool, sleep: Callable[[float], object], stop: threading.Event) -> None:
        while not self._try():
            holder = self._holder()
            if not wait:
                where = f"lock file {self.path}" if self.path else "an in-memory state"
                raise StateLockedError(
                    f"DAG {self.dag_name!r} is already being served on this state by process "
                    f"{holder or '(unknown)'} ({where}); stop that process first, or wait for "
                    "it with wait=True (flowkit serve --wait)",
                    path=self.path,
                    pid=holder,
                )
            logger.info("waiting for process %s to stop serving DAG %r", holder, self.dag_name)
            sleep(1.0)
            if stop.is_set():
                raise KeyboardInterrupt

    def _try(self) -> bool:
        if self.path is None:
            with _memory_guard:
                if self.key in _memory_locks:
                    return False
                _memory_locks[self.key] = os.getpid()
                return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        if not _lock_fd(fd):
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def _holder(self) -> int | None:
        if self.path is None:
            return _memory_locks.get(self.key)
        try:
            with open(self.path, encoding="ascii", errors="replace") as file:
                text = file.read(32).strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self.path is None:
            with _memory_guard:
                _memory_locks.pop(self.key, None)
        elif self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (see _try)
            self._fd = None


def _lock_fd(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without blocking; False if another holds it."""
    if sys.platform == "win32":  # pragma: no cover - no flock there
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _safe(name: str) -> str:
    """A DAG name as part of a file name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]
    if cleaned == name:
        return name
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


# --- serving ----------------------------------------------------------------------------------


ScheduleParams = Mapping[str, Any] | Callable[[dt.datetime, dt.datetime], Mapping[str, Any]] | None
"""``serve``'s ``params``: a mapping, or a function of the interval returning one."""


class _Server:
    """One serve: the loop, its clock, its lock and its signals."""

    def __init__(
        self,
        dag: DAG,
        schedule: Schedule,
        *,
        params: ScheduleParams,
        catchup: bool,
        max_runs: int | None,
        state: StateProtocol,
        hooks: Sequence[object],
        options: Mapping[str, Any],
        clock: Callable[[], float],
        sleep: Callable[[float], object] | None,
    ):
        self.dag = dag
        self.schedule = schedule
        self.params = params
        self.catchup = catchup
        self.max_runs = max_runs
        self.state = state
        self.hooks = hooks
        self.options = {**options, "state": state}
        self.clock = clock
        self.stopper = _Stopper()
        self.sleep = sleep if sleep is not None else self.stopper.event.wait
        self.result = ServeResult()

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def serve(self, wait: bool) -> ServeResult:
        lock = _Lock(self.state, self.dag.name)
        with self.stopper:
            try:
                lock.acquire(wait, self.sleep, self.stopper.event)
            except KeyboardInterrupt:
                self.result.stopped_by = self.stopper.signal or "SIGINT"
                return self.result
            try:
                last, unfinished = _left_off(self.state, self.dag.name, self.schedule.tz)
                if unfinished is not None:
                    logger.info("DAG %r: resuming the interrupted run for [%s, %s)",
                                self.dag.name, unfinished.start, unfinished.end)
                    self._run(unfinished, resume=True)
                self._loop(last)
            finally:
                lock.release()
        return self.result

    def _loop(self, last: dt.datetime | None) -> None:
        stop = self.stopper.event
        while not stop.is_set():
            if self.max_runs is not None and self.result.runs >= self.max_runs:
                self.result.stopped_by = "max_runs"
                return
            now = self.now()
            latest = self.schedule.previous(now + _TICK)  # the last interval end <= now
            if last is None or latest > last:
                end = self.schedule.next(last) if self.catchup and last is not None else latest
                self._run(Interval(self.schedule.previous(end), end))
                last = end
                continue
            wake = self.schedule.next(now)
            logger.info("DAG %r: next run at %s", self.dag.name, wake.isoformat())
            self.sleep(max((wake - now).total_seconds(), 0.0))
        self.result.stopped_by = self.stopper.signal

    def _run(self, interval: Interval, resume: bool = False) -> None:
        params: dict[str, Any] = {"interval_start": interval.start, "interval_end": interval.end}
        try:
            extra = self.params(*interval) if callable(self.params) else self.params
            params.update((k, v) for k, v in (extra or {}).items() if k not in INTERVAL_PARAMS)
        except Exception as exc:  # the user's function: this run fails, the schedule goes on
            outcome = PartitionResult(params, "failed", error=exc,
                                      note=f"the params function raised {exc!r}")
        else:
            _notify(self.hooks, "on_partition_start", params)
            outcome = self._start(params, resume)
        self.result.runs += 1
        self.result.results.append(outcome)
        if not outcome.ok:
            self.result.failed += 1
            logger.warning(
                "DAG %r: the run for [%s, %s) %s (%s); the schedule goes on",
                self.dag.name, interval.start.isoformat(), interval.end.isoformat(),
                outcome.status, outcome.note,
            )
        _notify(self.hooks, "on_partition_end", outcome)


    def _start(self, params: Mapping[str, Any], resume: bool) -> PartitionResult:
        self.stopper.running = True
        try:
            return run_partition(self.dag, params, resume=resume, hooks=self.hooks,
                                 options=self.options)
        except _Interrupted as exc:
            return exc.result
        finally:
            self.stopper.running = False


def _left_off(state: StateProtocol, dag_name: str, tz: dt.tzinfo) -> tuple[
    dt.datetime | None, Interval | None
]:
    """Where the DAG's scheduled runs recorded in ``state`` left off: the latest
    one's ``interval_end``, and its interval if it was interrupted (to resume)."""
    runs = getattr(state, "runs", None)
    if runs is None:
        return None, None
    for record in runs(dag_name, tasks=False):  # newest first
        end = _as_datetime(record.params.get("interval_end"))
        if end is None:
            continue
        start = _as_datetime(record.params.get("interval_start"))
        if record.status != "interrupted" or start is None:
            return end, None
        # In the schedule's zone, as the run had them: the same params, so resume finds it.
        return end, Interval(start.astimezone(tz), end.astimezone(tz))
    return None, None


def _as_datetime(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            return _as_datetime(dt.datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def serve(
    dag: DAG,
    cron: str | None = None,
    *,
    every: float | dt.timedelta | None = None,
    params: ScheduleParams = None,
    catchup: bool = False,
    max_runs: int | None = None,
    state: StateProtocol | None = None,
    tz: str | dt.tzinfo | None = None,
    wait: bool = False,
    hooks: Sequence[object] = (),
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] | None = None,
    **options: Any,
) -> ServeResult:
    """Run ``dag`` on a schedule; see :meth:`flowkit.DAG.serve`."""
    schedule = make_schedule(cron, every, tz)
    if max_runs is not None and (type(max_runs) is not int or max_runs < 1):
        raise FlowkitError(f"max_runs must be a positive integer or None, got {max_runs!r}")
    if params is not None and not callable(params) and not isinstance(params, Mapping):
        raise FlowkitError(
            f"params must be a mapping or a function of (interval_start, interval_end), "
            f"got {params!r}"
        )
    if isinstance(params, Mapping) and set(params) & set(INTERVAL_PARAMS):
        raise FlowkitError("params may not set interval_start or interval_end: serve sets them")
    server = _Server(
        dag, schedule, params=params, catchup=catchup, max_runs=max_runs,
        state=state if state is not None else dag.state, hooks=hooks, options=options,
        clock=clock, sleep=sleep,
    )
    return server.serve(wait)
