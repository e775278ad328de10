"""The run loop: decides, in the calling process, what runs when.

A task becomes *ready* the moment its last upstream task finishes; the scheduler
then applies resume, the trigger rule, ``when`` and the cache, and only then
submits a :class:`~flowkit.backends.base.Call`, which the backend gives back with
its outcome. Retries, waits, timeouts and fail-fast are decided here, the same
for every backend. Status changes go through ``flowkit.transitions``; deadlines
and retry waits are kept on the run's one clock; ready work comes from the
replaceable ``flowkit.ready.ReadyQueue`` (see ARCHITECTURE.md, "The run core").
"""

from __future__ import annotations

import heapq
import itertools
import random as _random
import time
from collections.abc import Mapping
from typing import Any

from flowkit.backends.base import Backend, Call, timeout_error
from flowkit.context import RunContext, TaskContext
from flowkit.exceptions import FlowkitError
from flowkit.graph import Graph
from flowkit.hooks import HookDispatcher
from flowkit.mapping import Unmappable, items_of
from flowkit.outcome import (
    SKIPPED,
    Attempt,
    Decided,
    Status,
    UpstreamFailed,
    apply_trigger,
    fetch_remote,
    root_cause,
)
from flowkit.ready import StartQueue
from flowkit.results import RunResult
from flowkit.retry import backoff_delay
from flowkit.run_options import RunOptions
from flowkit.transitions import StateMachine

__all__ = ["RunCancelled", "Scheduler"]

_SUCCESS, _CACHED, _SKIPPED = Status.SUCCESS, Status.CACHED, Status.SKIPPED
_PENDING, _RUNNING, _FAILED = Status.PENDING, Status.RUNNING, Status.FAILED
_UPSTREAM_FAILED, _CANCELLED = Status.UPSTREAM_FAILED, Status.CANCELLED
_BROKEN = (_FAILED, _UPSTREAM_FAILED, _CANCELLED)
_new = tuple.__new__  # a C-level Attempt(...) for the hot path
_NO_KWARGS: Mapping[str, Any] = {}  # shared and never mutated (picklable, unlike a proxy)
_LONGEST_WAIT = 3600.0  # seconds the loop waits at most before it looks at its timers again


class RunCancelled(Exception):
    """The run was stopped from outside (``arun`` cancelled); handled like Ctrl-C."""


