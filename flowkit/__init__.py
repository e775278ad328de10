"""flowkit: a lightweight, embeddable workflow orchestrator.

Decorate plain functions with ``@task``, wire them with ``>>``, call ``DAG().run()``.
"""

from typing import TYPE_CHECKING, Any

from flowkit.context import RunContext
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
from flowkit.outcome import SKIPPED, Attempt, Status, TaskState, UpstreamFailed
from flowkit.results import RunResult
from flowkit.retry import backoff_delay
from flowkit.task import MapTask, Registry, Task, TaskOptions, registry, task

if TYPE_CHECKING:  # pragma: no cover - imported on first use, see __getattr__
    from flowkit.dag import DAG, Plan
    from flowkit.hooks import Hook
    from flowkit.logging import configure_logging, get_run_logger
    from flowkit.state import StateManager

# What it takes to run a DAG (the run loop, the backends, state, logging) is
# imported when first asked for, so that a module that only defines tasks, or
# a command that only prints its help, does not pay for it.
_LAZY = {
    "DAG": "flowkit.dag",
    "Hook": "flowkit.hooks",
    "Plan": "flowkit.dag",
    "StateManager": "flowkit.state",
    "configure_logging": "flowkit.logging",
    "get_run_logger": "flowkit.logging",
}

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
    "UpstreamFailed",
    "__version__",
    "backoff_delay",
    "configure_logging",
    "get_run_logger",
    "registry",
    "task",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
