"""Structured logging of runs, on top of the standard library's ``logging``.

flowkit logs through the ``"flowkit"`` logger and its children:

- ``flowkit.run``: lifecycle events, written by :class:`LoggingHook` — a hook
  like any other, which the scheduler calls in its own thread;
- ``flowkit.task``: what task code logs through :func:`get_run_logger`;
- ``flowkit.hooks``: a user hook that raised.

Every event is one record whose ``event`` attribute names it (``task.success``)
and whose other attributes (``dag``, ``run_id``, ``task``, ``attempt``,
``duration_s``, ...) carry the details, so any handler can use them.

Library etiquette: importing flowkit only adds a ``NullHandler`` to the
``"flowkit"`` logger, so nothing is printed unless asked, and records propagate
to whatever the application configured. :func:`configure_logging` installs one
tagged handler of flowkit's own (text or JSON lines) and stops propagation so no
line is printed twice.

With logging off, each event costs the hook one ``isEnabledFor`` check: no
message or extra dict is built for a record nobody will see.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import logging
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TextIO

from flowkit.context import TaskContext, current_task

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    from flowkit.context import RunContext
    from flowkit.outcome import TaskState
    from flowkit.results import RunResult

__all__ = [
    "EVENTS",
    "JsonFormatter",
    "LoggingHook",
    "RunLogger",
    "TextFormatter",
    "configure_logging",
    "get_run_logger",
]

ROOT_LOGGER = "flowkit"
RUN_LOGGER = "flowkit.run"
TASK_LOGGER = "flowkit.task"

_root = logging.getLogger(ROOT_LOGGER)
if not any(isinstance(h, logging.NullHandler) for h in _root.handlers):
    # A handler on "flowkit" keeps the stdlib's last-resort handler from printing
    # our warnings to stderr when the application configured nothing.
    _root.addHandler(logging.NullHandler())

_DEBUG, _INFO, _WARNING, _ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR

EVENTS = (
    "dag.start",
    "task.start",
    "task.retry",
    "task.success",
    "task.failure",
    "task.skip",
    "task.cached",
    "dag.progress",
    "dag.end",
)
"""The lifecycle events :class:`LoggingHook` logs, as found in a record's ``event``."""
_LIFECYCLE = frozenset(EVENTS)

# The attributes every LogRecord has; anything else on a record came as ``extra``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# Extra fields in the order formatters show them; unknown extras follow.
_FIELD_ORDER = (
    "event",
    "dag",
    "run_id",
    "task",
    "attempt",
    "status",
    "ok",
    "duration_s",
    "delay_s",
    "done",
    "total",
    "percent",
    "eta_s",
    "cause",
    "reason",
    "error",
)


# --- the lifecycle hook -------------------------------------------------------------


