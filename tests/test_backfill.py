"""Backfills: one run per partition, in parallel, attributed, idempotent; the CLI."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import signal
import textwrap
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from flowkit import (
    DAG,
    DAGValidationError,
    FlowkitError,
    StateError,
    StateManager,
    configure_logging,
    task,
)
from flowkit.backfill import (
    MAX_PARTITIONS,
    BackfillResult,
    PartitionResult,
    expand_params,
    partition_label,
)
from flowkit.cli import main

DAYS = [{"day": f"2026-11-0{n}"} for n in range(1, 5)]


@pytest.fixture(autouse=True)
def _reset_flowkit_logging() -> Iterator[None]:
    """Each test leaves the "flowkit" logger as it found it."""
    logger = logging.getLogger("flowkit")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:], logger.level, logger.propagate = saved


def _etl(calls: list[str], bad: str | None = None) -> DAG:
    @task
    def extract(day: str) -> str:
        calls.append(f"extract {day}")
        if day == bad:
            raise ValueError(f"no data for {day}")
        return day

    @task
    def load(rows: str) -> int:
        calls.append(f"load {rows}")
        return len(rows)

    extract >> load
    return DAG([load], name="etl")


# --- running partitions ------------------------------------------------------------------


def test_one_run_per_partition_in_order() -> None:
    calls: list[str] = []
    result = _etl(calls).backfill(DAYS, executor="sync")
    assert isinstance(result, BackfillResult)
    assert list(result) == [f"day=2026-11-0{n}" for n in range(1, 5)]
    assert calls == [f"{step} 2026-11-0{n}" for n in range(1, 5) for step in ("extract", "load")]
    assert result.ok and result.counts == {"success": 4}
    first = result["day=2026-11-01"]
    assert result[{"day": "2026-11-01"}] is first
    assert first.status == "success" and first.ok and first.run is not None
    assert first.run["load"] == 10 and first.run_id == first.run.run_id
    assert first.params == {"day": "2026-11-01"} and first.label == "day=2026-11-01"
    assert len({r.run_id for r in result.results}) == 4


def test_a_failed_partition_is_a_result_and_the_others_run() -> None:
    calls: list[str] = []
    result = _etl(calls, bad="2026-11-02").backfill(DAYS, executor="sync")
    assert not result.ok
    assert result.counts == {"success": 3, "failed": 1}
    failed = result["day=2026-11-02"]
    assert failed.status == "failed" and not failed.ok
    assert isinstance(failed.error, FlowkitError)
    assert failed.note == "task 'extract' failed: ValueError: no data for 2026-11-02"
    assert failed.run is not None and not failed.run.ok
    assert result.failed == [failed]
    assert "load 2026-11-04" in calls


def test_summary_table() -> None:
    result = _etl([], bad="2026-11-02").backfill(DAYS[:2], executor="sync")
    lines = result.summary().splitlines()
    assert lines[0].split() == ["partition", "status", "duration", "run"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split()[:2] == ["day=2026-11-01", "success"]
    assert lines[2].split()[3] == result["day=2026-11-01"].run_id
    assert lines[3].split()[:2] == ["day=2026-11-02", "failed"]
    assert lines[-1].startswith("2 partition(s) in ") and lines[-1].endswith("1 success, 1 failed")
    assert repr(result) == "<BackfillResult 2 partition(s): 1 success, 1 failed>"


def test_parallel_runs_partitions_at_once() -> None:
    # Each task waits for the other partition's task: only runs side by side pass.
    meet = threading.Barrier(2, timeout=10)

    @task
    def work(day: str) -> str:
        meet.wait()
        return day

    result = DAG([work], name="pair").backfill(DAYS[:2], parallel=2)
    assert result.ok, result.summary()
    assert [r.run["work"] for r in result.results if r.run] == ["2026-11-01", "2026-11-02"]


def test_parallel_results_keep_the_partition_order_and_failures() -> None:
    result = _etl([], bad="2026-11-03").backfill(DAYS, parallel=3)
    assert list(result) == [partition_label(p) for p in DAYS]
    assert [r.status for r in result.results] == ["success", "success", "failed", "success"]
    assert all(r.run is not None and r.run["load"] == 10 for r in result.results if r.ok)


def test_log_lines_of_parallel_partitions_carry_their_params_and_run_id() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    result = _etl([]).backfill(DAYS, parallel=4)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    run_lines = [line for line in lines if line["logger"] == "flowkit.run"]
    assert len(run_lines) >= 4 * 6  # start, 2 x (start, success, progress), end per run
    for line in run_lines:
        partition = result[line["params"]]
        assert line["run_id"] == partition.run_id
        if line.get("task") == "extract" and line["event"] == "task.success":
            assert line["params"] == partition.params


def test_text_log_lines_show_the_params() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    _etl([]).backfill(DAYS[:1], executor="sync")
    success = [line for line in stream.getvalue().splitlines() if "task.success" in line]
    assert success and all(line.endswith("day=2026-11-01") for line in success)


def test_partition_hooks_and_a_hook_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, Any]] = []

    class Watch:
        def on_partition_start(self, params: Mapping[str, Any]) -> None:
            seen.append(("start", dict(params)))

        def on_partition_end(self, result: PartitionResult) -> None:
            seen.append(("end", result.status))

        def on_dag_end(self, run: object, result: object) -> None:
            seen.append(("dag.end", None))

    class Broken:
        def on_partition_end(self, result: PartitionResult) -> None:
            raise RuntimeError("hook bug")

    result = _etl([]).backfill(DAYS[:2], executor="sync", hooks=[Watch(), Broken()])
    assert result.ok
    assert seen == [
        ("start", DAYS[0]), ("dag.end", None), ("end", "success"),
        ("start", DAYS[1]), ("dag.end", None), ("end", "success"),
    ]
    assert "hook bug" in caplog.text


def test_fail_fast_and_targets_apply_to_each_run() -> None:
    calls: list[str] = []
    result = _etl(calls).backfill(DAYS[:2], executor="sync", targets=["extract"])
    assert result.ok
    assert calls == ["extract 2026-11-01", "extract 2026-11-02"]


def test_an_unreadable_state_is_reported_before_anything_runs(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.json"
    foreign.write_text("not a state file\n", encoding="utf-8")
    calls: list[str] = []
    with pytest.raises(StateError, match=r"foreign\.json"):
        _etl(calls).backfill(DAYS[:1], state=StateManager(foreign), executor="sync")
    assert calls == []


def test_a_partition_whose_run_cannot_start_fails_alone() -> None:
    class Refusing(StateManager):
        def begin_run(self, run: Any, tasks: Any, *, resume: bool) -> Any:
            if run.params["day"] == "2026-11-02":
                raise StateError("this one cannot be recorded")
            return super().begin_run(run, tasks, resume=resume)

    result = _etl([]).backfill(DAYS[:3], state=Refusing(), executor="sync")
    assert [r.status for r in result.results] == ["success", "failed", "success"]
    assert result.results[1].note == "this one cannot be recorded"
    assert result.results[1].run is None


def test_ctrl_c_stops_the_backfill_with_what_was_done() -> None:
    @task
    def work(day: str) -> str:
        if day == "2026-11-02":
            raise KeyboardInterrupt
        return day

    with pytest.raises(KeyboardInterrupt) as info:
        DAG([work], name="stop").backfill(DAYS[:3], executor="sync")
    done: BackfillResult = info.value.result  # type: ignore[attr-defined]
    assert [r.status for r in done.results] == ["success", "interrupted", "cancelled"]
    assert done.interrupted and not done.ok
    assert done.results[2].note == "not started"


# --- checked before anything runs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("partitions", "parallel", "words"),
    [
        ({"day": "x"}, 1, "a list of partitions"),
        ("day=x", 1, "a list of partitions"),
        ([["day", "x"]], 1, "partition 0 of the backfill is"),
        ([{1: "x"}], 1, "partition 0"),
        (DAYS, 0, "parallel must be a positive integer"),
        (DAYS, True, "parallel must be a positive integer"),
        ([DAYS[0], DAYS[0]], 1, "partition 'day=2026-11-01' is given twice"),
    ],
)
def test_bad_arguments(partitions: Any, parallel: Any, words: str) -> None:
    calls: list[str] = []
    with pytest.raises(FlowkitError, match=words):
        _etl(calls).backfill(partitions, parallel=parallel)
    assert calls == []


def test_a_param_no_task_takes_fails_before_any_run() -> None:
    calls: list[str] = []
    with pytest.raises(DAGValidationError, match="'dya' is not a parameter of any task"):
        _etl(calls).backfill([{"day": "2026-11-01", "dya": "2026-11-01"}])
    with pytest.raises(DAGValidationError, match="needs a value for its parameter 'day'"):
        _etl(calls).backfill([{}])
    assert calls == []


# --- partitions from the command line -----------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["day=2026-11-01..2026-11-03"],
         [{"day": "2026-11-01"}, {"day": "2026-11-02"}, {"day": "2026-11-03"}]),
        (["day=2026-02-27..2026-03-01"],  # across a month end
         [{"day": "2026-02-27"}, {"day": "2026-02-28"}, {"day": "2026-03-01"}]),
        (["n=1..3"], [{"n": "1"}, {"n": "2"}, {"n": "3"}]),
        (["n=-1..1"], [{"n": "-1"}, {"n": "0"}, {"n": "1"}]),
        (["region=eu,us"], [{"region": "eu"}, {"region": "us"}]),
        (["limit=5"], [{"limit": "5"}]),
        (["flag=true,false"], [{"flag": "true"}, {"flag": "false"}]),
        (["day=2026-11-01"], [{"day": "2026-11-01"}]),
        (["day=2026-11-01..2026-11-02", "region=eu,us"],
         [{"day": "2026-11-01", "region": "eu"}, {"day": "2026-11-01", "region": "us"},
          {"day": "2026-11-02", "region": "eu"}, {"day": "2026-11-02", "region": "us"}]),
        ([], [{}]),
    ],
)
def test_expand_params(specs: list[str], expected: list[dict[str, Any]]) -> None:
    assert expand_params(specs) == expected


@pytest.mark.parametrize(
    ("specs", "words"),
    [
        (["day"], "expected NAME=VALUES"),
        (["=1"], "expected NAME=VALUES"),
        (["day=1", "day=2"], "--param day is given twice"),
        (["day=2026-11-03..2026-11-01"], "runs backwards"),
        (["n=3..1"], "runs backwards"),
        (["n=a..b"], "a range is of dates"),
        (["n=1..2026-11-01"], "a range is of dates"),
        (["n=0..100000000000"], "check the range"),
        (["day=0001-01-01..9999-12-31"], "check the range"),
        ([f"a=1..{MAX_PARTITIONS // 10}", "b=1..20"], "more than 100,000 partitions"),
    ],
)
def test_expand_params_errors(specs: list[str], words: str) -> None:
    with pytest.raises(FlowkitError, match=words):
        expand_params(specs)


# --- the command line ------------------------------------------------------------------------

FLOW = """
    from flowkit import task

    @task
    def extract(day: str, region: str) -> str:
        if (day, region) == ("2026-11-02", "us"):
            raise ValueError("no data")
        return day + "/" + region

    @task
    def load(rows: str) -> int:
        return len(rows)

    extract >> load
