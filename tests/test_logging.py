"""Structured logging: lifecycle events, their fields and levels, text and JSON
output, configuration, and logging from inside tasks."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowkit
from flowkit.logging import EVENTS, JsonFormatter, LoggingHook, TextFormatter

ROOT = Path(__file__).resolve().parent.parent


# --- fixtures and helpers -------------------------------------------------------------


@pytest.fixture(autouse=True)
def _reset_flowkit_logging() -> Iterator[None]:
    """Each test leaves the "flowkit" loggers as it found them."""
    names = ("flowkit", "flowkit.run", "flowkit.task", "flowkit.hooks")
    saved = {
        name: (list(lg.handlers), lg.level, lg.propagate)
        for name in names
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


class Recorder(logging.Handler):
    """Keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str | None = None) -> list[logging.LogRecord]:
        return [
            r
            for r in self.records
            if getattr(r, "event", None) and (name is None or r.event == name)
        ]

    def names(self) -> list[str]:
        return [r.event for r in self.events()]


@pytest.fixture
def recorder() -> Recorder:
    """Every flowkit record at DEBUG and above."""
    handler = Recorder()
    logger = logging.getLogger("flowkit")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler


class FakeTime:
    """A clock that only moves when the scheduler sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]


def one(a: int) -> int:
    return a + 1


def produce() -> int:
    return 1


def noisy_root() -> int:
    flowkit.get_run_logger().info("working " + "x" * 200, extra={"n": 0})
    return 1


def noisy(n: int) -> int:
    flowkit.get_run_logger().info("working on %d " + "x" * 200, n, extra={"n": n})
    return n + 1


def bound_fields() -> dict[str, Any]:
    return dict(flowkit.get_run_logger().process("m", {})[1].get("extra", {}))


def fails() -> None:
    raise ValueError("boom")


# --- events and their fields ----------------------------------------------------------


def test_events_of_a_successful_run(executor: str, recorder: Recorder) -> None:
    a = flowkit.Task(produce, name="a")
    b = flowkit.Task(one, name="b")
    a >> b
    result = flowkit.DAG(name="pipe").run(executor=executor)

    names = recorder.names()
    assert names[0] == "dag.start" and names[-1] == "dag.end"
    assert names.count("task.start") == 2 and names.count("task.success") == 2
    assert names.count("dag.progress") == 2
    for record in recorder.events():
        assert record.dag == "pipe"
        assert record.run_id == result.run_id
        assert record.event in EVENTS
        assert record.name == "flowkit.run"
    start = recorder.events("dag.start")[0]
    assert start.levelno == logging.INFO and start.total == 2
    for record in recorder.events("task.start"):
        assert record.levelno == logging.DEBUG and record.attempt == 1
    for record in recorder.events("task.success"):
        assert record.levelno == logging.INFO
        assert record.task in ("a", "b") and record.attempt == 1
        assert record.duration_s >= 0
    progress = recorder.events("dag.progress")
    assert [(p.done, p.total, p.percent) for p in progress] == [(1, 2, 50.0), (2, 2, 100.0)]
    assert all(p.levelno == logging.DEBUG for p in progress)
    assert progress[-1].eta_s == 0.0
    end = recorder.events("dag.end")[0]
    assert end.levelno == logging.INFO
    assert end.counts == {"success": 2} and end.ok is True
    assert end.duration_s >= 0 and end.done == end.total == 2


def test_retry_and_failure_records(recorder: Recorder) -> None:
    @flowkit.task(retries=2, retry_delay=0.5, backoff=2.0)
    def flaky() -> None:
        raise ConnectionError("down")

    fake = FakeTime()
    with pytest.raises(flowkit.TaskExecutionError):
        flowkit.DAG(name="r").run(executor="sync", clock=fake.clock, sleep=fake.sleep)

    retries = recorder.events("task.retry")
    assert [(r.attempt, r.delay_s) for r in retries] == [(1, 0.5), (2, 1.0)]
    for r in retries:
        assert r.levelno == logging.WARNING and r.task == "flaky"
        assert r.error == "ConnectionError: down"
        assert r.exc_info is None  # the traceback is kept for the final failure
    (failure,) = recorder.events("task.failure")
    assert failure.levelno == logging.ERROR
    assert failure.attempt == 3 and failure.task == "flaky"
    assert failure.error == "ConnectionError: down"
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], ConnectionError)
    assert recorder.events("dag.end")[0].counts == {"failed": 1}


def test_failure_on_a_process_keeps_the_exception(recorder: Recorder) -> None:
    flowkit.Task(fails, name="fails")
    with pytest.raises(flowkit.TaskExecutionError):
        flowkit.DAG().run(executor="process", max_workers=1)
    (failure,) = recorder.events("task.failure")
    assert isinstance(failure.exc_info[1], ValueError)


def test_skip_records_carry_status_cause_and_reason(recorder: Recorder) -> None:
    @flowkit.task(when=lambda: False)
    def gated() -> int:
        return 1

    @flowkit.task
    def after_gate(x: int) -> int:
        return x

    @flowkit.task
    def broken() -> None:
        raise ValueError("x")

    @flowkit.task
    def after_broken(x: None) -> None:
        return None

    gated >> after_gate
    broken >> after_broken
    with pytest.raises(flowkit.TaskExecutionError):
        flowkit.DAG().run(executor="sync", fail_fast=False)

    skips = {r.task: r for r in recorder.events("task.skip")}
    assert skips["gated"].status == "skipped" and skips["gated"].cause == "gated"
    assert "when=" in skips["gated"].reason
    assert skips["after_gate"].status == "skipped" and skips["after_gate"].cause == "gated"
    assert skips["after_broken"].status == "upstream_failed"
    assert skips["after_broken"].cause == "broken"
    for record in skips.values():
        assert record.levelno == logging.INFO
        assert not hasattr(record, "attempt")  # it never ran


def test_cancelled_tasks_are_logged_as_skips(recorder: Recorder) -> None:
    @flowkit.task
    def first() -> None:
        raise ValueError("x")

    @flowkit.task
    def second() -> int:
        return 2

    first >> second
    flowkit.Task(produce, name="independent")
    with pytest.raises(flowkit.TaskExecutionError):
        flowkit.DAG().run(executor="sync", fail_fast=True)
    statuses = {r.task: r.status for r in recorder.events("task.skip")}
    assert statuses["second"] == "upstream_failed"
    assert set(statuses.values()) <= {"upstream_failed", "cancelled"}
    # Every finished task, however it ended, is followed by a progress record.
    progress = recorder.events("dag.progress")
    assert progress[-1].done == progress[-1].total == 3


def test_cached_record(recorder: Recorder) -> None:
    @flowkit.task(cache_ttl=math.inf)
    def slow() -> int:
        return 7

    dag = flowkit.DAG(name="c")
    dag.run(executor="sync")
    recorder.records.clear()
    result = dag.run(executor="sync")
    assert result.states["slow"].status is flowkit.Status.CACHED
    (cached,) = recorder.events("task.cached")
    assert cached.levelno == logging.INFO and cached.task == "slow" and cached.reason
    assert recorder.events("dag.end")[0].counts == {"cached": 1}


# --- configuration ----------------------------------------------------------------------


def test_level_filtering() -> None:
    flowkit.Task(produce, name="a")
    stream = io.StringIO()
    flowkit.configure_logging("INFO", json=True, stream=stream)
    flowkit.DAG().run(executor="sync")
    events = [line["event"] for line in json_lines(stream.getvalue())]
    assert events == ["dag.start", "task.success", "dag.end"]

    stream = io.StringIO()
    flowkit.configure_logging(logging.WARNING, json=True, stream=stream)
    flowkit.DAG().run(executor="sync")
    assert stream.getvalue() == ""

    stream = io.StringIO()
    flowkit.configure_logging("debug", json=True, stream=stream)
    flowkit.DAG().run(executor="sync")
    events = [line["event"] for line in json_lines(stream.getvalue())]
    assert events == ["dag.start", "task.start", "task.success", "dag.progress", "dag.end"]


def test_configure_twice_keeps_one_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    flowkit.configure_logging(stream=first)
    handler = flowkit.configure_logging("DEBUG", json=True, stream=second)
    logger = logging.getLogger("flowkit")
    ours = [h for h in logger.handlers if getattr(h, "_flowkit_handler", False)]
    assert ours == [handler]
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert logger.level == logging.DEBUG and logger.propagate is False

    flowkit.Task(produce, name="a")
    flowkit.DAG().run(executor="sync")
    assert first.getvalue() == ""
    assert len(json_lines(second.getvalue())) == 5  # each event once


@pytest.mark.parametrize("level", ["LOUD", "", -1, True, 2.5, None])
def test_invalid_level_lists_the_valid_ones(level: Any) -> None:
    with pytest.raises(ValueError, match="invalid logging level") as info:
        flowkit.configure_logging(level)
    for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        assert name in str(info.value)
    assert not any(
        getattr(h, "_flowkit_handler", False) for h in logging.getLogger("flowkit").handlers
    )


def test_default_stream_is_stderr_at_write_time(capsys: pytest.CaptureFixture[str]) -> None:
    flowkit.configure_logging()
    flowkit.Task(produce, name="a")
    flowkit.DAG(name="err").run(executor="sync")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "dag.start" in captured.err and "task.success" in captured.err


def test_without_configuration_records_reach_the_applications_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="flowkit")
    flowkit.Task(produce, name="a")
    flowkit.DAG().run(executor="sync")
    assert [getattr(r, "event", None) for r in caplog.records] == [
        "dag.start",
        "task.success",
        "dag.end",
    ]


def test_nothing_is_printed_without_configuration() -> None:
    code = textwrap.dedent(
        """
        import flowkit

        @flowkit.task(retries=1)
        def bad():
            flowkit.get_run_logger().warning("about to fail")
            raise ValueError("boom")

        @flowkit.task
        def fine():
            return 1

        class Broken:
            def on_task_start(self, run, state):
                raise RuntimeError("broken hook")

        for executor in ("sync", "thread"):
            try:
                flowkit.DAG(name="quiet").run(executor=executor, hooks=[Broken()])
            except flowkit.TaskExecutionError:
                pass
            else:
                raise SystemExit("the run should have failed")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""


