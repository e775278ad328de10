"""flowkit: a lightweight, embeddable workflow orchestrator.

Decorate plain functions with ``@task``, wire them with ``>>``, call ``DAG().run()``.
"""

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - imported on first use, see __getattr__
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
    from flowkit.outcome import SKIPPED, Attempt, Status, TaskState, UpstreamFailed
    from flowkit.results import RunResult
    from flowkit.retry import backoff_delay
    from flowkit.state import StateManager
    from flowkit.task import MapTask, Registry, Task, TaskOptions, registry, task

# Every public name is imported when first asked for, so that ``import
# flowkit`` costs next to nothing: defining tasks loads ``flowkit.task``, and
# what it takes to run a DAG (the run loop, the backends, state, logging)
# loads with ``DAG``.
_HOMES = {
    "flowkit.context": ("RunContext",),
    "flowkit.dag": ("DAG", "Plan"),
    "flowkit.exceptions": (
        "CronError",
        "DAGCycleError",
        "DAGValidationError",
        "FlowkitError",
        "StateError",
        "StateLockedError",
        "TaskDefinitionError",
        "TaskExecutionError",
        "TaskNotFoundError",
        "TaskTimeoutError",
    ),
    "flowkit.hooks": ("Hook",),
    "flowkit.logging": ("configure_logging", "get_run_logger"),
    "flowkit.outcome": ("SKIPPED", "Attempt", "Status", "TaskState", "UpstreamFailed"),
    "flowkit.results": ("RunResult",),
    "flowkit.retry": ("backoff_delay",),
    "flowkit.state": ("StateManager",),
    "flowkit.task": ("MapTask", "Registry", "Task", "TaskOptions", "registry", "task"),
}
_LAZY = {name: module for module, names in _HOMES.items() for name in names}

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


class _Package(ModuleType):
    """The ``flowkit`` module: a public name wins over a submodule of that name."""

    def __setattr__(self, name: str, value: Any) -> None:
        # Loading a submodule binds it on its package, and ``flowkit.task`` the
        # module would hide ``flowkit.task`` the decorator: the decorator stays.
        if name in _LAZY and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
