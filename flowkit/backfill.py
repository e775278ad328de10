"""Backfills: one run of a DAG per partition, skipping the partitions already done.

A *partition* is a mapping of run parameters (``{"day": "2026-11-01"}``).
:func:`backfill` runs the DAG once per partition, up to ``parallel`` at once,
and returns a :class:`BackfillResult`: one :class:`PartitionResult` per
partition, in the order given.

It is idempotent through the state's run history: a partition whose latest
recorded run with exactly those parameters succeeded is skipped; one whose
latest run failed or was interrupted is resumed (its finished tasks are
restored, the rest run); ``force=True`` runs every partition afresh.

:func:`expand_params` turns command-line specs (``day=2026-11-01..2026-11-28``,
``region=eu,us``) into the cross product of partitions.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import itertools
import json
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from flowkit.context import RunContext
from flowkit.dag import _RunHandle
from flowkit.exceptions import FlowkitError, TaskExecutionError
from flowkit.progress import ProgressBar
from flowkit.results import RunResult
from flowkit.run_options import RunOptions
from flowkit.scheduler import RunCancelled

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    from flowkit.dag import DAG
    from flowkit.run_options import StateProtocol

__all__ = [
    "MAX_PARTITIONS",
    "BackfillResult",
    "PartitionPrinter",
    "PartitionProgress",
    "PartitionResult",
    "backfill",
    "expand_params",
    "params_key",
    "partition_label",
]

logger = logging.getLogger("flowkit.backfill")

MAX_PARTITIONS = 100_000
"""The most partitions one backfill takes (a typo in a range should not mean a billion runs)."""

_SIGNAL_POLL = 0.2  # seconds: how late a Ctrl-C may be noticed, at worst

STATUSES = ("success", "failed", "interrupted", "skipped", "cancelled")


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """What happened to one partition of a backfill (or one scheduled run).

    Attributes:
        params: the partition's run parameters.
        status: ``"success"``, ``"failed"`` (a task failed, or the run could not
            start), ``"interrupted"`` (Ctrl-C), ``"skipped"`` (already done:
            see ``note``) or ``"cancelled"`` (not started: the backfill was
            interrupted first).
        run: the :class:`~flowkit.RunResult`, when the partition ran.
        error: the exception that failed it, if any.
        duration: seconds the run took (0 when it did not run).
        resumed: whether it continued a failed or interrupted run.
        note: why it was skipped, or what failed, in a few words.
    """

    params: Mapping[str, Any]
    status: str
    run: RunResult | None = None
    error: BaseException | None = None
    duration: float = 0.0
    resumed: bool = False
    note: str = ""

    @property
    def label(self) -> str:
        """The partition as text: ``day=2026-11-01 region=eu``."""
        return partition_label(self.params)

    @property
    def ok(self) -> bool:
        """True when it succeeded or was skipped as already done."""
        return self.status in ("success", "skipped")

    @property
    def run_id(self) -> str | None:
        """The id of its run, when it ran."""
        return None if self.run is None else self.run.run_id


class BackfillResult(Mapping[str, PartitionResult]):
    """One :class:`PartitionResult` per partition, in the order given.

    A mapping keyed by each partition's label (``"day=2026-11-01 region=eu"``);
    ``result[params]`` also takes the partition's params mapping.

    Attributes:
        results: the partition results, in order.
        duration: wall time of the whole backfill, in seconds.
        interrupted: True when Ctrl-C stopped it.
    """

    def __init__(self, results: Sequence[PartitionResult], duration: float, interrupted: bool):
        self.results = list(results)
        self.duration = duration
        self.interrupted = interrupted
        self._by_label = {r.label: r for r in self.results}

    def __getitem__(self, key: str | Mapping[str, Any]) -> PartitionResult:
        label = key if isinstance(key, str) else partition_label(key)
        try:
            return self._by_label[label]
        except KeyError:
            raise KeyError(f"no partition {label!r} in this backfill") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_label)

    def __len__(self) -> int:
        return len(self._by_label)

    @property
    def ok(self) -> bool:
        """True when every partition succeeded or was skipped as already done."""
        return not self.interrupted and all(r.ok for r in self.results)

    @property
    def failed(self) -> list[PartitionResult]:
        """The partitions that failed or were interrupted."""
        return [r for r in self.results if r.status in ("failed", "interrupted")]

    @property
    def counts(self) -> dict[str, int]:
        """How many partitions ended in each status (statuses that occur only)."""
        found = {status: 0 for status in STATUSES}
        for r in self.results:
            found[r.status] += 1
        return {status: n for status, n in found.items() if n}

    def summary(self) -> str:
        """A table: partition, status, duration, run id; then the totals."""
        rows = [("partition", "status", "duration", "run")]
        for r in self.results:
            status = r.status + (" (resumed)" if r.resumed else "")
            shown = f"{r.duration:.2f}s" if r.run is not None else "-"
            rows.append((r.label or "(no params)", status, shown, r.run_id or r.note or "-"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = []
        for n, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items()) or "nothing"
        lines.append(f"{len(self.results)} partition(s) in {self.duration:.2f}s: {counts}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        return f"<BackfillResult {len(self.results)} partition(s): {counts or 'none'}>"


# --- partitions ------------------------------------------------------------------------


def partition_label(params: Mapping[str, Any]) -> str:
    """``{"day": "2026-11-01", "region": "eu"}`` → ``"day=2026-11-01 region=eu"``."""
    return " ".join(f"{k}={_shown(v)}" for k, v in params.items())


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return json.dumps(value, default=repr)


def params_key(params: Mapping[str, Any]) -> str:
    """A canonical text of ``params`` for comparing a partition with recorded runs.

    Values go through the same conversion as the run history's (plain data as
    is, anything else as text), keys are sorted.
    """
    return json.dumps({str(k): _plain(v) for k, v in params.items()}, sort_keys=True)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def expand_params(specs: Sequence[str]) -> list[dict[str, str]]:
    """The cross product of ``NAME=VALUES`` specs, in order (the last name varies fastest).

    VALUES is a range of dates by day (``2026-11-01..2026-11-28``), a range of
    integers (``1..10``), a comma list (``eu,us``), or one value. The values
    are text, like ``--param`` values: :func:`flowkit.params.typed_params`
    converts them for the tasks that take them (``day: date`` gets a date).

    Raises:
        FlowkitError: a malformed spec, a name given twice, a backwards range,
            or more than :data:`MAX_PARTITIONS` partitions.
    """
    names: list[str] = []
    choices: list[list[str]] = []
    total = 1
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise FlowkitError(f"expected NAME=VALUES in --param, got {spec!r}")
        if name in names:
            raise FlowkitError(
                f"--param {name} is given twice; list its values in one option: {name}=a,b"
            )
        values = _values(name, text)
        total *= len(values)
        if total > MAX_PARTITIONS:
            raise FlowkitError(
                f"these --param options make more than {MAX_PARTITIONS:,} partitions; "
                "check the ranges, or split the backfill"
            )
        names.append(name)
        choices.append(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]


def _values(name: str, text: str) -> list[str]:
    first, dots, last = text.partition("..")
    if not dots:
        return text.split(",")
    start, end = _date(first), _date(last)
    if start is not None and end is not None:
        if end < start:
            raise FlowkitError(
                f"--param {name}={text}: the range runs backwards ({last} < {first})"
            )
        days = (end - start).days + 1
        if days > MAX_PARTITIONS:
            raise FlowkitError(f"--param {name}={text} spans {days:,} days: check the range")
        return [(start + dt.timedelta(days=n)).isoformat() for n in range(days)]
    low, high = _integer(first), _integer(last)
    if low is None or high is None:
        raise FlowkitError(
            f"--param {name}={text}: a range is of dates (2026-11-01..2026-11-28) or of "
            "integers (1..10); for other values list them: a,b,c"
        )
    if high < low:
        raise FlowkitError(f"--param {name}={text}: the range runs backwards ({high} < {low})")
    if high - low >= MAX_PARTITIONS:
        raise FlowkitError(f"--param {name}={text} has {high - low + 1:,} values: check the range")
    return [str(n) for n in range(low, high + 1)]


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()) if len(text.strip()) == 10 else None
    except ValueError:
        return None


def _integer(text: str) -> int | None:
    stripped = text.strip()
    body = stripped[1:] if stripped.startswith("-") else stripped
    return int(stripped) if body.isdigit() and len(body) <= 18 else None


# --- running ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """What the history says about one partition."""

    params: dict[str, Any]
    resume: bool = False
    skip: str = ""  # why it is skipped; empty: it runs


@dataclass(slots=True)
class _Keep:
    """A hook keeping the run's result, even when the run ends with Ctrl-C."""

    result: RunResult | None = field(default=None)

    def on_dag_end(self, run: object, result: RunResult) -> None:
        self.result = result


