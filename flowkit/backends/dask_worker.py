"""What a Dask worker runs for flowkit: an attempt, a cache probe, a measure of a result.

Each call gets a :class:`Spec` (the task's function, its condition, its
keyword inputs and context) and, as its other arguments, the task's inputs —
which Dask resolves from the futures of upstream results, on the worker. The
function itself is called through :func:`flowkit.worker.call`, the one place
a task's function is called; everything else here is what the scheduler would
otherwise have needed the inputs in its own process for.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Any, NamedTuple

from flowkit.context import TaskContext
from flowkit.exceptions import TaskExecutionError
from flowkit.state.cachekey import UncacheableInput, inputs_digest
from flowkit.worker import call, sendable_error

__all__ = ["WHEN_FALSE", "Spec", "WhenFalse", "attempt", "describe", "probe"]


class Spec(NamedTuple):
    """What a call on a worker needs besides its inputs (which Dask passes as arguments)."""

    fn: Callable[..., Any]
    when: Callable[..., Any] | None
    kwargs: Mapping[str, Any]
    ctx: TaskContext
    item: bool  # the first input is a whole value: take item ``position`` of it
    position: int
    topic: str
    key: str
    custom_key: Callable[..., Any] | None = None


class WhenFalse:
    """The result of an attempt whose condition was false: the task is SKIPPED."""

    def __reduce__(self) -> str:
        return "WHEN_FALSE"


WHEN_FALSE = WhenFalse()


def _inputs(spec: Spec, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if not spec.item:
        return args
    source = args[0]
    items = source if isinstance(source, Sequence) else list(source)
    return (items[spec.position], *args[1:])


def attempt(spec: Spec, *args: Any) -> Any:
    """One attempt. Returns the task's value (kept there by Dask),
    :data:`WHEN_FALSE` when the condition is false, or raises the task's error."""
    args = _inputs(spec, args)
    if spec.when is not None and not spec.when(*args):
        return WHEN_FALSE
    outcome = call(spec.fn, args, spec.kwargs, spec.ctx)
    with contextlib.suppress(Exception):  # timing is a nicety: never fail the task for it
        distributed_worker: Any = importlib.import_module("distributed").get_worker()
        distributed_worker.log_event(
            spec.topic, [spec.key, outcome.started, outcome.ended, f"pid {os.getpid()}"]
        )
    error = outcome.error
    if error is None:
        return outcome.value
    if not isinstance(error, Exception):  # SystemExit and the like fail the task, not Dask
        error = TaskExecutionError(f"task {spec.ctx.task!r} raised {error!r}",
                                   task_name=spec.ctx.task)
    raise sendable_error(error, spec.ctx.task)  # its worker traceback travels as a note


def probe(spec: Spec, *args: Any) -> tuple[str, str | None]:
    """Before a cached task runs: its condition, then its inputs' digest."""
    args = _inputs(spec, args)
    if spec.when is not None and not spec.when(*args):
        return ("skip", None)
    try:
        return ("key", inputs_digest(spec.custom_key, args, spec.kwargs))
    except UncacheableInput as exc:
        return ("uncacheable", str(exc))


def describe(spec: Spec, value: Any, want_length: bool, limit: int) -> tuple[Any, int, bool, Any]:
    """Next to ``value``: ``(length, nbytes, kept, value if kept)``,
    the value itself only when ``limit`` allows it (``limit < 0``: not wanted)."""
    sizeof: Any = importlib.import_module("dask.sizeof").sizeof
    nbytes = int(sizeof(value))
    length: Any = None
    if want_length:
        try:
            length = len(value) if isinstance(value, Sized) else len(list(iter(value)))
        except TypeError:
            length = type(value).__name__
    if 0 <= nbytes <= limit:
        return (length, nbytes, True, value)
    return (length, nbytes, False, None)