"""


def _flow(tmp_path: Path) -> str:
    path = tmp_path / "flow.py"
    path.write_text(textwrap.dedent(FLOW), encoding="utf-8")
    return str(path)


def test_cli_backfill(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["backfill", _flow(tmp_path), "--param", "day=2026-11-01..2026-11-02",
            "--param", "region=eu,us", "--parallel", "2", "--state", str(tmp_path / "s.json"),
            "--log-level", "CRITICAL"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 1
    rows = [line.split() for line in out.splitlines()[2:6]]
    assert [row[:3] for row in rows] == [
        ["day=2026-11-01", "region=eu", "success"],
        ["day=2026-11-01", "region=us", "success"],
        ["day=2026-11-02", "region=eu", "success"],
        ["day=2026-11-02", "region=us", "failed"],
    ]
    assert out.splitlines()[-1].endswith("3 success, 1 failed")
    assert err.strip() == (
        "flowkit: partition day=2026-11-02 region=us failed: "
        "task 'extract' failed: ValueError: no data"
    )
    assert "\r" not in err  # no progress bar off a terminal


def test_cli_backfill_all_ok_exits_0_and_draws_progress_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backfill", _flow(tmp_path), "--param", "day=2026-11-01", "--param", "region=eu",
            "--state", str(tmp_path / "s.json"), "--progress", "--executor", "sync"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "1 partition(s) in" in out and "1 success" in out
    assert "flow backfill [" in err and "1/1 100%" in err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--param", "day=2026-11-05..2026-11-01"], "runs backwards"),
        (["--param", "day=1", "--param", "region=eu", "--param", "dya=1"],
         "'dya' is not a parameter of any task"),
        (["--param", "day=1"], "needs a value for its parameter 'region'"),
        (["--param", "day=1", "--parallel", "0"], "expected a positive integer"),
    ],
)
def test_cli_backfill_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    code = main(["backfill", _flow(tmp_path), "--state", str(tmp_path / "s.json"), *extra])
    _, err = capsys.readouterr()
    assert code == 2 and words in err


def test_cli_backfill_needs_param_and_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backfill", _flow(tmp_path), "--state", "s.json"]) == 2
    assert "--param" in capsys.readouterr().err
    assert main(["backfill", _flow(tmp_path), "--param", "day=1"]) == 2
    assert "--state" in capsys.readouterr().err


# --- idempotent through the run history ---------------------------------------------------


def _load_fails_on(calls: list[str], bad: set[str]) -> DAG:
    @task
    def extract(day: str) -> str:
        calls.append(f"extract {day}")
        return day

    @task
    def load(rows: str) -> int:
        calls.append(f"load {rows}")
        if rows in bad:
            raise ValueError(f"cannot load {rows}")
        return len(rows)

    extract >> load
    return DAG([load], name="etl")


@pytest.mark.parametrize("suffix", [".json", ".db"])
def test_done_partitions_are_skipped_and_failed_ones_resumed(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"state{suffix}"
    calls: list[str] = []
    bad = {"2026-11-02"}
    first = _load_fails_on(calls, bad).backfill(DAYS, state=StateManager(path), parallel=2)
    assert [r.status for r in first.results] == ["success", "failed", "success", "success"]
    calls.clear()
    bad.clear()
    second = _load_fails_on(calls, bad).backfill(DAYS, state=StateManager(path), parallel=2)
    assert [r.status for r in second.results] == ["skipped", "success", "skipped", "skipped"]
    assert second.ok and second.counts == {"success": 1, "skipped": 3}
    skipped = second["day=2026-11-01"]
    assert skipped.note == f"done in run {first['day=2026-11-01'].run_id}" and skipped.run is None
    resumed = second["day=2026-11-02"]
    assert resumed.resumed and resumed.run is not None
    # only the unfinished task ran: extract was restored from the failed run
    assert calls == ["load 2026-11-02"]
    assert resumed.run.states["extract"].status.name == "CACHED"
    assert "success (resumed)" in second.summary()
    # every partition's run is in the history, with its params
    runs = StateManager(path).runs("etl")
    assert [r.params for r in runs].count({"day": "2026-11-02"}) == 2
    assert {r.status for r in runs if r.params == {"day": "2026-11-02"}} == {"success", "failed"}


def test_force_runs_every_partition_afresh(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    calls: list[str] = []
    _etl(calls).backfill(DAYS[:2], state=StateManager(path), executor="sync")
    calls.clear()
    again = _etl(calls).backfill(DAYS[:2], state=StateManager(path), executor="sync", force=True)
    assert [r.status for r in again.results] == ["success", "success"]
    assert not any(r.resumed for r in again.results)
    assert len(calls) == 4


def test_only_the_latest_run_with_exactly_those_params_counts() -> None:
    calls: list[str] = []
    bad: set[str] = set()
    dag = _load_fails_on(calls, bad)
    state = StateManager()
    dag.backfill(DAYS[:1], state=state, executor="sync")
    bad.add("2026-11-01")
    with pytest.raises(FlowkitError):  # a later failed run of the same partition
        dag.run(params=DAYS[0], state=state, executor="sync")
    # the latest run of the partition failed: it is resumed, not skipped
    assert dag.backfill(DAYS[:1], state=state, executor="sync").results[0].status == "failed"
    bad.clear()
    result = dag.backfill(DAYS[:1], state=state, executor="sync")
    assert result.results[0].status == "success" and result.results[0].resumed


def test_a_backfill_larger_than_the_history_warns(caplog: pytest.LogCaptureFixture) -> None:
    _etl([]).backfill(DAYS[:3], state=StateManager(history=2), executor="sync")
    assert "keeps the history of only the last 2 runs" in caplog.text


def test_cli_backfill_again_skips_what_is_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backfill", _flow(tmp_path), "--param", "day=2026-11-01..2026-11-02",
            "--param", "region=eu", "--state", str(tmp_path / "s.json")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[-1].endswith("2 skipped")
    assert "skipped" in out.splitlines()[2] and "done in run" in out.splitlines()[2]
    assert main([*argv, "--force"]) == 0
    assert capsys.readouterr()[0].splitlines()[-1].endswith("2 success")


def test_cli_backfill_types_values_by_annotation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "typed.py"
    path.write_text(textwrap.dedent("""
        import datetime as dt
        from flowkit import task

        @task
        def shard(day: dt.date, n: int) -> str:
            assert isinstance(day, dt.date) and isinstance(n, int)
            return (day + dt.timedelta(days=n)).isoformat()
    """), encoding="utf-8")
    argv = ["backfill", str(path), "--param", "day=2026-11-30..2026-12-01", "--param", "n=0..1",
            "--state", str(tmp_path / "s.db")]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr()[0]
    assert "day=2026-12-01 n=1  success" in out and out.splitlines()[-1].endswith("4 success")
    assert main([*argv[:-2], "--param", "x=1", "--state", str(tmp_path / "s.db")]) == 2
    assert main(["backfill", str(path), "--param", "day=2026-11-30", "--param", "n=a,b",
                 "--state", str(tmp_path / "s.db")]) == 2
    assert "does not fit task 'shard'" in capsys.readouterr().err


def test_parallel_ctrl_c_lets_running_partitions_finish_and_a_second_stops_them() -> None:
    both = threading.Barrier(2, timeout=10)
    release = threading.Event()
    noticed = _noticed_first_interrupt()

    @task
    def work(day: str) -> str:
        both.wait()
        if day == "2026-11-01":  # the first Ctrl-C: both partitions go on
            # To the main thread, as a terminal's Ctrl-C is handled: a signal sent
            # to the process may land on this thread and wait for the main thread
            # to wake up, into the next test.
            main = threading.main_thread().ident or 0
            signal.pthread_kill(main, signal.SIGINT)
            noticed.wait(10)  # handled (however loaded the machine): now the second
            signal.pthread_kill(main, signal.SIGINT)  # the second: both are stopped
        release.wait(10)
        return day

    @task
    def beside(day: str) -> str:  # two tasks at once: the run waits in its loop, stoppable
        release.wait(10)
        return day

    try:
        with pytest.raises(KeyboardInterrupt) as info:
            DAG([work, beside], name="stop").backfill(DAYS[:3], parallel=2)
    finally:
        release.set()
        noticed.stop()
    done: BackfillResult = info.value.result  # type: ignore[attr-defined]
    assert [r.status for r in done.results] == ["interrupted", "interrupted", "cancelled"]
    assert all(r.run is not None and r.run.interrupted for r in done.results[:2])


class _Noticed(logging.Handler):
    """Set once the backfill logs that it handled a first Ctrl-C."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.event = threading.Event()
        self.logger = logging.getLogger("flowkit.backfill")
        self.level_before = self.logger.level
        self.logger.setLevel(logging.WARNING)  # whatever an earlier test left on "flowkit"
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if "no new partition starts" in record.getMessage():
            self.event.set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)

    def stop(self) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level_before)


