"""flowkit: a lightweight, embeddable workflow orchestrator.

Decorate plain functions with ``@task``, wire them with ``>>``, call ``DAG().run()``.
"""

from flowkit.context import RunContext
from flowkit.dag import DAG, Plan
from flowkit.exceptions import (
    CronError,
    DAGCycleError,
    DAGValidationError,
    FlowkitError,
    StateError,
    StateLockedError,
    TaskDefinitionError,
    TaskExecutionError,
    TaskNotFoundError,
    TaskTimeoutError,
)
from flowkit.hooks import Hook
from flowkit.logging import configure_logging, get_run_logger
from flowkit.outcome import SKIPPED, Attempt, Status, TaskState
from flowkit.results import RunResult
from flowkit.retry import backoff_delay
from flowkit.state import StateManager
from flowkit.task import MapTask, Registry, Task, TaskOptions, registry, task

__version__ = "0.1.0"
"""The version of flowkit, as in its package metadata."""

__all__ = [
    "DAG",
    "SKIPPED",
    "Attempt",
    "CronError",
    "DAGCycleError",
    "DAGValidationError",
    "FlowkitError",
    "Hook",
    "MapTask",
    "Plan",
    "Registry",
    "RunContext",
    "RunResult",
    "StateError",
    "StateLockedError",
    "StateManager",
    "Status",
    "Task",
    "TaskDefinitionError",
    "TaskExecutionError",
    "TaskNotFoundError",
    "TaskOptions",
    "TaskState",
    "TaskTimeoutError",
    "__version__",
    "backoff_delay",
    "configure_logging",
    "get_run_logger",
    "registry",
    "task",
]
