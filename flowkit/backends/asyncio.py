"""Coroutine tasks: ``async def`` functions decorated with ``@task``.

They run on an event loop, never in a pool: a private loop in a daemon thread
for ``dag.run()``, or the caller's own loop for ``await dag.arun()``. Their
outcomes reach the scheduler through the same completion queue as every other
attempt, so retries, conditions, caching, hooks and state work unchanged. A
timeout cancels the coroutine for real (``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from flowkit.backends.base import Completion, timeout_error
from flowkit.context import TaskContext, current_task
from flowkit.task import Task
from flowkit.worker import Outcome

__all__ = ["AsyncRunner"]


class AsyncRunner:
    """Runs coroutine tasks on an event loop and reports outcomes on ``done``.

    Args:
        done: the scheduler's completion queue.
        loop: a running loop to use (``arun``); ``None`` starts a private one.
        max_concurrency: at most this many coroutine tasks at once (``None``: no limit).
    """

    name = "asyncio"
    # Timeouts are enforced in the loop, where they cancel for real; the
    # scheduler's deadline is only a backstop for a coroutine that blocks the loop.
    self_timing = False
    deadline_grace = 0.1
    timeout_note = "the coroutine was cancelled"

    def __init__(
        self,
        done: queue.SimpleQueue[Completion],
        loop: asyncio.AbstractEventLoop | None = None,
        max_concurrency: int | None = None,
    ):
        self.done = done
        self.owned = loop is None
        if loop is None:
            loop = asyncio.new_event_loop()
            self._thread: threading.Thread | None = threading.Thread(
                target=loop.run_forever, name="flowkit-asyncio", daemon=True
            )
            self._thread.start()
        else:
            self._thread = None
        self.loop = loop
        self._limit = max_concurrency
        self._semaphore: asyncio.Semaphore | None = None
        self._futures: dict[cf.Future[Outcome], Any] = {}
        self._started: dict[Any, float] = {}  # token -> time.monotonic() its coroutine began
        self._dropped: set[Any] = set()  # tokens whose coroutine flowkit cancelled itself

    def submit(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext, *, inline: bool = False,
    ) -> None:
        future = asyncio.run_coroutine_threadsafe(self._invoke(token, task, args, kwargs, ctx),
                                                  self.loop)
        self._futures[future] = token
        future.add_done_callback(functools.partial(self._settle, token))

    async def _invoke(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext,
    ) -> Outcome:
        if self._limit is not None:
            if self._semaphore is None:  # created in the loop that uses it
                self._semaphore = asyncio.Semaphore(self._limit)
            async with self._semaphore:
                return await self._call(token, task, args, kwargs, ctx)
        return await self._call(token, task, args, kwargs, ctx)

    async def _call(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext,
    ) -> Outcome:
        self._started[token] = time.monotonic()
        current_task.set(ctx)  # each asyncio task runs in its own copy of the context
        timeout = task.options.timeout
        started = time.time()
        try:
            if timeout is None:
                value = await task.fn(*args, **kwargs)
            else:
                value = await asyncio.wait_for(task.fn(*args, **kwargs), timeout)
        except TimeoutError as exc:
            error: BaseException = exc
            if timeout is not None:
                error = timeout_error(task, timeout, self.timeout_note)
            return (False, error, started, time.time(), self.name)
        except asyncio.CancelledError as exc:
            if token in self._dropped:
                raise  # flowkit cancelled it: nobody waits for an outcome
            # The task's own code raised it (a cancelled future it awaited):
            # a failure like any other, not a silent end.
            return (False, exc, started, time.time(), self.name)
        except Exception as exc:
            return (False, exc, started, time.time(), self.name)
        return (True, value, started, time.time(), self.name)

    def _settle(self, token: Any, future: cf.Future[Outcome]) -> None:
        self._futures.pop(future, None)
        self._started.pop(token, None)
        if future.cancelled():
            if token in self._dropped:
                self._dropped.discard(token)
                return
            now = time.time()  # cancelled behind flowkit's back: still an outcome
            self.done.put((token, (False, asyncio.CancelledError(), now, now, self.name)))
            return
        error = future.exception()
        if error is None:
            self.done.put((token, future.result()))
        else:  # BaseException from the coroutine (not an Exception): report, never hang
            now = time.time()
            self.done.put((token, (False, error, now, now, self.name)))

    def started_at(self, token: Any) -> float | None:
        return self._started.get(token)

    def abandon(self, token: Any) -> None:
        """A coroutine blocked its loop past its timeout: cancel it once the loop wakes."""
        for future, owner in list(self._futures.items()):
            if owner == token:
                self._dropped.add(token)
                self.loop.call_soon_threadsafe(future.cancel)
                return

    def cancel_pending(self) -> list[Any]:
        """Cancel coroutines still waiting for a concurrency slot."""
        cancelled = []
        for future, token in list(self._futures.items()):
            if token in self._started:
                continue
            self._dropped.add(token)
            if future.cancel():
                cancelled.append(token)
            else:
                self._dropped.discard(token)
        return cancelled

    def close(self, *, cancel: bool = False) -> None:
        """Stop the private loop (cancelling what still runs); leave a caller's loop alone."""
        if cancel:
            for future, token in list(self._futures.items()):
                self._dropped.add(token)
                future.cancel()
        if self.owned and self._thread is not None:
            # Let cancelled coroutines unwind (their finally blocks may await)
            # before the loop stops.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(timeout=2)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            if not self.loop.is_running():
                self.loop.close()


async def _cancel_all() -> None:
    """Cancel every other task of this (private) loop and wait a moment for them."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for pending in others:
        pending.cancel()
    if others:
        await asyncio.wait(others, timeout=1)
