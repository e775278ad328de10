"""The systems the overhead benchmark compares, each as a build step and a run step.

``System.build(spec)`` turns a :class:`~benchmarks._shapes.Spec` into the
system's own graph (flowkit: Task objects, ``>>`` wiring and ``DAG(...)``;
graphlib: a ``TopologicalSorter``; Dask: ``delayed`` objects) and returns a
callable that runs it. The benchmark times the two steps separately; the
result of the run is checked afterwards, outside the timed region.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Callable
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from graphlib import TopologicalSorter
from typing import Any

import flowkit
from benchmarks import _noops
from benchmarks._shapes import Spec

__all__ = [
    "BASELINES",
    "DASK_COMPUTE",
    "SYSTEMS",
    "System",
    "build_flowkit",
    "build_flowkit_map",
    "flowkit_system",
]

Runner = Callable[[], Any]

THREADS = 4  # flowkit "thread", the graphlib baseline and Dask's threaded scheduler alike
PROCESSES = 2

DASK_COMPUTE: dict[str, Any] = {"optimize_graph": False}
"""Extra ``dask.compute`` options. Dask culls a ``delayed`` graph layer by layer and
every ``delayed`` call is a layer of its own, so its default optimisation costs
O(N) per task here: it is off unless the command line asks for it."""


@dataclasses.dataclass(frozen=True)
class System:
    """Something that runs a :class:`Spec`.

    Attributes:
        key: short name used on the command line (``--systems``) and in JSON.
        label: the row label in the tables.
        build: makes the system's graph from a spec; returns the run step.
        value: ``value(result, spec, i)`` is task ``i``'s value in a run's result.
        missing: why the system cannot run here (a peer not installed), else None.
    """

    key: str
    label: str
    build: Callable[[Spec], Runner]
    value: Callable[[Any, Spec, int], Any]
    missing: Callable[[], str | None] = lambda: None

    def check(self, spec: Spec, result: Any) -> None:
        """Raise ``AssertionError`` unless ``result`` is what a correct run gives."""
        index, expected = spec.expected
        got = self.value(result, spec, index)
        if got != expected:
            raise AssertionError(f"wrong result: task {index} gave {got!r}, expected {expected!r}")


def _by_index(result: Any, spec: Spec, i: int) -> Any:
    return result[i]


# --- the floor -------------------------------------------------------------------


def build_plain(spec: Spec) -> Runner:
    """Plain function calls in topological order: what any orchestrator adds to."""
    fns, ups = spec.fns, spec.ups

    def run() -> list[Any]:
        values: list[Any] = []
        append = values.append
        for fn, up in zip(fns, ups, strict=True):
            append(fn(*[values[u] for u in up]))
        return values

    return run


# --- graphlib + concurrent.futures, written by hand ------------------------------


def build_graphlib(pool: Callable[[], Executor]) -> Callable[[Spec], Runner]:
    """The idiomatic hand-written loop: ``prepare()``, submit every ``get_ready()``
    node, ``wait(FIRST_COMPLETED)``, ``done()``; results are passed as inputs.
    The pool is created and shut down inside the run, as flowkit does."""

    def build(spec: Spec) -> Runner:
        sorter: TopologicalSorter[int] = TopologicalSorter()
        for i, up in enumerate(spec.ups):
            sorter.add(i, *up)
        fns, ups = spec.fns, spec.ups

        def run() -> dict[int, Any]:
            results: dict[int, Any] = {}
            pending: dict[Future[Any], int] = {}
            with pool() as executor:
                sorter.prepare()
                while sorter.is_active():
                    for node in sorter.get_ready():
                        args = [results[u] for u in ups[node]]
                        pending[executor.submit(fns[node], *args)] = node
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        node = pending.pop(future)
                        results[node] = future.result()
                        sorter.done(node)
            return results

        return run

    return build


# --- flowkit ---------------------------------------------------------------------


def build_flowkit(
    executor: str,
    max_workers: int | None = None,
    state: Callable[[], Any] | None = None,
) -> Callable[[Spec], Runner]:
    """Task objects in a registry of their own, ``>>`` wiring, ``DAG(...)``; run with ``executor``.

    ``state`` (a factory, called in the build step) gives the DAG a state manager.
    """

    def build(spec: Spec) -> Runner:
        registry = flowkit.Registry()  # keeps the global registry from growing
        tasks: list[flowkit.Task[..., Any]] = []
        for fn, up, name in zip(spec.fns, spec.ups, spec.names, strict=True):
            task = flowkit.Task(fn, name=name, registry=registry)
            for u in up:
                tasks[u] >> task
            tasks.append(task)
        manager = state() if state is not None else None
        dag = flowkit.DAG(tasks, name=f"overhead-{spec.shape}", state=manager)

        def run() -> flowkit.RunResult:
            return dag.run(executor=executor, max_workers=max_workers)

        return run

    return build


def build_flowkit_map(executor: str, max_workers: int | None = None) -> Callable[[Spec], Runner]:
    """The fan-out of ``spec`` written as a mapped task: ``items >> step.map() >> total``.

    Same work as the static fan-out (one root, N calls of ``step``, one join),
    but the N calls are expanded at run time.
    """

    def build(spec: Spec) -> Runner:
        registry = flowkit.Registry()
        count = spec.tasks - 2
        root = flowkit.Task(functools.partial(_noops.items, count), name="t0", registry=registry)
        mapped = flowkit.Task(_noops.step, name="step", registry=registry).map()
        join = flowkit.Task(_noops.total, name=spec.names[-1], registry=registry)
        root >> mapped >> join
        dag = flowkit.DAG([join], name="overhead-map")

        def run() -> flowkit.RunResult:
            return dag.run(executor=executor, max_workers=max_workers)

        return run

    return build


def _by_name(result: Any, spec: Spec, i: int) -> Any:
    return result[spec.names[i]]


def flowkit_system(key: str, label: str, build: Callable[[Spec], Runner]) -> System:
    """A flowkit variant (used by the extra tables: logging, state)."""
    return System(key, label, build, _by_name)


# --- peers, when installed ---------------------------------------------------------


def _missing(module: str, what: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        return None if importlib.util.find_spec(module) else f"{what} is not installed"

    return missing


def build_dask(scheduler: str, num_workers: int | None = None) -> Callable[[Spec], Runner]:
    """``dask.delayed`` of the module-level functions; ``dask.compute`` of the sinks."""

    def build(spec: Spec) -> Runner:
        from dask.base import compute
        from dask.delayed import delayed

        wrapped = {fn: delayed(fn) for fn in set(spec.fns)}
        nodes: list[Any] = []
        for fn, up in zip(spec.fns, spec.ups, strict=True):
            nodes.append(wrapped[fn](*[nodes[u] for u in up]))
        targets = [nodes[i] for i in spec.sinks]
        options: dict[str, Any] = {"scheduler": scheduler, **DASK_COMPUTE}
        if num_workers is not None:
            options["num_workers"] = num_workers

        def run() -> dict[int, Any]:
            values = compute(*targets, **options)  # type: ignore[no-untyped-call]
            return dict(zip(spec.sinks, values, strict=True))

        return run

    return build


def build_prefect(spec: Spec) -> Runner:
    """A Prefect 3 flow that submits one task run per node (default task runner)."""
    from prefect import flow  # type: ignore[import-not-found]
    from prefect import task as prefect_task

    wrapped = {fn: prefect_task(fn) for fn in set(spec.fns)}

    @flow(name=f"overhead-{spec.shape}")  # type: ignore[untyped-decorator]
    def overhead_flow() -> dict[int, Any]:
        futures: list[Any] = []
        for fn, up in zip(spec.fns, spec.ups, strict=True):
            futures.append(wrapped[fn].submit(*[futures[u] for u in up]))
        return {i: futures[i].result() for i in spec.sinks}

    return overhead_flow  # type: ignore[no-any-return]


SYSTEMS: dict[str, System] = {
    s.key: s
    for s in (
        System("plain", "plain calls in topological order (floor)", build_plain, _by_index),
        System(
            "graphlib-thread",
            f"graphlib + ThreadPoolExecutor({THREADS})",
            build_graphlib(lambda: ThreadPoolExecutor(THREADS)),
            _by_index,
        ),
        System(
            "graphlib-process",
            f"graphlib + ProcessPoolExecutor({PROCESSES})",
            build_graphlib(lambda: ProcessPoolExecutor(PROCESSES)),
            _by_index,
        ),
        System(
            "dask-sync",
            "Dask delayed, sync scheduler",
            build_dask("sync"),
            _by_index,
            _missing("dask", "Dask"),
        ),
        System(
            "dask-threads",
            f"Dask delayed, threaded scheduler ({THREADS} threads)",
            build_dask("threads", THREADS),
            _by_index,
            _missing("dask", "Dask"),
        ),
        System(
            "prefect",
            "Prefect 3, default task runner",
            build_prefect,
            _by_index,
            _missing("prefect", "Prefect"),
        ),
        flowkit_system("flowkit-sync", "flowkit sync", build_flowkit("sync")),
        flowkit_system(
            "flowkit-thread",
            f"flowkit thread ({THREADS} workers)",
            build_flowkit("thread", THREADS),
        ),
        flowkit_system(
            "flowkit-process",
            f"flowkit process ({PROCESSES} workers)",
            build_flowkit("process", PROCESSES),
        ),
    )
}

BASELINES: dict[str, tuple[str, ...]] = {
    # flowkit system -> what its total is compared with, primary first
    "flowkit-sync": ("plain", "dask-sync"),
    "flowkit-thread": ("graphlib-thread",),
    "flowkit-process": ("graphlib-process",),
}