def _noticed_first_interrupt() -> _Noticed:
    return _Noticed()


def test_parallel_ctrl_c_once_waits_for_the_running_partitions() -> None:
    both = threading.Barrier(2, timeout=60)
    noticed = _noticed_first_interrupt()

    @task
    def work(day: str) -> str:
        both.wait()
        if day == "2026-11-01":  # Ctrl-C in a terminal interrupts the main thread
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        # Finish only once the interrupt is handled: a pool thread freed earlier
        # would start the third partition before the main thread could stop it.
        noticed.wait(60)  # bounded, and long: a loaded machine may take seconds to handle it
        return day

    try:
        with pytest.raises(KeyboardInterrupt) as info:
            DAG([work], name="stop").backfill(DAYS[:3], parallel=2)
    finally:
        noticed.stop()
    done: BackfillResult = info.value.result  # type: ignore[attr-defined]
    assert [r.status for r in done.results] == ["success", "success", "cancelled"]


def test_a_partition_running_elsewhere_is_skipped() -> None:
    class Busy(StateManager):
        def runs(self, dag: str | None = None, limit: int | None = None, *,
                 tasks: bool = True) -> Any:
            return [dataclasses.replace(r, status="running", pid=4242, host="elsewhere")
                    for r in super().runs(dag, limit, tasks=tasks)]

    calls: list[str] = []
    state = Busy()
    _etl(calls).run(params=DAYS[0], state=state, executor="sync")
    calls.clear()
    result = _etl(calls).backfill(DAYS[:2], state=state, executor="sync")
    assert [r.status for r in result.results] == ["skipped", "success"]
    assert result.results[0].note.startswith("running in process 4242 on elsewhere (run ")
    assert calls == ["extract 2026-11-02", "load 2026-11-02"]
