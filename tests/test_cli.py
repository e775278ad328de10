"""The flowkit command (in-process through main, and once as python -m flowkit) and
the progress bar."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flowkit
from flowkit.cli import main
from flowkit.progress import ProgressBar

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "etl.py")


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _workflow(tmp_path: Path, body: str, name: str = "flow.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return str(path)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


FAILING = """
    from flowkit import task

    @task
    def first() -> int:
        return 1

    @task
    def second(x: int) -> int:
        raise RuntimeError("boom")

    @task
    def third(x: int) -> int:
        return x

    first >> second >> third
"""


# --- run -------------------------------------------------------------------------------


def test_run_the_example_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["run", EXAMPLE], capsys)
    assert code == 0, err
    assert out.splitlines()[0].split() == ["task", "status", "attempts", "duration", "cause"]
    assert "fetch_rates         SUCCESS  2" in out
    assert "alert_on_drop       SKIPPED" in out
    assert "of 'etl': ok" in out
    assert "results:" in out and "publish_report  '19 rows loaded" in out
    # WARNING is the default level: the retry shows on stderr, nothing else does.
    assert "task.retry" in err and "fetch_rates" in err and "\r" not in err
    assert "etl" not in sys.modules  # main leaves no trace in the process


def test_run_the_example_with_python_dash_m() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "examples/etl.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "of 'etl': ok" in proc.stdout and "publish_report" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_run_on_the_process_executor_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _workflow(
        tmp_path,
        """
        import os
        from flowkit import task

        @task
        def where() -> int:
            return os.getpid()

        @task
        def echo(pid: int) -> int:
            return pid

        where >> echo
        """,
    )
    code, out, err = _run(["run", path, "--executor", "process", "--workers", "2"], capsys)
    assert code == 0, err
    pid = int(out.split("results:\n  echo")[1].split()[0])
    assert pid != os.getpid()  # the tasks ran in a worker process


def test_a_failed_task_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _workflow(tmp_path, FAILING)
    code, out, err = _run(["run", path, "--executor", "sync", "--log-level", "CRITICAL"], capsys)
    assert code == 1
    assert "second  FAILED" in out and "UPSTREAM_FAILED" in out
    assert "third  (no value: UPSTREAM_FAILED)" in out
    assert err.strip().splitlines() == [
        "flowkit: task 'second' failed after 1 attempt(s): RuntimeError: boom"
    ]
    code, _, err = _run(["run", path, "--log-level", "critical", "--debug"], capsys)
    assert code == 1 and "Traceback" in err and 'raise RuntimeError("boom")' in err


def test_syntax_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _workflow(tmp_path, "from flowkit import task\n\ndef broken(:\n    pass\n")
    code, out, err = _run(["run", path], capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"flowkit: error: {path}:3: ")
    code, _, err = _run(["run", path, "--debug"], capsys)
    assert code == 2 and "Traceback" in err and "SyntaxError" in err


def test_import_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _workflow(tmp_path, "import flowkit\n\nvalue = 1\nnot_defined_anywhere\n")
    code, _, err = _run(["plan", path], capsys)
    assert code == 2
    assert err.splitlines() == [
        f"flowkit: error: {path}:4: NameError: name 'not_defined_anywhere' is not defined "
        "(--debug shows the traceback)"
    ]


def test_missing_file_and_bad_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["run", str(tmp_path / "nope.py")], capsys)
    assert code == 2 and err == f"flowkit: error: no such workflow file: {tmp_path / 'nope.py'}\n"
    code, _, err = _run(["run", f"{EXAMPLE}:nothing"], capsys)
    assert code == 2 and "defines no 'nothing'" in err and "DAGs: dag" in err
    code, _, err = _run(["run", f"{EXAMPLE}:N_ORDERS"], capsys)
    assert code == 2 and "is a int, not a DAG or a task" in err
    empty = _workflow(tmp_path, "x = 1\n", name="empty.py")
    code, _, err = _run(["run", empty], capsys)
    assert code == 2 and "defines no DAG and no task" in err
    code, _, err = _run(["run", str(tmp_path)], capsys)
    assert code == 2 and "is not a file" in err
    clash = _workflow(tmp_path, "x = 1\n", name="json.py")
    code, _, err = _run(["run", clash], capsys)
    assert code == 2 and "module name 'json' is already taken" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["run", EXAMPLE, "--workers", "0"]) == 2
    assert main(["run", EXAMPLE, "--executor", "nope"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    code, _, err = _run(["run", EXAMPLE, "--resume"], capsys)
    assert code == 2 and "--resume needs --state" in err
    code, _, err = _run(["run", EXAMPLE, "--address", "tcp://x:1"], capsys)
    assert code == 2 and "--executor dask" in err
    code, _, err = _run(["run", EXAMPLE, "--targets", "no_such_task"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "no_such_task" in err


def test_selecting_a_task_or_the_whole_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(["run", f"{EXAMPLE}:to_eur", "--no-progress"], capsys)
    assert code == 0
    assert "to_eur" in out and "validate" not in out and "results:\n  to_eur" in out
    path = _workflow(
        tmp_path,
        """
        from flowkit import DAG, task

        @task
        def a() -> int:
            return 1

        @task
        def b() -> int:
            return 2

        one = DAG([a], name="one")
        two = DAG([b], name="two")
        """,
    )
    code, out, _ = _run(["run", f"{path}:two"], capsys)
    assert code == 0 and "of 'two': ok" in out and "a  1" not in out
    code, out, _ = _run(["run", f"{path}:b"], capsys)  # a task: it and its upstream
    assert code == 0 and "of 'flow': ok" in out and "b  2" in out


@pytest.mark.parametrize("command", [["run"], ["graph"], ["plan"]])
def test_a_file_with_several_dags_needs_a_name(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _workflow(
        tmp_path,
        """
        from flowkit import DAG, task

        calls = []

        @task
        def b() -> int:
            calls.append("b")
            return 2

        @task
        def c() -> int:
            calls.append("c")
            return 3

        hourly = DAG([b], name="hourly")
        nightly = DAG([c], name="nightly")
        also_hourly = hourly  # one DAG under two names is listed once
        """,
    )
    code, out, err = _run([*command, path], capsys)
    assert code == 2 and out == ""
    assert f"defines 2 DAGs; say which one to use: {path}:hourly, {path}:nightly" in err
    code, out, err = _run([*command, f"{path}:nightly"], capsys)
    assert code == 0, err
    assert set(re.findall(r"\b[bc]\b", out)) == {"c"}  # the task of nightly alone


def test_a_file_with_one_dag_or_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = textwrap.dedent("""
        from flowkit import DAG, task

        @task
        def a() -> int:
            return 1

        @task
        def b() -> int:
            return 2
        """)
    path = _workflow(tmp_path, body + "\nonly = DAG([a], name='only')\n", "one.py")
    code, out, _ = _run(["run", path], capsys)
    assert code == 0 and "of 'only': ok" in out and "b  2" not in out
    path = _workflow(tmp_path, body, "none.py")
    code, out, _ = _run(["run", path], capsys)  # no DAG: every task the file defines
    assert code == 0 and "of 'none': ok" in out and "a  1" in out and "b  2" in out


def test_targets_print_the_targets_results(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        ["run", EXAMPLE, "--targets", "top_customers", "--targets", "daily_revenue,to_eur"], capsys
    )
    assert code == 0
    results = out.split("results of the targets:\n")[1].splitlines()
    assert [line.split()[0] for line in results] == ["top_customers", "daily_revenue", "to_eur"]
    assert "load" not in out


def test_no_fail_fast_lets_other_branches_go_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _workflow(
        tmp_path,
        """
        from flowkit import task

        @task
        def bad() -> None:
            raise ValueError("no")

        @task
        def good() -> int:
            return 5
        """,
    )
    code, out, _ = _run(["run", path, "--executor", "sync", "--no-fail-fast"], capsys)
    assert code == 1 and "good  SUCCESS" in out
    code, out, _ = _run(["run", path, "--executor", "sync", "--fail-fast"], capsys)
    assert code == 1 and "good  CANCELLED" in out


def test_keyboard_interrupt_exits_130(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _workflow(
        tmp_path,
        """
        from flowkit import task

        @task
        def first() -> int:
            return 1

        @task
        def interrupted(x: int) -> None:
            raise KeyboardInterrupt

        first >> interrupted
        """,
    )
    report = tmp_path / "interrupted.html"
    code, out, err = _run(["run", path, "--executor", "sync", "--report", str(report)], capsys)
    assert code == 130
    assert err.splitlines()[-1] == "flowkit: interrupted"
    assert "interrupted" in out and "first" in out  # the summary of what happened
    assert report.exists()
    raising = _workflow(tmp_path, "raise KeyboardInterrupt\n", name="early.py")
    code, _, err = _run(["run", raising], capsys)
    assert code == 130 and err == "flowkit: interrupted\n"


def test_json_logs_are_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["run", EXAMPLE, "--log-level", "info", "--json-logs"], capsys)
    assert code == 0
    records = [json.loads(line) for line in err.splitlines()]
    events = [r.get("event") for r in records]
    assert events[0] == "dag.start" and events[-1] == "dag.end"
    assert "task.retry" in events and "task.success" in events
    assert all(r["run_id"] == records[0]["run_id"] for r in records if "run_id" in r)


def test_logging_is_restored_after_main(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("flowkit")
    before = (list(logger.handlers), logger.level, logger.propagate)
    assert main(["run", EXAMPLE, "--log-level", "DEBUG"]) == 0
    capsys.readouterr()
    assert (list(logger.handlers), logger.level, logger.propagate) == before


def test_report_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "run.html"
    code, out, _ = _run(["run", EXAMPLE, "--report", str(report)], capsys)
    assert code == 0 and f"report: {report}" in out
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "publish_report" in text
    code, _, err = _run(["run", EXAMPLE, "--report", str(tmp_path / "no" / "dir.html")], capsys)
    assert code == 2 and "cannot write the report" in err


COUNTING = """
    from pathlib import Path

    from flowkit import task

    @task
    def work() -> int:
        Path(__file__).with_name("ran").touch()
        return 1
