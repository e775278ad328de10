"""Response times of the web UI on a long run history.

A state file is filled with ``--runs`` recorded runs (default 10,000) of one
100-task DAG — ten layers of ten tasks, each reading two of the layer before;
every tenth run failed part-way — written through the store's own history
methods (running 10,000 real runs would take most of an hour and measure the
runs, not the UI). Then ``flowkit ui``'s server answers, over HTTP on the
loopback, the runs page and a run page, ``--repeat`` times each after one
warm-up request. The baseline, in the same process: the same two pages with
only 100 recorded runs; the ratio says how the pages scale with the history.
Target: each page in 200 ms or less with 10,000 runs.

    python benchmarks/ui.py
    python benchmarks/ui.py --backend json --runs 1000
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import platform
import random
import statistics
import tempfile
import threading
import time
import urllib.request

from flowkit import __version__
from flowkit.state.history import RunEnd, RunHead, TaskEnd
from flowkit.state.stores import JSONStore, SQLiteStore, Store
from flowkit.ui.server import UIServer

TARGET_MS = 200.0
LAYERS, WIDTH = 10, 10


def graph() -> dict[str, list[str]]:
    """Ten layers of ten tasks; each task reads two tasks of the layer before."""
    shape: dict[str, list[str]] = {}
    for layer in range(LAYERS):
        for i in range(WIDTH):
            ups = [] if layer == 0 else [f"t{layer - 1}_{i}", f"t{layer - 1}_{(i + 1) % WIDTH}"]
            shape[f"t{layer}_{i}"] = ups
    return shape


def fill(store: Store, runs: int, seed: int = 1) -> list[str]:
    """Record ``runs`` runs of the DAG in ``store``; return their ids, oldest first."""
    rng = random.Random(seed)
    shape = graph()
    start = time.time() - runs * 600.0
    ids = []
    for n in range(runs):
        run_id = f"bench-{n:06d}"
        ids.append(run_id)
        failing = n % 10 == 9
        broken = f"t{rng.randrange(LAYERS)}_{rng.randrange(WIDTH)}" if failing else None
        head = RunHead(run_id, "warehouse", start, {"day": f"2026-{n % 12 + 1:02d}-01"},
                       shape, __version__, "bench", 1, "", runs + 1)
        tasks, clock, bad = [], start, set()
        for name, ups in shape.items():
            if name == broken or any(u in bad for u in ups):
                bad.add(name)
                if name == broken:
                    tasks.append(TaskEnd(run_id, name, "failed", 3, 0.5, clock, clock + 0.5,
                                         None, None, "ValueError", "row 12 is not a number",
                                         "Traceback (most recent call last): ...\nValueError"))
                else:
                    tasks.append(TaskEnd(run_id, name, "upstream_failed", 0, None, None, None,
                                         broken, f"upstream task {broken!r} failed", None, None,
                                         None))
                continue
            took = rng.uniform(0.05, 2.0)
            tasks.append(TaskEnd(run_id, name, "success", 1, took, clock, clock + took, None,
                                 None, None, None, None))
            clock += took / 4  # four tasks at a time
        store.history_start(head, tasks)
        store.history_end(RunEnd(run_id, "failed" if failing else "success", clock + 1.0))
        start += 600.0
    store.close()
    return ids


def timed(url: str, repeat: int) -> float:
    """Median milliseconds of ``repeat`` GETs of ``url`` (after one warm-up)."""
    def get() -> None:
        with urllib.request.urlopen(url, timeout=120) as response:
            response.read()

    get()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        get()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def cold(path: str, page: str, repeat: int) -> float:
    """Median milliseconds of the first request to a freshly started server."""
    times = []
    for _ in range(repeat):
        server = UIServer(path, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            began = time.perf_counter()
            with urllib.request.urlopen(server.url + page, timeout=120) as response:
                response.read()
            times.append((time.perf_counter() - began) * 1000)
        finally:
            server.shutdown()
            server.server_close()
    return statistics.median(times)


def measure(path: str, backend: str, runs: int, repeat: int) -> tuple[float, list[float]]:
    """Seconds to fill, then ms of: runs page cold, warm; run page cold, warm."""
    store: Store = SQLiteStore(path) if backend == "sqlite" else JSONStore(path)
    began = time.perf_counter()
    ids = fill(store, runs)
    filled = time.perf_counter() - began
    run_page = f"runs/{ids[-10]}"  # a failed run
    figures = [cold(path, "", max(3, repeat // 3))]
    server = UIServer(path, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        figures.append(timed(server.url, repeat))
        figures.append(cold(path, run_page, max(3, repeat // 3)))
        figures.append(timed(server.url + run_page, repeat))
    finally:
        server.shutdown()
        server.server_close()
    return filled, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--baseline-runs", type=int, default=100)
    parser.add_argument("--backend", choices=("sqlite", "json"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    suffix = ".db" if args.backend == "sqlite" else ".json"
    with tempfile.TemporaryDirectory() as tmp:
        _, base = measure(
            os.path.join(tmp, "base" + suffix), args.backend, args.baseline_runs, args.repeat
        )
        filled, big = measure(
            os.path.join(tmp, "big" + suffix), args.backend, args.runs, args.repeat
        )
    print(f"## Web UI, {args.backend} state, 100-task DAG\n")
    print(f"HTTP on the loopback. cold: the first request to a new server (median of "
          f"{max(3, args.repeat // 3)} servers); warm: median of {args.repeat} requests after "
          f"one warm-up. Recording {args.runs:,} runs took {filled:.1f} s.\n")
    print(f"| page | {args.baseline_runs:,} runs (baseline) | {args.runs:,} runs | ratio | "
          f"target ≤ {TARGET_MS:.0f} ms |")
    print("| --- | ---: | ---: | ---: | --- |")
    labels = ("runs page `/`, cold", "runs page `/`, warm", "run page `/runs/ID`, cold",
              "run page `/runs/ID`, warm")
    for label, b, n in zip(labels, base, big, strict=True):
        verdict = "PASS" if n <= TARGET_MS else "MISS"
        print(f"| {label} | {b:.1f} ms | {n:.1f} ms | {n / b:.2f}x | {verdict} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} CPUs, CPython "
          f"{platform.python_version()}; load average (1 min) after: {load:.1f}")


if __name__ == "__main__":
    main()
