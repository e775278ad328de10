"""Per-task overhead of flowkit, against hand-written baselines and peers.

Every system runs the same graphs of tasks that do next to nothing — a chain,
a fan-out/fan-in and a seeded random DAG — so what is measured is what the
orchestrator adds per task. Figures are microseconds of wall time per task:
(graph construction + run) / number of tasks, the median of ``--repeat``
repeats (``--stat min``: the fastest). Within a repeat the systems take turns
(round-robin, starting one further along each repeat), so machine noise hits
them alike, and a ratio is the median of the ratios measured within each repeat.
``gc.collect()`` runs before every timed call; the garbage collector stays
enabled while timing, as in real use, unless ``--no-gc`` disables it for every
system alike.

    python benchmarks/overhead.py --quick --targets
    python benchmarks/overhead.py --targets --json overhead.json
    python benchmarks/overhead.py --profile flowkit-sync:fanout:10000
    python benchmarks/overhead.py --sizes 10000,100000,1000000 --shapes chain,fanout \
        --systems plain,flowkit-sync,flowkit-thread --repeat 1 --extras memory,scaling --targets
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import cProfile
import dataclasses
import gc
import importlib.metadata
import io
import json
import logging
import os
import platform
import pstats
import shlex
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

import flowkit
from benchmarks._memory import PeakRSS
from benchmarks._shapes import SHAPES, Spec, make_spec
from benchmarks._systems import (
    BASELINES,
    DASK_COMPUTE,
    SYSTEMS,
    THREADS,
    System,
    build_flowkit,
    build_flowkit_map,
    flowkit_system,
)

DEFAULT_SIZES = (1_000, 10_000, 100_000)
BIG = 10_000  # larger sizes run only for the systems below, unless --full
BIG_SYSTEMS = ("plain", "flowkit-sync")  # chain and fan-out (the scaling table)
# Fan-out only, not with --quick; chain and fan-out when named in --systems.
BIG_THREAD_SYSTEMS = ("graphlib-thread", "flowkit-thread")
SCALING_SYSTEMS = ("flowkit-sync", "flowkit-thread")  # the scaling table's rows
SCALING_BASE = 10_000  # the scaling table divides by the per-task cost at this size
MILLION = 1_000_000
TRACEMALLOC_MAX = BIG  # above: the peak resident set of a child process (tracemalloc is slow)
TIMEOUT_PER_TASK = 120.0 / 100_000  # the default --cell-timeout: 120 s per 100,000 tasks
PROCESS_SYSTEMS = ("graphlib-process", "flowkit-process")
PROCESS_MAX = 1_000  # process pools are slow: larger sizes only with --full
DASK_SYSTEMS = ("dask-sync", "dask-threads")
# Dask above 1,000 runs the fan-out only: building a chain of ``delayed`` objects
# is O(N) per task, and the random DAG costs ~0.2 ms per task (5 s a repeat).
DASK_MAX = 1_000
RUN_ONLY_ROWS = (
    "dask-sync",
    "dask-threads",
    "flowkit-sync",
    "flowkit-thread",
    "flowkit-process",
)  # systems whose build step is more than a few µs
PREFECT_SIZE = 200  # Prefect runs at this size only
EXTRA_SIZE = 10_000  # the logging and state tables
MEMORY_SYSTEMS = ("plain", "graphlib-thread", "flowkit-sync", "flowkit-thread")
SHORT = {
    "plain": "plain",
    "graphlib-thread": "graphlib+TPE",
    "graphlib-process": "graphlib+PPE",
    "dask-sync": "Dask sync",
}
SHAPE_NAMES = {"chain": "chain", "fanout": "fan-out", "random": "random DAG"}
NOT_RUN = "-"


# --- measuring one call ----------------------------------------------------------


class CellTimeout(Exception):
    """A system took longer than ``--cell-timeout`` on one graph."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`CellTimeout` in this thread after ``seconds`` (0: no limit)."""
    usable = (
        seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise CellTimeout(f"timed out after {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def measure(system: System, spec: Spec, *, no_gc: bool, timeout: float) -> tuple[float, float]:
    """Build and run ``spec`` on ``system`` once; return (build, run) seconds.

    Dropping the graph and its result happens after the clock stops, for every
    system alike; the result is checked outside the timed region.
    """
    gc.collect()
    if no_gc:
        gc.disable()
    try:
        with deadline(timeout):
            t0 = time.perf_counter()
            runner = system.build(spec)
            t1 = time.perf_counter()
            result = runner()
            t2 = time.perf_counter()
    finally:
        if no_gc:
            gc.enable()
    system.check(spec, result)
    return t1 - t0, t2 - t1


def cell_timeout(args: argparse.Namespace, tasks: int) -> float:
    """``--cell-timeout``, or by default 120 s per 100,000 tasks (at least 120 s)."""
    if args.cell_timeout is not None:
        return float(args.cell_timeout)
    return max(120.0, tasks * TIMEOUT_PER_TASK)


def peak_memory(system: System, spec: Spec) -> float:
    """Peak bytes traced by ``tracemalloc`` while building and running, per task."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = system.build(spec)()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    system.check(spec, result)
    return peak / spec.tasks


def peak_rss(key: str, spec: Spec, args: argparse.Namespace) -> float:
    """Peak resident-set growth per task of a fresh child process over build + run.

    For sizes where tracemalloc would take minutes: the child makes the graph
    and warms up first, so only building and running it is counted.
    """
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--seed",
        str(args.seed),
        "--memory-child",
        f"{key}:{spec.shape}:{spec.size}",
    ]
    timeout = cell_timeout(args, spec.tasks)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout or None, check=False
        )
    except subprocess.TimeoutExpired:
        raise CellTimeout(f"timed out after {timeout:g}s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise RuntimeError(f"child process: {lines[-1]}")
    return float(json.loads(done.stdout)["bytes_per_task"])


def memory_child(what: str, seed: int) -> None:
    """In the child of :func:`peak_rss`: print the peak RSS growth per task as JSON."""
    key, shape, size_text = what.split(":")
    system, size = SYSTEMS[key], int(size_text)
    spec = make_spec(shape, size, seed)
    small = make_spec(shape, min(size, 1_000), seed)
    system.check(small, system.build(small)())  # imports, first calls, pools
    del small
    gc.collect()
    with PeakRSS() as peak:
        result = system.build(spec)()
    system.check(spec, result)
    print(json.dumps({"bytes_per_task": peak.growth / spec.tasks}))


def describe(exc: BaseException) -> str:
    """A one-line error fit for a table cell."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(message) > 90:
        message = message[:87] + "..."
    return "error: " + message.replace("|", "/")


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- results ---------------------------------------------------------------------


@dataclasses.dataclass
class Cell:
    """The repeats of one system on one graph."""

    system: str
    shape: str
    size: int
    tasks: int
    build: list[float] = dataclasses.field(default_factory=list)  # seconds
    run: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None

    def samples(self, *, run_only: bool = False) -> list[float]:
        """µs per task of each repeat, in repeat order (total, or the run step alone)."""
        if run_only:
            return [r / self.tasks * 1e6 for r in self.run]
        return [(b + r) / self.tasks * 1e6 for b, r in zip(self.build, self.run, strict=True)]

    def total_us(self) -> float | None:
        """(build + run) per task in µs, the ``STAT`` of the repeats; None if not measured."""
        if self.error or not self.run:
            return None
        return summary(self.samples())

    def run_us(self) -> float | None:
        """The run step alone per task in µs, the ``STAT`` of the repeats."""
        if self.error or not self.run:
            return None
        return summary(self.samples(run_only=True))

    def build_us(self) -> float | None:
        """The build step alone per task in µs, the ``STAT`` of the repeats."""
        if self.error or not self.build:
            return None
        return summary([b / self.tasks * 1e6 for b in self.build])

    def total_s(self) -> float | None:
        """Build + run of the whole graph in seconds, the ``STAT`` of the repeats."""
        value = self.total_us()
        return None if value is None else value * self.tasks / 1e6

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "shape": self.shape,
            "size": self.size,
            "tasks": self.tasks,
            "build_s": self.build,
            "run_s": self.run,
            "total_us_per_task": self.total_us(),
            "run_us_per_task": self.run_us(),
            "error": self.error,
        }


Key = tuple[str, str, int]  # (system, shape, size)


@dataclasses.dataclass
class Variant:
    """A row of an extra table: a system plus what to do around each measurement."""

    label: str
    system: System
    setup: Callable[[], None] = lambda: None
    teardown: Callable[[], None] = lambda: None


def measure_cells(
    groups: Sequence[tuple[Spec, Sequence[str]]],
    cells: dict[Key, Cell],
    systems: dict[str, System],
    args: argparse.Namespace,
    variants: dict[str, Variant] | None = None,
) -> None:
    """Run every group ``args.repeat`` times, the systems of a group round-robin."""
    for repeat in range(args.repeat):
        started = time.perf_counter()
        for spec, keys in groups:
            shift = repeat % len(keys)
            for key in [*keys[shift:], *keys[:shift]]:
                cell = cells[(key, spec.shape, spec.size)]
                if cell.error:
                    continue
                variant = variants[key] if variants else None
                try:
                    if variant:
                        variant.setup()
                    try:
                        build, run = measure(
                            systems[key],
                            spec,
                            no_gc=args.no_gc,
                            timeout=cell_timeout(args, spec.tasks),
                        )
                    finally:
                        if variant:
                            variant.teardown()
                except Exception as exc:
                    cell.error = describe(exc)
                    warn(f"  {key} {spec.shape} {spec.size:,}: {cell.error}")
                    continue
                cell.build.append(build)
                cell.run.append(run)
        warn(f"  repeat {repeat + 1}/{args.repeat} done in {time.perf_counter() - started:.1f}s")


# --- what runs where ---------------------------------------------------------------


def wanted(key: str, shape: str, size: int, args: argparse.Namespace) -> bool:
    """Whether ``key`` runs ``shape`` at ``size`` in this invocation."""
    if key == "prefect":
        return size == PREFECT_SIZE
    if args.full:
        return True
    if key in PROCESS_SYSTEMS and size > PROCESS_MAX:
        return False
    if key in DASK_SYSTEMS and size > DASK_MAX and shape != "fanout":
        return False
    if size > BIG:
        if shape not in ("chain", "fanout"):
            return False
        if key in BIG_SYSTEMS:
            return True
        named = key in BIG_THREAD_SYSTEMS and key in args.named_systems
        return named or (key in BIG_THREAD_SYSTEMS and shape == "fanout" and not args.quick)
    return True


class Specs:
    """Graphs made on first use and kept for the whole invocation."""

    def __init__(self, seed: int):
        self.seed = seed
        self._specs: dict[tuple[str, int], Spec] = {}

    def __call__(self, shape: str, size: int) -> Spec:
        spec = self._specs.get((shape, size))
        if spec is None:
            spec = self._specs[(shape, size)] = make_spec(shape, size, self.seed)
        return spec


# --- tables ------------------------------------------------------------------------


def fmt_us(value: float | None) -> str:
    if value is None:
        return NOT_RUN
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return NOT_RUN if value is None else f"{value:.2f}x"


STAT = "median"
"""How repeats are summarised: ``median`` (the default) or ``min`` (``--stat``)."""


def summary(values: Sequence[float]) -> float:
    return min(values) if STAT == "min" else statistics.median(values)


def paired(a: Cell | None, b: Cell | None, *, run_only: bool = False) -> float | None:
    """``a`` ÷ ``b``: the median over repeats of the two measured in the same repeat.

    Pairing by repeat keeps a burst of load on the machine, which slows both
    systems of a repeat alike, out of the ratio. With ``--stat min``: min ÷ min.
    """
    if a is None or b is None or a.error or b.error or not a.run or not b.run:
        return None
    if STAT == "min":
        return ratio(
            a.total_us() if not run_only else a.run_us(),
            b.total_us() if not run_only else b.run_us(),
        )
    ratios = [
        x / y
        for x, y in zip(a.samples(run_only=run_only), b.samples(run_only=run_only), strict=False)
        if y > 0
    ]
    return statistics.median(ratios) if ratios else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> str:
    """A Markdown table; columns from ``right`` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def cell_text(cell: Cell | None, value: float | None, *, quiet: bool = False) -> str:
    """``value`` formatted; the cell's error instead (an empty string if ``quiet``)."""
    if cell is None:
        return NOT_RUN
    if cell.error:
        return "" if quiet else cell.error
    return fmt_us(value)


def shape_table(
    shape: str, sizes: Sequence[int], cells: dict[Key, Cell], keys: Sequence[str]
) -> str:
    """Rows: systems (flowkit twice: total, run only); columns: sizes, then ratios."""
    header = ["system", *(f"{n:,}" for n in sizes), *(f"ratio {n:,}" for n in sizes)]
    rows = []
    for key in keys:
        if not any((key, shape, n) in cells for n in sizes):
            continue
        label = SYSTEMS[key].label
        found = [cells.get((key, shape, n)) for n in sizes]
        ratios = []
        for n, cell in zip(sizes, found, strict=True):
            parts = []
            for base in BASELINES.get(key, ()):
                value = paired(cell, cells.get((base, shape, n)))
                if value is not None:
                    parts.append(f"{value:.2f}x {SHORT[base]}")
            ratios.append("; ".join(parts) or ("" if key not in BASELINES else NOT_RUN))
        suffix = ", total" if key in RUN_ONLY_ROWS else ""
        rows.append(
            [label + suffix, *(cell_text(c, c.total_us() if c else None) for c in found), *ratios]
        )
        if key in RUN_ONLY_ROWS:
            rows.append(
                [
                    f"{label}, run only",
                    *(cell_text(c, c.run_us() if c else None, quiet=True) for c in found),
                    *([""] * len(sizes)),
                ]
            )
    return table(header, rows, right=1)


# --- the extra tables ----------------------------------------------------------------


@dataclasses.dataclass
class Extras:
    """Figures of the extra tables, for the targets and the JSON file."""

    memory: dict[tuple[str, str, int], float | str] = dataclasses.field(default_factory=dict)
    logging: dict[str, Cell] | str | None = None
    state: dict[str, Cell] | str | None = None
    map: dict[str, Cell] | str | None = None


def memory_pass(
    shapes: Sequence[str],
    sizes: Sequence[int],
    keys: Sequence[str],
    args: argparse.Namespace,
    specs: Specs,
    extras: Extras,
) -> str:
    """Peak bytes per task, once per system, shape and size (not timed).

    Up to ``TRACEMALLOC_MAX`` tasks: traced by tracemalloc; above, the peak
    resident set of a child process (its column says ``RSS``).
    """
    chosen = [k for k in MEMORY_SYSTEMS if k in keys]
    for shape in shapes:
        for size in sizes:
            for key in chosen:
                if wanted(key, shape, size, args):
                    measure_memory(key, specs(shape, size), args, extras)
    header = [
        "system",
        "shape",
        *(f"{n:,}" + (" (RSS)" if n > TRACEMALLOC_MAX else "") for n in sizes),
    ]
    rows = []
    for shape in shapes:
        for key in chosen:
            values = [extras.memory.get((key, shape, n)) for n in sizes]
            if all(v is None for v in values):
                continue
            rows.append([SYSTEMS[key].label, shape, *(_fmt_bytes(v) for v in values)])
        for key in ("flowkit-sync", "flowkit-thread"):
            ratios = [_memory_ratio(extras, key, shape, n) for n in sizes]
            if any(r is not None for r in ratios):
                rows.append(
                    [f"{SYSTEMS[key].label} ÷ graphlib+TPE", shape, *(fmt_ratio(r) for r in ratios)]
                )
    return table(header, rows, right=2)


def measure_memory(key: str, spec: Spec, args: argparse.Namespace, extras: Extras) -> None:
    """Record ``key``'s peak bytes per task on ``spec`` (or the error) in ``extras``."""
    where = (key, spec.shape, spec.size)
    started = time.perf_counter()
    try:
        if spec.size > TRACEMALLOC_MAX:
            extras.memory[where] = peak_rss(key, spec, args)
        else:
            with deadline(cell_timeout(args, spec.tasks)):
                extras.memory[where] = peak_memory(SYSTEMS[key], spec)
    except Exception as exc:
        extras.memory[where] = describe(exc)
        warn(f"  memory {key} {spec.shape} {spec.size:,}: {extras.memory[where]}")
        return
    if spec.size > BIG:
        warn(f"  memory {key} {spec.shape} {spec.size:,}: {time.perf_counter() - started:.1f}s")


def _fmt_bytes(value: float | str | None) -> str:
    if value is None:
        return NOT_RUN
    if isinstance(value, str):
        return value
    return f"{value:,.0f}"


def _memory_ratio(extras: Extras, key: str, shape: str, size: int) -> float | None:
    mine = extras.memory.get((key, shape, size))
    base = extras.memory.get(("graphlib-thread", shape, size))
    if isinstance(mine, float) and isinstance(base, float):
        return ratio(mine, base)
    return None


def variants_table(
    title: str, variants: Sequence[Variant], spec: Spec, args: argparse.Namespace
) -> tuple[str, dict[str, Cell]]:
    """Measure ``variants`` round-robin on ``spec``; a table of µs/task and ratio to the first."""
    systems = {v.label: v.system for v in variants}
    cells = {
        (v.label, spec.shape, spec.size): Cell(v.label, spec.shape, spec.size, spec.tasks)
        for v in variants
    }
    warn(f"{title}:")
    measure_cells([(spec, list(systems))], cells, systems, args, {v.label: v for v in variants})
    by_label = {v.label: cells[(v.label, spec.shape, spec.size)] for v in variants}
    first = by_label[variants[0].label]
    rows = [
        [
            label,
            cell_text(cell, cell.total_us()),
            cell_text(cell, cell.run_us(), quiet=True),
            "" if cell.error else fmt_ratio(paired(cell, first)),
        ]
        for label, cell in by_label.items()
    ]
    header = ["variant", "µs/task total", "µs/task run only", f"ratio to {variants[0].label}"]
    return table(header, rows), by_label


@contextlib.contextmanager
def pristine_logging() -> Iterator[Callable[[], None]]:
    """Yield a function that puts the ``flowkit`` loggers back as they were on entry."""

    def flowkit_loggers() -> list[logging.Logger]:
        names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "flowkit"]
        return [logging.getLogger(n) for n in ["flowkit", *names]]

    saved = {
        lg.name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
        for lg in flowkit_loggers()
    }

    def restore() -> None:
        for lg in flowkit_loggers():
            handlers, level, propagate, disabled = saved.get(
                lg.name, ([], logging.NOTSET, True, False)
            )
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled

    try:
        yield restore
    finally:
        restore()


