"""What runs on a worker: call a task's function once and settle the outcome.

A worker never lets an exception escape and never decides anything: it returns
an :data:`Outcome` — ``(ok, value_or_error, started_at, finished_at, worker)`` —
and the scheduler, in the calling process, decides about retries, skips,
caching, logging and state. Everything here is small, importable and picklable,
so the same functions run in threads, in process pools and on Dask workers.

A worker in another process pickles a result once itself (:class:`Pickled`):
the executor then ships plain bytes, and the scheduler learns the result's size
for free, to warn about results too big to travel (see ``flowkit.backends.futures``).
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from flowkit.context import TaskContext, current_task
from flowkit.exceptions import TaskExecutionError, TaskTimeoutError

__all__ = ["Outcome", "Pickled", "invoke", "invoke_remote"]

Outcome = tuple[bool, Any, float, float, str]
"""(ok, value or exception, started_at, finished_at, worker).

From :func:`invoke_remote` the value may be a :class:`Pickled`, which the
backend decodes before the scheduler sees the outcome.
"""

_now = time.time

# Results that cost nothing to ship and whose size needs no pickling to know.
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})


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


def invoke(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], ctx: TaskContext
) -> Outcome:
    """Call ``fn`` in this thread with ``ctx`` as the current task.

    ``SystemExit`` and the like fail the task like any error, in whichever
    thread it runs; only ``KeyboardInterrupt`` goes through, to stop the run.
    """
    token = current_task.set(ctx)
    started = _now()
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        return (False, exc, started, _now(), threading.current_thread().name)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return (False, exc, started, _now(), threading.current_thread().name)
    finally:
        current_task.reset(token)
    return (True, value, started, _now(), threading.current_thread().name)


def invoke_remote(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    ctx: TaskContext,
    timeout: float | None = None,
) -> Outcome:
    """Like :func:`invoke`, for a worker in another process.

    The result is pickled here, once (see :class:`Pickled`); the error is made
    safe to send back (its traceback text travels as a note); and where the
    worker runs tasks on its main thread — a process pool — a ``timeout`` is
    enforced with ``SIGALRM`` so the work really stops.
    """
    worker = f"pid {os.getpid()}"
    alarm = timeout is not None and _can_use_alarm()
    if alarm:
        assert timeout is not None
        previous = signal.signal(signal.SIGALRM, _alarm_handler(ctx.task, timeout))
        signal.setitimer(signal.ITIMER_REAL, timeout)
    token = current_task.set(ctx)
    started = _now()
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        return (False, _sendable(exc, ctx.task), started, _now(), worker)
    finally:
        current_task.reset(token)
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    finished = _now()
    return (True, _encode(value), started, finished, worker)


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


def _sendable(exc: Exception, task_name: str) -> Exception:
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
