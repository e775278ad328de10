"""Coroutine tasks: ``async def`` functions decorated with ``@task``.

They run on an event loop, never in a pool: a private loop in a daemon thread
for ``dag.run()``, or the caller's own loop for ``await dag.arun()``.
:class:`Mixed` puts this backend next to the run's backend for plain
functions, sharing one inbox, so the scheduler sees a single backend. Stopping
a coroutine (a timeout) cancels it for real.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import functools
import threading
import time
from collections.abc import Iterable
from typing import Any

from flowkit.backends.base import Backend, Call, Clock, Inbox
from flowkit.outcome import Outcome
from flowkit.worker import acall

__all__ = ["AsyncioBackend", "Mixed"]


class AsyncioBackend(Backend):
    """Runs coroutine tasks on an event loop; their calls end up in ``inbox``.

    Args:
        inbox: the run's inbox, shared with the backend of plain functions.
        clock: the run's clock.
        loop: a running loop to use (``arun``); ``None`` starts a private one.
        max_concurrency: at most this many coroutine tasks at once (``None``: no limit).
    """

    name = "asyncio"
    stop_note = "the coroutine was cancelled"

    def __init__(
        self, inbox: Inbox, clock: Clock, loop: asyncio.AbstractEventLoop | None = None,
        max_concurrency: int | None = None,
    ):
        super().__init__(clock)
        self.inbox = inbox
        self.owned = loop is None
        self._thread: threading.Thread | None = None
        if loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="flowkit-asyncio", daemon=True
            )
            self._thread.start()
        self.loop = loop
        self._limit = self.capacity = max_concurrency
        self._semaphore: asyncio.Semaphore | None = None
        self._futures: dict[Call, cf.Future[Outcome]] = {}
        self._started: dict[Call, float] = {}
        self._dropped: set[Call] = set()  # calls flowkit cancelled itself: nobody waits

    def submit(self, call: Call) -> None:
        future = asyncio.run_coroutine_threadsafe(self._run(call), self.loop)
        self._futures[call] = future
        future.add_done_callback(functools.partial(self._settle, call))

    async def _run(self, call: Call) -> Outcome:
        if self._limit is None:
            return await self._call(call)
        if self._semaphore is None:  # created in the loop that uses it
            self._semaphore = asyncio.Semaphore(self._limit)
        async with self._semaphore:
            return await self._call(call)

    async def _call(self, call: Call) -> Outcome:
        self._started[call] = self.clock()
        return await acall(call.task.fn, call.args, call.kwargs, call.ctx)

    def _settle(self, call: Call, future: cf.Future[Outcome]) -> None:
        self._futures.pop(call, None)
        self._started.pop(call, None)
        if call in self._dropped:
            self._dropped.discard(call)
            return
        if future.cancelled():  # cancelled behind flowkit's back: still an outcome
            error: BaseException | None = asyncio.CancelledError()
        else:
            error = future.exception()
        if error is None:
            call.outcome = future.result()
        else:
            now = time.time()  # it ended without reaching the worker's own policy
            call.outcome = Outcome(False, None, error, now, now, self.name)
        self.inbox.put(call)

    def collect(self, timeout: float | None) -> list[Call]:
        return self.inbox.collect(timeout)

    def wake(self) -> None:
        self.inbox.wake()

    def started_at(self, call: Call) -> float | None:
        return self._started.get(call)

    def stop(self, call: Call) -> None:
        """Cancel the coroutine (once the loop wakes, if it blocks its loop)."""
        future = self._futures.get(call)
        if future is not None:
            self._dropped.add(call)
            self.loop.call_soon_threadsafe(future.cancel)

    def cancel_pending(self) -> list[Call]:
        """Cancel coroutines still waiting for a concurrency slot."""
        cancelled = []
        for call, future in list(self._futures.items()):
            if call in self._started:
                continue
            self._dropped.add(call)
            if future.cancel():
                cancelled.append(call)
            else:
                self._dropped.discard(call)
        return cancelled

    def close(self, *, cancel: bool = False) -> None:
        """Stop the private loop (cancelling what still runs); leave a caller's loop alone."""
        if cancel:
            for call, future in list(self._futures.items()):
                self._dropped.add(call)
                self.loop.call_soon_threadsafe(future.cancel)
        if self._thread is not None:
            # Let cancelled coroutines unwind (their finally blocks may await)
            # before the loop stops.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(timeout=2)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            if not self.loop.is_running():
                self.loop.close()


class Mixed(Backend):
    """The run's backend for plain functions, and :class:`AsyncioBackend` for coroutines.

    Both put ended calls in one inbox; collecting goes through ``plain``, which
    may run a call inline while it collects (sync, a lone call on threads).
    """

    def __init__(self, plain: Backend, coroutines: AsyncioBackend):
        super().__init__(plain.clock)
        self.plain = plain
        self.coroutines = coroutines
        self.name = plain.name
        self.remote = plain.remote
        self.remote_values = plain.remote_values

    def _for(self, call: Call) -> Backend:
        return self.coroutines if call.task.is_async else self.plain

    def submit(self, call: Call) -> None:
        self._for(call).submit(call)

    def submit_many(self, calls: Iterable[Call]) -> None:
        for call in calls:
            self._for(call).submit(call)

    def collect(self, timeout: float | None) -> list[Call]:
        return self.plain.collect(timeout)

    def wake(self) -> None:
        self.coroutines.wake()

    def started_at(self, call: Call) -> float | None:
        return self._for(call).started_at(call)

    def stop(self, call: Call) -> None:
        self._for(call).stop(call)

    def stop_note_for(self, call: Call) -> str:
        return self._for(call).stop_note

    def cancel_pending(self) -> list[Call]:
        return self.plain.cancel_pending() + self.coroutines.cancel_pending()

    def attach(self, state: Any) -> None:
        self.plain.attach(state)

    def keep(self, values: list[Any]) -> None:
        self.plain.keep(values)

    def close(self, *, cancel: bool = False) -> None:
        try:
            self.plain.close(cancel=cancel)
        finally:
            self.coroutines.close(cancel=cancel)


async def _cancel_all() -> None:
    """Cancel every other task of this (private) loop and wait a moment for them."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for pending in others:
        pending.cancel()
    if others:
        await asyncio.wait(others, timeout=1)