class LoggingHook:
    """Turns a run's lifecycle into log records on the ``flowkit.run`` logger.

    Levels: ``task.failure`` ERROR, ``task.retry`` WARNING, ``task.start`` and
    ``dag.progress`` DEBUG, every other event INFO. Each method first asks the
    logger whether the level is enabled, so an unconfigured run pays one check.

    Args:
        logger: where to log (default: ``logging.getLogger("flowkit.run")``).
    """

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger | None = None):
        self._logger = logger if logger is not None else logging.getLogger(RUN_LOGGER)

    def on_dag_start(self, run: RunContext) -> None:
        if not self._logger.isEnabledFor(_INFO):
            return
        self._logger.info(
            "run %s of DAG %r started: %d task(s) on the %s executor",
            run.run_id,
            run.dag_name,
            run.total,
            run.executor,
            extra={
                "event": "dag.start",
                "dag": run.dag_name,
                "run_id": run.run_id,
                "total": run.total,
                "executor": run.executor,
                **({"params": run.params} if run.params else {}),
            },
        )

    def on_task_start(self, run: RunContext, state: TaskState) -> None:
        if not self._logger.isEnabledFor(_DEBUG):
            return
        self._logger.debug(
            "task %r started (attempt %d)",
            state.name,
            state.attempts,
            extra=_task_fields("task.start", run, state),
        )

    def on_task_wait(self, run: RunContext, state: TaskState, pool: str) -> None:
        if not self._logger.isEnabledFor(_DEBUG):
            return
        extra = _task_fields("task.wait", run, state)
        extra["pool"] = pool
        self._logger.debug("task %r waits for a free slot of pool %r", state.name, pool,
                           extra=extra)

    def on_task_retry(
        self, run: RunContext, state: TaskState, error: BaseException, delay: float
    ) -> None:
        if not self._logger.isEnabledFor(_WARNING):
            return
        extra = _task_fields("task.retry", run, state)
        extra["duration_s"] = _seconds(state.duration)
        extra["delay_s"] = _seconds(delay)
        extra["error"] = _describe(error)
        self._logger.warning(
            "task %r attempt %d failed (%s); retrying in %.3fs",
            state.name,
            state.attempts,
            extra["error"],
            delay,
            extra=extra,
        )

    def on_task_success(self, run: RunContext, state: TaskState) -> None:
        if not self._logger.isEnabledFor(_INFO):
            return  # nor DEBUG, the level of dag.progress
        extra = _task_fields("task.success", run, state)
        extra["duration_s"] = _seconds(state.duration)
        self._logger.info(
            "task %r succeeded in %.3fs (attempt %d)",
            state.name,
            state.duration,
            state.attempts,
            extra=extra,
        )
        self._progress(run)

    def on_task_failure(self, run: RunContext, state: TaskState) -> None:
        if self._logger.isEnabledFor(_ERROR):
            error = state.error
            extra = _task_fields("task.failure", run, state)
            extra["duration_s"] = _seconds(state.duration)
            extra["error"] = _describe(error) if error is not None else None
            how = f"after {state.attempts} attempt(s)" if state.attempts else "before it ran"
            self._logger.error(
                "task %r failed %s: %s",
                state.name,
                how,
                extra["error"],
                exc_info=(type(error), error, error.__traceback__) if error is not None else None,
                extra=extra,
            )
        self._progress(run)

    def on_task_skip(self, run: RunContext, state: TaskState) -> None:
        if self._logger.isEnabledFor(_INFO):
            extra = _task_fields("task.skip", run, state)
            extra["status"] = str(state.status)
            extra["cause"] = state.cause
            extra["reason"] = state.reason
            self._logger.info(
                "task %r is %s: %s",
                state.name,
                state.status,
                state.reason,
                extra=extra,
            )
        self._progress(run)

    def on_task_cached(self, run: RunContext, state: TaskState) -> None:
        if self._logger.isEnabledFor(_INFO):
            extra = _task_fields("task.cached", run, state)
            extra["reason"] = state.reason
            self._logger.info("task %r: %s", state.name, state.reason, extra=extra)
        self._progress(run)

    def on_dag_end(self, run: RunContext, result: RunResult) -> None:
        if not self._logger.isEnabledFor(_INFO):
            return
        counts = {str(status): n for status, n in result.counts.items()}
        verdict = "ok" if result.ok else ("interrupted" if result.interrupted else "FAILED")
        self._logger.info(
            "run %s of DAG %r finished: %s in %.3fs (%s)",
            run.run_id,
            run.dag_name,
            verdict,
            result.duration,
            ", ".join(f"{n} {status}" for status, n in counts.items()) or "no tasks",
            extra={
                "event": "dag.end",
                "dag": run.dag_name,
                "run_id": run.run_id,
                "ok": result.ok,
                "duration_s": _seconds(result.duration),
                "done": run.done,
                "total": run.total,
                "counts": counts,
                **({"params": run.params} if run.params else {}),
            },
        )

    def _progress(self, run: RunContext) -> None:
        """``dag.progress``, after each finished task (``run.done`` already counts it)."""
        if not self._logger.isEnabledFor(_DEBUG):
            return
        extra: dict[str, Any] = {
            "event": "dag.progress",
            "dag": run.dag_name,
            "run_id": run.run_id,
            "done": run.done,
            "total": run.total,
            "percent": round(run.percent, 1),
        }
        if run.params:
            extra["params"] = run.params
        eta = run.eta
        if eta is not None:
            extra["eta_s"] = round(eta, 3)
        self._logger.debug(
            "%d/%d task(s) done (%.1f%%)", run.done, run.total, run.percent, extra=extra
        )


def _task_fields(event: str, run: RunContext, state: TaskState) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event": event,
        "dag": run.dag_name,
        "run_id": run.run_id,
        "task": state.name,
    }
    if state.attempts:  # a task that never ran has no attempt to speak of
        fields["attempt"] = state.attempts
    if run.params:  # tells apart the lines of runs that go on at once (backfills)
        fields["params"] = run.params
    return fields


