"""Lifecycle hooks: objects the scheduler tells about what happens in a run.

A hook is any object defining some of the methods of :class:`Hook`. The
scheduler calls them in its own thread, one after another in the order the
hooks were given, so a hook needs no locking. Logging and state recording are
hooks too, built on this same mechanism.

A hook that raises is reported once (per hook and method) through the
``flowkit.hooks`` logger — an ERROR record with the traceback and the event
``hook.error`` — and otherwise ignored: a broken hook never breaks a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    from flowkit.context import RunContext

__all__ = ["HOOK_METHODS", "Hook", "HookDispatcher"]

logger = logging.getLogger("flowkit.hooks")

HOOK_METHODS: tuple[str, ...] = (
    "on_dag_start",
    "on_task_start",
    "on_task_wait",
    "on_task_retry",
    "on_task_success",
    "on_task_failure",
    "on_task_skip",
    "on_task_cached",
    "on_dag_end",
)


class Hook(Protocol):
    """The methods a hook may define; each is optional.

    ``run`` is the :class:`~flowkit.RunContext` (dag name, run id, progress
    counts); ``state`` is the task's :class:`~flowkit.TaskState`.

    - ``on_dag_start(run)``
    - ``on_task_start(run, state)``: an attempt is about to be submitted
      (``state.attempts`` is its number).
    - ``on_task_wait(run, state, pool)``: the task could start but waits for
      a free slot of resource pool ``pool`` (once per attempt that waits).
    - ``on_task_retry(run, state, error, delay)``: an attempt failed with
      ``error``; the next one starts in ``delay`` seconds.
    - ``on_task_success(run, state)``: ``state.value`` holds the result.
    - ``on_task_failure(run, state)``: retries are exhausted; ``state.error``.
    - ``on_task_skip(run, state)``: the task will not run: ``state.status`` is
      SKIPPED, UPSTREAM_FAILED or CANCELLED, ``state.cause`` and
      ``state.reason`` say why.
    - ``on_task_cached(run, state)``: served from the cache or restored on resume.
    - ``on_dag_end(run, result)``: with the :class:`~flowkit.RunResult`.
    """

    def on_dag_start(self, run: RunContext) -> None: ...


class HookDispatcher:
    """Calls every hook's method for an event, resolving the methods once per run.

    For each event it keeps the list of bound methods that exist, so an event
    nobody listens to costs one truth test of an empty list in the scheduler.
    """

    __slots__ = (
        "_reported",
        "on_dag_end",
        "on_dag_start",
        "on_task_cached",
        "on_task_failure",
        "on_task_retry",
        "on_task_skip",
        "on_task_start",
        "on_task_success",
        "on_task_wait",
    )

    def __init__(self, hooks: Sequence[object]):
        self._reported: set[tuple[int, str]] = set()
        self.on_dag_start = self._resolve(hooks, "on_dag_start")
        self.on_task_start = self._resolve(hooks, "on_task_start")
        self.on_task_wait = self._resolve(hooks, "on_task_wait")
        self.on_task_retry = self._resolve(hooks, "on_task_retry")
        self.on_task_success = self._resolve(hooks, "on_task_success")
        self.on_task_failure = self._resolve(hooks, "on_task_failure")
        self.on_task_skip = self._resolve(hooks, "on_task_skip")
        self.on_task_cached = self._resolve(hooks, "on_task_cached")
        self.on_dag_end = self._resolve(hooks, "on_dag_end")

    def _resolve(self, hooks: Sequence[object], event: str) -> list[Callable[..., None]]:
        """The bound methods for ``event``, in the order of ``hooks``."""
        methods = (getattr(hook, event, None) for hook in hooks)
        return [m for m in methods if callable(m)]

    def emit(self, methods: list[Callable[..., None]], *args: Any) -> None:
        """Call each method with ``args``; a method that raises is reported, never fatal."""
        for method in methods:
            try:
                method(*args)
            except Exception:  # a try block costs nothing until something raises
                self.report(method, args)

    def report(self, method: Callable[..., None], args: tuple[Any, ...]) -> None:
        """Log that ``method`` raised when called with ``args`` (once per hook and
        event); for callers that loop over the methods themselves, as the state
        machine does for the per-task events."""
        owner = getattr(method, "__self__", method)
        event = getattr(method, "__name__", "hook")
        key = (id(owner), event)
        if key in self._reported:
            return
        self._reported.add(key)
        logger.exception(
            "hook %r raised in %s; flowkit ignores the error and goes on "
            "(later errors of this hook in %s are not reported)",
            owner,
            event,
            event,
            extra=_fields(event, args),
        )


def _fields(method: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """The ``extra`` of a hook-error record: which hook method, run and task."""
    fields: dict[str, Any] = {"event": "hook.error", "hook_method": method}
    run = args[0] if args else None
    if run is not None:
        fields["dag"] = getattr(run, "dag_name", None)
        fields["run_id"] = getattr(run, "run_id", None)
    if len(args) > 1 and method != "on_dag_end":
        fields["task"] = getattr(args[1], "name", None)
    return fields
