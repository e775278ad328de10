"""Exceptions raised by flowkit.

Every error flowkit raises derives from :class:`FlowkitError`, carries its
context as attributes, and says in its message what to do next::

    FlowkitError
    ├── TaskDefinitionError   (also ValueError)  a bad task option or wiring
    ├── DAGValidationError    (also ValueError)  a DAG that cannot run as built
    │   └── DAGCycleError                         a dependency cycle
    ├── TaskNotFoundError     (also KeyError)    an unknown task name
    ├── StateError                                an unreadable or foreign state file
    │   └── StateLockedError                      another process serves that DAG on that state
    ├── CronError             (also ValueError)  an invalid cron expression or time zone
    └── TaskExecutionError                        a task failed while running
        └── TaskTimeoutError  (also TimeoutError) an attempt ran out of time
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    from flowkit.results import RunResult

__all__ = [
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
]


class FlowkitError(Exception):
    """Base class of every error flowkit raises."""


class TaskDefinitionError(FlowkitError, ValueError):
    """A task was declared with an invalid option or wired to something that is not a task.

    Attributes:
        task_name: the task concerned (``None`` when it has no name yet).
        option: the offending option, when one is to blame.
    """

    def __init__(self, message: str, *, task_name: str | None = None, option: str | None = None):
        super().__init__(message)
        self.task_name = task_name
        self.option = option


class DAGValidationError(FlowkitError, ValueError):
    """A DAG cannot run as built: duplicate names, or inputs that do not fit a signature.

    Attributes:
        task_name: the task whose declaration is at fault.
    """

    def __init__(self, message: str, *, task_name: str | None = None):
        super().__init__(message)
        self.task_name = task_name


class DAGCycleError(DAGValidationError):
    """The dependencies form a cycle.

    Attributes:
        cycle: task names along the cycle, first name repeated at the end
            (``["a", "b", "a"]``).
    """

    def __init__(self, cycle: Sequence[str]):
        self.cycle = list(cycle)
        shown = " -> ".join(self.cycle)
        super().__init__(
            f"the tasks form a cycle: {shown}. A DAG must be acyclic: "
            f"remove one of these edges (for example {self.cycle[-2]!r} >> {self.cycle[-1]!r}).",
            task_name=self.cycle[0],
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduce would pass the message back as ``cycle``.
        return (type(self), (self.cycle,), self.__dict__)


class TaskNotFoundError(FlowkitError, KeyError):
    """A task name was asked for that the DAG does not contain.

    Attributes:
        task_name: the unknown name.
        known: the names the DAG does contain.
    """

    def __init__(self, task_name: str, known: Sequence[str]):
        self.task_name = task_name
        self.known = list(known)
        shown = ", ".join(repr(n) for n in self.known[:10])
        more = f" and {len(self.known) - 10} more" if len(self.known) > 10 else ""
        super().__init__(
            f"no task named {task_name!r} in this DAG; known tasks: {shown or '(none)'}{more}. "
            "Check the spelling, or build the DAG with that task."
        )

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduce would call __init__ with the message alone.
        return (type(self), (self.task_name, self.known), self.__dict__)


class StateError(FlowkitError):
    """State could not be read or written.

    Attributes:
        path: the state file concerned, when there is one.
    """

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(message)
        self.path = path


class StateLockedError(StateError):
    """Another process holds the lock of a DAG on a state (it is serving that DAG).

    Attributes:
        path: the lock file.
        pid: the process holding it, when known.
    """

    def __init__(self, message: str, *, path: str | None = None, pid: int | None = None):
        super().__init__(message, path=path)
        self.pid = pid


class CronError(FlowkitError, ValueError):
    """A cron expression (or a schedule's time zone) is invalid.

    Attributes:
        expression: the expression as given.
        field: the field at fault (``"minute"``, ``"hour"``, ``"day of month"``,
            ``"month"``, ``"day of week"``, ``"tz"``), or ``None`` for the whole.
    """

    def __init__(self, message: str, *, expression: str, field: str | None):
        super().__init__(message)
        self.expression = expression
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_plain, (type(self), self.args), self.__dict__)


class TaskExecutionError(FlowkitError):
    """A task failed: its function raised, it timed out, or its worker died.

    Raised by ``DAG.run`` at the end of a run in which a task failed, with the
    original exception as ``__cause__``.

    Attributes:
        task_name: the (first) failed task.
        attempts: how many attempts that task made.
        result: the full :class:`~flowkit.RunResult` of the run, when raised by ``run``.
        retryable: False for a failure that another attempt cannot change (a
            result that cannot be sent back from a worker process): the
            scheduler does not retry it, whatever ``retries`` and ``retry_on`` say.
    """

    def __init__(
        self,
        message: str,
        *,
        task_name: str | None = None,
        attempts: int = 0,
        result: RunResult | None = None,
        retryable: bool = True,
    ):
        super().__init__(message)
        self.task_name = task_name
        self.attempts = attempts
        self.result = result
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments are lost by the default reduce; keep the
        # attributes (and notes) when the error travels back from a worker
        # process, but not the run result, which stays in the scheduler.
        state = {k: v for k, v in self.__dict__.items() if k != "result"}
        return (_rebuild, (type(self), self.args), state)


class TaskTimeoutError(TaskExecutionError, TimeoutError):
    """An attempt of a task ran longer than its ``timeout``.

    Attributes:
        timeout: the limit, in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        task_name: str | None = None,
        attempts: int = 0,
        timeout: float | None = None,
        result: RunResult | None = None,
    ):
        super().__init__(message, task_name=task_name, attempts=attempts, result=result)
        self.timeout = timeout


def _rebuild(cls: type[TaskExecutionError], args: tuple[Any, ...]) -> TaskExecutionError:
    error = cls.__new__(cls)
    error.args = args
    error.result = None
    return error


def _rebuild_plain(cls: type[Exception], args: tuple[Any, ...]) -> Exception:
    error = cls.__new__(cls)
    error.args = args
    return error
