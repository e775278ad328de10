"""The history on the command line (``flowkit history``) and the web UI's server
(``flowkit ui``): pages, links, escaping, 404s, the live JSON, safety."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit import DAG, StateManager, Task, TaskExecutionError, task
from flowkit.cli import main
from flowkit.ui.server import UIServer, is_loopback

REPO = Path(__file__).resolve().parent.parent
XSS = "<script>alert(1)</script>"


def _record_runs(path: Path) -> list[str]:
    """Three runs of "etl" (the middle one failed) and one of "other"; their ids, oldest first."""
    fail = [False]

    @task
    def extract(day: str = "", x: str = "") -> list[int]:
        return [1, 2, 3]

    @task
    def transform(rows: list[int]) -> list[int]:
        if fail[0]:
            raise ValueError(f"bad row {XSS}")
        return rows

    @task
    def load(rows: list[int]) -> int:
        return len(rows)

    odd = Task(lambda: 1, name=XSS)
    extract >> transform >> load
    extract >> odd
    state = StateManager(path)
    ids = []
    for i in range(3):
        fail[0] = i == 1
        try:
            ids.append(DAG([load, odd], name="etl").run(
                executor="sync", state=state, params={"day": f"2026-01-0{i + 1}", "x": XSS}
            ).run_id)
        except TaskExecutionError as exc:
            ids.append(exc.result.run_id)
    ids.append(DAG([extract], name="other").run(executor="sync", state=state).run_id)
    return ids


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "state.db"
    return path, _record_runs(path)


# --- flowkit history ------------------------------------------------------------------------


def test_history_lists_runs_newest_first(
    recorded: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = recorded
    assert main(["history", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "dag", "status", "started", "(UTC)", "duration",
                                "failed", "tasks"]
    assert [line.split()[0] for line in lines[2:]] == ids[::-1]
    failed = next(line for line in lines if line.startswith(ids[1]))
    assert "failed" in failed and failed.rstrip().endswith("transform")
    assert main(["history", str(path), "--dag", "etl", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == [ids[2], ids[1]]


def test_history_json(recorded: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    path, ids = recorded
    assert main(["history", str(path), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in runs] == ids[::-1]
    assert runs[2]["status"] == "failed" and runs[2]["failed_tasks"] == ["transform"]
    assert runs[1]["params"] == {"day": "2026-01-03", "x": XSS}
    assert main(["history", str(path), ids[1], "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["tasks"]["transform"]["error"] == f"bad row {XSS}"
    assert run["tasks"]["load"]["status"] == "upstream_failed"


def test_history_of_one_run(
    recorded: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = recorded
    assert main(["history", str(path), ids[1]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run {ids[1]} of 'etl': failed")
    assert "params: day='2026-01-02'" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("tr", "lo"))}
    assert "FAILED" in rows["transform"] and "ValueError: bad row" in rows["transform"]
    assert "UPSTREAM_FAILED" in rows["load"] and "transform" in rows["load"]


def test_history_errors(tmp_path: Path, recorded: tuple[Path, list[str]],
                        capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = recorded
    assert main(["history", str(tmp_path / "missing.json")]) == 2
    assert "no state file at" in capsys.readouterr().err
    assert main(["history", str(path), "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["history", str(path), "--limit", "0"]) == 2
    empty = tmp_path / "empty.json"
    StateManager(empty).clear()
    assert main(["history", str(empty), "--dag", "x"]) == 0
    assert "no runs of DAG 'x' recorded" in capsys.readouterr().out


# --- the server -----------------------------------------------------------------------------


@pytest.fixture
def server(recorded: tuple[Path, list[str]]) -> Iterator[tuple[str, list[str]]]:
    path, ids = recorded
    ui = UIServer(str(path), "127.0.0.1", 0)
    thread = threading.Thread(target=ui.serve_forever, daemon=True)
    thread.start()
    try:
        yield ui.url, ids
    finally:
        ui.shutdown()
        ui.server_close()
        thread.join()


def _get(url: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_runs_page_lists_and_filters(server: tuple[str, list[str]]) -> None:
    base, ids = server
    status, page, headers = _get(base)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert [m for m in re.findall(r'data-run="([^"]+)"', page)] == ids[::-1]
    assert f'href="/runs/{ids[1]}"' in page
    assert page.count('class="spark"') == 2  # one duration trend per DAG
    _, failed, _ = _get(base + "?status=failed")
    assert re.findall(r'data-run="([^"]+)"', failed) == [ids[1]]
    assert "transform" in failed
    _, other, _ = _get(base + "?dag=other")
    assert re.findall(r'data-run="([^"]+)"', other) == [ids[3]]


def test_run_page_shows_tasks_errors_params_and_escapes(server: tuple[str, list[str]]) -> None:
    base, ids = server
    status, page, _ = _get(base + "runs/" + ids[1])
    assert status == 200
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "ValueError: bad row &lt;script&gt;" in page
    assert "Traceback" in page  # the recorded traceback, in the errors section
    assert 'class="timeline"' in page and 'class="graph"' in page
    assert "2026-01-02" in page  # the params
    assert "/task?dag=etl&amp;name=transform" in page
    assert "live.js" not in page  # an ended run does not poll


def test_task_page(server: tuple[str, list[str]]) -> None:
    base, ids = server
    status, page, _ = _get(base + "task?dag=etl&name=transform")
    assert status == 200
    assert "3 run(s) · 1 failure(s)" in page
    assert all(run_id in page for run_id in ids[:3])
    status, page, _ = _get(base + "task?dag=etl&name=" + urllib.request.quote(XSS))
    assert status == 200 and XSS not in page


@pytest.mark.parametrize("url", [
    "nope", "runs/nope", "runs/a/b", "?page=abc", "?page=0", "?page=7", "task?dag=etl",
    "task?dag=etl&name=nope", "api/runs/nope", "runs/%3Cscript%3E",
])
def test_bad_urls_are_404s(server: tuple[str, list[str]], url: str) -> None:
    base, _ = server
    status, page, _ = _get(base + url)
    assert status == 404
    assert "Traceback" not in page and "<script>" not in page


def test_live_json_and_script(server: tuple[str, list[str]]) -> None:
    base, ids = server
    status, text, headers = _get(base + "api/runs/" + ids[0])
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data = json.loads(text)
    assert data["status"] == "success" and data["progress"] == "4 of 4 tasks done"
    assert data["tasks"]["transform"] == "success"
    status, script, _ = _get(base + "static/live.js")
    assert status == 200 and "fetch(" in script


def test_only_requests_to_localhost_are_answered(server: tuple[str, list[str]]) -> None:
    base, _ = server
    assert _get(base, Host="attacker.example:8765")[0] == 404
    assert _get(base, Host="localhost:8765")[0] == 200


def test_a_state_that_cannot_be_read_is_a_503(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("not a state file\n")
    ui = UIServer(str(path), "127.0.0.1", 0)
    thread = threading.Thread(target=ui.serve_forever, daemon=True)
    thread.start()
    try:
        status, page, _ = _get(ui.url)
    finally:
        ui.shutdown()
        ui.server_close()
    assert status == 503 and "not a flowkit state file" in page


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "127.1.2.3"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.2", "example.com", "::"]))


def test_ui_command_prints_its_url_and_serves(recorded: tuple[Path, list[str]]) -> None:
    path, ids = recorded
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowkit", "ui", str(path), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url is not None, line
        assert _get(url.group(0) + "runs/" + ids[0])[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_ui_command_refuses_another_host_without_the_flag(
    recorded: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = recorded
    assert main(["ui", str(path), "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert main(["ui", str(path.parent / "missing.db")]) == 2
    assert main(["ui", str(path), "--port", "70000"]) == 2
    assert "expected a port number" in capsys.readouterr().err


def test_ui_command_warns_when_serving_other_machines(
    recorded: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = recorded

    def interrupted(self: UIServer, poll_interval: float = 0.5) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(UIServer, "serve_forever", interrupted)
    assert main(["ui", str(path), "--host", "0.0.0.0", "--port", "0", "--allow-remote"]) == 0
    captured = capsys.readouterr()
    assert "warning: serving" in captured.err and "reachable from other machines" in captured.err
    assert "http://0.0.0.0:" in captured.out


def test_a_new_run_shows_up_at_once(
    recorded: tuple[Path, list[str]], server: tuple[str, list[str]]
) -> None:
    path, _ = recorded
    base, ids = server
    assert len(re.findall(r'data-run="', _get(base)[1])) == len(ids)
    run = DAG([Task(lambda: 1, name="solo")], name="later").run(
        executor="sync", state=StateManager(path)
    )
    assert re.findall(r'data-run="([^"]+)"', _get(base)[1])[0] == run.run_id


def test_runs_come_fifty_to_a_page(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateManager(path)
    solo = Task(lambda: 1, name="solo")
    ids = [DAG([solo], name="many").run(executor="sync", state=state).run_id for _ in range(55)]
    ui = UIServer(str(path), "127.0.0.1", 0)
    thread = threading.Thread(target=ui.serve_forever, daemon=True)
    thread.start()
    try:
        first = _get(ui.url)[1]
        second = _get(ui.url + "?page=2")[1]
    finally:
        ui.shutdown()
        ui.server_close()
    assert re.findall(r'data-run="([^"]+)"', first) == ids[:4:-1]
    assert re.findall(r'data-run="([^"]+)"', second) == ids[4::-1]
    assert "page 1 of 2" in first and 'href="/?page=2"' in first
    assert "page 2 of 2" in second and 'href="/"' in second


def test_a_big_map_is_folded_into_its_row(tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    @task
    def numbers() -> list[int]:
        return list(range(30))

    @task
    def check(x: int) -> int:
        if x in (3, 4, 5, 6, 7, 8, 9):
            raise ValueError(f"bad {x}")
        return x

    numbers >> check.map()
    with pytest.raises(TaskExecutionError):
        DAG(name="mapped").run(executor="sync", state=StateManager(path), fail_fast=False)
    (record,) = StateManager(path).runs()
    ui = UIServer(str(path), "127.0.0.1", 0)
    thread = threading.Thread(target=ui.serve_forever, daemon=True)
    thread.start()
    try:
        status, page, _ = _get(ui.url + "runs/" + record.run_id)
    finally:
        ui.shutdown()
        ui.server_close()
    assert status == 200
    assert "30 items: 7 failed, 23 success" in page
    assert page.count('<tr class="item">') == 6  # five failed items, then how many more
    assert "… and 2 more failed items" in page
    assert "check (30 items)" in page  # one timeline bar for the whole map


def test_a_dropped_connection_prints_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    server = UIServer(str(tmp_path / "state.db"), port=0)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="flowkit.ui"):
            client = socket.create_connection(server.server_address[:2])
            client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers not finished
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # a reset, as a browser closing its tab may send
            with urllib.request.urlopen(server.url, timeout=10) as answer:  # still serving
                assert answer.status == 200
            deadline = time.monotonic() + 10
            while "dropped the connection" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.01)  # the reset is handled on the server's own thread
            assert "dropped the connection" in caplog.text
    finally:
        server.shutdown()
        server.server_close()
        server.state.close()
    assert capfd.readouterr().err == ""