def run_partition(
    dag: DAG,
    params: Mapping[str, Any],
    *,
    resume: bool,
    hooks: Sequence[object],
    options: Mapping[str, Any],
    handle: _RunHandle | None = None,
) -> PartitionResult:
    """Run ``dag`` once with ``params``; the outcome as a :class:`PartitionResult`.

    A task failure is a failed partition, never an exception. Ctrl-C is
    re-raised as :class:`_Interrupted`, carrying the partition's result; a run
    stopped through ``handle`` (from another thread) is an interrupted partition.
    """
    keep = _Keep()
    started = time.perf_counter()
    try:
        run = _run(dag, params, resume, [*hooks, keep], options, handle)
    except RunCancelled as exc:
        return PartitionResult(params, "interrupted", keep.result, exc,
                               _took(keep.result, started), resume, "interrupted")
    except TaskExecutionError as exc:
        failed = exc.result if exc.result is not None else keep.result
        cause = exc.__cause__
        why = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        return PartitionResult(params, "failed", failed, exc, _took(failed, started), resume,
                               f"task {exc.task_name!r} failed{why}")
    except KeyboardInterrupt as exc:
        raise _Interrupted(
            PartitionResult(params, "interrupted", keep.result, exc, _took(keep.result, started),
                            resume, "interrupted")
        ) from exc
    except FlowkitError as exc:  # the run could not start (a bad state file, ...)
        return PartitionResult(params, "failed", keep.result, exc, _took(None, started), resume,
                               str(exc))
    return PartitionResult(params, "success", run, None, _took(run, started), resume)


