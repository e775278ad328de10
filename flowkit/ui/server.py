"""The web UI's HTTP server: the standard library's, one thread per request, read-only.

Routes (GET and HEAD only):

- ``/``: the runs (``?dag=NAME&status=STATUS&page=N``),
- ``/runs/RUN_ID``: one run,
- ``/task?dag=NAME&name=TASK``: one task across runs,
- ``/api/runs/RUN_ID``: a run's progress as JSON (what the live page polls),
- ``/static/live.js``: the one script.

Anything else is a 404 page. Errors never show a traceback: a state that
cannot be read gives a 503 page saying why. Pages forbid inline scripts and
every outside resource (Content-Security-Policy), and a server bound to the
loopback answers only requests addressed to the loopback (a guard against DNS
rebinding).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
import threading
import time
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

from flowkit.exceptions import FlowkitError
from flowkit.state import StateManager
from flowkit.state.history import RunSummary
from flowkit.ui import pages, text

__all__ = ["UIServer", "serve"]

logger = logging.getLogger("flowkit.ui")

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; "
        "style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class UIServer(ThreadingHTTPServer):
    """The UI of one state file. ``server.url`` is where it answers.

    Args:
        path: the state file (its backend chosen by suffix, as ``StateManager`` does).
        host: the address to bind.
        port: the port (0: any free one).
    """

    daemon_threads = True

    def __init__(self, path: str, host: str = "127.0.0.1", port: int = 8765):
        self.path = path
        self.state = StateManager(path)
        self.title = os.path.basename(path) or path
        self.loopback = is_loopback(host)
        self._listing: tuple[object, float, list[RunSummary]] | None = None
        self._listing_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def listing(self) -> list[RunSummary]:
        """Every run, newest first (what the runs page filters).

        Kept while the state file is unchanged, for up to :data:`LISTING_TTL`
        seconds (a run whose process dies changes no file, yet becomes
        "interrupted"): browsing back and forth does not list 10,000 runs anew.
        """
        signature = _signature(self.path)
        with self._listing_lock:
            cached = self._listing
            if cached is not None and cached[0] == signature and (
                time.monotonic() - cached[1] < LISTING_TTL
            ):
                return cached[2]
        every = self.state.run_index()
        with self._listing_lock:
            self._listing = (signature, time.monotonic(), every)
        return every

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log what went wrong with one request instead of printing a traceback
        (socketserver's default): a browser that drops its connection is routine."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("flowkit ui: %s dropped the connection (%s)", client_address, error)
        else:
            logger.exception("flowkit ui: error serving %s", client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = str(host)
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/"


LISTING_TTL = 2.0


def _signature(path: str) -> object:
    """What changes when anything is written to the state (SQLite writes its -wal first)."""
    found: list[tuple[int, int, int] | None] = []
    for name in (path, path + "-wal"):
        try:
            st = os.stat(name)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface only."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = False,
    allow_remote: bool = False,
    out: TextIO | None = None,
) -> None:
    """Serve the UI of ``path`` until interrupted, printing its URL to ``out`` (stdout).

    Raises:
        FlowkitError: ``host`` is not a loopback address and ``allow_remote`` is
            false, or the address cannot be bound.
    """
    out = out if out is not None else sys.stdout
    if not is_loopback(host) and not allow_remote:
        raise FlowkitError(
            f"--host {host} would show the runs to other machines; pass --allow-remote as "
            "well if that is what you want, or keep the default 127.0.0.1"
        )
    try:
        server = UIServer(path, host, port)
    except OSError as exc:
        raise FlowkitError(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}; pick another --port"
        ) from exc
    with server:
        if not server.loopback:
            print(
                f"warning: serving {path} on {host}, reachable from other machines; "
                "the UI has no login", file=sys.stderr,
            )
        print(f"flowkit ui: serving {path} at {server.url} (Ctrl-C to stop)", file=out, flush=True)
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.state.close()


class _Handler(BaseHTTPRequestHandler):
    server: UIServer
    protocol_version = "HTTP/1.1"
    server_version = "flowkit-ui"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, *, head: bool) -> None:
        try:
            status, kind, body = self._route()
        except FlowkitError as exc:  # e.g. a state file damaged or unreadable
            status, kind = HTTPStatus.SERVICE_UNAVAILABLE, "text/html"
            body = pages.layout(self.server.title, f"<h1>Cannot read the state</h1>"
                                f"<p>{pages.escape(str(exc))}</p>")
        except Exception:  # a bug: say so without a traceback, log it for --debug
            logger.exception("flowkit ui: error answering %s", self.path)
            status, kind = HTTPStatus.INTERNAL_SERVER_ERROR, "text/html"
            body = pages.layout(self.server.title, "<h1>Internal error</h1>"
                                "<p>The page could not be drawn; see the server's log.</p>")
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _route(self) -> tuple[HTTPStatus, str, str]:
        if self.server.loopback and not self._addressed_to_loopback():
            return self._missing("This server answers only requests to localhost.")
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        path = url.path
        if path == "/":
            return self._runs(query)
        if path.startswith("/runs/") and path.count("/") == 2:
            return self._run(unquote(path[len("/runs/"):]))
        if path.startswith("/api/runs/") and path.count("/") == 3:
            return self._run_json(unquote(path[len("/api/runs/"):]))
        if path == "/task":
            return self._task(query)
        if path == "/static/live.js":
            return HTTPStatus.OK, "text/javascript", LIVE_JS
        return self._missing(f"There is no page at {unquote(path)}.")

    def _addressed_to_loopback(self) -> bool:
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name.strip("[]")) or name in _LOOPBACK_NAMES

    def _missing(self, message: str) -> tuple[HTTPStatus, str, str]:
        return HTTPStatus.NOT_FOUND, "text/html", pages.not_found(self.server.title, message)

    def _runs(self, query: dict[str, list[str]]) -> tuple[HTTPStatus, str, str]:
        try:
            runs_query = pages.RunsQuery(
                dag=_one(query, "dag") or None,
                status=_one(query, "status") or None,
                page=int(_one(query, "page") or 1),
            )
        except ValueError:
            return self._missing("That page number is not a number.")
        if runs_query.page < 1:
            return self._missing("Pages are numbered from 1.")
        every = self.server.listing()
        shown = pages.page_of(pages.select(every, runs_query), runs_query)
        if not shown and runs_query.page > 1:
            return self._missing(f"There is no page {runs_query.page} of these runs.")
        failed = {}
        for summary in shown:
            if summary.status != "success":  # only those can have failed tasks
                record = self.server.state.get_run(summary.run_id)
                if record is not None:
                    failed[summary.run_id] = text.failed_tasks(record)
        return HTTPStatus.OK, "text/html", pages.runs_page(
            self.server.title, every, runs_query, failed
        )

    def _run(self, run_id: str) -> tuple[HTTPStatus, str, str]:
        record = self.server.state.get_run(run_id)
        if record is None:
            return self._missing(f"No run {run_id!r} is recorded (or it was dropped as old).")
        return HTTPStatus.OK, "text/html", pages.run_page(self.server.title, record)

    def _run_json(self, run_id: str) -> tuple[HTTPStatus, str, str]:
        record = self.server.state.get_run(run_id)
        if record is None:
            return HTTPStatus.NOT_FOUND, "application/json", json.dumps({"error": "no such run"})
        return HTTPStatus.OK, "application/json", json.dumps(pages.run_json(record))

    def _task(self, query: dict[str, list[str]]) -> tuple[HTTPStatus, str, str]:
        dag, name = _one(query, "dag"), _one(query, "name")
        if not dag or not name:
            return self._missing("A task page needs ?dag=NAME&name=TASK.")
        state = self.server.state
        found = state.task_history(name, dag=dag, limit=500)
        if not found:
            return self._missing(f"No run of DAG {dag!r} recorded a task {name!r}.")
        stats = state.task_stats(name, dag=dag)
        return HTTPStatus.OK, "text/html", pages.task_page(
            self.server.title, dag, name, stats, found
        )


def _one(query: dict[str, list[str]], key: str) -> str:
    values = query.get(key)
    return values[-1] if values else ""


LIVE_JS = """\
// Live progress of a running run: polls its JSON, updates the page in place,
// reloads it once the run has ended (the server then draws it complete).
(function () {
  "use strict";
  var header = document.querySelector("[data-live]");
  if (!header) { return; }
  var url = header.getAttribute("data-live");
  function label(status) { return status.replace(/_/g, " "); }
  function update(run) {
    document.getElementById("progress").textContent = run.progress;
    var rows = document.querySelectorAll("tr");
    for (var i = 0; i < rows.length; i++) {
      var cells = rows[i].getElementsByTagName("td");
      if (cells.length < 2) { continue; }
      var name = cells[0].textContent;
      var status = run.tasks[name];
      var badge = cells[1].querySelector(".status");
      if (status && badge && badge.textContent !== label(status)) {
        badge.textContent = label(status);
        badge.removeAttribute("style");
        badge.className = "status " + status;
      }
    }
  }
  function tick() {
    fetch(url, {cache: "no-store"}).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(function (run) {
      if (run && run.status !== "running") { window.location.reload(); return; }
      if (run) { update(run); }
      window.setTimeout(tick, 1000);
    }).catch(function () { window.setTimeout(tick, 2000); });
  }
  window.setTimeout(tick, 1000);
}());
"""
