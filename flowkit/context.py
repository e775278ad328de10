"""Where we are: the run being executed, and the task a worker is running.

:class:`RunContext` is what the scheduler hands to hooks. The
:data:`current_task` context variable is set around each call of a task's
function, in whatever thread or process runs it, so code inside a task can find
its task name and run id (see :func:`flowkit.get_run_logger`).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["RunContext", "TaskContext", "current_task"]


class TaskContext(NamedTuple):
    """The task whose function is running in this thread or process."""

    task: str
    run_id: str
    dag: str


current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "flowkit_current_task", default=None
)


class RunContext:
    """One run of a DAG, as hooks see it.

    Attributes:
        dag_name: the DAG's name.
        run_id: unique id of this run (sortable by start time).
        executor: the executor's name (``"thread"``, ``"process"``, ``"sync"``, or a class name).
        total: how many tasks the run has.
        done: how many of them have finished so far, in any way.
        failed: how many of them FAILED so far.
        running: how many attempts are in flight.
        started_at: wall-clock start (``time.time()``).
        params: run parameters.
    """

    __slots__ = (
        "dag_name",
        "done",
        "executor",
        "failed",
        "monotonic_start",
        "params",
        "run_id",
        "running",
        "started_at",
        "total",
    )

    def __init__(
        self,
        dag_name: str,
        run_id: str,
        total: int,
        executor: str,
        params: Mapping[str, Any] | None = None,
    ):
        self.dag_name = dag_name
        self.run_id = run_id
        self.total = total
        self.executor = executor
        self.params: Mapping[str, Any] = dict(params or {})
        self.done = 0
        self.failed = 0
        self.running = 0
        self.started_at = time.time()
        self.monotonic_start = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.monotonic_start

    @property
    def percent(self) -> float:
        """Share of finished tasks, 0 to 100."""
        return 100.0 * self.done / self.total if self.total else 100.0

    @property
    def eta(self) -> float | None:
        """Estimated seconds left, from the average pace so far; ``None`` before any task ends."""
        if not self.done or self.done >= self.total:
            return None if not self.done else 0.0
        return self.elapsed / self.done * (self.total - self.done)

    def __repr__(self) -> str:
        return (
            f"RunContext(dag={self.dag_name!r}, run_id={self.run_id!r}, "
            f"done={self.done}/{self.total})"
        )
