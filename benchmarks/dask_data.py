"""Big intermediate data on a Dask cluster: does it stay on the workers?

A chain of 4 tasks, each producing a 200 MB ``bytes`` value from the one
before it, runs on one LocalCluster of two single-threaded worker processes
(loopback), two ways, taking turns within each repeat:

- flowkit: ``DAG(chain).run(executor=client.get_executor())``;
- a hand-written Dask chain: ``client.submit`` each step with the previous
  step's future as its argument, then wait for the last one.

Neither brings the final value back to this process (the check afterwards
asks the cluster for its length). Figures: wall time of the run, and how far
this process's resident memory rose above where it stood when the run began
(its peak, from the kernel's ``VmHWM``) — the median of ``--repeat`` repeats —
and flowkit's ratio to the hand-written chain.

    python benchmarks/dask_data.py
    python benchmarks/dask_data.py --size-mb 50 --repeat 5
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import functools
import gc
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks._memory import PeakRSS

MB = 1_000_000


def produce(size: int) -> bytes:
    """The first step: ``size`` bytes of fresh data."""
    return b"\x00" * size


def step(previous: bytes) -> bytes:
    """A later step: new data as big as the previous step's (whose first byte it bumps)."""
    return bytes([(previous[0] + 1) % 256]) * len(previous)


def check(value: bytes, size: int, steps: int) -> bool:
    """Runs on the cluster: the last value is the right one (only a bool comes back)."""
    return len(value) == size and value[0] == (steps - 1) % 256 and value[-1] == value[0]


def run_flowkit(client: Any, size: int, steps: int, fns: Any) -> Any:
    """flowkit on the client's executor; returns the Dask future (or value) of the last step."""
    from flowkit import DAG, Registry, Task

    own = Registry()
    chain = [Task(functools.partial(fns.produce, size), name="step_0", registry=own)]
    for k in range(1, steps):
        chain.append(Task(fns.step, name=f"step_{k}", registry=own))
        chain[-2] >> chain[-1]
    run = DAG([chain[-1]], name="dask-data").run(executor=client.get_executor())
    last = chain[-1].name
    futures = getattr(run, "futures", None)
    # Before the Dask backend, values came back to this process: the check reads it.
    return futures[last] if futures is not None else run[last]


def run_dask(client: Any, size: int, steps: int, fns: Any) -> Any:
    """The same chain written by hand with ``client.submit``."""
    import distributed

    future = client.submit(fns.produce, size, pure=False)
    for _ in range(1, steps):
        future = client.submit(fns.step, future, pure=False)
    with client.as_current():  # wait() looks for the current client
        distributed.wait(future)
    return future


CONTENDERS: dict[str, Callable[[Any, int, int, Any], Any]] = {
    "flowkit": run_flowkit,
    "client.submit": run_dask,
}


def verify(client: Any, last: Any, size: int, steps: int, fns: Any) -> None:
    if isinstance(last, bytes):
        assert fns.check(last, size, steps)
    else:
        assert client.submit(fns.check, last, size, steps, pure=False).result()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="MB produced by each task")
    parser.add_argument("--tasks", type=int, default=4, help="tasks in the chain")
    parser.add_argument("--repeat", type=int, default=3, help="repeats (the median is shown)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    options = parser.parse_args()
    try:
        import distributed
    except ImportError:
        print("skipped: dask.distributed is not installed (pip install 'dask[distributed]')")
        return 0
    # Workers import the task functions by name: take them from this file
    # imported as a module, not from __main__.
    import benchmarks.dask_data as fns

    size, steps = options.size_mb * MB, options.tasks
    cluster = distributed.LocalCluster(
        n_workers=options.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster, set_as_default=False)
    seconds: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    growth: dict[str, list[int]] = {name: [] for name in CONTENDERS}
    try:
        for contender in CONTENDERS.values():  # warm-up: workers import everything
            verify(client, contender(client, MB, 2, fns), MB, 2, fns)
        names = list(CONTENDERS)
        for rep in range(options.repeat):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                gc.collect()
                with PeakRSS() as peak:
                    started = time.perf_counter()
                    last = CONTENDERS[name](client, size, steps, fns)
                    seconds[name].append(time.perf_counter() - started)
                growth[name].append(peak.growth)
                verify(client, last, size, steps, fns)
                del last  # release the cluster's copy before the next contender
                gc.collect()
    finally:
        client.close()
        cluster.close()

    print(
        f"a chain of {steps} tasks of {options.size_mb} MB each, LocalCluster of "
        f"{options.workers} worker processes (1 thread each), median of {options.repeat}"
    )
    print(f"{'':15}{'wall s':>9}{'peak RSS growth MB':>21}")
    wall = {name: statistics.median(t) for name, t in seconds.items()}
    peak_mb = {name: statistics.median(g) / MB for name, g in growth.items()}
    for name in CONTENDERS:
        print(f"{name:15}{wall[name]:>9.2f}{peak_mb[name]:>21.1f}")
    print(f"flowkit ÷ client.submit, wall time: {wall['flowkit'] / wall['client.submit']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
