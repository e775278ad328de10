"""Schedules: serve's loop on an injected clock, intervals, catch-up, the lock, signals, CLI."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
import zoneinfo
from pathlib import Path
from typing import Any

import pytest

from flowkit import (
    DAG,
    CronError,
    FlowkitError,
    StateLockedError,
    StateManager,
    task,
)
from flowkit.cli import main
from flowkit.schedule import Every, parse_duration

UTC = dt.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
ROOT = Path(__file__).resolve().parent.parent


class FakeTime:
    """A clock that moves only when serve sleeps (or a task says so)."""

    def __init__(self, start: str):
        self.now = dt.datetime.fromisoformat(start).timestamp()
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _report(seen: list[tuple[dt.datetime, dt.datetime]]) -> DAG:
    @task
    def report(interval_start: dt.datetime, interval_end: dt.datetime) -> str:
        seen.append((interval_start, interval_end))
        return f"{interval_start:%H:%M}-{interval_end:%H:%M}"

    return DAG([report], name="report")


def _hm(pairs: list[tuple[dt.datetime, dt.datetime]]) -> list[str]:
    return [f"{a:%H:%M}-{b:%H:%M}" for a, b in pairs]


# --- the loop -----------------------------------------------------------------------------


def test_every_runs_the_latest_finished_interval_then_each_at_its_end() -> None:
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    seen: list[tuple[dt.datetime, dt.datetime]] = []
    result = _report(seen).serve(every=600, max_runs=3, clock=clock.clock, sleep=clock.sleep)
    assert _hm(seen) == ["09:50-10:00", "10:00-10:10", "10:10-10:20"]
    assert clock.sleeps == [180.0, 600.0]  # to 10:10, then to 10:20: no busy loop
    assert all(a.tzinfo is UTC and b - a == dt.timedelta(minutes=10) for a, b in seen)
    assert result.runs == 3 and result.failed == 0 and result.ok
    assert result.stopped_by == "max_runs"
    assert [r.run["report"] for r in result.results if r.run] == _hm(seen)
    assert result.results[0].params == {"interval_start": seen[0][0], "interval_end": seen[0][1]}


def test_every_takes_a_timedelta() -> None:
    clock = FakeTime("2026-11-28T10:00:30+00:00")
    seen: list[tuple[dt.datetime, dt.datetime]] = []
    _report(seen).serve(every=dt.timedelta(hours=1), max_runs=2, clock=clock.clock,
                        sleep=clock.sleep)
    assert _hm(seen) == ["09:00-10:00", "10:00-11:00"]


def test_cron_in_a_time_zone_across_the_spring_forward() -> None:
    clock = FakeTime("2026-03-29T00:30:00+01:00")
    seen: list[tuple[dt.datetime, dt.datetime]] = []
    _report(seen).serve("0 * * * *", tz="Europe/Berlin", max_runs=4, clock=clock.clock,
                        sleep=clock.sleep)
    assert [(a.isoformat(), b.isoformat()) for a, b in seen] == [
        ("2026-03-28T23:00:00+01:00", "2026-03-29T00:00:00+01:00"),
        ("2026-03-29T00:00:00+01:00", "2026-03-29T01:00:00+01:00"),
        ("2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"),  # one real hour
        ("2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"),
    ]
    assert all(a.tzinfo is BERLIN for a, _ in seen)


def test_a_long_run_delays_the_next_and_only_the_latest_interval_runs() -> None:
    clock = FakeTime("2026-11-28T10:00:00+00:00")
    seen: list[tuple[dt.datetime, dt.datetime]] = []

    @task
    def slow(interval_end: dt.datetime) -> None:
        seen.append((interval_end - dt.timedelta(minutes=10), interval_end))
        if len(seen) == 1:
            clock.advance(35 * 60)  # runs past three interval ends

    DAG([slow], name="slow").serve(every=600, max_runs=3, clock=clock.clock, sleep=clock.sleep)
    assert _hm(seen) == ["09:50-10:00", "10:20-10:30", "10:30-10:40"]


def test_with_catchup_every_missed_interval_runs_in_order() -> None:
    clock = FakeTime("2026-11-28T10:00:00+00:00")
    seen: list[tuple[dt.datetime, dt.datetime]] = []

    @task
    def slow(interval_start: dt.datetime, interval_end: dt.datetime) -> None:
        seen.append((interval_start, interval_end))
        if len(seen) == 1:
            clock.advance(35 * 60)

    DAG([slow], name="slow").serve(every=600, catchup=True, max_runs=5, clock=clock.clock,
                                   sleep=clock.sleep)
    assert _hm(seen) == ["09:50-10:00", "10:00-10:10", "10:10-10:20", "10:20-10:30",
                         "10:30-10:40"]
    assert clock.sleeps == [300.0]  # caught up at 10:35, then waited for 10:40


def test_interval_params_go_only_to_tasks_that_declare_them() -> None:
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    got: list[Any] = []

    @task
    def plain() -> int:
        got.append("plain")
        return 1

    @task
    def dated(x: int, interval_end: dt.datetime) -> str:
        got.append(interval_end)
        return interval_end.isoformat()

    plain >> dated
    DAG([plain], name="plain").serve(every=600, max_runs=1, clock=clock.clock, sleep=clock.sleep)
    assert got == ["plain"]
    DAG([dated], name="dated").serve(every=600, max_runs=1, clock=clock.clock, sleep=clock.sleep)
    assert got[-1] == dt.datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def test_params_as_a_mapping_or_a_function_of_the_interval() -> None:
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    got: list[str] = []

    @task
    def load(day: str, table: str) -> None:
        got.append(f"{table}:{day}")

    dag = DAG([load], name="load")
    dag.serve(every=600, params={"day": "fixed", "table": "t"}, max_runs=1, clock=clock.clock,
              sleep=clock.sleep)
    dag.serve(every=86400, max_runs=1, clock=clock.clock, sleep=clock.sleep, state=StateManager(),
              params=lambda start, end: {"day": start.date().isoformat(), "table": "u",
                                         "interval_end": "ignored"})
    assert got == ["t:fixed", "u:2026-11-27"]


def test_a_failing_run_is_recorded_and_the_schedule_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    count = [0]

    @task
    def flaky() -> int:
        count[0] += 1
        if count[0] == 1:
            raise ValueError("first one fails")
        return count[0]

    result = DAG([flaky], name="flaky").serve(every=600, max_runs=3, clock=clock.clock,
                                              sleep=clock.sleep)
    assert [r.status for r in result.results] == ["failed", "success", "success"]
    assert result.failed == 1 and not result.ok and result.runs == 3
    assert "the run for [2026-11-28T09:50:00+00:00, 2026-11-28T10:00:00+00:00) failed" in (
        caplog.text
    )
    assert "ValueError: first one fails" in caplog.text and "the schedule goes on" in caplog.text


def test_a_params_function_that_raises_fails_that_run_only() -> None:
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    calls = [0]

    def params(start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 1:
            raise KeyError("lookup")
        return {}

    result = _report([]).serve(every=600, max_runs=2, params=params, clock=clock.clock,
                               sleep=clock.sleep)
    assert [r.status for r in result.results] == ["failed", "success"]
    assert "the params function raised KeyError('lookup')" in result.results[0].note


# --- signals ------------------------------------------------------------------------------


def test_sigterm_lets_the_current_run_finish_and_stops() -> None:
    clock = FakeTime("2026-11-28T10:07:00+00:00")

    @task
    def work() -> str:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs here, in the main thread
        return "finished"

    before = signal.getsignal(signal.SIGTERM)
    result = DAG([work], name="work").serve(every=600, executor="sync", clock=clock.clock,
                                            sleep=clock.sleep)
    assert result.runs == 1 and result.stopped_by == "SIGTERM"
    assert result.results[0].status == "success" and result.results[0].run is not None
    assert result.results[0].run["work"] == "finished"
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


def test_a_second_signal_interrupts_the_run() -> None:
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    after: list[str] = []

    @task
    def first() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        after.append("not reached")

    @task
    def second() -> None:
        after.append("second ran")

    first >> second
    state = StateManager()
    result = DAG([second], name="stop").serve(every=600, executor="sync", state=state,
                                              clock=clock.clock, sleep=clock.sleep)
    assert result.stopped_by == "SIGINT" and result.runs == 1
    assert result.results[0].status == "interrupted" and after == []
    assert result.results[0].run is not None and result.results[0].run.interrupted


def test_a_signal_while_waiting_stops_at_once() -> None:
    clock = FakeTime("2026-11-28T10:07:00+00:00")

    def sleep(seconds: float) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)

    result = _report([]).serve(every=600, clock=clock.clock, sleep=sleep)
    assert result.runs == 1 and result.stopped_by == "SIGTERM"


# --- the lock -------------------------------------------------------------------------------


def test_a_second_server_on_the_same_state_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    lock = tmp_path / "state.json.report.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"4242\n")
    try:
        with pytest.raises(StateLockedError, match="already being served") as info:
            _report([]).serve(every=600, state=StateManager(path), max_runs=1)
        assert info.value.pid == 4242 and info.value.path == str(lock)
        assert "process 4242" in str(info.value) and "wait=True" in str(info.value)
    finally:
        os.close(fd)


def test_wait_waits_for_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    fd = os.open(tmp_path / "state.json.report.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    clock = FakeTime("2026-11-28T10:07:00+00:00")

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        os.close(fd)  # the other server stops

    result = _report([]).serve(every=600, state=StateManager(path), max_runs=1, wait=True,
                               clock=clock.clock, sleep=sleep)
    assert result.runs == 1 and clock.sleeps == [1.0]


def test_an_in_memory_state_is_locked_within_the_process() -> None:
    state = StateManager()
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    dag = _report([])
    errors: list[BaseException] = []

    @task
    def nested() -> None:
        try:
            dag.serve(every=600, state=state, max_runs=1, clock=clock.clock, sleep=clock.sleep)
        except StateLockedError as exc:
            errors.append(exc)

    DAG([nested], name="report").serve(every=600, state=state, max_runs=1, clock=clock.clock,
                                       sleep=clock.sleep)
    assert len(errors) == 1 and f"process {os.getpid()}" in str(errors[0])
    # released afterwards
    assert dag.serve(every=600, state=state, max_runs=1, clock=clock.clock,
                     sleep=clock.sleep).runs == 1


def test_dag_names_with_odd_characters_get_a_safe_lock_file(tmp_path: Path) -> None:
    clock = FakeTime("2026-11-28T10:07:00+00:00")

    @task
    def work() -> None:
        pass

    DAG([work], name="a/b c").serve(every=600, state=StateManager(tmp_path / "s.json"),
                                    max_runs=1, clock=clock.clock, sleep=clock.sleep)
    locks = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".lock"))
    assert len(locks) == 1 and locks[0].startswith("s.json.a_b_c-")


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({}, FlowkitError, "exactly one schedule"),
        ({"cron": "@daily", "every": 60}, FlowkitError, "exactly one schedule"),
        ({"cron": "0 0 * *"}, CronError, "expected 5 fields"),
        ({"cron": "@daily", "tz": "Nowhere/City"}, CronError, "unknown time zone"),
        ({"every": 0}, FlowkitError, "every=0"),
        ({"every": -5}, FlowkitError, "every=-5"),
        ({"every": "10m"}, FlowkitError, "as seconds"),
        ({"every": True}, FlowkitError, "as seconds"),
        ({"every": 60, "max_runs": 0}, FlowkitError, "max_runs must be a positive integer"),
        ({"every": 60, "params": 5}, FlowkitError, "params must be a mapping or a function"),
        ({"every": 60, "params": {"interval_end": 1}}, FlowkitError, "serve sets them"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], words: str) -> None:
    seen: list[Any] = []
    with pytest.raises(error, match=words):
        _report(seen).serve(**kwargs)
    assert seen == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800),
     ("1h30m", 5400), ("500ms", 0.5), ("90", 90), ("1.5h", 5400), (" 10M ", 600)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "m10", "10m5", "ten minutes", "1h 30m"])
def test_parse_duration_errors(text: str) -> None:
    with pytest.raises(FlowkitError, match="is not a duration"):
        parse_duration(text)


def test_every_is_aligned_on_the_epoch() -> None:
    every = Every(600, tz="Europe/Berlin")
    at = dt.datetime(2026, 11, 28, 10, 7, 30, tzinfo=UTC)
    assert every.next(at).isoformat() == "2026-11-28T11:10:00+01:00"
    assert every.previous(at).isoformat() == "2026-11-28T11:00:00+01:00"
    assert every.previous(dt.datetime(2026, 11, 28, 10, 10, tzinfo=UTC)) == dt.datetime(
        2026, 11, 28, 10, 0, tzinfo=UTC
    )
    assert Every(dt.timedelta(minutes=5)).next(dt.datetime(2026, 11, 28, 10, 0)) == (
        dt.datetime(2026, 11, 28, 10, 5, tzinfo=UTC)
    )
    assert repr(Every(600)) == "Every(600)"


# --- the command line ---------------------------------------------------------------------------

HOURLY = """
    import datetime as dt
    from flowkit import task

    @task
    def report(interval_start: dt.datetime, interval_end: dt.datetime) -> str:
        return f"{interval_start:%H:%M:%S}-{interval_end:%H:%M:%S}"
