"""``executor="thread"``: a small pool of daemon threads."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from flowkit.backends.base import Backend, Completion
from flowkit.context import TaskContext
from flowkit.task import Task
from flowkit.worker import invoke

__all__ = ["ThreadBackend"]

class ThreadBackend(Backend):
    """A small pool of daemon threads fed from a ``SimpleQueue``.

    Lighter than ``ThreadPoolExecutor`` (no Future per call), and its threads
    are daemons, so a task abandoned after a timeout or Ctrl-C never keeps the
    interpreter from exiting.
    """

    name = "thread"
    self_timing = False

    def __init__(self, done: queue.SimpleQueue[Completion], max_workers: int):
        super().__init__(done)
        self.max_workers = max_workers
        self._work: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._serving = 0  # threads taking work; one stuck in an abandoned call does not count
        self._spawned = 0
        self._lock = threading.Lock()  # guards the two below, for calls with a timeout only
        self._started: dict[Any, float] = {}  # token -> time.monotonic() its call began
        self._abandoned: set[Any] = set()  # timed-out calls whose thread was replaced

    def submit(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext, *, inline: bool = False,
    ) -> None:
        if inline:
            self.done.put((token, invoke(task.fn, args, kwargs, ctx)))
            return
        if self._serving < self.max_workers:
            self._start_worker()
        self._work.put((token, task.fn, args, kwargs, ctx, task.options.timeout is not None))

    def _start_worker(self) -> None:
        self._serving += 1
        self._spawned += 1
        threading.Thread(
            target=self._serve, name=f"flowkit-worker-{self._spawned - 1}", daemon=True
        ).start()

    def _serve(self) -> None:
        get, put = self._work.get, self.done.put
        while True:
            item = get()
            if item is None:
                return
            token, fn, args, kwargs, ctx, timed = item
            if timed:
                with self._lock:
                    self._started[token] = time.monotonic()
            put((token, invoke(fn, args, kwargs, ctx)))  # invoke never raises here
            if timed:
                with self._lock:
                    del self._started[token]
                    if token in self._abandoned:  # replaced while stuck: leave
                        self._abandoned.discard(token)
                        return

    def started_at(self, token: Any) -> float | None:
        with self._lock:
            return self._started.get(token)

    def abandon(self, token: Any) -> None:
        # The timed-out call keeps its thread busy: that thread leaves once the
        # call returns, and a new one takes its place now, so the run keeps its
        # parallelism.
        with self._lock:
            if token not in self._started:
                return  # it ended just now: its outcome is on the way, nothing is stuck
            self._abandoned.add(token)
        self._serving -= 1
        self._start_worker()

    def cancel_pending(self) -> list[Any]:
        cancelled: list[Any] = []
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                return cancelled
            if item is not None:
                cancelled.append(item[0])

    def close(self, *, cancel: bool = False) -> None:
        for _ in range(self._serving):
            self._work.put(None)