def _seconds(value: float) -> float:
    return round(value, 6)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# --- task-side logging -------------------------------------------------------------


class RunLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records carry the ``task``, ``run_id`` and ``dag`` they come from.

    ``extra=`` given to a call is merged in (the caller's keys win).
    """

    def __init__(self, logger: logging.Logger, bound: TaskContext | None):
        super().__init__(logger, {})
        self._bound = bound

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        # Bound at creation when made inside a task (so it still works in threads
        # the task starts); otherwise whatever task is current at each call.
        ctx = self._bound or current_task.get()
        given = kwargs.get("extra")
        if ctx is not None:
            fields: dict[str, Any] = {"task": ctx.task, "run_id": ctx.run_id, "dag": ctx.dag}
            if given:
                fields.update(given)
            kwargs["extra"] = fields
        return msg, kwargs


def get_run_logger() -> RunLogger:
    """A logger for code inside a task: its records carry ``task``, ``run_id`` and ``dag``.

    It logs to ``flowkit.task``, so :func:`configure_logging` shows its records.
    Called outside a task (for example when a test calls the plain function), it
    works too: records then carry the fields of whatever task is current when
    they are logged, or none.
    """
    return RunLogger(logging.getLogger(TASK_LOGGER), current_task.get())


# --- formatters ---------------------------------------------------------------------


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of ``record``, known ones first in a stable order."""
    data = record.__dict__
    fields = {key: data[key] for key in _FIELD_ORDER if data.get(key) is not None}
    for key, value in data.items():
        if (
            isinstance(key, str)  # extra={1: ...} is possible, if odd
            and key not in _RECORD_ATTRS
            and key not in fields
            and not key.startswith("_")
        ):
            fields[key] = value
    return fields


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()``, or a readable stand-in when its arguments do not fit."""
    try:
        return record.getMessage()
    except Exception as exc:
        return f"{_safe_repr(record.msg)} % {_safe_repr(record.args)} (could not format: {exc!r})"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<unrepresentable {type(value).__qualname__}: {type(exc).__name__}>"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO-8601 UTC), ``level``, ``logger``,
    ``event``, ``message``, every extra field, and ``exception`` when there is one.

    Values JSON cannot hold are written as their ``repr``; formatting never raises.
    Non-ASCII text is escaped, so a line can be written to any stream encoding.
    """

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:  # a formatter must never raise: say what went wrong
            return _json.dumps(
                {
                    "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(),
                    "level": record.levelname,
                    "message": _safe_repr(record.msg),
                    "format_error": _safe_repr(exc),
                }
            )

    def _format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, _dt.UTC)
        payload: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
        }
        extras = _extras(record)
        if "event" in extras:
            payload["event"] = extras.pop("event")
        payload["message"] = _message(record)
        for key, value in extras.items():
            payload.setdefault(key, value)  # an extra never overwrites ts, level, ...
        if record.exc_info and record.exc_info[0] is not None:
            payload["exception"] = self._exception_text(record)
        elif record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return _dumps(payload)

    def _exception_text(self, record: logging.LogRecord) -> str:
        try:
            return self.formatException(record.exc_info)  # type: ignore[arg-type]
        except Exception as exc:
            return f"<traceback unavailable: {exc!r}>"


def _json_value(value: object) -> str:
    """What JSON cannot hold, as text: dates and times in ISO-8601 (a scheduled
    run's ``interval_start``), anything else as its ``repr``."""
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    return _safe_repr(value)


