"""Where attempts run: the backends behind ``executor="sync" | "thread" | "process"``
and any ``concurrent.futures.Executor``.

Every backend takes calls with :meth:`Backend.submit` and delivers each
:data:`~flowkit.worker.Outcome` to the scheduler's completion queue as
``(token, outcome)``. Completion is tracked with ``Future.add_done_callback``,
never ``concurrent.futures.wait``, so futures of foreign executors (Dask's
``ClientExecutor``, loky, mpi4py) work too.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import multiprocessing
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from flowkit.context import TaskContext
from flowkit.exceptions import FlowkitError, TaskExecutionError, TaskTimeoutError
from flowkit.task import Task
from flowkit.worker import Outcome, invoke, invoke_remote

__all__ = ["EXECUTOR_NAMES", "Backend", "make_backend"]

EXECUTOR_NAMES = ("thread", "process", "sync")

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
    timeout_note = _THREAD_NOTE

    def __init__(self, done: queue.SimpleQueue[Completion]):
        self.done = done

    def submit(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext, *, inline: bool = False,
    ) -> None:
        """Start an attempt; its outcome arrives later on ``done``."""
        timeout = task.options.timeout
        if timeout is None:
            self.done.put((token, invoke(task.fn, args, kwargs, ctx)))
        else:
            self.done.put((token, _call_with_timeout(task, args, kwargs, ctx, timeout)))

    def abandon(self, token: Any) -> None:
        """The scheduler gave up on this attempt (a timeout): free its capacity if possible."""

    def cancel_pending(self) -> list[Any]:
        """Cancel every attempt that has not started; return their tokens."""
        return []

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


def timeout_error(task: Task[..., Any], timeout: float, note: str = _THREAD_NOTE) -> TaskTimeoutError:
    return TaskTimeoutError(
        f"task {task.name!r} timed out after {timeout:g}s; the run went on without it ({note})",
        task_name=task.name,
        timeout=timeout,
    )


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
        self._threads: list[threading.Thread] = []
        self._retire = 0  # workers to let go after their current call (replaced after a timeout)
        self._lock = threading.Lock()

    def submit(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext, *, inline: bool = False,
    ) -> None:
        if inline:
            self.done.put((token, invoke(task.fn, args, kwargs, ctx)))
            return
        if len(self._threads) < self.max_workers:
            self._start_worker()
        self._work.put((token, task.fn, args, kwargs, ctx))

    def _start_worker(self) -> None:
        worker = threading.Thread(
            target=self._serve, name=f"flowkit-worker-{len(self._threads)}", daemon=True
        )
        self._threads.append(worker)
        worker.start()

    def _serve(self) -> None:
        get, put = self._work.get, self.done.put
        while True:
            item = get()
            if item is None:
                return
            token, fn, args, kwargs, ctx = item
            put((token, invoke(fn, args, kwargs, ctx)))
            if self._retire:
                with self._lock:
                    if self._retire:
                        self._retire -= 1
                        return

    def abandon(self, token: Any) -> None:
        # The timed-out call keeps its thread busy; add a worker so the run keeps
        # its parallelism, and let one go as soon as any call finishes.
        with self._lock:
            self._retire += 1
        self._start_worker()

    def cancel_pending(self) -> list[Any]:
        cancelled = []
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                return cancelled
            if item is not None:
                cancelled.append(item[0])

    def close(self, *, cancel: bool = False) -> None:
        for _ in self._threads:
            self._work.put(None)


class FutureBackend(Backend):
    """Runs attempts on a ``concurrent.futures.Executor``, owned or the caller's."""

    inline_ok = False
    self_timing = False
    timeout_note = "the executor may still be running it; its result will be dropped"

    def __init__(
        self,
        done: queue.SimpleQueue[Completion],
        executor: cf.Executor,
        *,
        owned: bool,
        name: str | None = None,
        pickles: bool = True,
    ):
        super().__init__(done)
        self.executor = executor
        self.owned = owned
        self.name = name or type(executor).__name__
        self.remote = not isinstance(executor, cf.ThreadPoolExecutor)
        self._pickles = pickles and isinstance(executor, cf.ProcessPoolExecutor)
        self._futures: dict[cf.Future[Outcome], Any] = {}
        self._callables: dict[Task[..., Any], Callable[..., Any]] = {}

    def submit(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext, *, inline: bool = False,
    ) -> None:
        fn = self._callables.get(task)
        if fn is None:
            fn = self._callables[task] = sendable_callable(task, check_pickle=self._pickles)
        try:
            if self.remote:
                future = self.executor.submit(invoke_remote, fn, args, kwargs, ctx,
                                              task.options.timeout)
            else:
                future = self.executor.submit(invoke, fn, args, kwargs, ctx)
        except BrokenProcessPool as exc:
            self._report_broken(token, task, exc)
            return
        except RuntimeError as exc:  # executor shut down by its owner
            raise FlowkitError(
                f"cannot submit task {task.name!r}: the executor refused it ({exc}); "
                "pass an executor that is running, and do not shut it down during the run"
            ) from exc
        self._futures[future] = token
        future.add_done_callback(functools.partial(self._settle, token, task.name))

    def _settle(self, token: Any, task_name: str, future: cf.Future[Outcome]) -> None:
        # Runs in whatever thread completes the future: only translate and enqueue.
        self._futures.pop(future, None)
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self.done.put((token, future.result()))
            return
        now = time.time()
        self.done.put((token, (False, _executor_failure(task_name, error), now, now, self.name)))

    def _report_broken(self, token: Any, task: Task[..., Any], exc: BaseException) -> None:
        now = time.time()
        self.done.put((token, (False, _executor_failure(task.name, exc), now, now, self.name)))

    def cancel_pending(self) -> list[Any]:
        cancelled = []
        for future, token in list(self._futures.items()):
            if future.cancel():
                cancelled.append(token)
        return cancelled

    def close(self, *, cancel: bool = False) -> None:
        if not self.owned:
            return
        if cancel and isinstance(self.executor, cf.ProcessPoolExecutor):
            _terminate_workers(self.executor)
        self.executor.shutdown(wait=not cancel, cancel_futures=cancel)


