"""Many short tasks on a process pool: a map over the standard library's files.

Each item tokenizes one ``.py`` file of the standard library and returns its
number of tokens: a few milliseconds of pure-Python work, short beside what it
costs to send a call to another process and back. Systems, each on 2 worker
processes (pool start-up included):

- ``multiprocessing.Pool(2).map(chunksize=64)``: the baseline, sending the
  items 64 at a time;
- ``flowkit, first run``: ``files >> count_tokens.map()`` on
  ``executor="process"`` with a file state, which records every item's duration;
- ``flowkit, learned durations``: the same run again, measured: the durations
  recorded by the first run tell the process pool that the items are short,
  so it sends them in batches.

The ratio is flowkit's time over the baseline's (lower is better; target
<= 1.0 with learned durations).

Usage::

    python benchmarks/process_map.py [--limit N] [--repeat 1] [--targets]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import sysconfig
import tempfile
import time
import tokenize
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flowkit

WORKERS = 2
CHUNKSIZE = 64
TARGET = 1.0  # flowkit with learned durations / Pool.map


def stdlib_files(limit: int | None) -> list[str]:
    """The standard library's ``.py`` files, sorted (the first ``limit`` of them)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(str(p) for p in root.rglob("*.py") if "site-packages" not in p.parts)
    return files[:limit] if limit else files


def tokens_in(path: str) -> int:
    """How many tokens ``path`` holds (-1 when it does not tokenize)."""
    try:
        with tokenize.open(path) as source:
            return sum(1 for _ in tokenize.generate_tokens(source.readline))
    except (SyntaxError, UnicodeDecodeError, tokenize.TokenError, OSError):
        return -1


@flowkit.task
def files() -> list[str]:
    """The list to map over (set by :func:`run_flowkit`)."""
    return FILES


@flowkit.task
def count_tokens(path: str) -> int:
    """One item: tokenize one file."""
    return tokens_in(path)


FILES: list[str] = []
count_each = count_tokens.map()
files >> count_each


def run_pool(paths: list[str]) -> tuple[float, list[int]]:
    """``multiprocessing.Pool(2).map(tokens_in, paths, chunksize=64)``."""
    start = time.perf_counter()
    with multiprocessing.Pool(WORKERS) as pool:
        counts = pool.map(tokens_in, paths, chunksize=CHUNKSIZE)
    return time.perf_counter() - start, counts


def run_flowkit(dag: flowkit.DAG) -> tuple[float, list[int]]:
    """One run of the map on ``executor="process"``."""
    start = time.perf_counter()
    run = dag.run(executor="process", max_workers=WORKERS)
    return time.perf_counter() - start, run[count_each.name]


def measure(paths: list[str], repeat: int) -> dict[str, float]:
    """Median seconds per system over ``repeat`` rounds (results checked equal)."""
    FILES[:] = paths
    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            dag = flowkit.DAG([count_each], name="process_map",
                              state=flowkit.StateManager(Path(tmp) / "state.json"))
            first, counts_first = run_flowkit(dag)
            learned, counts_learned = run_flowkit(dag)
        baseline, expected = run_pool(paths)
        if not counts_first == counts_learned == expected:
            raise SystemExit("flowkit and Pool.map disagree on the token counts")
        for name, seconds in (("Pool(2).map(chunksize=64)", baseline),
                              ("flowkit, first run", first),
                              ("flowkit, learned durations", learned)):
            times.setdefault(name, []).append(seconds)
    return {name: statistics.median(found) for name, found in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="map over the first N files only")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (median reported)")
    parser.add_argument("--targets", action="store_true",
                        help=f"exit 1 unless learned durations run within {TARGET}x Pool.map")
    args = parser.parse_args(argv)
    paths = stdlib_files(args.limit)
    load = os.getloadavg()[0]
    times = measure(paths, args.repeat)
    baseline = times["Pool(2).map(chunksize=64)"]
    print(f"{len(paths):,} files, {WORKERS} worker processes; {platform.platform()}, "
          f"{os.cpu_count()} CPUs, CPython {platform.python_version()}; "
          f"load average (1 min) before/after: {load:.1f} / {os.getloadavg()[0]:.1f}\n")
    print("| system | seconds | ratio |\n| --- | ---: | ---: |")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.2f} | {seconds / baseline:.2f}x |")
    ratio = times["flowkit, learned durations"] / baseline
    if args.targets and ratio > TARGET:
        print(f"\nmissed: learned durations at {ratio:.2f}x Pool.map (target <= {TARGET}x)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