# --- formats ------------------------------------------------------------------------------


def test_text_format_is_one_readable_line_per_event() -> None:
    a = flowkit.Task(produce, name="extract")
    b = flowkit.Task(one, name="transform")
    a >> b
    stream = io.StringIO()
    flowkit.configure_logging("DEBUG", stream=stream)
    result = flowkit.DAG(name="etl").run(executor="sync")
    lines = stream.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"
    assert re.fullmatch(
        stamp + rf" INFO    dag\.start     dag=etl run_id={result.run_id} executor=sync total=2",
        lines[0],
    )
    assert any(
        re.fullmatch(
            stamp + r" INFO    task\.success  task=transform attempt=1 duration=\d+\.\d{3}s", line
        )
        for line in lines
    )
    assert any(
        re.fullmatch(stamp + r" DEBUG   dag\.progress  done=2/2 percent=100\.0% eta=0\.000s", line)
        for line in lines
    )
    assert re.fullmatch(
        stamp + rf" INFO    dag\.end       dag=etl run_id={result.run_id} ok=true "
        r"duration=\d+\.\d{3}s done=2/2 success=2",
        lines[-1],
    )


def test_text_format_of_a_failure_has_the_traceback() -> None:
    flowkit.Task(fails, name="fails")
    stream = io.StringIO()
    flowkit.configure_logging("INFO", stream=stream)
    with pytest.raises(flowkit.TaskExecutionError):
        flowkit.DAG().run(executor="sync")
    text = stream.getvalue()
    assert "ERROR   task.failure  task=fails attempt=1 duration=" in text
    assert 'error="ValueError: boom"' in text
    assert "Traceback (most recent call last)" in text and 'raise ValueError("boom")' in text


