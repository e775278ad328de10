"""Attempts on a ``concurrent.futures.Executor``: ``executor="process"``, ``"dask"``
and any executor instance.

Completion is tracked with ``Future.add_done_callback``, never
``concurrent.futures.wait``, so futures of foreign executors (Dask's
``ClientExecutor``, loky, mpi4py) work too.

Results that come back from another process larger than
``flowkit.executors.LARGE_RESULT_BYTES`` (pickled) are reported once per run through the
``flowkit.executors`` logger: big data should travel as a path, not as a value.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import logging
import multiprocessing
import pickle
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from flowkit import executors as _settings
from flowkit.backends.base import Backend, Completion
from flowkit.backends.dask import TIMEOUT_NOTE as _DASK_TIMEOUT_NOTE
from flowkit.backends.dask import is_dask_executor, is_killed_worker
from flowkit.context import TaskContext
from flowkit.exceptions import FlowkitError, TaskExecutionError
from flowkit.task import Task
from flowkit.worker import Outcome, Pickled, invoke, invoke_remote

__all__ = ["FutureBackend", "ProcessBackend", "sendable_callable"]

logger = logging.getLogger("flowkit.executors")

class FutureBackend(Backend):
    """Runs attempts on a ``concurrent.futures.Executor``, owned or the caller's.

    Each attempt is one small call — :func:`~flowkit.worker.invoke_remote` (or
    ``invoke`` on a thread pool), the task's function (or the Task, which
    pickles by name), its inputs and a :class:`~flowkit.context.TaskContext` —
    and nothing of the scheduler, the state or the hooks. Futures report back
    through ``add_done_callback``, in whatever thread completes them.

    Args:
        executor: where to run; a caller's executor is never shut down.
        owned: shut ``executor`` down in :meth:`close`.
        name: the name runs report (default: ``"dask"`` or the executor's class).
        pickles: check early that tasks pickle (process pools only).
        on_close: called by :meth:`close`, e.g. to close a Dask client flowkit opened.
    """

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
        on_close: Callable[[], None] | None = None,
    ):
        super().__init__(done)
        self.executor = executor
        self.owned = owned
        self._dask = is_dask_executor(executor)
        self.name = name or ("dask" if self._dask else type(executor).__name__)
        self.remote = not isinstance(executor, cf.ThreadPoolExecutor)
        if self._dask:
            self.timeout_note = _DASK_TIMEOUT_NOTE
        self._pickles = pickles and isinstance(executor, cf.ProcessPoolExecutor)
        self._on_close = on_close
        self._futures: dict[cf.Future[Outcome], Any] = {}
        self._dropped: set[cf.Future[Outcome]] = set()  # futures flowkit cancelled itself
        self._callables: dict[Task[..., Any], Callable[..., Any]] = {}
        self._timed: dict[Any, tuple[cf.Future[Outcome], float]] = {}  # calls with a timeout
        self._size_lock = threading.Lock()
        self._size_reported = False

    def submit(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext, *, inline: bool = False,
    ) -> None:
        self._submit_future(token, task, args, kwargs, ctx)

    def _submit_future(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext,
    ) -> bool:
        """Hand the call to the executor; False when it failed at once (already reported)."""
        fn = self._callables.get(task)
        if fn is None:
            try:
                fn = self._callables[task] = self._sendable(task)
            except FlowkitError as exc:  # cannot be sent: fail the attempt, say why
                self._report(token, task.name, exc)
                return False
        try:
            if self._dask:
                # A fresh key per attempt, named after the task for Dask's dashboard.
                # pure=False because Dask would otherwise key the call by its
                # inputs and answer a retry with the failed attempt's error.
                dask_submit: Callable[..., cf.Future[Outcome]] = self.executor.submit
                future = dask_submit(
                    invoke_remote, fn, args, kwargs, ctx, task.options.timeout,
                    key=f"{task.name}-{uuid.uuid4().hex}", pure=False,
                )
            elif self.remote:
                future = self.executor.submit(invoke_remote, fn, args, kwargs, ctx,
                                              task.options.timeout)
            else:
                future = self.executor.submit(invoke, fn, args, kwargs, ctx)
        except BrokenProcessPool as exc:
            self._report(token, task.name, exc)
            return False
        except RuntimeError as exc:  # executor shut down by its owner
            raise FlowkitError(
                f"cannot submit task {task.name!r}: the executor refused it ({exc}); "
                "pass an executor that is running, and do not shut it down during the run"
            ) from exc
        except Exception as exc:  # the executor could not take the call (pickling, mostly)
            self._report(token, task.name, exc)
            return False
        self._futures[future] = token
        if task.options.timeout is not None:
            self._timed[token] = (future, time.monotonic())
        future.add_done_callback(functools.partial(self._settle, token, task.name))
        return True

    def _sendable(self, task: Task[..., Any]) -> Callable[..., Any]:
        fn = sendable_callable(task, check_pickle=self._pickles)
        if self._dask and getattr(task.fn, "__module__", None) == "__main__":
            # A script's or notebook's tasks live in __main__, which a Dask worker
            # cannot import by name: send the function, which cloudpickle sends by value.
            return task.fn
        return fn

    def _settle(self, token: Any, task_name: str, future: cf.Future[Outcome]) -> None:
        # Runs in whatever thread completes the future (a Dask client's event
        # loop, a pool's manager thread): only translate and enqueue.
        self._futures.pop(future, None)
        self._timed.pop(token, None)
        if future.cancelled():
            if future in self._dropped:
                self._dropped.discard(future)
                return
            # Cancelled behind flowkit's back (the executor shut down, the Dask
            # cluster restarted): the scheduler still waits for this attempt.
            error: BaseException | None = cf.CancelledError()
        else:
            error = future.exception()
        if error is not None:
            self._report(token, task_name, error)
            return
        outcome = future.result()
        value = outcome[1]
        kind = type(value)
        if kind is Pickled:
            size = len(value.data)
            try:
                value = value.load()
            except Exception as exc:
                self._report(token, task_name, _undecodable(task_name, exc))
                return
            outcome = (outcome[0], value, outcome[2], outcome[3], outcome[4])
        elif self.remote and (kind is bytes or kind is str):
            size = len(value)
        else:
            size = 0
        if size > _settings.LARGE_RESULT_BYTES:
            self._report_size(task_name, size)
        self.done.put((token, outcome))

    def _report(self, token: Any, task_name: str, error: BaseException) -> None:
        now = time.time()
        self.done.put((token, (False, _executor_failure(task_name, error), now, now, self.name)))

    def _report_size(self, task_name: str, size: int) -> None:
        with self._size_lock:
            if self._size_reported:
                return
            self._size_reported = True
        logger.warning(
            "task %r returned %.1f MiB (pickled) through the %s executor, more than "
            "flowkit.executors.LARGE_RESULT_BYTES (%d bytes). Large results should not "
            "travel through the scheduler: write them to storage every worker can reach "
            "and return the path. Reported once per run.",
            task_name, size / 2**20, self.name, _settings.LARGE_RESULT_BYTES,
        )

    def started_at(self, token: Any) -> float | None:
        # A future says whether it runs, not since when: count from submission
        # once it does (a pool marks at most one queued call as running early).
        timed = self._timed.get(token)
        if timed is None:
            return None
        future, submitted = timed
        if not isinstance(self.executor, cf.ThreadPoolExecutor | cf.ProcessPoolExecutor):
            return submitted  # other futures (Dask's) may never say they run
        return submitted if future.running() or future.done() else None

    def abandon(self, token: Any) -> None:
        # The scheduler gave up on this attempt (a timeout). Cancelling frees a
        # queued slot, or on Dask the cluster's copy of the call; a running
        # thread or process is not stopped by it.
        for future, owner in list(self._futures.items()):
            if owner == token:
                self._drop(future)
                return

    def cancel_pending(self) -> list[Any]:
        cancelled: list[Any] = []
        for future, token in list(self._futures.items()):
            if self._drop(future):
                cancelled.append(token)
        return cancelled

    def _drop(self, future: cf.Future[Outcome]) -> bool:
        """Cancel ``future`` without reporting it; True if it was cancelled."""
        self._dropped.add(future)
        if future.cancel():
            return True
        self._dropped.discard(future)
        return False

    def close(self, *, cancel: bool = False) -> None:
        try:
            if self.owned:
                if cancel and isinstance(self.executor, cf.ProcessPoolExecutor):
                    _terminate_workers(self.executor)
                self.executor.shutdown(wait=not cancel, cancel_futures=cancel)
        finally:
            if self._on_close is not None:
                self._on_close()


class ProcessBackend(FutureBackend):
    """An owned ``ProcessPoolExecutor``, fed no more calls than it has workers.

    A pool accepts any number of calls and starts one more than it has workers
    before anyone can cancel it; keeping the rest here means that after a
    failure (fail-fast) nothing queued starts. A pool whose worker died is
    replaced, so that retries and independent tasks can go on.
    """

    timeout_note = "its worker process was interrupted with SIGALRM"
    # The worker enforces the timeout itself, from the moment the call starts;
    # the scheduler's deadline is a backstop for code stuck where no signal reaches.
    deadline_grace = 1.0

    def __init__(self, done: queue.SimpleQueue[Completion], max_workers: int):
        self.max_workers = max_workers
        super().__init__(done, self._new_pool(), owned=True, name="process")
        self._abandoned = False
        self._gate = threading.Lock()  # the scheduler and the pool's thread both send
        self._in_pool = 0
        self._backlog: collections.deque[tuple[Any, ...]] = collections.deque()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.max_workers)

    def submit(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext, *, inline: bool = False,
    ) -> None:
        with self._gate:
            if self._in_pool >= self.max_workers:
                self._backlog.append((token, task, args, kwargs, ctx))
                return
            self._in_pool += 1
        self._send(token, task, args, kwargs, ctx)

    def _send(
        self, token: Any, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
        ctx: TaskContext,
    ) -> None:
        with self._gate:
            if getattr(self.executor, "_broken", False):
                # A worker died: the pool refuses new work. Start a fresh one.
                self.executor.shutdown(wait=False, cancel_futures=True)
                self.executor = self._new_pool()
        if not self._submit_future(token, task, args, kwargs, ctx):
            self._slot_freed()

    def _settle(self, token: Any, task_name: str, future: cf.Future[Outcome]) -> None:
        super()._settle(token, task_name, future)
        self._slot_freed()

    def _slot_freed(self) -> None:
        with self._gate:
            self._in_pool -= 1

    def pump(self) -> None:
        # Called by the scheduler after it has handled an outcome — so a
        # failure it just saw has cancelled the backlog before anything new starts.
        while True:
            with self._gate:
                if not self._backlog or self._in_pool >= self.max_workers:
                    return
                self._in_pool += 1
                following = self._backlog.popleft()
            self._send(*following)

    def cancel_pending(self) -> list[Any]:
        with self._gate:
            waiting = [item[0] for item in self._backlog]
            self._backlog.clear()
        return waiting + super().cancel_pending()

    def abandon(self, token: Any) -> None:
        # The worker normally stops the call itself (SIGALRM); if it is stuck in
        # C code, its process is terminated when the run ends.
        self._abandoned = True

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            with self._gate:
                self._backlog.clear()
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
    elif is_killed_worker(error):
        wrapped = TaskExecutionError(
            f"the Dask worker running task {task_name!r} died (killed, out of memory, or "
            "crashed) and Dask gave up on the call; the task's attempt counts as failed. "
            f"Dask said: {error}",
            task_name=task_name,
        )
    elif isinstance(error, cf.CancelledError):
        wrapped = TaskExecutionError(
            f"the executor cancelled task {task_name!r} before it finished (was it shut "
            "down, or its cluster restarted, during the run?); the attempt counts as failed",
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


def _undecodable(task_name: str, error: Exception) -> TaskExecutionError:
    wrapped = TaskExecutionError(
        f"the result of task {task_name!r} came back from its worker but cannot be "
        f"unpickled here: {type(error).__name__}: {error}. Return values whose classes "
        "this process can import (or a path to the data)",
        task_name=task_name,
    )
    wrapped.__cause__ = error
    return wrapped


def sendable_callable(task: Task[..., Any], *, check_pickle: bool) -> Callable[..., Any]:
    """What to ship to a worker for ``task``: the Task itself when it is a module
    global (it pickles by name), else its function.

    With ``check_pickle``, refuse early — with a message that says what to do —
    what the standard pickle cannot send, instead of failing in a feeder thread.
    """
    # A mapped task wraps its template Task, which wraps the function: send the
    # outermost one that pickles by reference.
    chain: list[Callable[..., Any]] = [task]
    while isinstance(chain[-1], Task):
        chain.append(chain[-1].fn)
    candidate = chain[-1]
    for option in chain[:-1]:
        try:
            pickle.dumps(option)
        except Exception:
            continue
        candidate = option
        break
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

