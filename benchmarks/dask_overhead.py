"""Per-task overhead of flowkit on a Dask cluster, against Dask's own APIs.

The same fan-out of 1,000 independent no-op tasks runs on one LocalCluster of
two single-threaded worker processes (loopback), three ways:

- flowkit: a root task feeding the 1,000 tasks,
  ``DAG(tasks).run(executor=client.get_executor())``;
- ``client.map(noop, range(n))`` then ``client.gather``;
- ``dask.delayed`` calls computed on the same client;
- and, for reference, the bare ``client.get_executor()`` flowkit runs on:
  ``submit`` each call, then wait for every future. Its futures fetch their
  results one by one (``client.map`` gathers them in one go), which is most
  of what flowkit pays over Dask's own APIs.

Figures are microseconds of wall time per task — (building the work +
running it + having every result back) / n — the median of ``--repeat``
repeats, the contenders taking turns within each repeat; and the ratio of
flowkit to each Dask API.

    python benchmarks/dask_overhead.py
    python benchmarks/dask_overhead.py --tasks 2000 --repeat 5
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import functools
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any


def noop(i: int) -> int:
    """The task: nothing but a return."""
    return i


def run_flowkit(client: Any, fn: Callable[[int], int], n: int) -> list[int]:
    from flowkit import DAG, Registry, Task

    # A root task whose value every task of the fan-out receives (the root is
    # not counted: it stands for the input the other APIs get as an argument).
    own = Registry()
    root = Task(functools.partial(fn, 0), name="root", registry=own)
    tasks = [Task(fn, name=f"noop_{i}", registry=own) for i in range(n)]
    root >> tasks
    run = DAG(tasks, name="dask-overhead").run(executor=client.get_executor())
    values = dict(run.items())  # every value back in this process, like client.gather
    return [values[t.name] for t in tasks]


def run_map(client: Any, fn: Callable[[int], int], n: int) -> list[int]:
    # pure=False: fresh keys every repeat, so no repeat reuses another's results.
    futures = client.map(fn, range(n), pure=False)
    results: list[int] = client.gather(futures)
    return results


def run_delayed(client: Any, fn: Callable[[int], int], n: int) -> list[int]:
    import dask

    work = [dask.delayed(fn, pure=False)(i) for i in range(n)]
    results: list[int] = list(client.compute(work, sync=True))
    return results


def run_executor(client: Any, fn: Callable[[int], int], n: int) -> list[int]:
    executor = client.get_executor(pure=False)
    futures = [executor.submit(fn, i) for i in range(n)]
    return [future.result() for future in futures]


CONTENDERS: dict[str, Callable[[Any, Callable[[int], int], int], list[int]]] = {
    "flowkit": run_flowkit,
    "client.map": run_map,
    "dask.delayed": run_delayed,
    "get_executor": run_executor,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000, help="tasks in the fan-out")
    parser.add_argument("--repeat", type=int, default=3, help="repeats (the median is shown)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    options = parser.parse_args()
    try:
        import distributed
    except ImportError:
        print("skipped: dask.distributed is not installed (pip install 'dask[distributed]')")
        return 0
    # Workers import the task function by name, as they would a workflow
    # module's: take it from this file imported as a module, not from __main__.
    from benchmarks.dask_overhead import noop as task_fn

    n = options.tasks
    cluster = distributed.LocalCluster(
        n_workers=options.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        for name, contender in CONTENDERS.items():  # warm-up: workers import everything
            assert len(contender(client, task_fn, 50)) == 50, name
        times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        names = list(CONTENDERS)
        for rep in range(options.repeat):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                started = time.perf_counter()
                results = CONTENDERS[name](client, task_fn, n)
                times[name].append(time.perf_counter() - started)
                assert len(results) == n, name
    finally:
        client.close()
        cluster.close()

    per_task = {name: statistics.median(t) / n * 1e6 for name, t in times.items()}
    print(
        f"{n} no-op tasks in a fan-out, LocalCluster of {options.workers} worker processes "
        f"(1 thread each), median of {options.repeat}"
    )
    print(f"{'':14}{'µs/task':>10}{'flowkit ÷ this':>16}")
    for name, micro in per_task.items():
        print(f"{name:14}{micro:>10.0f}{per_task['flowkit'] / micro:>16.2f}")
    print("(get_executor: the bare concurrent.futures executor flowkit runs on)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
