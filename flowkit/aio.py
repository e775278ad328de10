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
import functools
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from flowkit.context import TaskContext, current_task
from flowkit.executors import Completion, timeout_error
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
    self_timing = True  # timeouts are enforced in the loop, where they cancel for real

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
        self._started: set[Any] = set()

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
        self._started.add(token)
        current_task.set(ctx)  # each asyncio task runs in its own copy of the context
        timeout = task.options.timeout
        started = time.time()
        try:
            if timeout is None:
                value = await task.fn(*args, **kwargs)
            else:
                value = await asyncio.wait_for(task.fn(*args, **kwargs), timeout)
        except TimeoutError:
            if timeout is None:
                raise
            error = timeout_error(task, timeout, "the coroutine was cancelled")
            return (False, error, started, time.time(), self.name)
        except Exception as exc:
            return (False, exc, started, time.time(), self.name)
        return (True, value, started, time.time(), self.name)

    def _settle(self, token: Any, future: cf.Future[Outcome]) -> None:
        self._futures.pop(future, None)
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self.done.put((token, future.result()))
        else:  # BaseException from the coroutine (not an Exception): report, never hang
            now = time.time()
            self.done.put((token, (False, error, now, now, self.name)))

    def abandon(self, token: Any) -> None:
        """Timeouts are handled in the loop; nothing to free here."""

    def cancel_pending(self) -> list[Any]:
        """Cancel coroutines still waiting for a concurrency slot."""
        cancelled = []
        for future, token in list(self._futures.items()):
            if token not in self._started and future.cancel():
                cancelled.append(token)
        return cancelled

    def close(self, *, cancel: bool = False) -> None:
        """Stop the private loop (cancelling what still runs); leave a caller's loop alone."""
        if cancel:
            for future in list(self._futures):
                future.cancel()
        if self.owned and self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            if not self.loop.is_running():
                self.loop.close()