def logging_table(args: argparse.Namespace, specs: Specs, extras: Extras) -> str:
    configure = getattr(flowkit, "configure_logging", None)
    if configure is None:
        extras.logging = "skipped (configure_logging not available)"
        return extras.logging
    spec = specs("fanout", EXTRA_SIZE)
    system = SYSTEMS["flowkit-thread"]
    with open(os.devnull, "w") as null, pristine_logging() as restore:
        variants = [
            Variant("not configured", system, restore, restore),
            Variant(
                "configured, filtered out (ERROR)",
                system,
                lambda: configure("ERROR", stream=null),
                restore,
            ),
            Variant(
                "configured at INFO, null stream",
                system,
                lambda: configure("INFO", stream=null),
                restore,
            ),
        ]
        text, extras.logging = variants_table("logging", variants, spec, args)
    return text


def state_table(args: argparse.Namespace, specs: Specs, extras: Extras) -> str:
    spec = specs("fanout", EXTRA_SIZE)
    base = Path(tempfile.mkdtemp(prefix="flowkit-overhead-"))
    current: list[Path] = [base]

    def fresh_dir() -> None:
        current[0] = Path(tempfile.mkdtemp(dir=base))

    def remove_dir() -> None:
        shutil.rmtree(current[0], ignore_errors=True)

    def manager(filename: str | None) -> Callable[[], Any]:
        def make() -> Any:
            if filename is None:
                return flowkit.StateManager()
            return flowkit.StateManager(str(current[0] / filename))

        return make

    variants = [
        Variant(
            label,
            flowkit_system(label, label, build_flowkit("sync", state=manager(name))),
            fresh_dir,
            remove_dir,
        )
        for label, name in (
            ("StateManager() in memory", None),
            ("StateManager('s.json')", "s.json"),
            ("StateManager('s.db')", "s.db"),
        )
    ]
    try:
        text, extras.state = variants_table("state", variants, spec, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return text


def map_table(args: argparse.Namespace, specs: Specs, extras: Extras) -> str:
    """A map over 10,000 items against the same fan-out declared statically."""
    spec = specs("fanout", EXTRA_SIZE)
    variants = [
        Variant(label, flowkit_system(label, label, build))
        for label, build in (
            ("static fan-out, sync", build_flowkit("sync")),
            ("step.map() over a list, sync", build_flowkit_map("sync")),
            ("static fan-out, thread", build_flowkit("thread", THREADS)),
            ("step.map() over a list, thread", build_flowkit_map("thread", THREADS)),
        )
    ]
    text, extras.map = variants_table("map", variants, spec, args)
    return text


def scaling_rows(cells: dict[Key, Cell], sizes: Sequence[int]) -> list[dict[str, Any]]:
    """flowkit per-task cost at each size above 10,000 ÷ at 10,000, per system and shape."""
    rows = []
    for key in SCALING_SYSTEMS:
        for shape in ("chain", "fanout"):
            small = cells.get((key, shape, SCALING_BASE))
            if small is None:
                continue
            for size in sorted(n for n in sizes if n > SCALING_BASE):
                large = cells.get((key, shape, size))
                if large is None:
                    continue
                rows.append(
                    {
                        "system": key,
                        "shape": shape,
                        "size": size,
                        "total_base": small.total_us(),
                        "total": large.total_us(),
                        "build": large.build_us(),
                        "run": large.run_us(),
                        "ratio_total": paired(large, small),
                        "ratio_run": paired(large, small, run_only=True),
                        "error": large.error or small.error,
                    }
                )
    return rows


def scaling_ratio(rows: list[dict[str, Any]], key: str, shape: str, size: int) -> float | None:
    """The total ratio of one scaling row, None if it was not measured."""
    for row in rows:
        if (row["system"], row["shape"], row["size"]) == (key, shape, size):
            return row["ratio_total"]  # type: ignore[no-any-return]
    return None


def scaling_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return (
            f"not measured (needs flowkit sync or thread at {SCALING_BASE:,} and at a larger "
            f"size, chain or fan-out; {NOT_RUN})"
        )
    header = [
        "system",
        "shape",
        "N",
        f"{SCALING_BASE:,} µs/task",
        "N µs/task",
        "N build µs/task",
        "N run µs/task",
        "ratio total",
        "ratio run only",
    ]
    body = [
        [
            SYSTEMS[r["system"]].label,
            SHAPE_NAMES[r["shape"]],
            f"{r['size']:,}",
            fmt_us(r["total_base"]),
            r["error"] or fmt_us(r["total"]),
            fmt_us(r["build"]),
            fmt_us(r["run"]),
            fmt_ratio(r["ratio_total"]),
            fmt_ratio(r["ratio_run"]),
        ]
        for r in rows
    ]
    return table(header, body, right=2)


# --- targets -----------------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    text: str
    measured: float | None
    limit: float
    unit: str  # "x" (a ratio), "µs", "s" or "B" (bytes)
    higher_is_better: bool = False
    note: str = ""

    @property
    def status(self) -> str:
        if self.measured is None:
            return "n/a"
        ok = self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit
        return "PASS" if ok else "MISS"

    def figure(self) -> str:
        if self.measured is None:
            return self.note or "not measured"
        if self.unit == "x":
            return fmt_ratio(self.measured)
        if self.unit == "B":
            return f"{self.measured:,.0f} B"
        return f"{fmt_us(self.measured)} {self.unit}"


def targets(
    cells: dict[Key, Cell], sizes: Sequence[int], extras: Extras, scaling: list[dict[str, Any]]
) -> list[Target]:
    def total(key: str, shape: str, size: int) -> float | None:
        cell = cells.get((key, shape, size))
        return cell.total_us() if cell else None

    def vs(key: str, base: str, shape: str, size: int) -> float | None:
        return paired(cells.get((key, shape, size)), cells.get((base, shape, size)))

    found: list[Target] = []
    for shape, limit in (("fanout", 1.2), ("chain", 1.0)):
        for n in sizes:
            value = vs("flowkit-thread", "graphlib-thread", shape, n)
            if value is not None:
                found.append(
                    Target(
                        f"flowkit thread {SHAPE_NAMES[shape]} {n:,} ≤ {limit}x graphlib+TPE",
                        value,
                        limit,
                        "x",
                    )
                )
    found.append(
        Target(
            "flowkit sync fan-out 10,000 ≤ 10 µs/task",
            total("flowkit-sync", "fanout", 10_000),
            10.0,
            "µs",
        )
    )
    found.append(
        Target(
            "flowkit sync fan-out 10,000 ≥ 2x faster than Dask sync",
            vs("dask-sync", "flowkit-sync", "fanout", 10_000),
            2.0,
            "x",
            higher_is_better=True,
        )
    )
    found.append(
        Target(
            "flowkit process fan-out 1,000 ≤ 1.2x graphlib+PPE",
            vs("flowkit-process", "graphlib-process", "fanout", 1_000),
            1.2,
            "x",
        )
    )
    for shape in ("fanout", "chain"):
        found.append(
            Target(
                f"flowkit sync {SHAPE_NAMES[shape]}: per-task cost at 100,000 ≤ 1.3x at 10,000",
                scaling_ratio(scaling, "flowkit-sync", shape, 100_000),
                1.3,
                "x",
            )
        )
    for shape in ("fanout", "chain"):
        found.append(
            Target(
                f"peak memory per task, flowkit sync {SHAPE_NAMES[shape]} 10,000 ≤ 2x graphlib+TPE",
                _memory_ratio(extras, "flowkit-sync", shape, 10_000),
                2.0,
                "x",
            )
        )
    if isinstance(extras.logging, dict):
        cells_ = list(extras.logging.values())
        found.append(
            Target(
                "logging configured but filtered out ≤ 1.05x not configured",
                paired(cells_[1], cells_[0]),
                1.05,
                "x",
            )
        )
    else:
        found.append(
            Target(
                "logging configured but filtered out ≤ 1.05x not configured",
                None,
                1.05,
                "x",
                note=extras.logging or "not measured",
            )
        )
    if isinstance(extras.state, dict):
        cells_ = list(extras.state.values())
        found.append(
            Target(
                "JSON state ≤ 3x in-memory at 10,000 (sync fan-out)",
                paired(cells_[1], cells_[0]),
                3.0,
                "x",
                note=cells_[1].error or cells_[0].error or "",
            )
        )
    else:
        found.append(
            Target(
                "JSON state ≤ 3x in-memory at 10,000 (sync fan-out)",
                None,
                3.0,
                "x",
                note="not measured",
            )
        )
    return found + million_targets(cells, extras, scaling)


def million_targets(
    cells: dict[Key, Cell], extras: Extras, scaling: list[dict[str, Any]]
) -> list[Target]:
    """The targets of a million tasks on one machine: scaling, time, memory."""
    found = [
        Target(
            f"{SYSTEMS[key].label} {SHAPE_NAMES[shape]}: per-task cost at 1,000,000 "
            f"≤ 1.15x at {SCALING_BASE:,}",
            scaling_ratio(scaling, key, shape, MILLION),
            1.15,
            "x",
        )
        for key in SCALING_SYSTEMS
        for shape in ("chain", "fanout")
    ]
    million = cells.get(("flowkit-sync", "fanout", MILLION))
    found.append(
        Target(
            "flowkit sync fan-out of 1,000,000 tasks built and run in ≤ 10 s",
            million.total_s() if million else None,
            10.0,
            "s",
            note=(million.error or "") if million else "",
        )
    )
    for shape in ("chain", "fanout"):
        bytes_ = extras.memory.get(("flowkit-sync", shape, MILLION))
        found.append(
            Target(
                f"peak memory per task, flowkit sync {SHAPE_NAMES[shape]} 1,000,000 ≤ 600 bytes",
                bytes_ if isinstance(bytes_, float) else None,
                600.0,
                "B",
                note=bytes_ if isinstance(bytes_, str) else "",
            )
        )
    for shape in ("chain", "fanout", "random"):
        found.append(
            Target(
                f"peak memory per task, flowkit sync {SHAPE_NAMES[shape]} {BIG:,} "
                "≤ 1.5x graphlib+TPE",
                _memory_ratio(extras, "flowkit-sync", shape, BIG),
                1.5,
                "x",
            )
        )
    return found


# --- the header -----------------------------------------------------------------------


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            timeout=5,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "flowkit"],
            cwd=root,
            timeout=5,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}, flowkit/ modified" if dirty.strip() else rev


