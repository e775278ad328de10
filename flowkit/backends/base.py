"""The backend contract: what the scheduler asks of every place attempts run.

The scheduler hands a backend :class:`Call` objects (:meth:`Backend.submit`,
:meth:`Backend.submit_many`) and takes them back, each with its
:class:`~flowkit.outcome.Outcome` set, from :meth:`Backend.collect`, which
returns every call that has ended since the last collect (waiting at most the
time the scheduler allows). That is the whole conversation: the scheduler
knows nothing of threads, pools or event loops, and a backend decides nothing
about retries, timeouts or statuses.

Time belongs to the scheduler. It keeps every deadline on the run's clock; a
backend only reports when a call began (:meth:`Backend.started_at`, on the
clock it was given) and, when asked, stops or abandons a call the scheduler
gave up on (:meth:`Backend.stop`).

A backend never leaves a call without an outcome. One whose executor can run
nothing more (a Dask client that lost its scheduler or was closed, a pool the
caller shut down or that broke) fails every call it holds, and every call it is
then given, with the error of :func:`executor_lost`: another attempt cannot
run there, so the scheduler does not retry it, and the run ends.
"""

from __future__ import annotations

import abc
import queue
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flowkit.context import TaskContext
from flowkit.exceptions import TaskExecutionError, TaskTimeoutError
from flowkit.outcome import Outcome
from flowkit.task import Task

__all__ = ["Backend", "Call", "Inbox", "executor_lost", "timeout_error"]

Clock = Callable[[], float]


class Call:
    """One attempt of one task, as the scheduler submits it and a backend returns it.

    Attributes:
        index: the task's index in the run (the scheduler's key).
        attempt: the attempt number, from 1.
        task: the task; ``task.fn`` is what runs.
        args, kwargs: its inputs.
        ctx: what the worker sets as the current task.
        outcome: set by the backend once the attempt has ended.
    """

    __slots__ = ("args", "attempt", "ctx", "index", "kwargs", "outcome", "task")

    def __init__(
        self, index: int, attempt: int, task: Task[..., Any], args: tuple[Any, ...],
        kwargs: Mapping[str, Any], ctx: TaskContext,
    ):
        self.index = index
        self.attempt = attempt
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.ctx = ctx
        self.outcome: Outcome | None = None

    def __repr__(self) -> str:
        return f"<Call {self.ctx.task!r} attempt {self.attempt}>"


class Backend(abc.ABC):
    """Runs calls and gives them back with their outcomes.

    Attributes:
        name: the executor's name, for logs (``RunContext.executor``).
        remote: True when calls leave this process (their callables must pickle).
        stop_note: what :meth:`stop` does to a call that is running, said in
            the error of an attempt that timed out.
        remote_values: True when results stay where they were made, as
            :class:`~flowkit.outcome.Remote` values: the backend then applies
            ``when`` and the cache next to the inputs, as part of the attempt,
            and reports a skip or a cache hit as a :class:`~flowkit.outcome.Decided`
            outcome value (see :meth:`attach`, :meth:`keep`).
        capacity: how many calls it runs at once, or ``None`` when it queues and
            orders calls itself. The scheduler gives it no more than that, so
            that the start order (priorities, critical path, pools) is its own.
    """

    name = "backend"
    remote = False
    remote_values = False
    capacity: int | None = None
    stop_note = "a thread cannot be killed: it finishes in the background and its result is dropped"

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock

    @abc.abstractmethod
    def submit(self, call: Call) -> None:
        """Start ``call`` (or queue it); it comes back from :meth:`collect`."""

    def submit_many(self, calls: Iterable[Call]) -> None:
        """Start several calls at once (a backend may send them as one batch)."""
        for call in calls:
            self.submit(call)

    @abc.abstractmethod
    def collect(self, timeout: float | None) -> list[Call]:
        """The calls that ended since the last collect, each with its ``outcome``.

        Waits until at least one has ended, or ``timeout`` seconds (``None``:
        no limit); returns ``[]`` when the time ran out or :meth:`wake` was called.
        """

    def expect(self, durations: Mapping[str, float]) -> int | None:
        """Before the run: each task's expected seconds, from the run history.

        A backend may plan with them (the process pool sends short calls in
        batches) and declare a different :attr:`capacity`; returns the capacity.
        """
        return self.capacity

    def wake(self) -> None:  # noqa: B027 - nothing to wake by default
        """Make a :meth:`collect` that is waiting, or the next one, return at once."""

    def started_at(self, call: Call) -> float | None:
        """When ``call`` began to run, on this backend's clock; ``None`` while it
        waits for a worker. The default: as soon as it was submitted."""
        return None

    def stop(self, call: Call) -> None:  # noqa: B027 - abandoning needs nothing by default
        """The scheduler gave up on ``call`` (a timeout): interrupt it if this
        backend can, else abandon it and free its capacity."""

    def stop_note_for(self, call: Call) -> str:
        """What :meth:`stop` does to ``call`` if it runs, for the error of its timeout."""
        return self.stop_note

    def cancel_pending(self) -> list[Call]:
        """Cancel every call that has not started; return them."""
        return []

    def attach(self, state: Any) -> None:  # noqa: B027 - only remote values need the state
        """Before the run, with ``remote_values``: the run's state manager (``None``
        without one), for cache lookups and to know which results it stores."""

    def keep(self, values: list[Any]) -> None:  # noqa: B027 - local values need nothing
        """Before :meth:`close`, with ``remote_values``: the final tasks' values,
        to make readable after it (a client the backend opened is closed then)."""

    def close(self, *, cancel: bool = False) -> None:  # noqa: B027 - nothing owned by default
        """Release what this backend owns; never shuts down a caller's executor."""


class Inbox:
    """Where calls that ended on other threads wait for :meth:`Backend.collect`.

    Backends running one run (a pool and the event loop of coroutine tasks)
    share one inbox, so the scheduler waits in one place.
    """

    _WAKE: Any = object()

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self.put = self._queue.put
        # Wakes collect() has taken, counted by the collecting thread alone: a collect
        # that returns [] can tell a wake (given before it or during it) from a timeout.
        self.woken = 0

    def wake(self) -> None:
        self._queue.put(self._WAKE)

    def collect(self, timeout: float | None) -> list[Call]:
        """What arrived, waiting up to ``timeout`` for the first one."""
        get = self._queue.get
        try:
            first = get(timeout=timeout) if timeout is None or timeout > 0 else get(block=False)
        except queue.Empty:
            return []
        if first is self._WAKE:
            self.woken += 1
            ended = []
        else:
            ended = [first]
        while True:
            try:
                more = get(block=False)
            except queue.Empty:
                return ended
            if more is not self._WAKE:
                ended.append(more)
            else:
                self.woken += 1


def timeout_error(task_name: str, timeout: float, note: str) -> TaskTimeoutError:
    """The error of an attempt the scheduler timed out; ``note`` says what became of it."""
    return TaskTimeoutError(
        f"task {task_name!r} timed out after {timeout:g}s; the run went on without it ({note})",
        task_name=task_name,
        timeout=timeout,
    )


def executor_lost(task_name: str, what: str, todo: str) -> TaskExecutionError:
    """The error of an attempt whose executor can run nothing more: ``what``
    happened to it, ``todo`` says what to do. Not retryable: no attempt can run there."""
    return TaskExecutionError(
        f"task {task_name!r} did not finish: {what}. Nothing more can run there, "
        f"so the attempt is not retried. {todo}",
        task_name=task_name,
        retryable=False,
    )
