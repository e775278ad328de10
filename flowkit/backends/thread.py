"""``executor="thread"``: a small pool of daemon threads.

Lighter than ``ThreadPoolExecutor`` (no Future per call), and its threads are
daemons, so a call abandoned after a timeout or Ctrl-C never keeps the
interpreter from exiting.
"""

from __future__ import annotations

import queue
import threading

from flowkit.backends.base import Backend, Call, Clock, Inbox
from flowkit.worker import call as call_fn

__all__ = ["ThreadBackend"]


class ThreadBackend(Backend):
    """Daemon threads fed from a ``SimpleQueue``.

    Calls submitted since the last collect are handed to the threads when the
    scheduler collects. A lone call, with nothing else in flight and no timer
    waiting, runs right there in the scheduler's thread: no parallelism is
    lost, and two thread hand-offs are saved.
    """

    name = "thread"

    def __init__(self, inbox: Inbox, clock: Clock, max_workers: int):
        super().__init__(clock)
        self.inbox = inbox
        self.max_workers = self.capacity = max_workers
        self._new: list[Call] = []  # submitted, not yet handed to a thread
        self._in_flight = 0  # handed to a thread, not yet collected
        self._work: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._serving = 0  # threads taking work; one stuck in an abandoned call does not count
        self._spawned = 0
        self._lock = threading.Lock()  # guards the two below, for calls with a timeout only
        self._started: dict[Call, float] = {}  # timed call -> when it began
        self._abandoned: set[Call] = set()  # timed-out calls whose thread was replaced

    def submit(self, call: Call) -> None:
        self._new.append(call)

    def collect(self, timeout: float | None) -> list[Call]:
        new = self._new
        if new:
            self._new = []
            if len(new) == 1 and not self._in_flight and timeout is None:
                call = new[0]
                if call.task.options.timeout is None:
                    call.outcome = call_fn(call.task.fn, call.args, call.kwargs, call.ctx)
                    return [call]
            self._hand_over(new)
        ended = self.inbox.collect(timeout)
        for call in ended:
            if not call.task.is_async:  # a coroutine's call shares the inbox, not the threads
                self._in_flight -= 1
        return ended

    def _hand_over(self, calls: list[Call]) -> None:
        for call in calls:
            if self._serving < self.max_workers:
                self._start_worker()
            self._in_flight += 1
            self._work.put(call)

    def _start_worker(self) -> None:
        self._serving += 1
        self._spawned += 1
        threading.Thread(
            target=self._serve, name=f"flowkit-worker-{self._spawned - 1}", daemon=True
        ).start()

    def _serve(self) -> None:
        get, put, clock = self._work.get, self.inbox.put, self.clock
        while True:
            call = get()
            if call is None:
                return
            timed = call.task.options.timeout is not None
            if timed:
                with self._lock:
                    self._started[call] = clock()
            call.outcome = call_fn(call.task.fn, call.args, call.kwargs, call.ctx)
            put(call)
            if timed:
                with self._lock:
                    del self._started[call]
                    if call in self._abandoned:  # replaced while stuck: leave
                        self._abandoned.discard(call)
                        return

    def wake(self) -> None:
        self.inbox.wake()

    def started_at(self, call: Call) -> float | None:
        with self._lock:
            return self._started.get(call)

    def stop(self, call: Call) -> None:
        # The timed-out call keeps its thread busy: that thread leaves once the
        # call returns, and a new one takes its place now, so the run keeps its
        # parallelism. (It still counts as in flight until its outcome arrives.)
        with self._lock:
            if call not in self._started:
                return  # it ended just now: its outcome is on the way, nothing is stuck
            self._abandoned.add(call)
        self._serving -= 1
        self._start_worker()

    def cancel_pending(self) -> list[Call]:
        cancelled, self._new = self._new, []
        while True:
            try:
                call = self._work.get_nowait()
            except queue.Empty:
                return cancelled
            if call is not None:
                self._in_flight -= 1
                cancelled.append(call)

    def close(self, *, cancel: bool = False) -> None:
        for _ in range(self._serving):
            self._work.put(None)
