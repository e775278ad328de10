"""The one place a task's function is called: :func:`call`, and its variants.

Every attempt — inline, on a thread, in a process, on Dask, or as a coroutine —
ends in an :class:`~flowkit.outcome.Outcome`. One exception policy holds for
all of them: whatever the function raises, ``SystemExit``, ``KeyboardInterrupt``
and ``asyncio.CancelledError`` included, becomes a failed outcome; nothing
escapes a worker, so no worker thread dies and no attempt goes unreported.
The scheduler, in the calling process, decides what an outcome means (a
``KeyboardInterrupt`` stops the run, as Ctrl-C would; retries, skips, caching,
logging and state are decided there too).

Everything here is small, importable and picklable, so the same functions run
in threads, in process pools and on Dask workers. A worker in another process
pickles a result once itself (:class:`Pickled`): the executor then ships plain
bytes, and the scheduler learns the result's size for free, to warn about
results too big to travel (see ``flowkit.backends.futures``).
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from types import FrameType
from typing import Any

from flowkit.context import TaskContext, current_task
from flowkit.exceptions import TaskExecutionError, TaskTimeoutError
from flowkit.outcome import Outcome

__all__ = [
    "Pickled", "acall", "call", "call_batch", "call_packed", "call_remote", "sendable_error",
]

_now = time.time
_thread = threading.current_thread
# The name of the thread a call runs on, read once per thread: reading it is two
# Python-level calls (current_thread(), the name property) on every attempt.
_names = threading.local()
# Outcome(...) runs a Python-level __new__; this C-level one keeps the hot path lean.
_new = tuple.__new__

# Results that cost nothing to ship and whose size needs no pickling to know.
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})

_Fields = tuple[str, str, str]  # a TaskContext's fields, as they travel


class Pickled:
    """A task's result, pickled once in the worker that produced it.

    The executor ships the bytes without walking the object again, and the
    calling process knows the result's size (``len(data)``) without pickling it
    a second time. Only flowkit's own workers create these, so the calling
    process unpickles data it has just asked for.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self) -> tuple[type[Pickled], tuple[bytes]]:
        return (Pickled, (self.data,))

    def load(self) -> Any:
        """The original value."""
        return pickle.loads(self.data)

    def __repr__(self) -> str:
        return f"<Pickled result of {len(self.data)} bytes>"


def _encode(value: Any) -> Any:
    """``value`` as it should travel back: plain scalars and strings as they are,
    anything else as :class:`Pickled` bytes."""
    if type(value) in _PLAIN:
        return value
    try:
        return Pickled(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        # The executor may do better (Dask's cloudpickle), or not need to pickle
        # at all (an in-process executor); if it fails, it says so itself.
        return value


def call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], ctx: TaskContext
) -> Outcome:
    """Call ``fn`` in this thread, with ``ctx`` as the current task, and settle the outcome."""
    worker = getattr(_names, "name", None) or _name_this_thread()
    token = current_task.set(ctx)
    started = _now()
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # the policy above: every way out is an outcome
        return _new(Outcome, (False, None, exc, started, _now(), worker))
    finally:
        current_task.reset(token)
    return _new(Outcome, (True, value, None, started, _now(), worker))


def _name_this_thread() -> str:
    name: str = _thread().name
    _names.name = name
    return name


async def acall(
    fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: Mapping[str, Any],
    ctx: TaskContext,
) -> Outcome:
    """:func:`call` for an ``async def`` function: make the coroutine, then await it.

    Run it as its own asyncio task: the current task is set in that task's context.
    """
    made = call(fn, args, kwargs, ctx)
    if not made.ok:
        return made
    current_task.set(ctx)  # an asyncio task runs in its own copy of the context
    try:
        value = await made.value
    except BaseException as exc:  # the same policy as call()
        return Outcome(False, None, exc, made.started, _now(), "asyncio")
    return Outcome(True, value, None, made.started, _now(), "asyncio")