"""


def _flow(tmp_path: Path, body: str = HOURLY) -> str:
    path = tmp_path / "hourly.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return str(path)


def test_cli_serve_max_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", _flow(tmp_path), "--every", "500ms", "--max-runs", "2", "--state",
                 str(tmp_path / "s.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("interval_start=") and ": success in " in line
               for line in lines[:2])
    assert lines[2] == "served 2 run(s), 0 failed; stopped by max_runs"


def test_cli_serve_failing_runs_exit_1_with_max_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = """
        from flowkit import task

        @task
        def boom() -> None:
            raise RuntimeError("down")
    """
    code = main(["serve", _flow(tmp_path, body), "--every", "1h", "--max-runs", "1", "--state",
                 str(tmp_path / "s.json"), "--log-level", "CRITICAL"])
    out, _ = capsys.readouterr()
    assert code == 1
    assert ": failed in " in out and "RuntimeError: down" in out


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--every", "soon"], "'soon' is not a duration"),
        (["--cron", "0 0 * * 9"], "day of week field '9'"),
        (["--cron", "@daily", "--tz", "Mars/Base"], "unknown time zone"),
        (["--cron", "@daily", "--every", "1h"], "not allowed with argument"),
        ([], "one of the arguments --cron --every is required"),
    ],
)
def test_cli_serve_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    code = main(["serve", _flow(tmp_path), "--state", str(tmp_path / "s.json"), *extra])
    assert code == 2
    assert words in capsys.readouterr().err


def test_cli_serve_across_processes_refuses_then_stops_on_sigterm(tmp_path: Path) -> None:
    flow, state = _flow(tmp_path), str(tmp_path / "s.json")
    command = [sys.executable, "-m", "flowkit", "serve", flow, "--every", "1h", "--state", state]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        line = first.stdout.readline()  # the first run (the latest interval) is done
        assert ": success in " in line
        second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 2
        assert f"already being served on this state by process {first.pid}" in second.stderr
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:  # pragma: no cover - only when the test fails
            first.kill()
    assert first.returncode == 0, err
    assert out.strip() == "served 1 run(s), 0 failed; stopped by SIGTERM"


# --- where it left off: the run history ---------------------------------------------------------


def test_after_downtime_only_the_latest_interval_runs(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    seen: list[tuple[dt.datetime, dt.datetime]] = []
    _report(seen).serve(every=600, max_runs=2, state=StateManager(path), clock=clock.clock,
                        sleep=clock.sleep)
    assert _hm(seen) == ["09:50-10:00", "10:00-10:10"]
    clock.advance(45 * 60)  # down from 10:10 to 10:55
    seen.clear()
    _report(seen).serve(every=600, max_runs=2, state=StateManager(path), clock=clock.clock,
                        sleep=clock.sleep)
    assert _hm(seen) == ["10:40-10:50", "10:50-11:00"]


def test_after_downtime_catchup_runs_every_missed_interval(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    seen: list[tuple[dt.datetime, dt.datetime]] = []
    _report(seen).serve(every=600, max_runs=1, state=StateManager(path), clock=clock.clock,
                        sleep=clock.sleep)
    clock.advance(35 * 60)  # down from 10:07 to 10:42
    seen.clear()
    result = _report(seen).serve(every=600, catchup=True, max_runs=4, state=StateManager(path),
                                 clock=clock.clock, sleep=clock.sleep)
    assert _hm(seen) == ["10:00-10:10", "10:10-10:20", "10:20-10:30", "10:30-10:40"]
    assert clock.sleeps == []
    runs = StateManager(path).runs("report")
    assert [r.params["interval_end"] for r in runs][:2] == [
        "2026-11-28T10:40:00+00:00", "2026-11-28T10:30:00+00:00"
    ]
    assert all(r.status == "success" for r in runs) and result.runs == 4


def test_a_restart_within_an_interval_does_not_run_it_again(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    seen: list[tuple[dt.datetime, dt.datetime]] = []
    _report(seen).serve(every=600, max_runs=1, state=StateManager(path), clock=clock.clock,
                        sleep=clock.sleep)
    _report(seen).serve(every=600, max_runs=1, state=StateManager(path), clock=clock.clock,
                        sleep=clock.sleep)
    assert _hm(seen) == ["09:50-10:00", "10:00-10:10"]
    assert clock.sleeps == [180.0]  # the second server waited for 10:10


def test_a_second_signal_leaves_an_interrupted_run_that_the_next_serve_resumes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    clock = FakeTime("2026-11-28T10:07:00+00:00")
    calls: list[str] = []
    signals = [True]

    @task
    def first() -> str:
        calls.append("first")
        if signals[0]:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
        return "kept"

    @task
    def second(x: str, interval_end: dt.datetime) -> str:
        calls.append("second")
        if signals[0]:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
        return f"{x} {interval_end:%H:%M}"

    first >> second
    dag = DAG([second], name="two")
    result = dag.serve(every=600, executor="sync", state=StateManager(path), clock=clock.clock,
                       sleep=clock.sleep)
    assert result.results[0].status == "interrupted" and calls == ["first", "second"]
    (record,) = StateManager(path).runs("two")
    assert record.status == "interrupted" and record.tasks["first"].status == "success"
    # The next serve resumes that interval first (first is restored), then goes on.
    signals[0] = False
    calls.clear()
    again = dag.serve(every=600, executor="sync", state=StateManager(path), max_runs=2,
                      clock=clock.clock, sleep=clock.sleep)
    resumed, following = again.results
    assert resumed.resumed and resumed.status == "success" and resumed.run is not None
    assert resumed.run["second"] == "kept 10:00"
    assert resumed.run.states["first"].status.name == "CACHED"
    assert following.run is not None and following.run["second"] == "kept 10:10"
    assert calls == ["second", "first", "second"]