def load_average() -> float | None:
    """The 1-minute load average, where the platform has one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "flowkit": getattr(flowkit, "__version__", "?"),
        "git": git_revision(),
        "dask": version("dask"),
        "prefect": version("prefect"),
    }


def command_line() -> str:
    return shlex.join(["python", "benchmarks/overhead.py", *sys.argv[1:]])


def header(info: dict[str, Any], args: argparse.Namespace, skipped: list[str]) -> str:
    flowkit_text = f"flowkit {info['flowkit']}" + (f" ({info['git']})" if info["git"] else "")
    peers = [
        f"Dask {info['dask']}" if info["dask"] else "Dask not installed",
        f"Prefect {info['prefect']}" if info["prefect"] else "Prefect not installed",
    ]
    gc_text = (
        "disabled while timing (--no-gc), for every system alike"
        if args.no_gc
        else "enabled while timing, as in real use"
    )
    dask_text = (
        "default graph optimisation (--dask-optimize)"
        if args.dask_optimize
        else "optimize_graph=False (Dask's default culls each of the N one-task "
        "layers separately, O(N) per task; --dask-optimize measures it)"
    )
    lines = [
        "# flowkit per-task overhead",
        "",
        f"- machine: {info['platform']}, {info['cpus']} CPUs, {info['python']}",
        f"- versions: {flowkit_text}; {'; '.join(peers)}",
        f"- command: `{command_line()}`",
        f"- method: µs of wall time per task = (build + run) ÷ tasks, {STAT} of {args.repeat} "
        "repeats; systems round-robin within each repeat; gc.collect() before every timed "
        f"call, GC {gc_text}. Build = the system's graph (flowkit: Task objects in a "
        "registry of their own, >> wiring, DAG(...); graphlib: TopologicalSorter; Dask: "
        "delayed objects). Pools are created and shut down inside the run, for flowkit and "
        "the baselines alike. A fan-out of N has N + 2 tasks. Ratios: "
        + (
            "min ÷ min."
            if STAT == "min"
            else "median over repeats of the two systems' figures measured in the same repeat."
        ),
        f"- Dask: dask.compute of the sink tasks with {dask_text}.",
    ]
    loads = info.get("load")
    if loads:
        # The benchmark itself keeps about one CPU busy.
        busy = max(loads) > (info["cpus"] or 1) + 1
        lines.append(
            f"- load average (1 min) before/after: {loads[0]:.1f} / {loads[1]:.1f}"
            + (
                ": other processes competed for the CPUs, so absolute figures are inflated "
                "(ratios less so)"
                if busy
                else ""
            )
        )
    lines += [f"- skipped: {reason}" for reason in skipped]
    return "\n".join(lines)


# --- profiling -------------------------------------------------------------------------


def profile(what: str, top: int, phase: str) -> None:
    """Print the ``top`` functions by own time for one system, shape and size."""
    try:
        key, shape, size_text = what.split(":")
        system, size = SYSTEMS[key], int(size_text.replace(",", "").replace("_", ""))
    except (ValueError, KeyError):
        raise SystemExit(
            f"--profile wants SYSTEM:SHAPE:N, e.g. flowkit-sync:fanout:10000; systems: "
            f"{', '.join(SYSTEMS)}; shapes: {', '.join(SHAPES)}"
        ) from None
    spec = make_spec(shape, size)
    system.check(spec, system.build(spec)())  # warm up: imports, first calls
    gc.collect()
    profilers = {"build": cProfile.Profile(), "run": cProfile.Profile()}
    started = time.perf_counter()
    if phase in ("all", "build"):
        profilers["build"].enable()
    runner = system.build(spec)
    profilers["build"].disable()
    if phase in ("all", "run"):
        profilers["run"].enable()
    result = runner()
    profilers["run"].disable()
    elapsed = time.perf_counter() - started
    system.check(spec, result)
    print(
        f"# profile of {system.label}, {shape} {size:,} ({spec.tasks:,} tasks), "
        f"phase {phase}: {elapsed / spec.tasks * 1e6:.1f} µs/task under the profiler"
    )
    print(f"command: {command_line()}")
    if key in ("flowkit-thread", "dask-threads", "graphlib-thread"):
        print("note: cProfile sees the calling thread only (the scheduler), not worker threads")
    chosen = [p for name, p in profilers.items() if phase in ("all", name)]
    out = io.StringIO()
    stats = pstats.Stats(chosen[0], stream=out)
    for extra in chosen[1:]:
        stats.add(extra)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    print(out.getvalue().rstrip())


# --- main ------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "").replace(",", "")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sizes must be integers, e.g. 1000,10000: {text!r}"
        ) from None
    if any(n < 2 for n in sizes):
        raise argparse.ArgumentTypeError("every size must be at least 2")
    return sizes


def parse_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown)}; choose from {', '.join(choices)}"
            )
        return items

    return parse


EXTRAS = ("memory", "logging", "state", "map", "scaling")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/overhead.py",
        description="Measure flowkit's per-task overhead against hand-written baselines "
        "(plain calls, graphlib + concurrent.futures) and peers (Dask, Prefect) when "
        "installed. Prints Markdown tables of µs per task.",
        epilog="By default sizes above 10,000 run only for plain calls and flowkit sync "
        "(chain and fan-out) and for flowkit thread and graphlib + ThreadPoolExecutor "
        "(fan-out, not with --quick; chain and fan-out when named in --systems); "
        "process pools run at 1,000 only, and Dask runs the fan-out only above 1,000 (building "
        "a chain of delayed objects is O(N) per task); --full lifts these limits.",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=None,
        help="comma-separated N (default: 1000,10000,100000)",
    )
    parser.add_argument(
        "--shapes",
        type=parse_list(SHAPES),
        default=list(SHAPES),
        help=f"comma-separated shapes (default: {','.join(SHAPES)})",
    )
    parser.add_argument(
        "--systems",
        type=parse_list(list(SYSTEMS)),
        default=None,
        help=f"comma-separated systems (default: all): {','.join(SYSTEMS)}",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repeats per measurement, the median is reported (default 5; 3 with --quick)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_true",
        help="3 repeats; above 10,000 only plain calls and flowkit sync, chain and fan-out, "
        "and the systems named in --systems (about a minute)",
    )
    mode.add_argument(
        "--full",
        action="store_true",
        help="every system at every size, process pools included (slow)",
    )
    parser.add_argument(
        "--extras",
        type=parse_list([*EXTRAS, "none"]),
        default=list(EXTRAS),
        help=f"extra tables (default: {','.join(EXTRAS)}; 'none' for none)",
    )
    parser.add_argument(
        "--targets",
        action="store_true",
        help="end with each performance target, its measured figure and PASS/MISS",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the raw figures here")
    parser.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="how repeats are summarised (default median; min is steadier on a busy machine)",
    )
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="disable the garbage collector while timing (every system alike)",
    )
    parser.add_argument(
        "--dask-optimize",
        action="store_true",
        help="let dask.compute optimise (cull) the graph, as it does by default; "
        "off by default here because it is O(N) per task on delayed graphs",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random DAG (default 0)")
    parser.add_argument(
        "--cell-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up on a system for a graph after this long (default 120 s per 100,000 "
        "tasks, at least 120; 0: never)",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # see peak_rss()
    parser.add_argument(
        "--profile",
        metavar="SYSTEM:SHAPE:N",
        help="instead of benchmarking, profile one case with cProfile, e.g. "
        "flowkit-sync:fanout:10000",
    )
    parser.add_argument(
        "--profile-top",
        type=int,
        default=15,
        metavar="K",
        help="functions to list with --profile (default 15)",
    )
    parser.add_argument(
        "--profile-phase",
        choices=("all", "build", "run"),
        default="all",
        help="what --profile covers (default: build and run)",
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.sizes is None:
        args.sizes = list(DEFAULT_SIZES)
    args.named_systems = list(args.systems or ())
    if args.systems is None:
        args.systems = list(SYSTEMS)
    if "none" in args.extras:
        args.extras = []
    if args.dask_optimize:
        DASK_COMPUTE.pop("optimize_graph", None)
    return args


def extra_sections(
    args: argparse.Namespace,
    sizes: Sequence[int],
    keys: Sequence[str],
    specs: Specs,
    extras: Extras,
    scaling: list[dict[str, Any]],
) -> list[str]:
    """The extra tables asked for with ``--extras``, as Markdown lines."""
    sections: list[str] = []
    if "memory" in args.extras:
        warn("memory (not timed)...")
        phase = time.perf_counter()
        sections += [
            "## peak memory per task",
            "",
            "Peak bytes of build + run ÷ tasks (one untimed pass): traced by "
            f"tracemalloc up to {TRACEMALLOC_MAX:,} tasks; above (columns marked RSS), "
            "tracemalloc slows a run several-fold, so the figure is the peak resident-set "
            "growth of a child process that builds and runs the graph after a warm-up "
            "(it includes the allocator's own overhead, which tracemalloc does not see).",
            "",
            memory_pass(args.shapes, sizes, keys, args, specs, extras),
            "",
        ]
        warn(f"  {time.perf_counter() - phase:.1f}s")
    # The timed extra tables: (name, heading, how to make the table).
    timed_extras: list[tuple[str, str, Callable[[], str]]] = [
        ("logging", f"logging: flowkit thread, fan-out {EXTRA_SIZE:,}",
         lambda: logging_table(args, specs, extras)),
        ("state", f"state: flowkit sync, fan-out {EXTRA_SIZE:,}",
         lambda: state_table(args, specs, extras)),
        ("map", f"map: {EXTRA_SIZE:,} items mapped at run time vs the static fan-out",
         lambda: map_table(args, specs, extras)),
        ("scaling", f"scaling: flowkit, per-task cost at N ÷ at {SCALING_BASE:,}",
         lambda: scaling_table(scaling)),
    ]
    for name, heading, make in timed_extras:
        if name in args.extras:
            sections += [f"## {heading}", "", make(), ""]
    return sections


def main(argv: Sequence[str] | None = None) -> int:
    global STAT
    args = parse_args(argv)
    STAT = args.stat
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    if args.profile:
        profile(args.profile, args.profile_top, args.profile_phase)
        return 0
    if args.memory_child:
        memory_child(args.memory_child, args.seed)
        return 0
    began = time.perf_counter()
    info = machine()
    load_before = load_average()
    skipped = []
    keys = []
    for key in args.systems:
        reason = SYSTEMS[key].missing()
        if reason:
            skipped.append(f"{SYSTEMS[key].label}: {reason}")
        else:
            keys.append(key)
    sizes = sorted(set(args.sizes) | ({PREFECT_SIZE} if "prefect" in keys else set()))
    specs = Specs(args.seed)
    groups: list[tuple[Spec, list[str]]] = []
    cells: dict[Key, Cell] = {}
    for shape in args.shapes:
        for size in sizes:
            chosen = [k for k in keys if wanted(k, shape, size, args)]
            if chosen:
                spec = specs(shape, size)
                groups.append((spec, chosen))
                for k in chosen:
                    cells[(k, shape, size)] = Cell(k, shape, size, spec.tasks)
    # Only sizes something runs at become columns.
    sizes = [n for n in sizes if any(spec.size == n for spec, _ in groups)]

    warn("warming up (imports, first calls, pools)...")
    phase = time.perf_counter()
    for shape in args.shapes:
        for key in keys:
            first = next((n for n in sizes if (key, shape, n) in cells), None)
            if first is not None:
                with contextlib.suppress(Exception):
                    measure(
                        SYSTEMS[key],
                        specs(shape, min(first, 1_000)),
                        no_gc=args.no_gc,
                        timeout=cell_timeout(args, 1_000),
                    )
    warn(f"  {time.perf_counter() - phase:.1f}s")
    warn(f"measuring {len(cells)} cells x {args.repeat} repeats...")
    interrupted = False
    try:
        measure_cells(groups, cells, SYSTEMS, args)
    except KeyboardInterrupt:
        interrupted = True
        warn("interrupted: the tables show what was measured so far")

    load_after = load_average()
    if load_before is not None and load_after is not None:
        info["load"] = [load_before, load_after]
    out = [header(info, args, skipped), ""]
    if interrupted:
        out += ["**interrupted: partial results**", ""]
    for shape in args.shapes:
        out += [
            f"## {shape}",
            "",
            f"µs per task, {STAT} of {args.repeat}. flowkit: total = build + run; "
            "ratio = flowkit total ÷ baseline total (lower is better).",
            "",
            shape_table(shape, sizes, cells, keys),
            "",
        ]
    print("\n".join(out), flush=True)

    extras = Extras()
    scaling = scaling_rows(cells, sizes)
    if not interrupted:
        sections = extra_sections(args, sizes, keys, specs, extras, scaling)
        print("\n".join(sections), flush=True)

    found = targets(cells, sizes, extras, scaling)
    if args.targets:
        rows = [[t.text, t.figure(), t.status] for t in found]
        print(
            "\n".join(
                ["## targets", "", table(["target", "measured", "result"], rows, right=3), ""]
            )
        )
    elapsed = time.perf_counter() - began
    print(f"finished in {elapsed:.0f}s")

    if args.json:
        payload = {
            "machine": info,
            "command": command_line(),
            "settings": {
                "repeat": args.repeat,
                "stat": STAT,
                "no_gc": args.no_gc,
                "seed": args.seed,
                "quick": args.quick,
                "full": args.full,
                "threads": THREADS,
            },
            "skipped": skipped,
            "cells": [cell.as_json() for cell in cells.values()],
            "memory_bytes_per_task": _memory_json(extras),
            "logging": _extra_json(extras.logging),
            "state": _extra_json(extras.state),
            "scaling": scaling,
            "targets": [
                {"target": t.text, "measured": t.measured, "limit": t.limit, "status": t.status}
                for t in found
            ],
            "interrupted": interrupted,
            "elapsed_s": elapsed,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        warn(f"raw figures written to {args.json}")
    return 0


def _memory_json(extras: Extras) -> list[dict[str, Any]]:
    return [
        {
            "system": k,
            "shape": s,
            "size": n,
            "value": v,
            "method": "rss" if n > TRACEMALLOC_MAX else "tracemalloc",
        }
        for (k, s, n), v in extras.memory.items()
    ]


def _extra_json(value: dict[str, Cell] | str | None) -> Any:
    if isinstance(value, dict):
        return [dict(cell.as_json(), variant=label) for label, cell in value.items()]
    return value


if __name__ == "__main__":
    sys.exit(main())
