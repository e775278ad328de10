"""The run loop: decides, in the calling process, what runs when.

A task becomes *ready* the moment its last upstream task finishes. The
scheduler then applies, in this order: resume, the trigger rule, the ``when``
condition, the cache — and only then submits an attempt to the backend.
Outcomes come back through one completion queue. Retries, retry waits,
timeouts, fail-fast and hooks are all handled here, identically for every
executor; workers only call functions (see ``flowkit.worker``).

Bookkeeping is O(1) per completion: a counter of unfinished upstream tasks per
task, index lists for edges, and two heaps for timers (retry waits, timeouts).
"""

from __future__ import annotations

import heapq
import itertools
import queue
import random as _random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from flowkit.backends.asyncio import AsyncRunner
from flowkit.backends.base import Backend, Completion, timeout_error
from flowkit.context import RunContext, TaskContext
from flowkit.exceptions import FlowkitError, TaskExecutionError
from flowkit.graph import Graph
from flowkit.hooks import HookDispatcher
from flowkit.outcome import SKIPPED, Attempt, Status, TaskState
from flowkit.results import RunResult
from flowkit.retry import backoff_delay
from flowkit.task import Task

__all__ = ["CANCEL", "RunCancelled", "Scheduler", "StateProtocol"]

_SUCCESS, _CACHED, _SKIPPED = Status.SUCCESS, Status.CACHED, Status.SKIPPED
_PENDING, _RUNNING, _FAILED = Status.PENDING, Status.RUNNING, Status.FAILED
_UPSTREAM_FAILED, _CANCELLED = Status.UPSTREAM_FAILED, Status.CANCELLED
_BROKEN = (_FAILED, _UPSTREAM_FAILED, _CANCELLED)
CANCEL: Completion = (object(), (False, None, 0.0, 0.0, ""))
"""Put on a run's completion queue to stop it (``arun`` does, when cancelled)."""


class RunCancelled(Exception):
    """The run was stopped from outside (``arun`` cancelled); handled like Ctrl-C."""


_NO_KWARGS: Mapping[str, Any] = {}  # shared and never mutated (picklable, unlike a proxy)


