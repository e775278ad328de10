"""The run history as text and JSON, for ``flowkit history``.

Plain functions from :class:`~flowkit.state.history.RunRecord` objects to
strings or JSON-ready dicts; the command line only prints what they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flowkit.state.history import RunRecord, TaskRecord

__all__ = ["failed_tasks", "run_data", "run_text", "runs_table", "when"]


def when(moment: datetime | None) -> str:
    """``2026-01-02 03:04:05`` (UTC), or ``-``."""
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``0.123s``, ``12.3s``, ``4m05s``, ``1h02m``, or ``-``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.3f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def failed_tasks(record: RunRecord) -> list[str]:
    """Names of the tasks that FAILED in ``record``, in recorded order."""
    return [name for name, task in record.tasks.items() if task.status == "failed"]


def runs_table(records: Sequence[RunRecord]) -> str:
    """One line per run: id, DAG, status, start (UTC), duration, failed tasks."""
    rows = [("run", "dag", "status", "started (UTC)", "duration", "failed tasks")]
    for r in records:
        rows.append((
            r.run_id, r.dag_name, r.status, when(r.started), duration(r.duration),
            _shorten(", ".join(failed_tasks(r)), 50),
        ))
    return _table(rows)


def run_text(record: RunRecord) -> str:
    """A run in full: what, when, where, then one line per task (like ``RunResult.summary``)."""
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(record.params.items())) or "none"
    lines = [
        f"run {record.run_id} of {record.dag_name!r}: {record.status}",
        f"started {when(record.started)} UTC, ended {when(record.ended)} UTC"
        f" ({duration(record.duration)})",
        f"params: {params}",
        f"on {record.host} (pid {record.pid}), flowkit {record.flowkit_version}",
        "",
    ]
    rows = [("task", "status", "attempts", "duration", "cause")]
    names = list(record.graph) + [n for n in record.tasks if n not in record.graph]
    for name in names:
        task = record.tasks.get(name)
        if task is None:
            rows.append((name, "pending", "0", "-", ""))
        else:
            rows.append((name, task.status.upper(), str(task.attempts), duration(task.duration),
                         _shorten(cause(name, task), 60)))
    lines.append(_table(rows))
    return "\n".join(lines)


def cause(name: str, task: TaskRecord) -> str:
    """Why a task ended as it did, in a few words (empty for a plain success)."""
    if task.status == "failed" and task.error_type:
        return f"{task.error_type}: {task.error or ''}".rstrip(": ")
    text = task.reason or ""
    if task.cause and task.cause != name and task.cause not in text:
        text = f"{task.cause}: {text}" if text else task.cause
    return text


def run_data(record: RunRecord, *, tasks: bool = True) -> dict[str, Any]:
    """``record`` as JSON-ready data (times as ISO-8601 strings)."""
    data: dict[str, Any] = {
        "run_id": record.run_id,
        "dag": record.dag_name,
        "status": record.status,
        "started": record.started.isoformat(),
        "ended": None if record.ended is None else record.ended.isoformat(),
        "duration_s": record.duration,
        "params": record.params,
        "flowkit_version": record.flowkit_version,
        "host": record.host,
        "pid": record.pid,
        "failed_tasks": failed_tasks(record),
    }
    if tasks:
        data["tasks"] = {name: _task_data(t) for name, t in record.tasks.items()}
    return data


def _task_data(task: TaskRecord) -> dict[str, Any]:
    return {
        "status": task.status,
        "attempts": task.attempts,
        "duration_s": task.duration,
        "started": None if task.started is None else task.started.isoformat(),
        "ended": None if task.ended is None else task.ended.isoformat(),
        "cause": task.cause,
        "reason": task.reason,
        "error_type": task.error_type,
        "error": task.error,
    }


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
