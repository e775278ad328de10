"""``executor="sync"``: calls run one at a time, in the scheduler's own thread.

A call runs only when the scheduler collects, so a failure is seen before the
next call starts (fail-fast stops at once) and the order is deterministic. A
call with a timeout runs on a helper thread instead, so that the scheduler can
give up on it when its deadline passes.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable

from flowkit.backends.base import Backend, Call, Clock, Inbox
from flowkit.outcome import Outcome
from flowkit.worker import call as call_fn

__all__ = ["PlanBackend", "SyncBackend"]


class SyncBackend(Backend):
    """Runs each call in the thread that collects it."""

    name = "sync"
    capacity = 1

    def __init__(self, inbox: Inbox, clock: Clock):
        super().__init__(clock)
        self.inbox = inbox  # calls that ended elsewhere: timed calls, coroutines
        self._queued: collections.deque[Call] = collections.deque()
        self._started: dict[Call, float] = {}  # timed calls running on a helper thread

    def submit(self, call: Call) -> None:
        self._queued.append(call)

    def submit_many(self, calls: Iterable[Call]) -> None:
        self._queued.extend(calls)

    def collect(self, timeout: float | None) -> list[Call]:
        if not self._started and self._queued:
            call = self._queued.popleft()
            if call.task.options.timeout is None:
                call.outcome = call_fn(call.task.fn, call.args, call.kwargs, call.ctx)
                return [call]
            self._start_helper(call)
        return self.inbox.collect(timeout)

    def _start_helper(self, call: Call) -> None:
        def run() -> None:
            call.outcome = call_fn(call.task.fn, call.args, call.kwargs, call.ctx)
            self._started.pop(call, None)
            self.inbox.put(call)

        self._started[call] = self.clock()
        threading.Thread(target=run, name=f"flowkit-sync-{call.ctx.task}", daemon=True).start()

    def wake(self) -> None:
        self.inbox.wake()

    def started_at(self, call: Call) -> float | None:
        return self._started.get(call)

    def stop(self, call: Call) -> None:
        self._started.pop(call, None)  # the helper thread runs on; its outcome is dropped

    def cancel_pending(self) -> list[Call]:
        cancelled = list(self._queued)
        self._queued.clear()
        return cancelled


class PlanBackend(Backend):
    """Runs nothing: each call "succeeds" at once, in the order it was submitted.

    ``DAG.plan`` runs the real scheduler on it; :attr:`order` is then the order
    in which a run on the sync backend would start the tasks.
    """

    name = "plan"
    capacity = 1  # starts in the order a run on the sync backend would

    def __init__(self) -> None:
        super().__init__()
        self.order: list[int] = []
        self._queued: collections.deque[Call] = collections.deque()

    def submit(self, call: Call) -> None:
        self.order.append(call.index)
        self._queued.append(call)

    def collect(self, timeout: float | None) -> list[Call]:
        call = self._queued.popleft()
        call.outcome = Outcome(True, None, None, 0.0, 0.0, self.name)
        return [call]
