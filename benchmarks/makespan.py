"""How well each scheduler packs work onto a few workers: makespan ÷ lower bound.

Each graph is a seeded random DAG whose tasks sleep for 1 to 10 units. With
``w`` workers no schedule can finish before ``max(critical path, total work / w)``,
so the ratio of the measured wall time to that bound says how much a scheduler
wastes by starting the wrong ready task first (1.00 is perfect).

Systems, all on ``w`` threads:

- ``fifo``: a hand-written graphlib + ThreadPoolExecutor loop that starts ready
  tasks first in, first out (what flowkit did before it ordered its ready queue);
- ``dask``: Dask's threaded scheduler on the same graph (when Dask is installed);
- ``flowkit``: ``dag.run(executor="thread")`` without history (every task weighs 1);
- ``flowkit+history``: the same DAG on a file state, measured on its second run,
  when the durations recorded by the first run weight the critical path.

Usage::

    python benchmarks/makespan.py [--sizes 50 200] [--workers 2 4 8] [--graphs 5]
                                  [--unit 0.01] [--targets]
"""

from __future__ import annotations

import argparse
import functools
import graphlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flowkit

MAX_UPSTREAM = 3
TARGETS = {"flowkit": 1.04, "flowkit+history": 1.03}  # mean ratio at 4 workers


@dataclass(frozen=True)
class Graph:
    """A random DAG: task ``i`` sleeps ``units[i]`` units after its ``ups[i]``."""

    units: list[int]
    ups: list[tuple[int, ...]]

    def lower_bound(self, workers: int, unit: float) -> float:
        """``max(critical path, total work / workers)`` in seconds."""
        finish: list[float] = []
        for u, up in zip(self.units, self.ups, strict=True):
            finish.append(u + max((finish[i] for i in up), default=0))
        return max(max(finish), sum(self.units) / workers) * unit


def make_graph(size: int, seed: int) -> Graph:
    """Each task depends on 0-3 earlier tasks and sleeps 1-10 units (seeded)."""
    rng = random.Random(f"makespan:{seed}:{size}")
    units = [rng.randint(1, 10) for _ in range(size)]
    ups = [tuple(rng.sample(range(i), rng.randint(0, min(MAX_UPSTREAM, i)))) for i in range(size)]
    return Graph(units, ups)


def sleeper(seconds: float, *inputs: Any) -> int:
    """The task body: sleep, then return something small."""
    time.sleep(seconds)
    return len(inputs)


def run_fifo(graph: Graph, workers: int, unit: float) -> float:
    """graphlib + ThreadPoolExecutor, ready tasks started in the order they became ready."""
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for i, up in enumerate(graph.ups):
        sorter.add(i, *up)
    sorter.prepare()
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        running: dict[Future[int], int] = {}
        while sorter.is_active():
            for i in sorter.get_ready():
                running[pool.submit(sleeper, graph.units[i] * unit)] = i
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                sorter.done(running.pop(future))
    return time.perf_counter() - start


def run_dask(graph: Graph, workers: int, unit: float) -> float:
    """Dask's threaded scheduler on the same graph."""
    from dask.threaded import get

    dsk: dict[str, Any] = {
        f"t{i}": (sleeper, graph.units[i] * unit, *[f"t{u}" for u in up])
        for i, up in enumerate(graph.ups)
    }
    start = time.perf_counter()
    get(dsk, list(dsk), num_workers=workers)
    return time.perf_counter() - start


def build_dag(graph: Graph, unit: float, state: Any = None) -> flowkit.DAG:
    """The graph as flowkit tasks in a registry of their own."""
    registry = flowkit.Registry()
    tasks: list[flowkit.Task[..., Any]] = []
    for i, (u, up) in enumerate(zip(graph.units, graph.ups, strict=True)):
        task = flowkit.Task(functools.partial(sleeper, u * unit), name=f"t{i}", registry=registry)
        for j in up:
            tasks[j] >> task
        tasks.append(task)
    return flowkit.DAG(tasks, name="makespan", state=state)


def run_flowkit(graph: Graph, workers: int, unit: float) -> float:
    """``dag.run(executor="thread")`` on an in-memory state (no recorded durations)."""
    dag = build_dag(graph, unit)
    start = time.perf_counter()
    dag.run(executor="thread", max_workers=workers)
    return time.perf_counter() - start


def run_flowkit_history(graph: Graph, workers: int, unit: float) -> float:
    """The second run on a file state: the first one recorded every task's duration."""
    with tempfile.TemporaryDirectory() as tmp:
        dag = build_dag(graph, unit, state=flowkit.StateManager(Path(tmp) / "state.json"))
        dag.run(executor="thread", max_workers=workers)
        start = time.perf_counter()
        dag.run(executor="thread", max_workers=workers)
        return time.perf_counter() - start


SYSTEMS: dict[str, Callable[[Graph, int, float], float]] = {
    "fifo": run_fifo,
    "dask": run_dask,
    "flowkit": run_flowkit,
    "flowkit+history": run_flowkit_history,
}


def dask_missing() -> bool:
    """True when Dask is not installed (its column is then left out)."""
    try:
        import dask.threaded  # noqa: F401
    except ImportError:
        return True
    return False


def measure(args: argparse.Namespace) -> dict[tuple[int, int, str], float]:
    """Mean makespan ÷ lower bound per (size, workers, system)."""
    systems = {k: v for k, v in SYSTEMS.items() if not (k == "dask" and dask_missing())}
    ratios: dict[tuple[int, int, str], float] = {}
    for size in args.sizes:
        graphs = [make_graph(size, seed) for seed in range(args.graphs)]
        for workers in args.workers:
            for name, run in systems.items():
                per_graph = [
                    run(g, workers, args.unit) / g.lower_bound(workers, args.unit) for g in graphs
                ]
                ratios[(size, workers, name)] = statistics.fmean(per_graph)
    return ratios


def print_table(ratios: dict[tuple[int, int, str], float]) -> None:
    """One row per (size, workers), one column per system."""
    systems = list(dict.fromkeys(name for _, _, name in ratios))
    print("| tasks | workers | " + " | ".join(systems) + " |")
    print("| ---: | ---: | " + " | ".join("---:" for _ in systems) + " |")
    for size, workers in dict.fromkeys((s, w) for s, w, _ in ratios):
        cells = " | ".join(f"{ratios[(size, workers, name)]:.3f}" for name in systems)
        print(f"| {size:,} | {workers} | {cells} |")


def check_targets(ratios: dict[tuple[int, int, str], float]) -> bool:
    """Print PASS/MISS for the 4-worker targets; True when all pass."""
    ok = True
    print("\n| target | measured | result |\n| --- | --- | --- |")
    for (size, workers, name), value in ratios.items():
        if workers == 4 and name in TARGETS:
            passed = value <= TARGETS[name]
            ok &= passed
            verdict = "PASS" if passed else "MISS"
            label = f"{name}, {size} tasks, 4 workers ≤ {TARGETS[name]}"
            print(f"| {label} | {value:.3f} | {verdict} |")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--graphs", type=int, default=5, help="random graphs per size (seeds)")
    parser.add_argument("--unit", type=float, default=0.01, help="seconds per duration unit")
    parser.add_argument("--targets", action="store_true", help="print PASS/MISS, exit 1 on a miss")
    args = parser.parse_args(argv)
    ratios = measure(args)
    print_table(ratios)
    if args.targets and not check_targets(ratios):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
