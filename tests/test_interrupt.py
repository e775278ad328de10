"""Ctrl-C during a run: pending work is cancelled, state is recorded, and
``KeyboardInterrupt`` reaches the caller promptly.

Each test runs a DAG in a child interpreter, waits until its long task has
started, sends SIGINT and reads what the child reports after catching it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")

TASKS = '''
import time
from flowkit import task

@task
def long():
    print("started", flush=True)
    time.sleep(10)
    return "finished"

@task
def queued():
    return "ran"

@task
def after(value):
    return value

long >> after
'''

MAIN = '''
import json, signal, sys, time
import flowkit
import interrupt_tasks

signalled = [0.0]

def on_sigint(signum, frame):  # the default handler, plus the time it fired
    signalled[0] = time.monotonic()
    raise KeyboardInterrupt

signal.signal(signal.SIGINT, on_sigint)


class Capture:
    result = None

    def on_dag_end(self, run, result):
        Capture.result = result


try:
    targets = ["after"] if sys.argv[2] == "lone" else None
    flowkit.DAG().run(executor=sys.argv[1], max_workers=1, targets=targets, hooks=[Capture()])
except KeyboardInterrupt:
    elapsed = time.monotonic() - signalled[0]
    result = Capture.result
    print(json.dumps({
        "elapsed": elapsed,
        "interrupted": result.interrupted,
        "ok": result.ok,
        "states": {name: state.status.name for name, state in result.states.items()},
    }), flush=True)
else:
    print(json.dumps({"error": "run() returned without KeyboardInterrupt"}), flush=True)
'''


class Child:
    """A child interpreter in its own process group, its stdout read line by line."""

    def __init__(self, directory: Path, executor: str, targets: str):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(directory), os.getcwd()]),
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, str(directory / "main.py"), executor, targets],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=directory,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def read_line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the child printed nothing within {timeout}s")
        if line is None:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            pytest.fail(f"the child exited early:\n{stderr}")
        return line

    def group_is_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.02)
        return False

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=5)


@pytest.fixture
def child_dir(tmp_path: Path) -> Path:
    (tmp_path / "interrupt_tasks.py").write_text(textwrap.dedent(TASKS))
    (tmp_path / "main.py").write_text(textwrap.dedent(MAIN))
    return tmp_path


@pytest.fixture
def start_child(child_dir: Path) -> Iterator[Any]:
    children: list[Child] = []

    def start(executor: str, targets: str) -> Child:
        child = Child(child_dir, executor, targets)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.process.poll() is None or not child.group_is_gone(0):
            child.kill()


@pytest.mark.parametrize(
    ("executor", "whole_group"),
    [("thread", False), ("process", False), ("process", True)],
    ids=["thread", "process", "process-ctrl-c-to-the-process-group"],
)
def test_ctrl_c_cancels_pending_work_and_reraises_promptly(
    start_child: Any, executor: str, whole_group: bool
) -> None:
    child: Child = start_child(executor, "all")
    assert child.read_line(timeout=20) == "started"

    sent = time.monotonic()
    if whole_group:  # what a terminal does on Ctrl-C: the pool's workers get it too
        os.killpg(child.process.pid, signal.SIGINT)
    else:
        os.kill(child.process.pid, signal.SIGINT)
    report = json.loads(child.read_line(timeout=5))
    noticed = time.monotonic() - sent

    assert "error" not in report
    assert report["elapsed"] < 1.0  # from the signal to run() raising, in the child
    assert noticed < 2.0  # the same, seen from here (includes the child's output)
    assert report["interrupted"] is True
    assert report["ok"] is False
    assert report["states"] == {
        "long": "CANCELLED",  # abandoned while running
        "queued": "CANCELLED",  # waiting for the one worker
        "after": "CANCELLED",  # waiting for ``long``
    }
    assert child.process.wait(timeout=5) == 0
    assert child.process.stderr is not None
    assert child.process.stderr.read() == ""  # no traceback from the workers, no log line
    assert child.group_is_gone(timeout=3), "the child left worker processes behind"


def test_ctrl_c_while_a_lone_task_runs_in_the_calling_thread(start_child: Any) -> None:
    # With nothing else to run, the thread executor runs a lone task in the
    # caller's thread: Ctrl-C then interrupts the task's own code.
    child: Child = start_child("thread", "lone")
    assert child.read_line(timeout=20) == "started"
    os.kill(child.process.pid, signal.SIGINT)
    report = json.loads(child.read_line(timeout=5))
    assert report["elapsed"] < 1.0
    assert report["interrupted"] is True
    assert report["states"] == {"long": "CANCELLED", "after": "CANCELLED"}
    assert child.process.wait(timeout=5) == 0