class StateProtocol(Protocol):
    """What the scheduler needs of a state manager (besides its hook methods)."""

    def begin_run(
        self, run: RunContext, tasks: list[Task[..., Any]], *, resume: bool
    ) -> Mapping[str, tuple[Status, Any]]: ...

    def lookup(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[str | None, bool, Any]: ...


class Scheduler:
    """One run of a graph on a backend. Use once: ``Scheduler(...).run()``."""

    def __init__(
        self,
        graph: Graph,
        backend: Backend,
        done: queue.SimpleQueue[Completion],
        ctx: RunContext,
        hooks: HookDispatcher,
        *,
        fail_fast: bool,
        state: StateProtocol | None,
        resume: bool,
        keyword_inputs: Mapping[int, Mapping[str, Any]] | None = None,
        aio: AsyncRunner | None = None,
        rng: _random.Random | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        self.graph = graph
        self.backend = backend
        self.done = done
        self.ctx = ctx
        self.hooks = hooks
        self.fail_fast = fail_fast
        self.state = state
        self.resume = resume
        self.keyword_inputs: dict[int, Mapping[str, Any]] = dict(keyword_inputs or {})
        self.aio = aio
        self.random = (rng or _random.Random()).random
        if sleep is not None and clock is None:
            # A fake sleep with the real clock would never see the wait pass:
            # let the clock move on by what was slept.
            clock, sleep = _clock_advanced_by(sleep)
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
        self.states = [TaskState(t) for t in graph.tasks]
        self.waiting = [len(u) for u in graph.up]
        self.ready: list[int] = [i for i, n in enumerate(self.waiting) if n == 0]
        self.unfinished = len(graph)
        self.retry_timers: list[tuple[float, int, int]] = []  # (due, seq, task)
        self.deadlines: list[tuple[float, int, int]] = []  # (due, task, attempt)
        self.seq = itertools.count()
        self.stopping = False
        self.first_failure: int | None = None
        self.restored: Mapping[str, tuple[Status, Any]] = {}
        # Mapped tasks add item nodes at run time: give them their own edge list.
        self.down: list[Sequence[int]] = list(graph.down) if graph.has_map else graph.down
        self.expanded: dict[int, range] = {}  # map node -> indices of its items

    # --- the loop --------------------------------------------------------

    def run(self) -> RunResult:
        """Run every task to a final state; raise ``TaskExecutionError`` if one failed."""
        interrupted = False
        if self.state is not None:
            try:
                self.restored = self.state.begin_run(
                    self.ctx, self.graph.tasks, resume=self.resume
                )
            except BaseException:
                self._close(cancel=True)  # nothing ran: release the pools
                raise
        try:
            self.hooks.emit(self.hooks.on_dag_start, self.ctx)
            self._loop()
        except BaseException as exc:  # Ctrl-C, or an error from a backend
            interrupted = True
            self._interrupt(f"interrupted ({type(exc).__name__})")
            raise
        finally:
            self._close(cancel=interrupted or self.stopping)
            result = self._result(interrupted)
            self.hooks.emit(self.hooks.on_dag_end, self.ctx, result)
        self._raise_for_failure(result)
        return result

    def _close(self, *, cancel: bool) -> None:
        self.backend.close(cancel=cancel)
        if self.aio is not None:
            self.aio.close(cancel=cancel)

    def _loop(self) -> None:
        while self.unfinished:
            if self.ready:
                batch, self.ready = self.ready, []
                # A lone ready task with nothing else running or waiting may run in
                # this thread: no parallelism is lost and two hand-offs are saved.
                lone = len(batch) == 1 and not self.ctx.running and not self.retry_timers
                for i in batch:
                    self._start(i, lone)
                continue
            event = self._next_event()
            if event is not None:
                if event is CANCEL:
                    raise RunCancelled("the run was cancelled")
                token, outcome = event
                self._settle(token, outcome)
                self.backend.pump()

    def _next_event(self) -> Completion | None:
        """Wait for the next outcome, firing due timers; ``None`` after a timer fired."""
        wait: float | None = None
        if self.retry_timers:
            due, _, i = self.retry_timers[0]
            wait = due - self.clock()
            if wait <= 0:
                heapq.heappop(self.retry_timers)
                self._submit(i, inline=False)
                return None
        if self.deadlines:
            due, i, attempt = self.deadlines[0]
            state = self.states[i]
            if state.status is not _RUNNING or state.attempts != attempt:
                heapq.heappop(self.deadlines)  # that attempt ended already
                return None
            now = time.monotonic()
            left = due - now
            if left <= 0:
                try:  # an outcome that has already arrived beats the clock
                    return self.done.get_nowait()
                except queue.Empty:
                    pass
                heapq.heappop(self.deadlines)
                runner = self._runner(state.task)
                began = runner.started_at((i, attempt))
                limit = (state.task.options.timeout or 0.0) + runner.deadline_grace
                if began is None or began + limit > now:
                    # Still queued, or started later than it was submitted: its
                    # time counts from when it began to run.
                    later = (now if began is None else began) + limit
                    heapq.heappush(self.deadlines, (later, i, attempt))
                    return None
                self._time_out(i, attempt)
                return None
            wait = left if wait is None else min(wait, left)
        if self.backend.run_queued():  # the sync backend runs one call now
            return self.done.get()
        if not self.ctx.running:
            if wait is None:
                raise FlowkitError(  # a scheduler bug, never a hang
                    f"flowkit stalled with {self.unfinished} unfinished tasks and nothing "
                    "running; please report this with your DAG"
                )
            self.sleep(wait)  # only retry waits are left: injectable for tests
            return None
        try:
            return self.done.get(timeout=wait)
        except queue.Empty:
            return None

    # --- a task becomes ready ------------------------------------------------

    def _start(self, i: int, lone: bool) -> None:
        state = self.states[i]
        if state.status is not _PENDING:  # settled already (fail-fast, Ctrl-C)
            return
        if i in self.expanded:  # a mapped task whose items have all finished
            self._collect(i)
            return
        task = self.graph.tasks[i]
        if self.restored and task.name in self.restored:
            status, value = self.restored[task.name]
            self._restore(i, status, value)
            return
        options = task.options
        inputs: list[Any] = []
        broken: int | None = None
        skipped: int | None = None
        for u in self.graph.up[i]:
            up_state = self.states[u]
            status = up_state.status
            if status is _SUCCESS or status is _CACHED:
                inputs.append(up_state.value)
            else:
                inputs.append(SKIPPED)
                if status in _BROKEN:
                    if broken is None:
                        broken = u
                elif skipped is None:
                    skipped = u
        trigger = options.trigger
        if broken is not None and trigger != "all_done":
            up_state = self.states[broken]
            self._settle_not_run(
                i,
                _UPSTREAM_FAILED,
                cause=_root_cause(up_state),
                reason=f"upstream task {up_state.name!r} is {up_state.status.name}",
            )
            return
        if skipped is not None and trigger == "all_success":
            up_state = self.states[skipped]
            self._settle_not_run(
                i,
                _SKIPPED,
                cause=_root_cause(up_state),
                reason=f"upstream task {up_state.name!r} was skipped",
            )
            return
        if task.is_map:
            self._expand(i, inputs)
            return
        args = () if task.signature.takes_nothing else tuple(inputs)
        self._run_with(i, args, lone)

    def _run_with(self, i: int, args: tuple[Any, ...], lone: bool) -> None:
        """Apply the condition and the cache, then submit a first attempt."""
        state = self.states[i]
        task = state.task
        options = task.options
        if options.when is not None:
            try:
                go = options.when(*args)
            except Exception as exc:
                state.error = exc
                state.reason = "its when= condition raised"
                self._fail(i)
                return
            if not go:
                self._settle_not_run(
                    i, _SKIPPED, cause=state.name, reason="its when= condition was false"
                )
                return
        if options.cache_ttl is not None and self.state is not None:
            key, hit, value = self.state.lookup(task, args, self.keyword_inputs.get(i, _NO_KWARGS))
            state.cache_key = key
            if hit:
                state.status = _CACHED
                state.value = value
                state.reason = "served from the cache"
                self._finish(i, self.hooks.on_task_cached)
                return
        state.inputs = args
        self._submit(
            i,
            inline=lone
            and self.backend.inline_ok
            and options.timeout is None
            and not task.is_async,
        )

    def _submit(self, i: int, *, inline: bool) -> None:
        state = self.states[i]
        task = state.task
        state.status = _RUNNING
        state.attempts += 1
        self.ctx.running += 1
        self.hooks.emit(self.hooks.on_task_start, self.ctx, state)
        timeout = task.options.timeout
        runner = self._runner(task)
        if timeout is not None and not runner.self_timing:
            due = time.monotonic() + timeout + runner.deadline_grace
            heapq.heappush(self.deadlines, (due, i, state.attempts))
        runner.submit(
            (i, state.attempts),
            task,
            state.inputs,
            self.keyword_inputs.get(i, _NO_KWARGS),
            TaskContext(state.name, self.ctx.run_id, self.ctx.dag_name),
            inline=inline,
        )

    # --- mapped tasks ----------------------------------------------------------

    def _expand(self, i: int, inputs: list[Any]) -> None:
        """Add one item node per element of the first input; the map node waits for them."""
        task = self.graph.tasks[i]
        source_state = self.states[self.graph.up[i][0]]
        source, *extra = inputs
        if source is SKIPPED:  # under none_failed / all_done: nothing to map over
            self._settle_not_run(
                i,
                _SKIPPED,
                cause=_root_cause(source_state),
                reason=f"upstream task {source_state.name!r} produced nothing to map over",
            )
            return
        state = self.states[i]
        try:
            iterator = iter(source)
        except TypeError:
            state.error = TypeError(
                f"task {task.name!r} is mapped over the result of {source_state.name!r}, "
                f"which is a {type(source).__name__}, not an iterable: return a list "
                "(or any iterable)"
            )
            state.reason = "its input could not be mapped over"
            self._fail(i)
            return
        try:
            items = list(iterator)
        except Exception as exc:  # a generator that raised while it was read
            state.error = exc
            state.reason = f"reading the items of {source_state.name!r} raised"
            self._fail(i)
            return
        first = len(self.states)
        items_range = range(first, first + len(items))
        self.expanded[i] = items_range
        self.waiting[i] = len(items)
        self.unfinished += len(items)
        self.ctx.total += len(items)
        kwargs = self.keyword_inputs.get(i)
        for k in range(len(items)):
            item_state = TaskState(task)
            item_state.name = f"{task.name}[{k}]"
            self.states.append(item_state)
            self.waiting.append(0)
            self.down.append((i,))
            if kwargs is not None:
                self.keyword_inputs[first + k] = kwargs
        if not items:
            self._collect(i)
            return
        for k, item in enumerate(items):
            j = first + k
            if self.states[j].status is not _PENDING:  # settled meanwhile (fail-fast)
                continue
            if self.restored and self.states[j].name in self.restored:
                status, value = self.restored[self.states[j].name]
                self._restore(j, status, value)
            else:
                self._run_with(j, (item, *extra), lone=False)

    def _collect(self, i: int) -> None:
        """All items of map node ``i`` ended: its value is their values, in order."""
        items = [self.states[j] for j in self.expanded.pop(i, range(0))]
        broken = next((s for s in items if s.status in _BROKEN), None)
        if broken is not None:
            self._settle_not_run(
                i,
                _UPSTREAM_FAILED,
                cause=_root_cause(broken),
                reason=f"its item {broken.name!r} is {broken.status.name}",
            )
            return
        state = self.states[i]
        state.status = _SUCCESS
        state.value = [s.value if s.status.produced_value else SKIPPED for s in items]
        state.duration = sum(s.duration for s in items)
        self._finish(i, self.hooks.on_task_success)

    # --- outcomes ------------------------------------------------------------

    def _settle(self, token: tuple[int, int], outcome: tuple[bool, Any, float, float, str]) -> None:
        i, attempt = token
        state = self.states[i]
        if state.status is not _RUNNING or state.attempts != attempt:
            return  # a late outcome of an attempt given up on (timeout, cancel)
        self.ctx.running -= 1
        ok, value, started, finished, worker = outcome
        state.add_attempt(Attempt(attempt, started, finished, worker, None if ok else value))
        state.duration += finished - started
        if ok:
            state.status = _SUCCESS
            state.value = value
            state.error = None
            self._finish(i, self.hooks.on_task_success)
        else:
            self._attempt_failed(i, value)

    def _runner(self, task: Task[..., Any]) -> Backend | AsyncRunner:
        """Where ``task``'s attempts run: the event loop for coroutines, else the backend."""
        return self.aio if task.is_async and self.aio is not None else self.backend

    def _time_out(self, i: int, attempt: int) -> None:
        state = self.states[i]
        task = state.task
        runner = self._runner(task)
        self.ctx.running -= 1
        runner.abandon((i, attempt))
        error = timeout_error(task, task.options.timeout or 0.0, runner.timeout_note)
        error.attempts = attempt
        now = time.time()
        started = now - (task.options.timeout or 0.0)
        state.add_attempt(Attempt(attempt, started, now, "abandoned", error))
        state.duration += now - started
        self._attempt_failed(i, error)

    def _attempt_failed(self, i: int, error: BaseException) -> None:
        state = self.states[i]
        options = state.task.options
        state.error = error
        if (
            state.attempts <= options.retries
            and not self.stopping
            and isinstance(error, options.retry_on)
        ):
            delay = backoff_delay(
                state.attempts,
                retry_delay=options.retry_delay,
                backoff=options.backoff,
                max_delay=options.max_delay,
                jitter=options.jitter,
                random=self.random,
            )
            state.status = _PENDING
            self.hooks.emit(self.hooks.on_task_retry, self.ctx, state, error, delay)
            if delay > 0:
                heapq.heappush(self.retry_timers, (self.clock() + delay, next(self.seq), i))
            else:
                self._submit(i, inline=False)
            return
        self._fail(i)

    def _fail(self, i: int) -> None:
        state = self.states[i]
        state.status = _FAILED
        self.ctx.failed += 1
        if self.first_failure is None:
            self.first_failure = i
        self._finish(i, self.hooks.on_task_failure)
        if self.fail_fast and not self.stopping:
            self._stop(i)

    def _restore(self, i: int, status: Status, value: Any) -> None:
        state = self.states[i]
        if status is _SKIPPED:
            self._settle_not_run(
                i, _SKIPPED, cause=state.name, reason="skipped in the resumed run"
            )
            return
        state.status = _CACHED
        state.value = value
        state.reason = "restored from a previous run (resume)"
        self._finish(i, self.hooks.on_task_cached)

    def _settle_not_run(self, i: int, status: Status, *, cause: str, reason: str) -> None:
        state = self.states[i]
        state.status = status
        state.cause = cause
        state.reason = reason
        state.value = None
        self._finish(i, self.hooks.on_task_skip)

    def _finish(self, i: int, event: list[Callable[..., None]]) -> None:
        """Count ``i`` as finished, tell the hooks, and release its downstream tasks."""
        self.unfinished -= 1
        self.ctx.done += 1
        if event:
            self.hooks.emit(event, self.ctx, self.states[i])
        waiting = self.waiting
        for d in self.down[i]:
            waiting[d] -= 1
            if not waiting[d]:
                self.ready.append(d)

    # --- stopping ------------------------------------------------------------

    def _stop(self, failed: int) -> None:
        """Fail fast: start nothing new; settle every task that has not started."""
        self.stopping = True
        failed_name = self.states[failed].name
        self._cancel_queued(reason=f"cancelled after {failed_name!r} failed (fail_fast)",
                            cause=failed_name)
        # Dependants of the failed task are UPSTREAM_FAILED; the rest CANCELLED.
        dependants = set()
        frontier = list(self.down[failed])
        while frontier:
            d = frontier.pop()
            if d not in dependants:
                dependants.add(d)
                frontier.extend(self.down[d])
        for j, state in enumerate(self.states):
            if state.status is not _PENDING:
                continue
            if j in dependants:
                self._settle_quietly(j, _UPSTREAM_FAILED, failed_name,
                                     f"upstream task {failed_name!r} failed")
            else:
                self._settle_quietly(j, _CANCELLED, failed_name,
                                     f"not started: {failed_name!r} failed and fail_fast is on")
        self.retry_timers.clear()

    def _interrupt(self, reason: str) -> None:
        """Ctrl-C: cancel what is queued, abandon what runs, settle the rest."""
        self.stopping = True
        self._cancel_queued(reason=reason, cause=None)
        for j, state in enumerate(self.states):
            if state.status is _PENDING or state.status is _RUNNING:
                if state.status is _RUNNING:
                    self.ctx.running -= 1
                self._settle_quietly(j, _CANCELLED, None, reason)
        self.retry_timers.clear()
        self.deadlines.clear()

    def _cancel_queued(self, *, reason: str, cause: str | None) -> None:
        queued = self.backend.cancel_pending()
        if self.aio is not None:
            queued += self.aio.cancel_pending()
        for i, attempt in queued:
            state = self.states[i]
            if state.status is _RUNNING and state.attempts == attempt:
                state.attempts -= 1  # it never started
                self.ctx.running -= 1
                self._settle_quietly(i, _CANCELLED, cause, reason)

    def _settle_quietly(self, i: int, status: Status, cause: str | None, reason: str) -> None:
        # Like _settle_not_run, but downstream tasks are settled by the caller.
        state = self.states[i]
        state.status = status
        state.cause = cause
        state.reason = reason
        if not state.status.produced_value:
            state.value = None
        self.unfinished -= 1
        self.ctx.done += 1
        if self.hooks.on_task_skip:
            self.hooks.emit(self.hooks.on_task_skip, self.ctx, state)
        if i >= len(self.graph):  # an item: its map node collects once all items ended
            for d in self.down[i]:
                self.waiting[d] -= 1
                if not self.waiting[d]:
                    self.ready.append(d)

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
        how = (
            f"after {state.attempts} attempt(s)" if state.attempts else "before it ran"
        )
        raise TaskExecutionError(
            f"task {state.name!r} failed {how}: {type(error).__name__}: "
            f"{str(error).rstrip('.')}{also}. "
            "The original error is chained below; every task's outcome is in .result.states.",
            task_name=state.name,
            attempts=state.attempts,
            result=result,
        ) from error


def _clock_advanced_by(
    sleep: Callable[[float], None],
) -> tuple[Callable[[], float], Callable[[float], None]]:
    """A monotonic clock that jumps ahead by whatever ``sleep`` was asked to sleep."""
    slept = [0.0]

    def advancing_sleep(seconds: float) -> None:
        slept[0] += seconds
        sleep(seconds)

    return (lambda: time.monotonic() + slept[0]), advancing_sleep


def _root_cause(state: TaskState) -> str:
    """The task at the root of ``state``'s status: itself, or what it recorded."""
    if state.status is _FAILED:
        return state.name
    return state.cause or state.name
