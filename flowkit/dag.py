"""DAG: a validated set of tasks, and ``run`` — the entry point of a run.

A DAG is built from tasks (or the whole default registry) plus everything
upstream of them, and validated at once: cycles, duplicate names and inputs
that do not fit a function's signature are reported before anything runs.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import os
import random
import reprlib
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from flowkit import render
from flowkit.backends import make_backend
from flowkit.backends.sync import PlanBackend
from flowkit.context import RunContext
from flowkit.exceptions import FlowkitError, TaskNotFoundError
from flowkit.graph import Graph, stale_message, stale_upstream, upstream_closure
from flowkit.hooks import HookDispatcher
from flowkit.logging import LoggingHook
from flowkit.ready import check_pools
from flowkit.results import RunResult
from flowkit.run_options import RunOptions, StateProtocol, Targets
from flowkit.scheduler import Scheduler
from flowkit.state import StateManager
from flowkit.task import Registry, Task, registry

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    import asyncio  # arun imports it when awaited
    import datetime as dt

    from flowkit.backfill import BackfillResult
    from flowkit.schedule import ScheduleParams, ServeResult

__all__ = ["DAG", "Plan"]

_POOLS = ("thread", "process", "dask")  # executors whose workers flowkit starts


class Plan(NamedTuple):
    """What a run would do, without running anything (see :meth:`DAG.plan`).

    Attributes:
        order: task names in the order the scheduler would start them if every
            task succeeded at once (the ``sync`` executor's order).
        excluded: tasks of the DAG left out by ``targets``.
    """

    order: list[str]
    excluded: list[str]

    def __str__(self) -> str:
        lines = [f"{n:>4}. {name}" for n, name in enumerate(self.order, 1)]
        if self.excluded:
            lines.append(f"not run (outside targets): {', '.join(self.excluded)}")
        return "\n".join(lines)


class DAG:
    """A set of tasks and their dependencies, ready to run.

    Args:
        tasks: the tasks to run (a list, or a single task), each with everything
            upstream of it; ``None`` (the default) takes every task of the registry.
        name: the DAG's name, used in logs and state.
        state: a :class:`~flowkit.StateManager` for caching and resume; by
            default each DAG keeps its own in-memory one, so running the same
            DAG object twice reuses its cache.
        registry: where to find tasks when ``tasks`` is ``None``.

    Raises:
        DAGCycleError: the dependencies form a cycle.
        DAGValidationError: two tasks share a name, or a task's function cannot
            take the inputs its upstream tasks give it.
    """

    def __init__(
        self,
        tasks: Iterable[Task[..., Any]] | Task[..., Any] | None = None,
        *,
        name: str = "default",
        state: StateProtocol | str | os.PathLike[str] | None = None,
        registry: Registry = registry,
    ):
        if not isinstance(name, str) or not name:
            raise FlowkitError(f"a DAG needs a non-empty string name, got {name!r}")
        if not isinstance(registry, Registry):
            raise FlowkitError(f"DAG(registry=...) takes a flowkit Registry, got {registry!r}")
        self.name = name
        roots = list(registry) if tasks is None else _roots(tasks)
        self._graph = Graph(upstream_closure(roots))
        self._graph.check_signatures()
        for task, up in stale_upstream(self._graph):
            warnings.warn(stale_message(task, up), UserWarning, stacklevel=2)
        self._subgraphs: dict[tuple[str, ...], Graph] = {}
        self.state: StateProtocol = (
            StateManager() if state is None else _state_manager(state, "DAG(state=...)")
        )

    # --- the tasks ------------------------------------------------------------

    @property
    def tasks(self) -> tuple[Task[..., Any], ...]:
        """The DAG's tasks in topological order."""
        return tuple(self._graph.tasks)

    def __getitem__(self, name: str) -> Task[..., Any]:
        try:
            return self._graph.tasks[self._graph.index[name]]
        except KeyError:
            raise TaskNotFoundError(name, self._graph.names) from None

    def __contains__(self, name: object) -> bool:
        return name in self._graph.index

    def __iter__(self) -> Iterator[Task[..., Any]]:
        return iter(self._graph.tasks)

    def __len__(self) -> int:
        return len(self._graph)

    def __repr__(self) -> str:
        return f"<DAG {self.name!r} with {len(self)} tasks>"

    def _select(self, targets: Targets) -> Graph:
        """The graph of ``targets`` and their upstream closure (all tasks for ``None``)."""
        if targets is None:
            return self._graph
        key = self._target_names(targets)
        graph = self._subgraphs.get(key)
        if graph is None:
            chosen = [self[name] for name in key]  # TaskNotFoundError for unknown names
            graph = self._subgraphs[key] = Graph(upstream_closure(chosen))
        return graph

    def _target_names(self, targets: Sequence[str | Task[..., Any]] | str | Task[..., Any]) \
            -> tuple[str, ...]:
        """Names of ``targets`` (names or Task objects), each checked to be of this DAG."""
        if isinstance(targets, str | Task):
            targets = [targets]
        if not isinstance(targets, Iterable):
            raise FlowkitError(
                f"targets must be task names or Task objects (or a list of them), got {targets!r}"
            )
        names = []
        for target in targets:
            if isinstance(target, Task):
                if self._graph.index.get(target.name) is not None and self[target.name] \
                        is not target:
                    raise FlowkitError(
                        f"targets: task {target.name!r} is not the one in DAG {self.name!r}, "
                        "which has another task of that name (was it redefined after the "
                        "DAG was built?). Build the DAG again from the new task."
                    )
                target = target.name
            elif not isinstance(target, str):
                raise FlowkitError(f"targets must be task names or Task objects, got {target!r}")
            names.append(target)
        return tuple(names)

    # --- planning and running -----------------------------------------------------

    def plan(self, targets: Targets = None) -> Plan:
        """The order in which a run would start tasks, without calling any.

        Raises:
            TaskNotFoundError: a target is not in the DAG.
        """
        graph = self._select(targets)
        chosen = set(graph.names)
        backend = PlanBackend()  # the real scheduler, on a backend that runs nothing
        ctx = RunContext(self.name, "plan", len(graph), backend.name)
        # Pools never make a plan wait: it starts one task at a time.
        pools = {t.options.pool: t.options.pool_slots for t in graph.tasks if t.options.pool}
        options = RunOptions(executor="sync", pools=pools).timed()
        Scheduler(graph, backend, ctx, HookDispatcher(()), options, planning=True,
                  history=self.state).run()
        return Plan(
            order=[graph.names[i] for i in backend.order],
            excluded=[n for n in self._graph.names if n not in chosen],
        )

    def run(
        self,
        *,
        executor: str | cf.Executor = "thread",
        max_workers: int | None = None,
        fail_fast: bool = True,
        targets: Targets = None,
        state: StateProtocol | str | os.PathLike[str] | None = None,
        resume: bool = False,
        hooks: Sequence[object] = (),
        params: Mapping[str, Any] | None = None,
        pools: Mapping[str, int] | None = None,
        address: str | None = None,
        max_concurrency: int | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> RunResult:
        """Run the DAG and return a :class:`~flowkit.RunResult`.

        Args:
            executor: ``"thread"`` (default), ``"process"``, ``"sync"`` (inline, in
                order, for debugging), or any ``concurrent.futures.Executor``,
                which stays the caller's: flowkit never shuts it down.
            max_workers: size of the thread or process pool flowkit creates.
            fail_fast: stop at the first failure (default) or let independent
                branches go on.
            targets: run only these tasks (names or Task objects) and what they
                depend on.
            state: a state manager for this run instead of the DAG's own, or the
                path of a state file.
            resume: restore tasks that succeeded in this DAG's latest run with the
                same ``params`` in ``state`` and run the rest.
            hooks: objects with lifecycle methods (see ``flowkit.hooks``).
            params: run parameters: a task gets ``params[name]`` by keyword for each
                parameter ``name`` of its function that no upstream task feeds.
            pools: resource pools, name to number of slots: at most that many
                slots of a pool are taken at once by the tasks with ``pool=name``
                (each attempt takes its ``pool_slots``).
            address: with ``executor="dask"``, the scheduler address of a Dask
                cluster (default: ``$DASK_SCHEDULER_ADDRESS``, else a local cluster).
            max_concurrency: at most this many ``async def`` tasks at once.
            rng: source of retry jitter; pass ``random.Random(seed)`` to reproduce it.
            clock, sleep: time source and sleep used for retry waits (for tests).

        Raises:
            TaskExecutionError: a task failed (after the run settled every task);
                ``.result`` holds the RunResult.
            TaskNotFoundError: a target is not in the DAG.
            KeyboardInterrupt: re-raised after pending work is cancelled.
        """
        manager = None if state is None else _state_manager(state, "run(state=...)")
        return self._run(RunOptions(
            executor=executor, max_workers=max_workers, fail_fast=fail_fast, targets=targets,
            state=manager, resume=resume, hooks=hooks, params=params, pools=pools,
            address=address,
            max_concurrency=max_concurrency, rng=rng, clock=clock, sleep=sleep,
        ))

    async def arun(self, **options: Any) -> RunResult:
        """Run the DAG from async code; ``async def`` tasks run on the caller's loop.

        Takes the same options as :meth:`run`. The scheduler and synchronous
        tasks run in threads, so the loop stays free while the DAG runs.
        """
        import asyncio  # loaded already: this coroutine runs on an event loop

        handle = _RunHandle()
        work = asyncio.ensure_future(asyncio.to_thread(
            self._run, RunOptions(**options), asyncio.get_running_loop(), handle
        ))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            # Stop the run as Ctrl-C would (queued work cancelled, running tasks
            # abandoned, states recorded), wait for it to settle, then give up.
            handle.cancel()
            with contextlib.suppress(BaseException):
                await work
            raise

    def _run(
        self, options: RunOptions, loop: asyncio.AbstractEventLoop | None = None,
        handle: _RunHandle | None = None,
    ) -> RunResult:
        """The one path of :meth:`run` and :meth:`arun` (which passes its event loop)."""
        options = options.checked()
        if options.state is not None:  # arun passes its options as they came
            options = dataclasses.replace(
                options, state=_state_manager(options.state, "run(state=...)")
            )
        max_concurrency = options.max_concurrency
        if max_concurrency is not None and (
            not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise FlowkitError(
                f"max_concurrency must be a positive integer or None, got {max_concurrency!r}"
            )
        graph = self._select(options.targets)
        check_pools(graph.tasks, options.pools)
        params = _params(options.params)
        # A parameter of a task that targets leaves out is not a typo.
        outside = self._graph.parameter_names() if graph is not self._graph and params else ()
        keyword_inputs = graph.bind_params(params, outside)
        manager = options.state if options.state is not None else self.state
        options = dataclasses.replace(options, state=manager).timed()
        assert options.clock is not None
        backend = make_backend(
            options.executor, options.max_workers, options.clock, address=options.address,
            coroutines=graph.has_async, loop=loop, max_concurrency=max_concurrency,
            # Items of a map are unknown yet; only pools flowkit creates use it.
            width=None if graph.has_map or options.executor not in _POOLS else graph.width(),
        )
        ctx = RunContext(self.name, _new_run_id(), len(graph), backend.name, params)
        dispatcher = HookDispatcher([manager, LoggingHook(), *options.hooks])
        scheduler = Scheduler(graph, backend, ctx, dispatcher, options,
                              keyword_inputs=keyword_inputs)
        if handle is not None:
            handle.attach(scheduler)
        return scheduler.run()

    # --- over time ----------------------------------------------------------------

    def backfill(
        self,
        partitions: Sequence[Mapping[str, Any]],
        *,
        parallel: int = 1,
        state: StateProtocol | None = None,
        executor: str | cf.Executor = "thread",
        max_workers: int | None = None,
        fail_fast: bool = True,
        targets: Targets = None,
        force: bool = False,
        hooks: Sequence[object] = (),
    ) -> BackfillResult:
        """Run the DAG once per partition (a mapping of run parameters).

        A partition whose latest run recorded in ``state`` with exactly those
        params succeeded is skipped; one whose latest run failed or was
        interrupted is resumed. See :mod:`flowkit.backfill`.

        Args:
            partitions: the params of each run, e.g. ``[{"day": "2026-11-01"}, ...]``.
            parallel: how many partitions run at once.
            state: where runs are recorded and looked up (default: the DAG's).
            executor, max_workers, fail_fast, targets: as for :meth:`run`, for each run.
            force: run every partition, done or not, afresh.
            hooks: as for :meth:`run`; a hook may also define
                ``on_partition_start(params)`` and ``on_partition_end(result)``.

        Returns:
            a :class:`~flowkit.backfill.BackfillResult`: one result per partition.
            A failed partition is a result, not an exception.

        Raises:
            FlowkitError: malformed partitions, or params that fit no task.
            KeyboardInterrupt: Ctrl-C; ``.result`` holds the BackfillResult so far.
        """
        from flowkit import backfill  # loaded on first use: keeps `import flowkit` fast

        return backfill.backfill(
            self, partitions, parallel=parallel, state=state, force=force, hooks=hooks,
            executor=executor, max_workers=max_workers, fail_fast=fail_fast, targets=targets,
        )

    def serve(
        self,
        cron: str | None = None,
        *,
        every: float | dt.timedelta | None = None,
        params: ScheduleParams = None,
        catchup: bool = False,
        max_runs: int | None = None,
        state: StateProtocol | None = None,
        tz: str | dt.tzinfo | None = None,
        wait: bool = False,
        executor: str | cf.Executor = "thread",
        max_workers: int | None = None,
        fail_fast: bool = True,
        hooks: Sequence[object] = (),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
    ) -> ServeResult:
        """Run the DAG for every interval of a schedule, until stopped.

        Each run gets ``interval_start`` and ``interval_end`` (aware datetimes)
        as run parameters. See :mod:`flowkit.schedule` for catch-up, locking
        and signals.

        Args:
            cron: a cron expression (``"0 * * * *"``, ``"@daily"``), or
            every: a period in seconds or a ``timedelta``.
            params: more run parameters: a mapping, or a function of
                ``(interval_start, interval_end)`` returning one.
            catchup: after downtime, run every missed interval (default: the latest only).
            max_runs: return after this many runs (default: run until a signal).
            state: where runs are recorded (default: the DAG's); use a file state
                to survive restarts and keep out a second server.
            tz: the cron's time zone (default UTC).
            wait: wait for another process serving this DAG on this state to
                stop, instead of raising ``StateLockedError``.
            executor, max_workers, fail_fast, hooks: as for :meth:`run`, for each run.
            clock, sleep: time source (``time.time``) and sleep, for tests.

        Returns:
            a :class:`~flowkit.schedule.ServeResult`.

        Raises:
            CronError: an invalid cron expression or time zone.
            StateLockedError: another process serves this DAG on this state.
        """
        from flowkit import schedule  # loaded on first use: keeps `import flowkit` fast

        return schedule.serve(
            self, cron, every=every, params=params, catchup=catchup, max_runs=max_runs,
            state=state, tz=tz, wait=wait, hooks=hooks, clock=clock, sleep=sleep,
            executor=executor, max_workers=max_workers, fail_fast=fail_fast,
        )

    # --- pictures -----------------------------------------------------------------

    def to_mermaid(self, result: RunResult | None = None) -> str:
        """The DAG as a Mermaid flowchart; given a run's ``result``, coloured by status."""
        statuses = None if result is None else {n: s.status for n, s in result.states.items()}
        return render.to_mermaid(self._graph.upstream_names, statuses)

    def to_dot(self, result: RunResult | None = None) -> str:
        """The DAG as Graphviz DOT; given a run's ``result``, coloured by status."""
        statuses = None if result is None else {n: s.status for n, s in result.states.items()}
        return render.to_dot(self._graph.upstream_names, statuses, name=self.name)


def _roots(tasks: object) -> list[Task[..., Any]]:
    """The tasks a DAG is built from: a single task, or an iterable of tasks."""
    if isinstance(tasks, Task):
        return [tasks]
    if isinstance(tasks, str):
        raise FlowkitError(
            f"DAG({tasks!r}): the first argument is the DAG's tasks; pass its name by "
            f"keyword, DAG(name={tasks!r}), or DAG([task, ...], name={tasks!r})"
        )
    if not isinstance(tasks, Iterable):
        raise FlowkitError(
            f"DAG(tasks) takes a task or a list of tasks, got {type(tasks).__name__} {tasks!r}"
        )
    return list(tasks)


def _state_manager(state: object, argument: str) -> StateProtocol:
    """``state`` as a state manager: a path becomes a :class:`~flowkit.StateManager`.

    Raises:
        FlowkitError: ``state`` is neither a path nor a state manager.
    """
    if isinstance(state, str | os.PathLike):
        return StateManager(state)
    if not all(callable(getattr(state, method, None)) for method in ("begin_run", "lookup")):
        raise FlowkitError(
            f"{argument} takes a StateManager or the path of a state file, got "
            f"{type(state).__name__} {reprlib.repr(state)}"
        )
    return state  # type: ignore[return-value]


def _params(params: object) -> dict[str, Any]:
    """``params`` as a dict, after checking it maps parameter names to values."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise FlowkitError(
            f"params must be a mapping of parameter name to value, e.g. params={{'day': "
            f"'2026-11-28'}}; got {type(params).__name__} {reprlib.repr(params)}"
        )
    for name in params:
        if not isinstance(name, str):
            raise FlowkitError(
                f"params: a parameter name must be a string, got {name!r}; "
                "the keys of params are the names of the tasks' parameters"
            )
    return dict(params)


class _RunHandle:
    """What ``arun`` keeps of the run it started in a thread: a way to stop it
    when the awaiting coroutine is cancelled, even before the run has begun."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scheduler: Scheduler | None = None
        self._cancelled = False

    def attach(self, scheduler: Scheduler) -> None:
        with self._lock:
            self._scheduler = scheduler
            if self._cancelled:
                scheduler.cancel()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._scheduler is not None:
                self._scheduler.cancel()


def _new_run_id() -> str:
    """A unique id that sorts by start time: ``20261128T075110.123456-3f9a1c``."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}.{int(now % 1 * 1_000_000):06d}-{os.urandom(3).hex()}"