class Scheduler(StateMachine):
    """One run of a graph on a backend. Use once: ``Scheduler(...).run()``.

    ``options`` must have their clock filled in (:meth:`RunOptions.timed`); the
    backend keeps its start times on that same clock. With ``planning``, no
    condition, cache or mapping is evaluated: only the order of starts matters.
    """

    def __init__(
        self, graph: Graph, backend: Backend, ctx: RunContext, hooks: HookDispatcher,
        options: RunOptions, *, keyword_inputs: Mapping[int, Mapping[str, Any]] | None = None,
        planning: bool = False, history: object = None,
    ):
        self.backend, self.options, self.state = backend, options, options.state
        self.planning = planning
        starts = StartQueue(graph, backend.capacity, options.pools or {},
                            history or options.state, ctx.dag_name)
        super().__init__(graph, ctx, hooks, fail_fast=options.fail_fast, starts=starts)
        self.keyword_inputs: dict[int, Mapping[str, Any]] = dict(keyword_inputs or {})
        self.random = (options.rng or _random.Random()).random
        assert options.clock is not None and options.sleep is not None, "use RunOptions.timed()"
        self.clock, self.sleep = options.clock, options.sleep
        self.outbox: list[Call] = []  # calls to submit before the next wait
        self.retry_timers: list[tuple[float, int, int]] = []  # (due, seq, task)
        self.deadlines: list[tuple[float, int, Call]] = []  # (due, seq, call)
        self.seq = itertools.count()
        self.cancelled = False
        self.restored: Mapping[str, tuple[Status, Any]] = {}
        self.expanded: dict[int, range] = {}  # map node -> indices of its items
        # Results that stay where they ran: conditions and cache keys are worked
        # out there too, by the backend, as part of the attempt.
        self.remote = backend.remote_values and not planning
        if self.remote:
            backend.attach(self.state)

    # --- the loop --------------------------------------------------------

    def run(self) -> RunResult:
        """Run every task to a final state; raise ``TaskExecutionError`` if one failed."""
        interrupted = False
        if self.state is not None:
            try:
                self.restored = self.state.begin_run(
                    self.ctx, self.graph, resume=self.options.resume
                )
            except BaseException:
                self.backend.close(cancel=True)  # nothing ran: release the pools
                raise
        try:
            self.starts.prepare()
            if self.starts.durations:  # a backend may plan with them (batches)
                self.starts.capacity = self.backend.expect(self.starts.durations)
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
        if self.remote and not cancel:  # the final values, before a client may close
            down = self.graph.down
            self.backend.keep([
                s.value for i, s in enumerate(self.states[: len(self.graph)])
                if not down[i] and s.status.produced_value
            ])
        self.backend.close(cancel=cancel)

    def cancel(self) -> None:
        """Stop the run from another thread, as Ctrl-C would (``arun`` cancelled)."""
        self.cancelled = True
        self.backend.wake()

    def _loop(self) -> None:
        ready, starts, states = self.ready, self.starts, self.states
        while self.unfinished:
            while ready:  # in the order they became ready, those it makes ready last
                self._start(ready.popleft())
            for i in starts.take(self.ctx.running, states, self._waits):
                self._launch(i)
            if self.outbox:
                calls, self.outbox = self.outbox, []
                self.backend.submit_many(calls)
                # Not kept through the waits: each call, its outcome with it, is
                # freed once settled (a fan-out submits every branch at once).
                del calls
            if self.unfinished:
                self._wait()

    def _wait(self) -> None:
        """Fire due timers, else wait for ended calls (or sleep until the next timer).

        The loop has just started all it could: nothing is ready or queued here
        unless a timer fires.
        """
        if self.cancelled:
            raise RunCancelled("the run was cancelled")
        wait = None
        if self.retry_timers or self.deadlines:
            wait = self._fire_timers()
            if wait is not None:
                # A timer hours or 1e300 seconds away: wake up now and then instead
                # (sleep and queue waits refuse timeouts past what the OS can count).
                wait = min(wait, _LONGEST_WAIT)
            if self.ready or self.outbox or not self.unfinished:
                return
            if self.starts.can_take(self.ctx.running):
                return
        if not self.ctx.running:
            if wait is None:
                raise FlowkitError(  # a scheduler bug, never a hang
                    f"flowkit stalled with {self.unfinished} unfinished tasks and nothing "
                    "running; please report this with your DAG"
                )
            self.sleep(wait)  # only retry waits are left: injectable for tests
            return
        for call in self.backend.collect(wait):
            self._settle(call)

    def _fire_timers(self) -> float | None:
        """Start due retries and time out attempts past their deadline; return the
        seconds until the next timer (``None``: no timer)."""
        now = self.clock()
        timers = self.retry_timers
        while timers and timers[0][0] <= now:
            self._submit(heapq.heappop(timers)[2])
        wait = timers[0][0] - now if timers else None
        deadlines = self.deadlines
        while deadlines:
            due, _, call = deadlines[0]
            state = self.states[call.index]
            if state.status is not _RUNNING or state.attempts != call.attempt:
                heapq.heappop(deadlines)  # that attempt ended already
            elif due > now:
                return due - now if wait is None else min(wait, due - now)
            else:
                heapq.heappop(deadlines)
                self._deadline_passed(call, now)
        return wait

    def _deadline_passed(self, call: Call, now: float) -> None:
        timeout = call.task.options.timeout or 0.0
        began = self.backend.started_at(call)
        if began is None or began + timeout > now:
            # Still queued, or it began later than it was submitted: its time
            # counts from when it began to run.
            due = (now if began is None else began) + timeout
            heapq.heappush(self.deadlines, (due, next(self.seq), call))
            return
        for ended in self.backend.collect(0):  # an outcome that arrived beats the clock
            self._settle(ended)
        state = self.states[call.index]
        if state.status is _RUNNING and state.attempts == call.attempt:
            self._time_out(call)

    # --- a task becomes ready ------------------------------------------------

    def _start(self, i: int) -> None:
        state = self.states[i]
        if state.status is not _PENDING:  # settled already (fail-fast, Ctrl-C)
            return
        if i in self.expanded:  # a mapped task whose items have all finished
            self._collect(i)
            return
        task = state.task
        if self.restored and task.name in self.restored:
            self._restore(i, *self.restored[task.name])
            return
        ups = map(self.states.__getitem__, self.graph.up[i])
        inputs, verdict, blame = apply_trigger(task.options.trigger, ups)
        if verdict is not None and blame is not None:
            why = "was skipped" if verdict is _SKIPPED else f"is {blame.status.name}"
            self._not_run(i, verdict, root_cause(blame), f"upstream task {blame.name!r} {why}")
        elif task.is_map and not self.planning:
            self._expand(i, inputs)
        else:
            self._run_with(i, () if task.signature.takes_nothing else tuple(inputs))

    def _run_with(self, i: int, args: tuple[Any, ...]) -> None:
        """Apply the condition and the cache, then submit a first attempt."""
        state = self.states[i]
        task = state.task
        options = task.options
        if self.remote:
            if not task.is_async:
                state.inputs = args  # the backend applies the condition and the cache
                self._submit(i)
                return
            args = tuple(fetch_remote(list(args)))  # a coroutine runs here: bring its inputs
        if options.when is not None and not self.planning:
            try:
                go = options.when(*args)
            except Exception as exc:
                state.error, state.reason = exc, "its when= condition raised"
                self._move(i, _FAILED)
                return
            if not go:
                self._not_run(i, _SKIPPED, state.name, "its when= condition was false")
                return
        if options.cache_ttl is not None and self.state is not None:
            key, hit, value = self.state.lookup(task, args, self.keyword_inputs.get(i, _NO_KWARGS))
            state.cache_key = key
            if hit:
                state.value, state.reason = value, "served from the cache"
                self._move(i, _CACHED)
                return
        state.inputs = args
        self.starts.push(i, task)

    def _submit(self, i: int) -> None:
        """Task ``i`` runs (again) as soon as the start queue lets it."""
        self.starts.push(i, self.states[i].task)

    def _launch(self, i: int) -> None:
        state = self.states[i]
        state.attempts += 1
        self.started += 1
        if state.order is None:
            numbers = self.graph.numbers  # its int, not a new one for each task
            state.order = numbers[self.started] if self.started < len(numbers) else self.started
        self.ctx.running += 1
        self._move(i, _RUNNING)
        call = Call(i, state.attempts, state.task, state.inputs,
                    self.keyword_inputs.get(i, _NO_KWARGS),
                    _new(TaskContext, (state.name, self.ctx.run_id, self.ctx.dag_name)))
        timeout = state.task.options.timeout
        if timeout is not None:
            heapq.heappush(self.deadlines, (self.clock() + timeout, next(self.seq), call))
        self.outbox.append(call)

    # --- mapped tasks ----------------------------------------------------------

    def _expand(self, i: int, inputs: list[Any]) -> None:
        """Add one item node per element of the first input; the map node waits for them."""
        source_state = self.states[self.graph.up[i][0]]
        source, *extra = inputs
        if source is SKIPPED or isinstance(source, UpstreamFailed):  # nothing to map over
            self._not_run(i, _SKIPPED, root_cause(source_state),
                          f"upstream task {source_state.name!r} produced nothing to map over")
            return
        try:
            items = items_of(self.states[i].name, source, source_state.name)
        except Unmappable as bad:
            self.states[i].error, self.states[i].reason = bad.error, bad.reason
            self._move(i, _FAILED)
            return
        self.expanded[i] = added = self._add_items(i, len(items))
        kwargs = self.keyword_inputs.get(i)
        if kwargs is not None:
            self.keyword_inputs.update(dict.fromkeys(added, kwargs))
        first = added.start
        if not items:
            self._collect(i)
        for k, item in enumerate(items):
            j = first + k
            if self.states[j].status is not _PENDING:  # settled meanwhile (fail-fast)
                continue
            if self.restored and self.states[j].name in self.restored:
                self._restore(j, *self.restored[self.states[j].name])
            else:
                self._run_with(j, (item, *extra))

    def _collect(self, i: int) -> None:
        """All items of map node ``i`` ended: its value is their values, in order."""
        items = [self.states[j] for j in self.expanded.pop(i, range(0))]
        broken = next((s for s in items if s.status in _BROKEN), None)
        if broken is not None:
            self._not_run(i, _UPSTREAM_FAILED, root_cause(broken),
                          f"its item {broken.name!r} is {broken.status.name}")
            return
        state = self.states[i]
        state.value = [s.value if s.status.produced_value else SKIPPED for s in items]
        state.duration = sum(s.duration for s in items)
        self._move(i, _SUCCESS)

    # --- outcomes ------------------------------------------------------------

    def _settle(self, call: Call) -> None:
        state = self.states[call.index]
        if state.status is not _RUNNING or state.attempts != call.attempt:
            return  # a late outcome of an attempt given up on (timeout, cancel)
        outcome = call.outcome
        assert outcome is not None, "a backend returned a call without its outcome"
        error = outcome.error
        if isinstance(error, KeyboardInterrupt):
            raise error  # the worker's policy: Ctrl-C in a task stops the run
        self.ctx.running -= 1
        value = outcome.value
        if type(value) is Decided:  # decided where the inputs live (remote values)
            if value.status is not _SUCCESS:
                self._decided(call.index, value)
                return
            state.cache_key, value = value.cache_key, value.value
        if error is None and call.attempt == 1:  # the common case: no Attempt object
            state.add_first(outcome.started, outcome.ended, outcome.worker)
        else:
            state.add_attempt(_new(Attempt, (call.attempt, outcome.started, outcome.ended,
                                             outcome.worker, error)))
        if outcome.ok:
            state.value, state.error = value, None
            self._move(call.index, _SUCCESS)
        else:
            assert error is not None, "a failed outcome without its error"
            self._attempt_failed(call.index, error)

    def _time_out(self, call: Call) -> None:
        timeout = call.task.options.timeout or 0.0
        self.ctx.running -= 1
        self.backend.stop(call)
        error = timeout_error(call.task.name, timeout, self.backend.stop_note_for(call))
        error.attempts = call.attempt
        now = time.time()
        state = self.states[call.index]
        # The timeout itself: (now) - (now - timeout) may differ from it in the last digit.
        state.add_attempt(Attempt(call.attempt, now - timeout, now, "abandoned", error), timeout)
        self._attempt_failed(call.index, error)

    def _attempt_failed(self, i: int, error: BaseException) -> None:
        state = self.states[i]
        options = state.task.options
        state.error = error
        if (
            state.attempts <= options.retries
            and (not self.stopping or options.trigger == "all_done")  # teardown still retries
            and isinstance(error, options.retry_on)
            and getattr(error, "retryable", True)  # a failure no attempt can change
        ):
            delay = backoff_delay(
                state.attempts, retry_delay=options.retry_delay, backoff=options.backoff,
                max_delay=options.max_delay, jitter=options.jitter, random=self.random,
            )
            self._move(i, _PENDING, error, delay)
            if delay > 0:
                heapq.heappush(self.retry_timers, (self.clock() + delay, next(self.seq), i))
            else:
                self._submit(i)
            return
        self._move(i, _FAILED)

    def _restore(self, i: int, status: Status, value: Any) -> None:
        state = self.states[i]
        if status is _SKIPPED:
            self._not_run(i, _SKIPPED, state.name, "skipped in the resumed run")
            return
        state.value, state.reason = value, "restored from a previous run (resume)"
        self._move(i, _CACHED)

    def _cancel_waiting(self, reason: str, cause: str | None, *, interrupt: bool) -> None:
        def teardown(i: int) -> bool:  # fail-fast spares all_done tasks; Ctrl-C does not
            return not interrupt and self.states[i].task.options.trigger == "all_done"

        self.retry_timers = [t for t in self.retry_timers if teardown(t[2])]
        heapq.heapify(self.retry_timers)
        for i in self.starts.clear():  # still PENDING: the caller settles them
            if teardown(i):
                self.starts.push(i, self.states[i].task)
        if interrupt:
            self.deadlines.clear()
        queued, self.outbox = self.outbox + self.backend.cancel_pending(), []
        kept = []
        for call in queued:
            state = self.states[call.index]
            if state.status is not _RUNNING or state.attempts != call.attempt:
                continue
            if teardown(call.index):
                kept.append(call)
                continue
            state.attempts -= 1  # it never started
            self.ctx.running -= 1
            self._not_run(call.index, _CANCELLED, cause, reason)
        if kept:
            self._resubmit(kept)

    def _resubmit(self, calls: list[Call]) -> None:
        """Queue again, as new calls, teardown calls the backend gave back unstarted
        (the backend may still be forgetting the old ones); their deadlines follow."""
        old = set(calls)
        self.deadlines = [d for d in self.deadlines if d[2] not in old]
        heapq.heapify(self.deadlines)
        for call in calls:
            again = Call(call.index, call.attempt, call.task, call.args, call.kwargs, call.ctx)
            timeout = call.task.options.timeout
            if timeout is not None:
                heapq.heappush(self.deadlines, (self.clock() + timeout, next(self.seq), again))
            self.outbox.append(again)
