"""The web UI in a real browser: Playwright driving the system's Chromium.

Skipped (saying why) when Playwright or Chromium is missing, unless the
environment sets ``FLOWKIT_REQUIRE_BROWSER=1`` (CI does), which turns a
missing browser into a failure. ``FLOWKIT_CHROMIUM`` overrides the browser's
path (default ``/usr/bin/chromium``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import DAG, StateManager, Task, TaskExecutionError, task
from flowkit.ui.server import UIServer

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("FLOWKIT_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
XSS = "<script>alert(1)</script>"
TIMEOUT_MS = 30_000


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (it is in the dev dependencies: poetry install)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set FLOWKIT_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for this module.

    Not for the session: while Playwright's sync API is open, the main thread
    has a running event loop, so every later ``asyncio.run()`` would fail and
    a Dask cluster started meanwhile would adopt that (mostly idle) loop.
    """
    why = _unavailable()
    if why is not None:
        if os.environ.get("FLOWKIT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (FLOWKIT_REQUIRE_BROWSER=1) but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # Without the page's Content-Security-Policy, an injected script would run:
    # the escaping itself is what the tests check.
    context = browser.new_context(bypass_csp=True)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    tab.dialogs = dialogs
    try:
        yield tab
    finally:
        context.close()


class _Served:
    def __init__(self, path: Path):
        self.ui = UIServer(str(path), "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.ui.serve_forever, daemon=True)
        self.thread.start()
        self.url = self.ui.url

    def close(self) -> None:
        self.ui.shutdown()
        self.ui.server_close()
        self.thread.join()


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A served state with three runs of "etl", the second of which failed."""
    path = tmp_path / "state.json"
    fail = [False]

    @task
    def extract() -> list[int]:
        return [1, 2, 3]

    @task
    def transform(rows: list[int]) -> list[int]:
        if fail[0]:
            raise ValueError("row 3 is not a number")
        return rows

    weird = Task(lambda rows: rows, name=XSS)
    extract >> transform >> weird
    state = StateManager(path)
    ids = []
    for i in range(3):
        fail[0] = i == 1
        try:
            ids.append(DAG(name="etl").run(executor="sync", state=state).run_id)
        except TaskExecutionError as exc:
            ids.append(exc.result.run_id)
    served = _Served(path)
    try:
        yield served.url, ids
    finally:
        served.close()


def test_the_runs_page_lists_runs_and_filters_them(
    page: Any, recorded: tuple[str, list[str]]
) -> None:
    url, ids = recorded
    page.goto(url)
    rows = page.locator("tr[data-run]")
    assert rows.count() == 3
    assert [rows.nth(i).get_attribute("data-run") for i in range(3)] == ids[::-1]
    page.select_option("select[name=status]", "failed")
    page.click("button[type=submit]")
    page.wait_for_url("**status=failed**")
    assert page.locator("tr[data-run]").count() == 1
    assert page.locator("tr[data-run]").get_attribute("data-run") == ids[1]


def test_a_failed_run_shows_the_failed_task_and_its_error(
    page: Any, recorded: tuple[str, list[str]]
) -> None:
    url, ids = recorded
    page.goto(url)
    page.click(f"tr[data-run='{ids[1]}'] a >> nth=0")
    page.wait_for_url(f"**/runs/{ids[1]}")
    row = page.locator("table.summary tr", has_text="transform").first
    assert "failed" in row.inner_text()
    assert "ValueError: row 3 is not a number" in row.inner_text()
    page.click("details summary")  # the traceback opens
    assert "Traceback" in page.locator("details pre").inner_text()
    assert page.locator("#run-status").inner_text() == "failed"


def test_a_task_named_like_a_script_is_shown_as_text(
    page: Any, recorded: tuple[str, list[str]]
) -> None:
    url, ids = recorded
    page.goto(url + "runs/" + ids[0])
    assert page.get_by_text(XSS, exact=True).first.is_visible()
    page.get_by_role("link", name=XSS, exact=True).click()
    page.wait_for_url("**/task?**")
    assert page.locator("h1").inner_text().startswith(XSS)
    assert page.dialogs == []
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0


_LIVE = """
import pathlib, sys, time
from flowkit import DAG, StateManager, task

path, gates = sys.argv[1], pathlib.Path(sys.argv[2])

def wait_for(name):
    while not (gates / name).exists():
        time.sleep(0.02)

@task
def first():
    return 1

@task
def second(x):
    wait_for("second")
    return x

@task
def third(x):
    wait_for("third")
    return x

first >> second >> third
DAG(name="live").run(executor="sync", state=StateManager(path))
"""


def test_a_running_run_advances_live(page: Any, tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    script = tmp_path / "live.py"
    script.write_text(_LIVE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(tmp_path)], env=env)
    served = None
    try:
        run_id = _wait_for_running(path, proc)
        served = _Served(path)
        page.goto(served.url + "runs/" + run_id)
        assert page.locator("#run-status").inner_text() == "running"
        page.wait_for_function(
            "document.getElementById('progress').textContent === '1 of 3 tasks done'"
        )
        (tmp_path / "second").touch()
        page.wait_for_function(
            "document.getElementById('progress').textContent === '2 of 3 tasks done'"
        )
        second = page.locator("table.summary tr", has_text="second").first
        assert "success" in second.inner_text()
        (tmp_path / "third").touch()
        # Once the run ends the page reloads, drawn complete by the server.
        page.wait_for_function("document.getElementById('run-status').textContent === 'success'")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if served is not None:
            served.close()


def _wait_for_running(path: Path, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the workflow process ended early"
        if path.exists():
            runs = StateManager(path).runs()
            if runs and runs[0].tasks.get("first") is not None:
                return runs[0].run_id
        time.sleep(0.05)
    raise AssertionError("the run did not start")
