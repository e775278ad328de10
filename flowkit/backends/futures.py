"""Attempts on a ``concurrent.futures.Executor``: any executor instance, and
``executor="process"``, flowkit's own process pool.

Completion is tracked with ``Future.add_done_callback``, never
``concurrent.futures.wait``, so futures of foreign executors (loky, mpi4py,
Dask's ``ClientExecutor``) work too.

Results that come back from another process larger than
``flowkit.executors.LARGE_RESULT_BYTES`` (pickled) are reported once per run through the
``flowkit.executors`` logger: big data should travel as a path, not as a value.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import functools
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from flowkit import executors as _settings
from flowkit.backends.base import Backend, Call, Clock, Inbox, executor_lost
from flowkit.context import TaskContext
from flowkit.exceptions import FlowkitError, TaskExecutionError
from flowkit.outcome import Outcome
from flowkit.task import Task
from flowkit.worker import Pickled, call_batch, call_packed
from flowkit.worker import call as call_here

__all__ = [
    "FutureBackend",
    "ProcessBackend",
    "executor_failure",
    "exit_with_parent",
    "sendable_callable",
]

logger = logging.getLogger("flowkit.executors")

_new = tuple.__new__  # Outcome(*fields) without its Python-level __new__


class FutureBackend(Backend):
    """Runs calls on a ``concurrent.futures.Executor``, owned or the caller's.

    Each call is one small function call — :func:`~flowkit.worker.call_packed`
    (or :func:`~flowkit.worker.call` on a thread pool), the task's function (or
    the Task, which pickles by name), its inputs and the fields of a
    :class:`~flowkit.context.TaskContext` — and nothing of the scheduler, the
    state or the hooks. Futures report back through ``add_done_callback``, in
    whatever thread completes them.

    Args:
        inbox: where ended calls go.
        clock: the run's clock.
        executor: where to run; a caller's executor is never shut down.
        owned: shut ``executor`` down in :meth:`close`.
        name: the name runs report (default: the executor's class).
        on_close: called by :meth:`close`.
    """

    stop_note = "the executor may still be running it; its result will be dropped"

    def __init__(
        self, inbox: Inbox, clock: Clock, executor: cf.Executor, *, owned: bool,
        name: str | None = None, on_close: Callable[[], None] | None = None,
    ):
        super().__init__(clock)
        self.inbox = inbox
        self.executor = executor
        self.owned = owned
        self.name = name or type(executor).__name__
        self.remote = not isinstance(executor, cf.ThreadPoolExecutor)
        # A process pool sends results back with the standard pickle, nothing else.
        self._pickle_only = isinstance(executor, cf.ProcessPoolExecutor)
        workers = getattr(executor, "_max_workers", None)  # the standard pools say
        self.capacity = workers if isinstance(workers, int) and workers > 0 else None
        self._on_close = on_close
        self._futures: dict[Call, cf.Future[Any]] = {}
        self._dropped: set[Call] = set()  # calls flowkit cancelled itself
        self._callables: dict[Task[..., Any], Callable[..., Any]] = {}
        self._pickles: dict[Callable[..., Any], bool] = {}  # function -> it pickles
        self._submitted: dict[Call, float] = {}  # calls with a timeout -> when submitted
        self._size_lock = threading.Lock()
        self._size_reported = False
        self._lost: tuple[str, str] | None = None  # the executor runs nothing more: why, what to do

    def submit(self, call: Call) -> None:
        self._submit_future(call)

    def collect(self, timeout: float | None) -> list[Call]:
        return self.inbox.collect(timeout)

    def wake(self) -> None:
        self.inbox.wake()

    def _callable_for(self, call: Call) -> Callable[..., Any] | None:
        """What to ship for ``call``'s task; ``None`` when it cannot be sent (reported)."""
        task = call.task
        fn = self._callables.get(task)
        if fn is None:
            try:
                fn = self._callables[task] = self._sendable(task)
            except FlowkitError as exc:  # cannot be sent: fail the attempt, say why
                self._report(call, exc)
                return None
        return fn

    def _submit_future(self, call: Call) -> bool:
        """Hand ``call`` to the executor; False when it failed at once (already reported)."""
        if self._lost is not None:
            self._report(call, None)
            return False
        fn = self._callable_for(call)
        if fn is None:
            return False
        try:
            future = self._send(fn, call)
        except RuntimeError as exc:  # broken (a worker died), or shut down by its owner
            if not isinstance(exc, cf.BrokenExecutor):
                self._lost = (f"the {self.name} was shut down during the run ({exc})", _SHUT_DOWN)
            self._report(call, exc)
            return False
        except Exception as exc:  # the executor could not take the call (pickling, mostly)
            self._report(call, exc)
            return False
        self._futures[call] = future
        if call.task.options.timeout is not None:
            self._submitted[call] = self.clock()
        future.add_done_callback(functools.partial(self._settle, call))
        return True

    def _send(self, fn: Callable[..., Any], call: Call) -> cf.Future[Any]:
        """Submit one call of ``fn`` to the executor."""
        if self.remote:
            return self.executor.submit(call_packed, fn, call.args, call.kwargs, _fields(call.ctx),
                                        call.task.options.timeout, self._pickle_only)
        return self.executor.submit(call_here, fn, call.args, call.kwargs, call.ctx)

    def _sendable(self, task: Task[..., Any]) -> Callable[..., Any]:
        """What to ship for ``task`` (see :func:`sendable_callable`)."""
        return sendable_callable(task, check_pickle=isinstance(self.executor,
                                                               cf.ProcessPoolExecutor),
                                 known=self._pickles)

    def _settle(self, call: Call, future: cf.Future[Outcome]) -> None:
        # Runs in whatever thread completes the future (a Dask client's event
        # loop, a pool's manager thread): only translate and enqueue.
        self._futures.pop(call, None)
        self._submitted.pop(call, None)
        if call in self._dropped:
            self._dropped.discard(call)
            return
        if future.cancelled():
            # Cancelled behind flowkit's back (the executor shut down, the Dask
            # cluster restarted): the scheduler still waits for this attempt.
            error: BaseException | None = cf.CancelledError()
        else:
            error = future.exception()
        if error is not None:
            self._report(call, error)
            return
        self._deliver(call, future.result())

    def _deliver(self, call: Call, outcome: Outcome | tuple[Any, ...]) -> None:
        """Hand ``call`` back with ``outcome`` (or its fields), its result unpickled
        (and its size noted)."""
        if type(outcome) is tuple:  # from call_packed
            outcome = _new(Outcome, outcome)
        assert isinstance(outcome, Outcome)
        value = outcome.value
        kind = type(value)
        if kind is Pickled:
            size = len(value.data)
            try:
                outcome = outcome._replace(value=value.load())
            except Exception as exc:
                self._report(call, _undecodable(call.task.name, exc))
                return
        elif self.remote and (kind is bytes or kind is str):
            size = len(value)
        else:
            size = 0
        if size > _settings.LARGE_RESULT_BYTES:
            self._report_size(call.task.name, size)
        call.outcome = outcome
        self.inbox.put(call)

    def _translate(self, task_name: str, error: BaseException | None) -> BaseException:
        """The error of an attempt that the executor failed (not the task's function);
        ``None``: the executor was lost before the attempt was sent."""
        lost = self._lost_because(error)
        if lost is None:
            assert error is not None, "an attempt failed without an error"
            return executor_failure(task_name, error)
        wrapped = executor_lost(task_name, *lost)
        wrapped.__cause__ = error
        return wrapped

    def _lost_because(self, error: BaseException | None) -> tuple[str, str] | None:
        """Why the executor can run nothing more and what to do, when ``error`` (an
        executor's error, not a task's) says so or it was lost already; else ``None``."""
        if self._lost is None and not self.owned:  # flowkit replaces a pool of its own
            if isinstance(error, BrokenProcessPool):
                self._lost = (f"the {self.name} it ran on is broken: one of its worker processes "
                              "died abruptly (killed, crashed, or it called os._exit)", _BROKEN)
            elif isinstance(error, cf.BrokenExecutor):
                self._lost = f"the {self.name} it ran on is broken ({error})", _BROKEN
            elif isinstance(error, cf.CancelledError) and _shut_down(self.executor):
                self._lost = f"the {self.name} was shut down during the run", _SHUT_DOWN
        lost_with_it = error is None or isinstance(error, RuntimeError | cf.CancelledError)
        return self._lost if lost_with_it else None

    def _report(self, call: Call, error: BaseException | None) -> None:
        now = time.time()
        call.outcome = Outcome(False, None, self._translate(call.task.name, error), now, now,
                               self.name)
        self.inbox.put(call)

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

    def started_at(self, call: Call) -> float | None:
        # A future says whether it runs, not since when: count from submission
        # once it does (a pool marks at most one queued call as running early).
        submitted = self._submitted.get(call)
        future = self._futures.get(call)
        if submitted is None or future is None:
            return None
        return submitted if future.running() or future.done() else None

    def stop(self, call: Call) -> None:
        # Cancelling frees a queued slot (or, on Dask, the cluster's copy of the
        # call); a running thread or process is not stopped by it.
        future = self._futures.get(call)
        if future is not None:
            self._drop(call, future)

    def cancel_pending(self) -> list[Call]:
        return [call for call, future in list(self._futures.items()) if self._drop(call, future)]

    def _drop(self, call: Call, future: cf.Future[Any]) -> bool:
        """Cancel ``future`` without reporting it; True if it was cancelled."""
        self._dropped.add(call)
        if future.cancel():
            return True
        self._dropped.discard(call)
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
    before anyone can cancel it; keeping the rest here, and topping the pool up
    only when the scheduler collects, means that after a failure (fail-fast)
    nothing queued starts. A pool whose worker died is replaced, so that
    retries and independent tasks can go on.

    **Batches.** When the run history says a task takes less than
    ``flowkit.executors.BATCH_BELOW_SECONDS``, sending each call to a process
    and back costs more than the call: its calls travel in batches
    (:func:`~flowkit.worker.call_batch`), as ``Pool.map(chunksize=...)`` does,
    each call still settling its own outcome. A batch holds about
    ``BATCH_SECONDS`` of expected work (at most ``MAX_BATCH`` calls, and no
    more than an even share of what waits); once batches are on, a call of a
    longer task joins one if it fits in what is left. The pool keeps two
    batches per worker (one running, one queued) and the backend declares a
    capacity to match. Calls with a timeout, and calls expected to take longer
    than a batch, travel alone, once a worker is free. What a batch costs under
    fail-fast: a batch the pool has taken runs to its end (a process cannot be
    told to skip the rest), so at most a few batches' calls run after a failure.
    """

    # The worker arms the stop itself (SIGALRM, see flowkit.worker.call_remote);
    # a call stuck where no signal reaches has its process terminated at the end.
    stop_note = "its worker process was interrupted with SIGALRM"

    def __init__(self, inbox: Inbox, clock: Clock, max_workers: int):
        self.max_workers = max_workers
        super().__init__(inbox, clock, self._new_pool(), owned=True, name="process")
        self._abandoned = False
        self._gate = threading.Lock()  # the scheduler and the pool's thread both count
        self._in_pool = 0  # submissions (single calls or batches) the pool holds
        self._limit = max_workers  # how many it may hold with batches
        # Task -> expected seconds, of the tasks whose calls fit in a batch,
        # once some task is short enough for batches (empty: every call alone).
        self._seconds: dict[str, float] = {}
        self._alone: set[Call] = set()  # calls a batch could not carry: sent alone
        self._backlog: collections.deque[Call] = collections.deque()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        context = multiprocessing.get_context()
        # Under forkserver a worker's parent is the fork server, which exits
        # with this process; otherwise it is this process.
        driver = None if context.get_start_method() == "forkserver" else os.getpid()
        return cf.ProcessPoolExecutor(max_workers=self.max_workers, mp_context=context,
                                      initializer=exit_with_parent, initargs=(driver,))

    def expect(self, durations: Mapping[str, float]) -> int | None:
        short = [seconds for seconds in durations.values()
                 if seconds < _settings.BATCH_BELOW_SECONDS]
        if short:
            # Batches on: a call of any task with a recorded duration that fits
            # in one joins one, while it fits in what the batch has left; longer
            # calls travel alone, once a worker is free.
            self._seconds = {name: max(seconds, 1e-6) for name, seconds in durations.items()
                             if seconds <= _settings.BATCH_SECONDS}
            self._limit = 2 * self.max_workers
            self.capacity = self._limit * self._fits(max(min(short), 1e-6))
        return self.capacity

    def _fits(self, seconds: float) -> int:
        """How many calls of ``seconds`` each make one batch."""
        return max(1, min(_settings.MAX_BATCH, int(_settings.BATCH_SECONDS / seconds)))

    def _expected(self, call: Call) -> float | None:
        """``call``'s expected seconds if it may travel in a batch, else ``None``."""
        if call.task.options.timeout is not None or call in self._alone:
            return None
        return self._seconds.get(call.ctx.task)

    def submit(self, call: Call) -> None:
        self._backlog.append(call)

    def collect(self, timeout: float | None) -> list[Call]:
        self._top_up()
        return self.inbox.collect(timeout)

    def _top_up(self) -> None:
        backlog = self._backlog
        while backlog:
            batchable = self._expected(backlog[0]) is not None
            with self._gate:
                # A call sent alone waits for a free worker: its start (and its
                # deadline) is then when it is sent, and after a failure
                # (fail-fast) no call of it waits in the pool to start.
                if self._in_pool >= (self._limit if batchable else self.max_workers):
                    return
                self._in_pool += 1
                share = -(-len(backlog) // (self._limit - self._in_pool + 1))
            if batchable:
                self._send_batch(self._take_batch(share))
            else:
                self._send_one(backlog.popleft())

    def _take_batch(self, share: int) -> list[Call]:
        """The batchable calls at the head of the backlog, about ``BATCH_SECONDS`` of them."""
        backlog, batch = self._backlog, list[Call]()
        budget = _settings.BATCH_SECONDS
        while backlog and len(batch) < min(share, _settings.MAX_BATCH):
            seconds = self._expected(backlog[0])
            if seconds is None or seconds > budget:  # it would hold the others back
                break
            batch.append(backlog.popleft())
            budget -= seconds
        return batch

    def _renew_if_broken(self) -> None:
        if getattr(self.executor, "_broken", False):
            # A worker died: the pool refuses new work. Start a fresh one.
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._new_pool()

    def _send_one(self, call: Call) -> None:
        self._renew_if_broken()
        if not self._submit_future(call):
            self._slot_freed()

    def _send_batch(self, calls: list[Call]) -> None:
        self._renew_if_broken()
        items, sent = [], []
        for call in calls:
            fn = self._callable_for(call)
            if fn is not None:
                items.append((fn, call.args, call.kwargs, _fields(call.ctx)))
                sent.append(call)
        try:
            if not sent:
                raise _NothingSent
            future = self.executor.submit(call_batch, items, self._pickle_only)
        except _NothingSent:
            self._slot_freed()
            return
        except RuntimeError as exc:  # a worker died since the pool was renewed
            for call in sent:
                self._report(call, exc)
            self._slot_freed()
            return
        for call in sent:
            self._futures[call] = future
        future.add_done_callback(functools.partial(self._settle_batch, sent))

    def _settle_batch(self, calls: list[Call], future: cf.Future[list[tuple[Any, ...]]]) -> None:
        # Runs in the pool's thread, like _settle: each call settles on its own.
        # The slot is free before any call is handed back: the scheduler, woken
        # by the first, tops the pool up at once (and, with one worker, a slot
        # freed after the hand-back could be seen taken and never waited for).
        self._slot_freed()
        for call in calls:
            self._futures.pop(call, None)
        if future.cancelled():
            kept = [c for c in calls if c not in self._dropped]
            self._dropped.difference_update(calls)
            for call in kept:
                self._report(call, cf.CancelledError())
            return
        error = future.exception()
        if error is None:
            for call, outcome in zip(calls, future.result(), strict=True):
                self._deliver(call, outcome)
        elif len(calls) > 1 and not isinstance(error, BrokenProcessPool):
            # One call's inputs did not pickle, and the batch with it: send
            # each call alone, so that only that one fails, saying why.
            self._alone.update(calls)
            self._backlog.extendleft(reversed(calls))
            self.inbox.wake()
        else:
            # A worker died during the batch: which of its calls ran is
            # unknown, so each attempt counts as failed (retries apply).
            for call in calls:
                self._report(call, error)

    def started_at(self, call: Call) -> float | None:
        # A call with a timeout is sent alone, to a free worker: it runs once sent.
        return self._submitted.get(call)

    def _settle(self, call: Call, future: cf.Future[Outcome]) -> None:
        self._slot_freed()  # before the hand-back (see _settle_batch)
        super()._settle(call, future)

    def _slot_freed(self) -> None:
        with self._gate:
            self._in_pool -= 1

    def cancel_pending(self) -> list[Call]:
        waiting = list(self._backlog)
        self._backlog.clear()
        by_future: dict[cf.Future[Any], list[Call]] = {}
        for call, future in list(self._futures.items()):
            by_future.setdefault(future, []).append(call)
        for future, calls in by_future.items():
            self._dropped.update(calls)  # before cancel(), which runs the callback
            if future.cancel():
                waiting += calls
            else:
                self._dropped.difference_update(calls)
        return waiting

    def stop(self, call: Call) -> None:
        # The worker normally stops the call itself (SIGALRM); if it is stuck in
        # C code, its process is terminated when the run ends.
        self._abandoned = True

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            self._backlog.clear()
        super().close(cancel=cancel or self._abandoned)


_PARENT_POLL_SECONDS = 0.5  # how often a worker checks that its driver lives


def exit_with_parent(driver: int | None) -> None:
    """Pool initializer: end this worker process when the process that made the pool dies.

    Without it a worker outlives a driver killed with ``kill -9`` (or by the
    out-of-memory killer), holding memory and maybe running a task, since its
    siblings keep the pool's pipes open. A daemon thread watches two signs:
    the worker's parent changes (fork, spawn: the parent is the driver), or
    the driver's end of the pipe the worker was started through closes
    (forkserver: the parent is the fork server, which lives as long as its
    children do). ``prctl(PR_SET_PDEATHSIG)`` is not used: it fires when the
    *thread* that started the worker ends, and a pool may start workers from
    a short-lived thread.

    Args:
        driver: the pid the worker's parent should be, ``None`` under
            forkserver; a worker whose parent is already another process exits.
    """
    parent = os.getppid()
    if driver is not None and parent != driver:
        os._exit(1)
    creator = multiprocessing.parent_process()
    sentinel = creator.sentinel if creator is not None else None
    threading.Thread(target=_watch_parent, args=(parent, sentinel), name="flowkit-parent-watch",
                     daemon=True).start()


def _watch_parent(parent: int, sentinel: int | None) -> None:
    from multiprocessing.connection import wait  # loaded by the pool's worker already

    while os.getppid() == parent:
        if sentinel is None:
            time.sleep(_PARENT_POLL_SECONDS)
        elif wait([sentinel], _PARENT_POLL_SECONDS):
            break  # the driver's end of the pipe closed: it has died
    os._exit(1)


class _NothingSent(Exception):
    """No call of a batch could be sent (each was reported)."""


_AGAIN = (
    "run the DAG again (with a state and resume=True, the tasks that succeeded are not run again)"
)
_SHUT_DOWN = (
    "Keep the executor running until the run returns (do not shut it down during the run), "
    f"then {_AGAIN}"
)
_BROKEN = (
    "flowkit cannot replace an executor it was given: pass a new pool (or executor='process', "
    f"whose pool flowkit replaces when a worker dies), then {_AGAIN}"
)


def _shut_down(executor: cf.Executor) -> bool:
    # The standard pools have no public "is shut down"; their flags are the only
    # way to tell a shutdown from a call cancelled by other means (a custom executor).
    flags = ("_shutdown", "_shutdown_thread")  # ThreadPoolExecutor's, ProcessPoolExecutor's
    return any(getattr(executor, flag, False) is True for flag in flags)


def _terminate_workers(pool: cf.ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor has no public way to stop a running call; its worker
    # processes are the only handle (a private attribute, hence the getattr).
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def executor_failure(task_name: str, error: BaseException) -> BaseException:
    """The error an attempt fails with when its executor, not its function, failed it."""
    if isinstance(error, BrokenProcessPool):
        wrapped = TaskExecutionError(
            f"the worker process running task {task_name!r} died abruptly (killed, crashed, "
            "or called os._exit); the task's attempt counts as failed",
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
            "must be picklable on a process or distributed executor. Not retried: another "
            "attempt would fail the same way",
            task_name=task_name,
            retryable=False,
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


def sendable_callable(
    task: Task[..., Any], *, check_pickle: bool,
    known: dict[Callable[..., Any], bool] | None = None,
) -> Callable[..., Any]:
    """What to ship to a worker for ``task``: the Task itself when it is a module
    global (it pickles by name), else its function.

    With ``check_pickle``, refuse early — with a message that says what to do —
    what the standard pickle cannot send, instead of failing in a feeder thread.
    ``known`` remembers which functions (not Tasks) pickle, for many tasks of one function.
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
    elif not _known(candidate, known):
        try:
            pickle.dumps(candidate)
        except Exception as exc:
            qualname = getattr(task.fn, "__qualname__", "")
            if "<lambda>" in qualname or "<locals>" in qualname:
                problem = "it is a lambda or a function defined inside another function"
            else:
                problem = f"pickle refused it ({exc})"
        else:
            if known is not None:
                with contextlib.suppress(TypeError):  # unhashable: checked each time
                    known[candidate] = True
    if problem:
        raise FlowkitError(
            f"task {task.name!r} cannot run on a process pool: {problem}. Define it with @task "
            "at module level in an importable module, or use executor='thread'."
        )
    return candidate



def _known(fn: Callable[..., Any], known: dict[Callable[..., Any], bool] | None) -> bool:
    """Whether ``fn`` is known to pickle (an unhashable callable never is)."""
    try:
        return known is not None and fn in known
    except TypeError:
        return False


def _fields(ctx: TaskContext) -> tuple[str, str, str]:
    """``ctx`` as :func:`~flowkit.worker.call_packed` takes it."""
    return (ctx.task, ctx.run_id, ctx.dag)
