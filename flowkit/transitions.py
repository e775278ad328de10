"""The state machine of a run: every status change, in one place.

:meth:`StateMachine._move` is the only code that sets a task's status. For a
final status it also counts the task as finished, tells the hooks (the state
manager and the logs are hooks too, so this is where a change is recorded),
and releases the downstream tasks it unblocks into the ready queue. Fail-fast
and Ctrl-C settle the tasks that will never start through it too.

:class:`~flowkit.scheduler.Scheduler` builds on it: it decides *what* happens
to a task (run, retry, skip, time out); this module decides nothing, it
records and propagates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from flowkit.context import RunContext
from flowkit.exceptions import TaskExecutionError
from flowkit.graph import Graph
from flowkit.hooks import HookDispatcher
from flowkit.outcome import Decided, PoolWait, Status, TaskState
from flowkit.ready import ReadyQueue, StartQueue
from flowkit.results import RunResult

__all__ = ["StateMachine"]

_SUCCESS, _CACHED, _SKIPPED = Status.SUCCESS, Status.CACHED, Status.SKIPPED
_PENDING, _RUNNING, _FAILED = Status.PENDING, Status.RUNNING, Status.FAILED
_UPSTREAM_FAILED, _CANCELLED = Status.UPSTREAM_FAILED, Status.CANCELLED
_BROKEN = (_FAILED, _UPSTREAM_FAILED, _CANCELLED)
# The hook event of each status change (PENDING again: a retry is coming).
_EVENTS = {
    "running": "on_task_start", "pending": "on_task_retry", "success": "on_task_success",
    "cached": "on_task_cached", "failed": "on_task_failure", "skipped": "on_task_skip",
    "upstream_failed": "on_task_skip", "cancelled": "on_task_skip",
}


class StateMachine:
    """The statuses of one run's tasks, and what each change sets off."""

    def __init__(
        self, graph: Graph, ctx: RunContext, hooks: HookDispatcher, *, fail_fast: bool,
        starts: StartQueue,
    ):
        self.graph, self.ctx, self.hooks, self.fail_fast = graph, ctx, hooks, fail_fast
        self.starts = starts
        self.pooled = starts.pooled
        self.states = [TaskState(t) for t in graph.tasks]
        self.waiting = [len(u) for u in graph.up]
        self.ready = ReadyQueue(i for i, n in enumerate(self.waiting) if n == 0)
        self.unfinished = len(graph)
        self.stopping = False
        self.first_failure: int | None = None
        # Mapped tasks add item nodes at run time: give them their own edge list.
        self.down: list[Sequence[int]] = list(graph.down) if graph.has_map else graph.down
        self.events = {value: getattr(hooks, name) for value, name in _EVENTS.items()}
        self.waiting_since: dict[int, float] = {}  # task waiting for a pool slot -> since when
        self.started = 0  # attempts started so far: a task's first start is its start order

    def _move(self, i: int, status: Status, *extra: Any) -> None:
        """The one place a task's status changes: record it, tell the hooks, and,
        for a final status, count it and release the downstream tasks it unblocks."""
        state = self.states[i]
        if self.pooled:
            if state.status is _RUNNING:  # an attempt ended: free its pool slots
                self.starts.release(i, state.task)
            elif i in self.waiting_since:  # it got its slot, or will never start
                self._waited(i)
        state.status = status
        final = status is not _RUNNING and status is not _PENDING
        if final:
            self.unfinished -= 1
            self.ctx.done += 1
            if status is _FAILED:
                self.ctx.failed += 1
                if self.first_failure is None:
                    self.first_failure = i
            elif status is not _SUCCESS and status is not _CACHED:
                state.value = None
        for hook in self.events[status._value_]:  # HookDispatcher.emit, inlined: per task
            try:
                hook(self.ctx, state, *extra)
            except Exception:
                self.hooks.report(hook, (self.ctx, state, *extra))
        if not final:
            return
        waiting, push = self.waiting, self.ready.push
        for d in self.down[i]:
            waiting[d] -= 1
            if not waiting[d]:
                push(d)
        if status is _FAILED and self.fail_fast and not self.stopping:
            self._stop(i)

    def _waits(self, i: int, pool: str) -> None:
        """Task ``i`` could start but waits for a slot of ``pool``: note since when."""
        self.waiting_since.setdefault(i, time.time())
        self.hooks.emit(self.hooks.on_task_wait, self.ctx, self.states[i], pool)

    def _waited(self, i: int) -> None:
        state = self.states[i]
        pool = state.task.options.pool
        assert pool is not None, "only a task with a pool waits for one"
        state.add_pool_wait(PoolWait(pool, self.waiting_since.pop(i), time.time()))

    def _add_items(self, i: int, count: int) -> range:
        """Add ``count`` item nodes (``name[k]``) that map node ``i`` now waits for."""
        first = len(self.states)
        task = self.states[i].task
        self.waiting[i] = count
        self.unfinished += count
        self.ctx.total += count
        for k in range(count):
            item_state = TaskState(task)
            item_state.name = f"{task.name}[{k}]"
            self.states.append(item_state)
            self.waiting.append(0)
            self.down.append((i,))
        return range(first, first + count)

    def _not_run(self, i: int, status: Status, cause: str | None, reason: str) -> None:
        state = self.states[i]
        state.cause, state.reason = cause, reason
        self._move(i, status)

    def _decided(self, i: int, decided: Decided) -> None:
        """A condition found false, or a cache hit, where the inputs live: not run."""
        state = self.states[i]
        state.attempts -= 1  # the function was not called
        state.cache_key = decided.cache_key
        if decided.status is _SKIPPED:
            self._not_run(i, _SKIPPED, state.name, "its when= condition was false")
            return
        state.value, state.reason = decided.value, "served from the cache"
        self._move(i, _CACHED)

    # --- stopping ------------------------------------------------------------

    def _stop(self, failed: int) -> None:
        """Fail fast: start nothing new; settle every task that has not started —
        except ``all_done`` tasks, which are teardown: each still runs once its
        upstream tasks have all ended (a cancelled one counts as ended)."""
        self.stopping = True
        name = self.states[failed].name
        self._cancel_waiting(f"cancelled after {name!r} failed (fail_fast)", name, interrupt=False)
        dependants = set()  # UPSTREAM_FAILED; every other task not started: CANCELLED
        frontier = list(self.down[failed])
        while frontier:
            d = frontier.pop()
            if d not in dependants:
                dependants.add(d)
                frontier.extend(self.down[d])
        for j, state in enumerate(self.states):
            if state.status is not _PENDING or state.task.options.trigger == "all_done":
                continue
            if j in dependants:
                self._not_run(j, _UPSTREAM_FAILED, name, f"upstream task {name!r} failed")
            else:
                self._not_run(j, _CANCELLED, name,
                              f"not started: {name!r} failed and fail_fast is on")

    def _interrupt(self, reason: str) -> None:
        """Ctrl-C: cancel what is queued, abandon what runs, settle the rest."""
        self.stopping = True
        self._cancel_waiting(reason, None, interrupt=True)
        for j, state in enumerate(self.states):
            if state.status is _RUNNING:
                self.ctx.running -= 1
                self._not_run(j, _CANCELLED, None, reason)
            elif state.status is _PENDING:
                self._not_run(j, _CANCELLED, None, reason)

    def _cancel_waiting(self, reason: str, cause: str | None, *, interrupt: bool) -> None:
        """Cancel retry waits and submitted attempts that have not started (and,
        on ``interrupt``, the deadlines of running ones): the run loop knows how."""

    # --- the end ---------------------------------------------------------------

    def _result(self, interrupted: bool) -> RunResult:
        return RunResult(
            states={s.name: s for s in self.states},
            run_id=self.ctx.run_id,
            dag_name=self.ctx.dag_name,
            started_at=self.ctx.started_at,
            duration=self.ctx.elapsed,
            graph=lambda: self.graph.upstream_names,
            interrupted=interrupted,
        )

    def _raise_for_failure(self, result: RunResult) -> None:
        if self.first_failure is None:
            return
        state = self.states[self.first_failure]
        error = state.error
        others = len(result.failed) - 1
        also = f"; {others} other task(s) failed too" if others > 0 else ""
        how = f"after {state.attempts} attempt(s)" if state.attempts else "before it ran"
        raise TaskExecutionError(
            f"task {state.name!r} failed {how}: {type(error).__name__}: "
            f"{str(error).rstrip('.')}{also}. "
            "The original error is chained below; every task's outcome is in .result.states.",
            task_name=state.name,
            attempts=state.attempts,
            result=result,
        ) from error