class ProcessBackend(FutureBackend):
    """An owned ``ProcessPoolExecutor`` that is replaced when a worker process dies."""

    timeout_note = "its worker process was interrupted with SIGALRM"

    def __init__(self, done: queue.SimpleQueue[Completion], max_workers: int):
        self.max_workers = max_workers
        super().__init__(done, self._new_pool(), owned=True, name="process")
        self._abandoned = False

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.max_workers)

    def submit(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext, *, inline: bool = False,
    ) -> None:
        if getattr(self.executor, "_broken", False):
            # A worker died: the pool refuses new work. Start a fresh one so
            # retries and independent tasks can go on.
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._new_pool()
        super().submit(token, task, args, kwargs, ctx, inline=inline)

    def abandon(self, token: Any) -> None:
        # The worker normally stops the call itself (SIGALRM); if it is stuck in
        # C code, its process is terminated when the run ends.
        self._abandoned = True

    def close(self, *, cancel: bool = False) -> None:
        super().close(cancel=cancel or self._abandoned)


def _terminate_workers(pool: cf.ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor has no public way to stop a running call; its worker
    # processes are the only handle (a private attribute, hence the getattr).
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def _executor_failure(task_name: str, error: BaseException) -> BaseException:
    if isinstance(error, BrokenProcessPool):
        wrapped = TaskExecutionError(
            f"the worker process running task {task_name!r} died abruptly (killed, crashed, "
            "or called os._exit); the task's attempt counts as failed",
            task_name=task_name,
        )
    elif isinstance(error, pickle.PicklingError | TypeError | AttributeError) and "pickle" in str(
        error
    ).lower():
        wrapped = TaskExecutionError(
            f"task {task_name!r} could not be sent to its worker: {error}. Inputs and results "
            "must be picklable on a process or distributed executor",
            task_name=task_name,
        )
    else:
        if isinstance(error, Exception):
            return error
        wrapped = TaskExecutionError(
            f"the executor failed task {task_name!r}: {error!r}", task_name=task_name
        )
    wrapped.__cause__ = error
    return wrapped


def sendable_callable(task: Task[..., Any], *, check_pickle: bool) -> Callable[..., Any]:
    """What to ship to a worker for ``task``: the Task itself when it is a module
    global (it pickles by name), else its function.

    With ``check_pickle``, refuse early — with a message that says what to do —
    what the standard pickle cannot send, instead of failing in a feeder thread.
    """
    try:
        pickle.dumps(task)
        candidate: Callable[..., Any] = task
    except Exception:
        candidate = task.fn
    if not check_pickle:
        return candidate
    problem = None
    module = getattr(task.fn, "__module__", None)
    if module == "__main__" and multiprocessing.get_start_method(allow_none=True) not in (
        None,
        "fork",
    ):
        problem = "it is defined in __main__, which worker processes started by spawn cannot import"
    else:
        try:
            pickle.dumps(candidate)
        except Exception as exc:
            qualname = getattr(task.fn, "__qualname__", "")
            if "<lambda>" in qualname or "<locals>" in qualname:
                problem = "it is a lambda or a function defined inside another function"
            else:
                problem = f"pickle refused it ({exc})"
    if problem:
        raise FlowkitError(
            f"task {task.name!r} cannot run on a process pool: {problem}. Define it with @task "
            "at module level in an importable module, or use executor='thread'."
        )
    return candidate


def default_workers(kind: str) -> int:
    cpus = os.cpu_count() or 1
    return cpus if kind == "process" else min(32, cpus + 4)


def make_backend(
    executor: str | cf.Executor,
    max_workers: int | None,
    done: queue.SimpleQueue[Completion],
    *,
    address: str | None = None,
) -> Backend:
    """The backend for ``dag.run(executor=..., max_workers=...)``."""
    if max_workers is not None and (
        not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
    ):
        raise FlowkitError(f"max_workers must be a positive integer or None, got {max_workers!r}")
    if isinstance(executor, cf.Executor):
        return FutureBackend(done, executor, owned=False)
    if executor == "sync":
        return Backend(done)
    if executor == "thread":
        return ThreadBackend(done, max_workers or default_workers("thread"))
    if executor == "process":
        return ProcessBackend(done, max_workers or default_workers("process"))
    raise FlowkitError(
        f"unknown executor {executor!r}: use one of {', '.join(map(repr, EXECUTOR_NAMES))} "
        "or pass a concurrent.futures.Executor instance"
    )