def call_remote(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    ctx: TaskContext,
    timeout: float | None = None,
    pickle_only: bool = False,
) -> Outcome:
    """:func:`call`, for a worker in another process.

    The result is pickled here, once (see :class:`Pickled`); the error is made
    safe to send back (its traceback text travels as a note). With
    ``pickle_only`` (a process pool, whose only way back is the standard
    pickle), a result that does not pickle fails the attempt here, saying so
    and marked not retryable, instead of breaking in the pool. A process cannot
    be reached once its call runs, so where the worker runs tasks on its main
    thread (a process pool) the stop is armed in advance: ``SIGALRM`` interrupts
    the call after ``timeout`` seconds, when the scheduler gives up on it too.
    """
    return _new(Outcome, _remote(fn, args, kwargs, ctx, timeout, pickle_only,
                                 f"pid {os.getpid()}"))


def call_packed(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    ctx: _Fields,
    timeout: float | None = None,
    pickle_only: bool = False,
) -> tuple[Any, ...]:
    """:func:`call_remote` in the form that travels best: the context's fields
    in, the outcome's fields out, both plain tuples.

    A named tuple is pickled as its class's name and rebuilt by a Python-level
    constructor; for calls that do next to nothing, that is a good part of
    what a round trip to a worker costs. ``Outcome(*fields)`` is the outcome.
    """
    return _remote(fn, args, kwargs, _new(TaskContext, ctx), timeout, pickle_only,
                   f"pid {os.getpid()}")


def call_batch(
    calls: list[tuple[Callable[..., Any], tuple[Any, ...], Mapping[str, Any], _Fields]],
    pickle_only: bool = False,
) -> list[tuple[Any, ...]]:
    """:func:`call_packed` for several calls sent together, one after another.

    Each call settles its own outcome, in order: a batch is only a cheaper way
    to travel. Calls with a timeout are never batched (their deadline counts
    from when they start, which only a call sent alone can tell).
    """
    worker = f"pid {os.getpid()}"  # one string for the batch: pickled once
    return [_remote(fn, args, kwargs, _new(TaskContext, ctx), None, pickle_only, worker)
            for fn, args, kwargs, ctx in calls]


def _remote(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], ctx: TaskContext,
    timeout: float | None, pickle_only: bool, worker: str,
) -> tuple[Any, ...]:
    """What :func:`call_remote` does, the outcome's fields as a plain tuple."""
    alarm = timeout is not None and _can_use_alarm()
    if alarm:
        assert timeout is not None
        previous = signal.signal(signal.SIGALRM, _alarm_handler(ctx.task, timeout))
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        ok, value, error, started, ended, _ = call(fn, args, kwargs, ctx)
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if error is not None:
        return (ok, value, sendable_error(error, ctx.task), started, ended, worker)
    sent = _encode(value)
    if pickle_only and sent is value and type(value) not in _PLAIN:
        return (False, None, _unsendable_result(value, ctx.task), started, ended, worker)
    return (ok, sent, None, started, ended, worker)


def _unsendable_result(value: Any, task_name: str) -> TaskExecutionError:
    """The error of an attempt whose result cannot travel back: the same every time."""
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        problem = "it does not pickle"  # pragma: no cover - _encode failed just before
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    kind = type(value)
    return TaskExecutionError(
        f"task {task_name!r} ran, but its result could not be sent back from its worker "
        f"process: a {kind.__module__}.{kind.__qualname__} does not pickle ({problem}). "
        "Return picklable values (or a path to the data) from tasks on a process executor, "
        "or run this task on threads. Not retried: another attempt would return the same.",
        task_name=task_name,
        retryable=False,
    )


def _can_use_alarm() -> bool:
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None)
    )


def _alarm_handler(task_name: str, timeout: float) -> Callable[[int, FrameType | None], None]:
    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise TaskTimeoutError(
            f"task {task_name!r} timed out after {timeout:g}s (stopped in its worker process)",
            task_name=task_name,
            timeout=timeout,
        )

    return on_alarm


def sendable_error(exc: BaseException, task_name: str) -> BaseException:
    """``exc``, or a stand-in if it does not pickle, with the worker's traceback as a note."""
    text = "".join(traceback.format_exception(exc))
    exc.add_note(f"Traceback in worker process {os.getpid()}:\n{text}")
    try:
        pickle.dumps(exc)
    except Exception:
        stand_in = TaskExecutionError(
            f"task {task_name!r} raised {type(exc).__qualname__}: {exc} "
            "(the original exception could not be pickled back from the worker)",
            task_name=task_name,
        )
        stand_in.add_note(f"Traceback in worker process {os.getpid()}:\n{text}")
        return stand_in
    return exc