def test_json_lines_have_the_documented_fields() -> None:
    a = flowkit.Task(produce, name="a")
    b = flowkit.Task(one, name="b")
    a >> b
    stream = io.StringIO()
    flowkit.configure_logging("DEBUG", json=True, stream=stream)
    result = flowkit.DAG(name="j").run(executor="thread")
    lines = json_lines(stream.getvalue())
    for line in lines:
        assert {"ts", "level", "event", "message", "dag", "run_id"} <= line.keys()
        assert line["dag"] == "j" and line["run_id"] == result.run_id
        ts = dt.datetime.fromisoformat(line["ts"])
        assert ts.utcoffset() == dt.timedelta(0)
    success = [line for line in lines if line["event"] == "task.success"]
    assert {line["task"] for line in success} == {"a", "b"}
    assert all(line["attempt"] == 1 and line["duration_s"] >= 0 for line in success)
    assert all(line["level"] == "INFO" for line in success)
    progress = [line for line in lines if line["event"] == "dag.progress"]
    assert progress[-1]["done"] == progress[-1]["total"] == 2
    assert progress[-1]["percent"] == 100.0
    assert lines[-1]["event"] == "dag.end" and lines[-1]["counts"] == {"success": 2}


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("msg", "args", "extra"),
    [
        ("%d rows", ("many",), {}),
        ("%s and %s", ("one",), {}),
        ("obj %r", (Unrepresentable(),), {}),
        ("plain", (), {"weird": Unrepresentable()}),
        ("plain", (), {"nan": math.nan, "inf": math.inf}),
        ("plain", (), {"data": {(1, 2): "tuple key", "set": {1}}}),
        ("plain", (), {"raw": b"\xff\x00", "when": dt.date(2026, 1, 1)}),
        ("multi\nline\tmessage \u2603", (), {}),
    ],
)
def test_json_formatter_never_raises_and_stays_one_line(
    msg: str, args: tuple[Any, ...], extra: dict[str, Any]
) -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    record = logging.LogRecord("flowkit.task", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra, cycle=cyclic)
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert "\n" not in line or isinstance(formatter, TextFormatter)
    (parsed,) = json_lines(JsonFormatter().format(record))
    assert parsed["level"] == "INFO" and isinstance(parsed["message"], str)