def _dumps(payload: dict[str, Any]) -> str:
    try:
        return _json.dumps(payload, default=_json_value, allow_nan=False, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        # A value json cannot take even with default= (a NaN, a cycle, odd keys):
        # fall back field by field so the line stays one valid object.
        safe: dict[str, Any] = {}
        for key, value in payload.items():
            try:
                _json.dumps(value, default=_json_value, allow_nan=False)
                safe[str(key)] = value
            except (TypeError, ValueError, RecursionError):
                safe[str(key)] = _safe_repr(value)
        return _json.dumps(safe, default=_json_value, allow_nan=False, ensure_ascii=True)


class TextFormatter(logging.Formatter):
    """One readable line per record: local time, level, event, details.

    ``2026-11-28 07:59:01.123 INFO    task.success  task=transform attempt=1 duration=0.012s``

    Lifecycle events show their details as ``key=value`` pairs (``dag`` and
    ``run_id`` only on ``dag.start`` and ``dag.end``, as they would repeat on
    every line); other records show their event or logger name, their message,
    then their fields. Tracebacks follow on their own lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:  # a formatter must never raise: say what went wrong
            return f"{record.levelname} {record.name} {_safe_repr(record.msg)} <{_safe_repr(exc)}>"

    def _format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        fields = _extras(record)
        event = fields.pop("event", None)
        if event != "dag.start" and event != "dag.end":
            fields.pop("dag", None)
            fields.pop("run_id", None)
        label = str(event) if event is not None else record.name
        parts = [f"{ts}.{int(record.msecs):03d}", f"{record.levelname:<7}", f"{label:<12}"]
        if event not in _LIFECYCLE:
            parts.append(" " + _message(record))
        details = _details(fields)
        if details:
            parts.append(" " + details)
        line = " ".join(parts)
        if record.exc_info and record.exc_info[0] is not None:
            try:
                line += "\n" + self.formatException(record.exc_info)
            except Exception as exc:
                line += f"\n<traceback unavailable: {exc!r}>"
        elif record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _details(fields: dict[str, Any]) -> str:
    total = fields.pop("total", None)
    out: list[str] = []
    for key, value in fields.items():
        if key == "done" and total is not None:
            out.append(f"done={value}/{total}")
        elif key == "percent" and isinstance(value, int | float):
            out.append(f"percent={value:.1f}%")
        elif key.endswith("_s") and isinstance(value, int | float):
            out.append(f"{key[:-2]}={value:.3f}s")
        elif isinstance(value, Mapping):
            out.extend(f"{k}={_text_value(v)}" for k, v in value.items())
        else:
            out.append(f"{key}={_text_value(value)}")
    if total is not None and "done" not in fields:
        out.append(f"total={total}")
    return " ".join(out)


def _text_value(value: object) -> str:
    if isinstance(value, str):
        if value and not any(c.isspace() or c in "\"'=" for c in value):
            return value
        return _json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool | int | float) or value is None:
        return str(value).lower() if isinstance(value, bool) or value is None else str(value)
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    return _safe_repr(value)


# --- configuration ------------------------------------------------------------------


class _FlowkitHandler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure_logging` installs (found again by its tag)."""

    _flowkit_handler = True

    def __init__(self, stream: TextIO | None):
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        # Without an explicit stream, write to sys.stderr as it is *now* (pytest's
        # capture, a notebook, or contextlib.redirect_stderr may have replaced it).
        # Handler.handle holds the lock here, so lines never interleave.
        if self._follow_stderr and self.stream is not sys.stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(
    level: int | str = "INFO", *, json: bool = False, stream: TextIO | None = None
) -> logging.Handler:
    """Show flowkit's log records: set the ``"flowkit"`` logger's level and handler.

    Calling it again replaces the handler it installed before (never adds a
    second one). The handler is flowkit's only one, and the ``"flowkit"`` logger
    stops propagating to the root logger so that no line is printed twice; set
    ``logging.getLogger("flowkit").propagate = True`` afterwards to send records
    to your own handlers as well.

    Args:
        level: a level name (``"DEBUG"``, ``"info"``, ...) or number.
        json: write one JSON object per line instead of readable text.
        stream: where to write (default: ``sys.stderr`` at the time of writing).

    Returns:
        The handler installed on the ``"flowkit"`` logger.

    Raises:
        ValueError: ``level`` is not a logging level.
    """
    number = _level_number(level)
    logger = logging.getLogger(ROOT_LOGGER)
    for old in list(logger.handlers):
        if getattr(old, "_flowkit_handler", False):
            logger.removeHandler(old)
            old.close()  # a StreamHandler never closes its stream
    handler = _FlowkitHandler(stream)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(number)
    logger.propagate = False
    return handler


def _level_number(level: object) -> int:
    names = logging.getLevelNamesMapping()
    if isinstance(level, int) and not isinstance(level, bool) and level >= 0:
        return level
    if isinstance(level, str) and level.strip().upper() in names:
        return names[level.strip().upper()]
    valid = ", ".join(sorted(names, key=lambda n: (-names[n], n)))
    raise ValueError(
        f"invalid logging level {level!r}: use one of {valid} (any case), "
        "or a non-negative number such as logging.INFO"
    )