"""


@pytest.mark.parametrize(
    ("option", "where", "message"),
    [
        ("--report", "missing/run.html", "its directory .*missing does not exist"),
        ("--report", ".", "is a directory"),
        ("--report", "fifo", "not a regular file"),
        ("--state", "missing/state.json", "cannot open state file"),
        ("--state", ".", "state"),
    ],
)
def test_output_paths_are_checked_before_anything_runs(
    option: str, where: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _workflow(tmp_path, COUNTING)
    os.mkfifo(tmp_path / "fifo")
    code, out, err = _run(["run", path, option, str(tmp_path / where)], capsys)
    assert code == 2 and out == ""
    assert re.search(message, err), err
    assert not (tmp_path / "ran").exists()  # the check came first
    assert not (tmp_path / "missing").exists()


def test_an_existing_report_file_passes_the_check_and_is_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "run.html"
    report.write_text("old", encoding="utf-8")
    code, _, err = _run(["run", _workflow(tmp_path, COUNTING), "--report", str(report)], capsys)
    assert code == 0, err
    assert "work" in report.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tmp")] == []


# --- the progress bar --------------------------------------------------------------------


def test_progress_bar_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["run", EXAMPLE]) == 0
    drawn = terminal.getvalue()
    assert "\r" in drawn and "\x1b[K" in drawn
    assert "etl [" in drawn and "/11" in drawn
    assert drawn.endswith("\r\x1b[K")  # erased at the end
    # The retry warning never shares a line with the bar: the bar is erased before it.
    warning = drawn.index("WARNING")
    start = drawn.rindex("\r\x1b[K", 0, warning) + len("\r\x1b[K")
    end = drawn.index("\n", warning) + 1
    log_line = drawn[start:end]
    assert "task.retry" in log_line and "\r" not in log_line and "[###" not in log_line
    assert drawn[end:].startswith("\retl [")  # the bar comes back below the line
    out = capsys.readouterr().out
    assert "\r" not in out and "of 'etl': ok" in out


def test_no_progress_bar_unless_a_terminal_or_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["run", EXAMPLE, "--no-progress"]) == 0
    assert "\r" not in terminal.getvalue()
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    assert main(["run", EXAMPLE]) == 0
    assert "\r" not in plain.getvalue()
    assert main(["run", EXAMPLE, "--progress"]) == 0  # forced on
    assert "\r" in plain.getvalue()
    capsys.readouterr()


def test_progress_bar_rendering_and_throttling() -> None:
    now = [0.0]
    stream = _Terminal()
    bar = ProgressBar(stream, interval=0.1, width=60, clock=lambda: now[0])
    assert bar.enabled
    run = flowkit.RunContext("nightly", "r1", 4, "thread")
    bar.on_dag_start(run)
    try:
        state = flowkit.TaskState(flowkit.Task(lambda: 1, name="a_rather_long_task_name"))
        bar.on_task_start(run, state)  # within the interval: not drawn yet
        assert stream.getvalue().count("\r") == 1
        now[0] = 1.0
        run.done, run.failed = 1, 1
        bar.on_task_failure(run, state)  # failures draw at once
        text = bar.render()
        assert text.startswith("nightly [#####---------------] 1/4  25% | 1 failed")
        assert len(text) <= 59 and text.endswith("…")
    finally:
        bar.on_dag_end(run, None)  # type: ignore[arg-type]
    assert stream.getvalue().endswith("\r\x1b[K")
    assert bar.render() == ""


def test_progress_bar_wrap_keeps_log_lines_whole() -> None:
    stream = _Terminal()
    bar = ProgressBar(stream, width=80)
    run = flowkit.RunContext("dag", "r", 2, "sync")
    bar.on_dag_start(run)
    wrapped = bar.wrap()
    wrapped.write("a log line\n")
    state = flowkit.TaskState(flowkit.Task(lambda: 1, name="next"))
    bar.on_task_start(run, state)  # the next hook call redraws at once, throttle or not
    bar.close()
    text = stream.getvalue()
    line = text.index("a log line\n")
    assert text[:line].endswith("\r\x1b[K")  # the bar was erased first
    assert text[line + len("a log line\n"):].startswith("\rdag [")  # and redrawn below
    assert "running: next" in text
    assert wrapped.isatty()
    off = ProgressBar(io.StringIO())
    assert not off.enabled and off.wrap() is off.stream
    off.on_dag_start(run)
    off.close()
    assert off.stream.getvalue() == ""


# --- graph, plan, state, help --------------------------------------------------------------


def test_graph_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["graph", EXAMPLE], capsys)
    assert code == 0 and out.startswith("flowchart LR") and '["validate"]' in out
    code, out, _ = _run(["graph", EXAMPLE, "--format", "dot"], capsys)
    assert code == 0 and out.startswith('digraph "etl" {') and '[label="load"]' in out


def test_plan_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["plan", EXAMPLE, "--targets", "to_eur"], capsys)
    assert code == 0
    assert out.splitlines()[0] == "DAG 'etl': 4 of 11 task(s) would run, in this order:"
    assert "not run (outside targets)" in out
    order = [line.split(". ")[1] for line in out.splitlines()[1:5]]
    assert order.index("extract_orders") < order.index("clean_orders") < order.index("to_eur")


def test_state_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _workflow(
        tmp_path,
        """
        from flowkit import task

        @task(cache_ttl=3600)
        def numbers() -> list[int]:
            return [1, 2, 3]

        @task(cache_ttl=3600)
        def total(xs: list[int]) -> int:
            return sum(xs)

        numbers >> total
        """,
    )
    state = str(tmp_path / "state.json")
    assert main(["run", path, "--state", state]) == 0
    code, out, _ = _run(["run", path, "--state", state], capsys)
    assert code == 0 and "total    CACHED" in out
    code, out, _ = _run(["state", "list", state], capsys)
    assert code == 0 and out.splitlines()[0].split() == ["task", "key", "age", "expires", "in",
                                                         "size"]
    assert "2 entries in" in out and "numbers" in out
    code, out, _ = _run(["state", "list", state, "--task", "total"], capsys)
    assert "1 entry in" in out
    code, out, _ = _run(["state", "invalidate", state, "--task", "total"], capsys)
    assert code == 0 and out.startswith("invalidated 1 cached result(s) of task 'total'")
    code, out, _ = _run(["state", "clear", state], capsys)
    assert code == 0 and out.startswith("cleared")
    code, out, _ = _run(["state", "list", state], capsys)
    assert "no cached results" in out
    code, _, err = _run(["state", "clear", state, "--task", "x"], capsys)
    assert code == 2 and "invalidate --task" in err
    code, _, err = _run(["state", "list", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "no state file" in err
    (tmp_path / "corrupt.json").write_text("not json at all", encoding="utf-8")
    code, _, err = _run(["state", "list", str(tmp_path / "corrupt.json")], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "corrupt.json" in err


@pytest.mark.parametrize("store", ["state.json", "state.sqlite"])
def test_state_task_option_covers_a_maps_items_and_refuses_unknown_names(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _workflow(
        tmp_path,
        """
        from flowkit import task

        @task
        def urls() -> list[str]:
            return ["a", "b", "c"]

        @task(cache_ttl=3600)
        def fetch(url: str) -> str:
            return url.upper()

        urls >> fetch.map()
        """,
    )
    state = str(tmp_path / store)
    assert main(["run", path, "--state", state]) == 0
    capsys.readouterr()
    code, out, _ = _run(["state", "list", state, "--task", "fetch"], capsys)
    assert code == 0 and "3 entries in" in out
    assert [line.split()[0] for line in out.splitlines()[2:5]] == ["fetch[0]", "fetch[1]",
                                                                    "fetch[2]"]
    for action in ("list", "invalidate"):
        code, out, err = _run(["state", action, state, "--task", "nosuch"], capsys)
        assert code == 2 and out == ""
        assert f"{state} has no task 'nosuch'" in err and "knows: fetch, urls" in err
    code, out, _ = _run(["state", "invalidate", state, "--task", "urls"], capsys)
    assert code == 0 and "invalidated 0 cached result(s) of task 'urls'" in out  # known: ran
    code, out, _ = _run(["state", "invalidate", state, "--task", "fetch"], capsys)
    assert code == 0 and "invalidated 3 cached result(s) of task 'fetch'" in out
    code, out, _ = _run(["state", "list", state, "--task", "fetch"], capsys)
    assert code == 0 and "no cached results" in out  # still known: its runs are recorded
    assert main(["run", path, "--state", state]) == 0
    code, out, _ = _run(["state", "invalidate", state, "--task", "fetch[1]"], capsys)
    assert code == 0 and "invalidated 1 cached result(s) of task 'fetch[1]'" in out  # one item
    code, out, err = _run(["state", "list", state, "--task", "fetch[x]"], capsys)
    assert code == 2 and "no task 'fetch[x]'" in err


@pytest.mark.parametrize("command", [[], ["run"], ["graph"], ["plan"], ["state"]])
def test_help_has_examples(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: flowkit" in out and "examples:" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"flowkit {flowkit.__version__}"


def test_python_dash_m_exits_with_the_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["flowkit", "plan", EXAMPLE])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "flowkit" / "__main__.py"), run_name="__main__")
    assert exit_.value.code == 0
    assert "would run" in capsys.readouterr().out


PARAMETRISED = """
    from flowkit import task

    @task
    def report(day: str, limit: int = 10, tags: list[str] | None = None) -> str:
        return f"{day}:{limit}:{tags}"
"""


def test_run_parameters_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _workflow(tmp_path, PARAMETRISED)
    code, out, _ = _run(
        ["run", path, "--executor", "sync", "--param", "day=2026-11-28", "--param", "limit=3",
         "--param", 'tags=["a", "b"]'],
        capsys,
    )
    assert code == 0
    assert "2026-11-28:3:['a', 'b']" in out


def test_a_missing_or_unknown_parameter_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _workflow(tmp_path, PARAMETRISED)
    code, _, err = _run(["run", path, "--executor", "sync"], capsys)
    assert code == 2 and "'day'" in err and err.startswith("flowkit: error:")
    code, _, err = _run(["run", path, "--param", "day=x", "--param", "dya=y"], capsys)
    assert code == 2 and "'dya'" in err
    code, _, err = _run(["run", path, "--param", "no-equals-sign"], capsys)
    assert code == 2 and "NAME=VALUE" in err


def test_a_closed_pipe_is_not_a_traceback() -> None:
    reader = subprocess.run(
        f"{sys.executable} -m flowkit graph examples/etl.py | head -1",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reader.stdout.strip() == "flowchart LR"
    assert "Traceback" not in reader.stderr