def _run(
    dag: DAG,
    params: Mapping[str, Any],
    resume: bool,
    hooks: Sequence[object],
    options: Mapping[str, Any],
    handle: _RunHandle | None,
) -> RunResult:
    if handle is None:
        return dag.run(params=params, resume=resume, hooks=hooks, **options)
    # A run in a worker thread: the handle lets the main thread stop it on Ctrl-C.
    run_options = RunOptions(params=params, resume=resume, hooks=hooks, **options)
    return dag._run(run_options, None, handle)


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C during a partition, carrying its result."""

    def __init__(self, result: PartitionResult):
        super().__init__()
        self.result = result


def _took(run: RunResult | None, started: float) -> float:
    return run.duration if run is not None else time.perf_counter() - started


def _plans(
    dag: DAG, partitions: Sequence[Mapping[str, Any]], state: StateProtocol, force: bool
) -> list[_Plan]:
    plans = [_Plan(dict(p)) for p in partitions]
    runs = getattr(state, "runs", None)
    if force or runs is None:
        return plans
    latest: dict[str, Any] = {}
    for record in runs(dag.name, tasks=False):  # newest first
        latest.setdefault(params_key(record.params), record)
    for plan in plans:
        record = latest.get(params_key(plan.params))
        if record is None:
            continue
        if record.status == "success":
            plan.skip = f"done in run {record.run_id}"
        elif record.status == "running":
            plan.skip = f"running in process {record.pid} on {record.host} (run {record.run_id})"
        else:  # failed or interrupted: continue it
            plan.resume = True
    return plans


def _check(
    dag: DAG, partitions: object, parallel: object, targets: object
) -> list[Mapping[str, Any]]:
    if isinstance(partitions, Mapping | str | bytes) or not isinstance(partitions, Sequence):
        raise FlowkitError(
            "backfill takes a list of partitions, each a mapping of run parameters: "
            "[{'day': '2026-11-01'}, {'day': '2026-11-02'}]"
        )
    for n, p in enumerate(partitions):
        if not isinstance(p, Mapping) or not all(isinstance(k, str) for k in p):
            raise FlowkitError(
                f"partition {n} of the backfill is {p!r}: each partition is a mapping of "
                "run parameter names to values"
            )
    if type(parallel) is not int or parallel < 1:
        raise FlowkitError(f"parallel must be a positive integer, got {parallel!r}")
    labels = [partition_label(p) for p in partitions]
    if len(set(labels)) != len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise FlowkitError(f"partition {twice!r} is given twice; each partition runs once")
    if targets is None:
        # Names that fit no task (or a missing required one) would fail every
        # run: say so once, before anything runs (with targets, each run checks).
        for keys in {tuple(p) for p in partitions}:
            dag._graph.bind_params(dict.fromkeys(keys))
    return list(partitions)


def backfill(
    dag: DAG,
    partitions: Sequence[Mapping[str, Any]],
    *,
    parallel: int = 1,
    state: StateProtocol | None = None,
    force: bool = False,
    hooks: Sequence[object] = (),
    **options: Any,
) -> BackfillResult:
    """Run ``dag`` once per partition; see :meth:`flowkit.DAG.backfill`."""
    chosen = _check(dag, partitions, parallel, options.get("targets"))
    manager = state if state is not None else dag.state
    plans = _plans(dag, chosen, manager, force)
    _warn_beyond_history(manager, len(plans))
    options = {**options, "state": manager}
    started = time.perf_counter()
    results: dict[int, PartitionResult] = {}
    interrupted = False
    try:
        if parallel == 1:
            for n, plan in enumerate(plans):
                results[n] = _one(dag, plan, hooks, options)
        else:
            _parallel(dag, plans, parallel, hooks, options, results)
    except _Interrupted as exc:
        interrupted = True
        results[next(n for n in range(len(plans)) if n not in results)] = exc.result
    except KeyboardInterrupt:
        interrupted = True
    final = [
        results.get(n) or PartitionResult(plan.params, "cancelled", note="not started")
        for n, plan in enumerate(plans)
    ]
    outcome = BackfillResult(final, time.perf_counter() - started, interrupted)
    if interrupted:
        raise _BackfillInterrupted(outcome)
    return outcome


class _BackfillInterrupted(KeyboardInterrupt):
    """Ctrl-C during a backfill; ``.result`` holds what was done."""

    def __init__(self, result: BackfillResult):
        super().__init__()
        self.result = result


def _one(
    dag: DAG,
    plan: _Plan,
    hooks: Sequence[object],
    options: Mapping[str, Any],
    handle: _RunHandle | None = None,
) -> PartitionResult:
    _notify(hooks, "on_partition_start", plan.params)
    if plan.skip:
        result = PartitionResult(plan.params, "skipped", note=plan.skip)
    else:
        try:
            result = run_partition(dag, plan.params, resume=plan.resume, hooks=hooks,
                                   options=options, handle=handle)
        except _Interrupted as exc:
            _notify(hooks, "on_partition_end", exc.result)
            raise
    _notify(hooks, "on_partition_end", result)
    return result


def _queue_all(
    pool: cf.ThreadPoolExecutor, work: Callable[[int], None], count: int,
    into: list[cf.Future[None]],
) -> None:
    """Queue ``count`` partitions into ``into``, Ctrl-C held back until they all are.

    Ctrl-C inside ``submit`` could leave a pool thread started that the pool
    does not know of, and would not wait for; held back, it arrives just after.
    """
    main = threading.current_thread() is threading.main_thread()
    held = main and hasattr(signal, "pthread_sigmask")  # POSIX
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if held else None
    try:
        for n in range(count):
            into.append(pool.submit(work, n))
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _parallel(
    dag: DAG,
    plans: Sequence[_Plan],
    parallel: int,
    hooks: Sequence[object],
    options: Mapping[str, Any],
    results: dict[int, PartitionResult],
) -> None:
    stop = threading.Event()
    handles = [_RunHandle() for _ in plans]

    def work(n: int) -> None:
        if not stop.is_set():  # after Ctrl-C, queued partitions do not start
            results[n] = _one(dag, plans[n], hooks, options, handles[n])

    with cf.ThreadPoolExecutor(parallel, thread_name_prefix="flowkit-backfill") as pool:
        futures: list[cf.Future[None]] = []
        try:
            _queue_all(pool, work, len(plans), futures)
            _wait_all(futures, raise_first=True)
        except KeyboardInterrupt:
            try:  # a second Ctrl-C from here on stops the running partitions
                stop.set()
                for future in futures:
                    future.cancel()
                running = sum(not f.done() for f in futures)
                logger.warning(
                    "interrupted: no new partition starts; waiting for the %d running "
                    "(interrupt again to stop them)", running,
                )
                _wait_all(futures)
            except KeyboardInterrupt:
                stop.set()
                for handle in handles:
                    handle.cancel()
                _wait_all(futures)
            raise
        except BaseException:  # raised by a partition: the queued ones do not start
            stop.set()
            raise


def _wait_all(futures: list[cf.Future[None]], *, raise_first: bool = False) -> None:
    """Wait for every partition; with ``raise_first``, raise the first error at once.

    The wait wakes up now and then: a Ctrl-C that arrives just as this thread
    blocks can otherwise stay unnoticed (the interpreter runs signal handlers
    only in the main thread, when it next runs Python code) until a partition
    ends. Each partition reports its end once, so the whole wait is linear in
    their number.
    """
    ended: queue.SimpleQueue[cf.Future[None]] = queue.SimpleQueue()
    for future in futures:
        future.add_done_callback(ended.put)
    left = len(futures)
    while left:
        try:
            future = ended.get(timeout=_SIGNAL_POLL)
        except queue.Empty:
            continue
        left -= 1
        if raise_first:
            future.result()


def _notify(hooks: Sequence[object], name: str, arg: object) -> None:
    for hook in hooks:
        method: Callable[[Any], None] | None = getattr(hook, name, None)
        if method is None:
            continue
        try:
            method(arg)
        except Exception:  # a hook that raises is reported, never breaks the backfill
            logger.exception("hook %r raised in %s", hook, name)


def _warn_beyond_history(state: StateProtocol, count: int) -> None:
    keep = getattr(state, "history_size", None)
    if isinstance(keep, int) and 0 < keep < count:
        logger.warning(
            "this backfill has %d partitions but the state keeps the history of only the last "
            "%d runs: a later backfill will not know that the earliest ones are done. Use "
            "StateManager(path, history=N) with N >= %d.",
            count, keep, count,
        )


# --- showing partitions as they go (the command line's hooks) ------------------------------


class PartitionProgress:
    """A hook drawing one progress bar over the partitions of a backfill.

    Args:
        dag_name: shown at the start of the bar.
        total: how many partitions there are.
        stream, enabled: as for :class:`~flowkit.progress.ProgressBar` (by
            default it draws only on a terminal).
    """

    def __init__(
        self, dag_name: str, total: int, stream: TextIO | None = None,
        enabled: bool | None = None,
    ):
        self.bar = ProgressBar(stream, enabled=enabled)
        self.run = RunContext(f"{dag_name} backfill", "backfill", total, "partitions")
        self.bar.on_dag_start(self.run)

    def on_partition_start(self, params: Mapping[str, Any]) -> None:
        self.bar.mark(partition_label(params), running=True)

    def on_partition_end(self, result: PartitionResult) -> None:
        with self.bar.lock:
            self.run.done += 1
            self.run.failed += not result.ok
        self.bar.mark(result.label, running=False)

    def wrap(self, stream: TextIO) -> TextIO:
        """A stream for log lines that does not tear the bar."""
        return self.bar.wrap(stream)

    def close(self) -> None:
        """Erase the bar and stop redrawing it."""
        self.bar.close()


class PartitionPrinter:
    """A hook printing one line per finished partition or scheduled run."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def on_partition_end(self, result: PartitionResult) -> None:
        took = f" in {result.duration:.2f}s" if result.run is not None else ""
        detail = result.run_id or ""
        if result.note and result.status != "success":
            detail = f"{detail}: {result.note}" if detail else result.note
        line = f"{result.label or '(no params)'}: {result.status}{took}"
        print(f"{line} ({detail})" if detail else line, file=self.stream, flush=True)