def test_json_extras_never_overwrite_the_reserved_fields(recorder: Recorder) -> None:
    flowkit.get_run_logger().info("hi", extra={"level": "mine", "ts": 0, "other": "\u2603"})
    (parsed,) = json_lines(JsonFormatter().format(recorder.records[0]))
    assert parsed["level"] == "INFO" and parsed["ts"] != 0 and parsed["other"] == "\u2603"
    assert JsonFormatter().format(recorder.records[0]).isascii()


def test_json_lines_never_interleave_on_16_threads() -> None:
    tasks = [flowkit.Task(noisy_root, name=f"t{i}") for i in range(100)]
    tasks += [flowkit.Task(noisy, name=f"t{i}") for i in range(100, 200)]
    for i in range(100, 200):
        tasks[i - 100] >> tasks[i]
    stream = io.StringIO()
    flowkit.configure_logging("DEBUG", json=True, stream=stream)
    flowkit.DAG(name="wide").run(executor="thread", max_workers=16)
    lines = json_lines(stream.getvalue())
    # 200 x (start, task log, success, progress) + dag.start + dag.end
    assert len(lines) == 200 * 4 + 2
    from_tasks = [line for line in lines if line["logger"] == "flowkit.task"]
    assert sorted(line["n"] for line in from_tasks) == [0] * 100 + [1] * 100
    assert {line["task"] for line in from_tasks} == {f"t{i}" for i in range(200)}


def test_json_lines_with_a_process_pool() -> None:
    for i in range(20):
        flowkit.Task(produce, name=f"p{i}")
    stream = io.StringIO()
    flowkit.configure_logging("DEBUG", json=True, stream=stream)
    flowkit.DAG(name="procs").run(executor="process", max_workers=2)
    lines = json_lines(stream.getvalue())
    assert [line["event"] for line in lines].count("task.success") == 20
    assert len(lines) == 20 * 3 + 2


# --- the hook itself ---------------------------------------------------------------------


