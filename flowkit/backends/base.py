"""The backend contract: what the scheduler asks of every place attempts run.

A backend takes calls with :meth:`Backend.submit` and delivers each
:data:`~flowkit.worker.Outcome` to the scheduler's completion queue as
``(token, outcome)``. :class:`Backend` itself runs calls inline, in the
scheduler's thread (``executor="sync"``).
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from flowkit.context import TaskContext
from flowkit.exceptions import TaskTimeoutError
from flowkit.task import Task
from flowkit.worker import Outcome, invoke

__all__ = ["Backend", "Completion", "timeout_error"]

Completion = tuple[Any, Outcome]

_THREAD_NOTE = "a thread cannot be killed: it finishes in the background and its result is dropped"


class Backend:
    """Runs attempts and reports their outcomes on ``done`` (a ``queue.SimpleQueue``).

    Attributes:
        name: the executor's name, for logs.
        remote: True when tasks leave this process (their callables must pickle).
        inline_ok: True when a lone ready task may run in the scheduler's own
            thread without losing parallelism (nothing else can run meanwhile).
    """

    name = "sync"
    remote = False
    inline_ok = True
    self_timing = True  # enforces timeouts itself (the scheduler sets no deadline)
    deadline_grace = 0.0  # added to a timeout before the scheduler gives up on an attempt
    timeout_note = _THREAD_NOTE

    def __init__(self, done: queue.SimpleQueue[Completion]):
        self.done = done
        # The sync backend runs a call only when the scheduler asks for the next
        # outcome, so a failure is seen before the next call starts (fail-fast).
        self._queued: collections.deque[tuple[Any, ...]] = collections.deque()

    def submit(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext, *, inline: bool = False,
    ) -> None:
        """Queue an attempt; its outcome arrives on ``done`` once it has run."""
        self._queued.append((token, task, args, kwargs, ctx))

    def run_queued(self) -> bool:
        """Run the oldest queued call in this thread; False when none is queued."""
        if not self._queued:
            return False
        token, task, args, kwargs, ctx = self._queued.popleft()
        timeout = task.options.timeout
        if timeout is None:
            self.done.put((token, invoke(task.fn, args, kwargs, ctx)))
        else:
            self.done.put((token, _call_with_timeout(task, args, kwargs, ctx, timeout)))
        return True

    def pump(self) -> None:
        """Start queued calls that now have room (after the scheduler handled an outcome)."""

    def started_at(self, token: Any) -> float | None:
        """When (``time.monotonic()``) the attempt began to run, as far as the backend
        knows; ``None`` while it still waits for a worker (its timeout has not begun)."""
        return None

    def abandon(self, token: Any) -> None:
        """The scheduler gave up on this attempt (a timeout): free its capacity if possible."""

    def cancel_pending(self) -> list[Any]:
        """Cancel every attempt that has not started; return their tokens."""
        tokens = [item[0] for item in self._queued]
        self._queued.clear()
        return tokens

    def close(self, *, cancel: bool = False) -> None:
        """Release what this backend owns; never shuts down a caller's executor."""


def _call_with_timeout(
    task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
    ctx: TaskContext, timeout: float,
) -> Outcome:
    """Run one call on a helper thread and wait at most ``timeout`` for it (sync backend)."""
    box: list[Outcome] = []
    helper = threading.Thread(
        target=lambda: box.append(invoke(task.fn, args, kwargs, ctx)),
        name=f"flowkit-sync-{task.name}",
        daemon=True,
    )
    started = time.time()
    helper.start()
    helper.join(timeout)
    if box:
        return box[0]
    return (False, timeout_error(task, timeout), started, time.time(), helper.name)


def timeout_error(
    task: Task[..., Any], timeout: float, note: str = _THREAD_NOTE
) -> TaskTimeoutError:
    return TaskTimeoutError(
        f"task {task.name!r} timed out after {timeout:g}s; the run went on without it ({note})",
        task_name=task.name,
        timeout=timeout,
    )

