"""A live progress bar for terminals, as a hook.

:class:`ProgressBar` draws one line on a terminal stream (done/total, percent,
failures, running tasks, time) and redraws it in place with ``\\r`` and
"clear to end of line", at most ten times a second. Log lines must not tear
through it: :meth:`ProgressBar.wrap` gives a stream for the log handler whose
``write`` erases the bar, writes the text and draws the bar again below it,
all under the one lock the bar draws with.

>>> import io
>>> bar = ProgressBar(io.StringIO())   # not a terminal: draws nothing
>>> bar.enabled
False
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from flowkit.outcome import item_of

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    from flowkit.context import RunContext
    from flowkit.outcome import TaskState
    from flowkit.results import RunResult

__all__ = ["ProgressBar"]

_CLEAR = "\r\x1b[K"  # carriage return, then erase to the end of the line


class ProgressBar:
    """A hook that keeps one status line up to date on a terminal.

    Args:
        stream: where to draw (default: ``sys.stderr`` when the bar is made).
        enabled: ``None`` (default) draws only when ``stream.isatty()``; ``True``
            forces drawing, ``False`` turns the bar off.
        interval: least seconds between two redraws (throttling, no flicker).
        width: the line's width in columns (default: the terminal's).
        clock: monotonic time source (for tests).

    The bar is redrawn by the hooks as tasks start and finish, and by a small
    daemon thread every ``interval`` seconds while a run lasts, so the clock and
    a throttled last update still show during a long task. The thread stops in
    ``on_dag_end`` (or :meth:`close`).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        enabled: bool | None = None,
        interval: float = 0.1,
        width: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream: TextIO = stream if stream is not None else sys.stderr  # as it is now
        self.enabled = _isatty(self.stream) if enabled is None else bool(enabled)
        self.interval = interval
        self.lock = threading.RLock()
        self._width = width
        self._clock = clock
        self._run: RunContext | None = None
        self._running: dict[str, None] = {}  # names, in start order
        self._shown = False  # the bar is on the screen now
        self._dirty = False
        self._last = -1e9
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # --- hooks ------------------------------------------------------------------

    def on_dag_start(self, run: RunContext) -> None:
        if not self.enabled:
            return
        with self.lock:
            self._run = run
            self._running.clear()
            self._draw()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="flowkit-progress", daemon=True)
        self._ticker.start()

    def on_task_start(self, run: RunContext, state: TaskState) -> None:
        self._update(state.name, running=True)

    def on_task_retry(
        self, run: RunContext, state: TaskState, error: BaseException, delay: float
    ) -> None:
        self._update(state.name, running=False)

    def on_task_success(self, run: RunContext, state: TaskState) -> None:
        self._update(state.name, running=False)

    def on_task_failure(self, run: RunContext, state: TaskState) -> None:
        self._update(state.name, running=False, now=True)

    def on_task_skip(self, run: RunContext, state: TaskState) -> None:
        self._update(state.name, running=False)

    def on_task_cached(self, run: RunContext, state: TaskState) -> None:
        self._update(state.name, running=False)

    def on_dag_end(self, run: RunContext, result: RunResult) -> None:
        self.close()

    def close(self) -> None:
        """Stop redrawing and erase the bar; safe to call more than once."""
        self._stop.set()
        ticker, self._ticker = self._ticker, None
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join()
        with self.lock:
            self._erase()
            self._run = None

    def mark(self, name: str, *, running: bool) -> None:
        """Show ``name`` as running, or no longer: for bars over units other than
        tasks, such as the partitions of a backfill (counts come from the run context)."""
        self._update(name, running=running, now=not running)

    # --- a stream for log handlers ------------------------------------------------

    def wrap(self, stream: TextIO | None = None) -> TextIO:
        """A stream that writes to ``stream`` (default: the bar's) without tearing the bar.

        Pass it to ``configure_logging(stream=...)``. When the bar is disabled it
        is ``stream`` itself.
        """
        target = stream if stream is not None else self.stream
        if not self.enabled:
            return target
        return _BarSafeStream(self, target)  # type: ignore[return-value]

    # --- drawing ------------------------------------------------------------------

    def render(self) -> str:
        """The bar's text for the current state of the run (without control codes)."""
        run = self._run
        if run is None:
            return ""
        total, done = run.total, run.done
        cells = 20
        filled = cells * done // total if total else cells
        parts = [
            f"{run.dag_name} [{'#' * filled}{'-' * (cells - filled)}] "
            f"{done:,}/{total:,} {run.percent:3.0f}%"
        ]
        if run.failed:
            parts.append(f"{run.failed:,} failed")
        if self._running:
            names = _folded(self._running)
            shown = ", ".join(names[:3])
            more = f" +{len(names) - 3}" if len(names) > 3 else ""
            parts.append(f"running: {shown}{more}")
        eta = run.eta
        clock = _duration(run.elapsed)
        parts.append(f"{clock} elapsed, ETA {_duration(eta)}" if eta else clock)
        line = " | ".join(parts)
        width = (self._width or _columns(self.stream)) - 1  # never wrap: \r would miss it
        return line if len(line) <= width else line[: max(width - 1, 0)] + "…"

    def _update(self, name: str, *, running: bool, now: bool = False) -> None:
        if not self.enabled:
            return
        with self.lock:
            if running:
                self._running[name] = None
            else:
                self._running.pop(name, None)
            self._dirty = True
            if now or not self._shown or self._clock() - self._last >= self.interval:
                self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self.lock:
                # Redraw what throttling held back, and once a second for the clock.
                if self._dirty or self._clock() - self._last >= 1.0:
                    self._draw()

    def _draw(self) -> None:
        # Callers hold self.lock.
        text = self.render()
        if not text:
            return
        self._write(f"\r{text}\x1b[K")
        self._shown = True
        self._dirty = False
        self._last = self._clock()

    def _erase(self) -> None:
        if self._shown:
            self._write(_CLEAR)
            self._shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken terminal: stop drawing
            self.enabled = False
            self._shown = False


class _BarSafeStream:
    """A write-through stream that moves the bar out of the way of each line."""

    def __init__(self, bar: ProgressBar, stream: TextIO):
        self._bar = bar
        self._stream = stream

    def write(self, text: str) -> int:
        bar = self._bar
        with bar.lock:
            bar._erase()
            # The bar comes back with the next hook call — which, for a lifecycle
            # log line, follows at once with the bar's state updated — or the
            # next tick of the bar's thread.
            bar._dirty = True
            return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding …
        return getattr(self._stream, name)


def _folded(running: Iterable[str]) -> list[str]:
    """Running task names, the items of one mapped task folded: ``["work (12 items)", "load"]``."""
    groups: dict[tuple[str, bool], list[str]] = {}
    for name in running:
        item = item_of(name)
        groups.setdefault((item[0], True) if item else (name, False), []).append(name)
    return [
        names[0] if len(names) == 1 else f"{key} ({len(names):,} items)"
        for (key, _), names in groups.items()
    ]


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size((80, 24)).columns


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