def test_logging_hook_checks_the_level_before_anything_else() -> None:
    logger = logging.getLogger("flowkit.run")
    logger.setLevel(logging.CRITICAL)
    hook = LoggingHook()
    assert not hasattr(hook, "__dict__")
    # With every level disabled, no method even looks at its arguments.
    hook.on_dag_start(None)  # type: ignore[arg-type]
    hook.on_task_start(None, None)  # type: ignore[arg-type]
    hook.on_task_retry(None, None, None, 0.0)  # type: ignore[arg-type]
    hook.on_task_success(None, None)  # type: ignore[arg-type]
    hook.on_task_failure(None, None)  # type: ignore[arg-type]
    hook.on_task_skip(None, None)  # type: ignore[arg-type]
    hook.on_task_cached(None, None)  # type: ignore[arg-type]
    hook.on_dag_end(None, None)  # type: ignore[arg-type]


def test_logging_hook_runs_after_state_and_before_user_hooks(recorder: Recorder) -> None:
    seen: list[int] = []

    class Counter:
        def on_task_success(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
            seen.append(len(recorder.events("task.success")))

    flowkit.Task(produce, name="a")
    flowkit.DAG().run(executor="sync", hooks=[Counter()])
    assert seen == [1]


# --- logging from inside tasks -------------------------------------------------------------


@pytest.mark.parametrize("executor_name", ["sync", "thread"])
def test_get_run_logger_fields(executor_name: str, recorder: Recorder) -> None:
    @flowkit.task
    def talk() -> None:
        flowkit.get_run_logger().info("hello %s", "world", extra={"rows": 3})

    result = flowkit.DAG(name="talky").run(executor=executor_name)
    (record,) = [r for r in recorder.records if r.name == "flowkit.task"]
    assert record.getMessage() == "hello world"
    assert (record.task, record.run_id, record.dag, record.rows) == (
        "talk",
        result.run_id,
        "talky",
        3,
    )


def test_get_run_logger_on_a_process_has_the_task_fields() -> None:
    flowkit.Task(bound_fields, name="remote")
    result = flowkit.DAG(name="procs").run(executor="process", max_workers=1)
    assert result["remote"] == {"task": "remote", "run_id": result.run_id, "dag": "procs"}


def test_get_run_logger_outside_a_task(recorder: Recorder) -> None:
    log = flowkit.get_run_logger()
    log.warning("no task here", extra={"k": 1})
    (record,) = recorder.records
    assert record.name == "flowkit.task" and record.k == 1
    assert not hasattr(record, "task") and not hasattr(record, "run_id")


def test_get_run_logger_stays_bound_in_threads_a_task_starts(recorder: Recorder) -> None:
    @flowkit.task
    def spawner() -> None:
        log = flowkit.get_run_logger()
        worker = threading.Thread(target=log.info, args=("from a thread",))
        worker.start()
        worker.join()

    flowkit.DAG().run(executor="thread")
    (record,) = [r for r in recorder.records if r.name == "flowkit.task"]
    assert record.task == "spawner"


def test_configure_logging_shows_task_records_in_text() -> None:
    @flowkit.task
    def talk() -> None:
        flowkit.get_run_logger().info("loaded %d rows", 3)

    stream = io.StringIO()
    flowkit.configure_logging("INFO", stream=stream)
    flowkit.DAG().run(executor="sync")
    (line,) = [ln for ln in stream.getvalue().splitlines() if "flowkit.task" in ln]
    assert line.endswith("INFO    flowkit.task  loaded 3 rows  task=talk")


def test_formatters_never_raise_on_odd_records() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    for as_json in (True, False):
        buffer = io.StringIO()
        flowkit.configure_logging("INFO", json=as_json, stream=buffer)
        logger = logging.getLogger("flowkit.test")
        logger.info("numbered", extra={1: "not a name"})
        logger.info("odd event", extra={"event": Unprintable()})
        lines = buffer.getvalue().splitlines()
        assert len(lines) == 2
        if as_json:
            assert all(isinstance(json.loads(line), dict) for line in lines)
