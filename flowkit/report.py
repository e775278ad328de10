"""The HTML run report: one self-contained page about a finished run.

The page has a timeline (one bar per attempt, one lane per worker, and the
waits for pool slots on lanes of their own), the summary table (with the order
in which the scheduler started the tasks, and how long each waited for its
pool), a picture of the graph coloured by status, and the tracebacks of failed
tasks. Everything is inline — CSS and SVG, no script, no font, no link to any
other resource — so the file can be mailed, archived or attached to a CI job and
still open the same way years later. Every piece of text from the run goes
through :func:`html.escape`.

The views — :func:`timeline`, :func:`task_table`, :func:`graph_svg`,
:func:`legend`, :func:`errors` — draw plain rows (:class:`Bar`, :class:`Row`,
:class:`ErrorText`), not run objects, so the web UI (``flowkit.ui``) draws
recorded runs with the very same pieces.
"""

from __future__ import annotations

import html
import math
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from flowkit.outcome import Attempt, Status, TaskState
from flowkit.render import LEGEND, STYLES, style_key
from flowkit.results import cause_text

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    from flowkit.results import RunResult

__all__ = [
    "CSS",
    "ERRORS_SHOWN",
    "FOLD_ITEMS",
    "GRAPH_LIMIT",
    "Bar",
    "ErrorText",
    "Row",
    "badge",
    "clip",
    "errors",
    "graph_svg",
    "legend",
    "render_html",
    "seconds",
    "task_table",
    "timeline",
]

GRAPH_LIMIT = 300
"""Above this many tasks the report leaves out the graph picture (the rest stays)."""

ERRORS_SHOWN = 20
"""The report shows the tracebacks of this many failed tasks, then counts the rest."""

FOLD_ITEMS = 20
"""A mapped task with more items than this draws one timeline bar per worker, not per item."""

_esc = html.escape

Link = Callable[[str], str | None]
"""Maps a task name to the URL of its page (``None``: no link)."""


class Bar(NamedTuple):
    """One bar of a :func:`timeline`: a lane, a span of wall-clock time, a style."""

    label: str
    lane: str
    start: float
    end: float
    key: str  # a flowkit.render.STYLES key
    tip: str
    fold: bool = False  # the attempts of many mapped items on one worker


class Row(NamedTuple):
    """One row of a :func:`task_table`; ``key=None`` makes a row of text only."""

    name: str
    key: str | None  # a flowkit.render.STYLES key
    status: str
    attempts: int
    duration: float | None
    cause: str
    item: bool = False  # a mapped item listed under its task
    order: int | None = None  # its place in the order the scheduler started tasks
    pool: str | None = None
    pool_wait: float = 0.0  # seconds it waited for slots of its pool


class ErrorText(NamedTuple):
    """One failure for :func:`errors`: who, a one-line summary, the full text."""

    name: str
    summary: str
    text: str


def render_html(result: RunResult) -> str:
    """The report of ``result`` as a complete HTML document."""
    title = f"flowkit run {result.run_id} of {result.dag_name!r}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        _header(result),
        legend(waits=any(s.pool_wait for s in result.states.values())),
        "<h2>Timeline</h2>",
        timeline(_bars(result), result.started_at, result.started_at + result.duration),
        "<h2>Tasks</h2>",
        task_table(_rows(result)),
        "<h2>Graph</h2>",
        _graph(result),
        errors(_failures(result)),
        "</body>",
        "</html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


# --- header and legend -----------------------------------------------------------


def _header(result: RunResult) -> str:
    if result.interrupted:
        verdict, key = "interrupted", "cancelled"
    else:
        verdict, key = ("ok", "success") if result.ok else ("failed", "failed")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.started_at))
    counts = ", ".join(
        f"{n} {status.value.replace('_', ' ')}"
        for status, n in sorted(result.counts.items(), key=lambda item: item[0].name)
    )
    return (
        f"<header><h1>{_esc(result.dag_name)} {badge(verdict, key, cls='badge')}</h1>"
        f'<p class="meta">run <code>{_esc(result.run_id)}</code> · started {started} · '
        f"{seconds(result.duration)} · {_size(result)}"
        f"{' (' + _esc(counts) + ')' if counts else ''}</p></header>"
    )


def _size(result: RunResult) -> str:
    """``"3 tasks"``, or ``"3 tasks and 14,523 mapped items"``."""
    items = sum(len(result.map_items(row.name)) for row in result.summary_rows()
                if not row.item)
    tasks = len(result.states) - items
    return f"{tasks:,} tasks" + (f" and {items:,} mapped items" if items else "")


def badge(text: str, key: str, *, cls: str = "status") -> str:
    """``text`` in a pill coloured like the :data:`~flowkit.render.STYLES` ``key``."""
    style = STYLES.get(key, STYLES["not_run"])
    return (
        f'<span class="{cls} {_esc(key)}" style="background:{style.fill};color:{style.text};'
        f'border-color:{style.stroke}">{_esc(text)}</span>'
    )


def legend(*, waits: bool = False) -> str:
    """The colour legend of every status (and, with ``waits``, of a wait for a pool slot)."""
    keys = [LEGEND[0], LEGEND[1], "retried", *LEGEND[2:], *(["waiting"] if waits else [])]
    items = "".join(
        f'<li><span class="swatch" style="background:{STYLES[k].fill};'
        f'border-color:{STYLES[k].stroke}"></span>{_esc(STYLES[k].label)}</li>'
        for k in keys
    )
    return f'<ul class="legend">{items}</ul>'


# --- timeline ----------------------------------------------------------------------

_LABEL_W, _PLOT_W, _LANE_H, _BAR_H, _AXIS_H = 170, 900, 26, 18, 26


def timeline(bars: Sequence[Bar], begin: float, finish: float) -> str:
    """An SVG timeline of ``bars``, one lane per distinct ``Bar.lane``, spanning at
    least ``begin`` to ``finish`` (wall-clock seconds)."""
    if not bars:
        return '<p class="note">No task ran an attempt in this run (everything was cached, ' \
            "skipped or cancelled).</p>"
    lanes = sorted({b.lane for b in bars}, key=_natural)
    lane_of = {lane: i for i, lane in enumerate(lanes)}
    start = min(begin, *(b.start for b in bars))
    end = max(finish, *(b.end for b in bars))
    axis = _Axis(start, max(end - start, 1e-6))
    width = _LABEL_W + _PLOT_W + 20
    height = _AXIS_H + _LANE_H * len(lanes) + 4
    out = [
        f'<svg class="timeline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of attempts">',
        *_lane_rows(lanes, width),
        *_tick_marks(axis, height),
    ]
    for bar in bars:
        css = f"bar fold {bar.key}" if bar.fold else f"bar {bar.key}"
        css = f"wait {bar.key}" if bar.key == "waiting" else css
        out += _bar(axis, lane_of[bar.lane], (bar.start, bar.end), css, bar.key, bar.tip,
                    bar.label)
    out.append("</svg>")
    return '<div class="scroll">' + "".join(out) + "</div>"


class _Axis(NamedTuple):
    """The time axis of the timeline: where a moment of the run is drawn."""

    start: float
    span: float

    def x(self, t: float) -> float:
        return _LABEL_W + (t - self.start) / self.span * _PLOT_W


def _lane_rows(lanes: Sequence[str], width: int) -> list[str]:
    """One striped row per worker, labelled with its name."""
    rows = []
    for i, worker in enumerate(lanes):
        y = _AXIS_H + i * _LANE_H
        rows.append(
            f'<g class="lane"><rect class="lane-bg" x="0" y="{y}" width="{width}" '
            f'height="{_LANE_H}" fill="{"#f7f8fa" if i % 2 else "#ffffff"}"/>'
            f'<text x="8" y="{y + _LANE_H / 2 + 4}" class="lane-label">'
            f"<title>{_esc(worker)}</title>{_esc(clip(worker, 22))}</text></g>"
        )
    return rows


def _tick_marks(axis: _Axis, height: int) -> list[str]:
    marks = []
    for tick in _ticks(axis.span):
        tx = axis.x(axis.start + tick)
        marks.append(
            f'<line x1="{tx:.1f}" y1="{_AXIS_H - 4}" x2="{tx:.1f}" y2="{height}" class="tick"/>'
            f'<text x="{tx:.1f}" y="{_AXIS_H - 9}" class="tick-label">'
            f"{_tick_text(tick, axis.span)}</text>"
        )
    return marks


def _bar(
    axis: _Axis, lane: int, when: tuple[float, float], css: str, key: str, tip: str, label: str
) -> list[str]:
    """One bar on ``lane`` from ``when[0]`` to ``when[1]``, labelled when it is wide enough."""
    style = STYLES[key]
    bx = axis.x(when[0])
    bw = max(2.0, axis.x(when[1]) - bx)
    by = _AXIS_H + lane * _LANE_H + (_LANE_H - _BAR_H) / 2
    parts = [
        f'<rect class="{css}" x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" '
        f'height="{_BAR_H}" rx="3" fill="{style.fill}" stroke="{style.stroke}">'
        f"<title>{_esc(tip)}</title></rect>"
    ]
    chars = int((bw - 6) / 6.6)
    if chars >= 3:
        parts.append(
            f'<text class="bar-label" x="{bx + 4:.1f}" y="{by + _BAR_H / 2 + 4:.1f}" '
            f'fill="{style.text}">{_esc(clip(label, chars))}</text>'
        )
    return parts


class _Fold(NamedTuple):
    """The attempts of a big map's items on one worker, drawn as one bar."""

    name: str
    worker: str
    started: float
    finished: float
    attempts: int
    key: str
    tip: str


def _bars(result: RunResult) -> list[Bar]:
    """A bar per attempt, and one per worker for the items of each big map."""
    attempts, folds = _attempts_and_folds(result)
    bars = []
    for state, attempt in attempts:
        key = _attempt_key(state, attempt)
        bars.append(Bar(state.name, attempt.worker, attempt.started_at, attempt.finished_at,
                        key, _attempt_tip(state, attempt, key)))
    bars.extend(
        Bar(f"{f.name} ({f.attempts:,} items)", f.worker, f.started, f.finished, f.key, f.tip,
            fold=True)
        for f in folds
    )
    return bars + _wait_bars(result)


def _wait_bars(result: RunResult) -> list[Bar]:
    """A bar per wait for a pool slot (one per pool for the items of a big map), on
    lanes of its own: a waiting task holds no worker. Waits that overlap in time
    take separate lanes, ``waiting for pool db``, ``waiting for pool db (2)``, …"""
    lane_ends: dict[str, list[float]] = {}  # pool -> when each of its lanes is free again
    bars = []
    for start, end, pool, label, tip in sorted(_wait_spans(result)):
        ends = lane_ends.setdefault(pool, [])
        lane = next((k for k, last in enumerate(ends) if last <= start), len(ends))
        ends[lane:lane + 1] = [end]
        name = f"waiting for pool {pool}" + (f" ({lane + 1})" if lane else "")
        bars.append(Bar(label, name, start, end, "waiting", tip))
    return bars


def _wait_spans(result: RunResult) -> list[tuple[float, float, str, str, str]]:
    """``(start, end, pool, label, tip)`` of each wait, a big map's items' as one per pool."""
    big = _big_maps(result)
    spans = []
    for name, items in big.items():
        waits = [w for s in items for w in s.pool_waits]
        for pool in sorted({w.pool for w in waits}):
            mine = [w for w in waits if w.pool == pool]
            spans.append((min(w.started_at for w in mine), max(w.finished_at for w in mine), pool,
                          f"{name} ({len(mine):,} items waiting for {pool})",
                          f"{name}: {len(mine):,} items waited for pool {pool}, "
                          f"{seconds(sum(w.duration for w in mine))} in all"))
    folded = {id(s) for items in big.values() for s in items}
    spans += [(w.started_at, w.finished_at, w.pool, f"{state.name} (waiting for {w.pool})",
               f"{state.name} waited {seconds(w.duration)} for a slot of pool {w.pool}")
              for state in result.states.values() if id(state) not in folded
              for w in state.pool_waits]
    return spans


def _big_maps(result: RunResult) -> dict[str, list[TaskState]]:
    """The items of each mapped task with more than :data:`FOLD_ITEMS` of them."""
    return {row.name: result.map_items(row.name) for row in result.summary_rows()
            if not row.item and len(result.map_items(row.name)) > FOLD_ITEMS}


def _attempts_and_folds(
    result: RunResult,
) -> tuple[list[tuple[TaskState, Attempt]], list[_Fold]]:
    """Attempts drawn one bar each, and folds: one bar per worker for each big map."""
    big = _big_maps(result)
    folded = {id(s) for items in big.values() for s in items}
    attempts = [(state, a) for state in result.states.values() if id(state) not in folded
                for a in state.history]
    folds = []
    for name, items in big.items():
        lanes: dict[str, list[tuple[TaskState, Attempt]]] = {}
        for state in items:
            for attempt in state.history:
                lanes.setdefault(attempt.worker, []).append((state, attempt))
        for worker, runs in lanes.items():
            keys = Counter(_attempt_key(state, attempt) for state, attempt in runs)
            key = next(k for k in ("failed", "retried", "success") if keys[k])
            counted = ", ".join(f"{n:,} {STYLES[k].label.lower()}" for k, n in keys.items())
            folds.append(_Fold(
                name, worker, min(a.started_at for _, a in runs),
                max(a.finished_at for _, a in runs), len(runs), key,
                f"{name}: {len(runs):,} item attempts on {worker} ({counted})",
            ))
    return attempts, folds


def _attempt_key(state: TaskState, attempt: Attempt) -> str:
    if attempt.error is None:
        return "success"
    last = state.history[-1] is attempt
    return "failed" if last and state.status is Status.FAILED else "retried"


def _attempt_tip(state: TaskState, attempt: Attempt, key: str) -> str:
    lines = [
        f"{state.name} — attempt {attempt.number} of {state.attempts}"
        + (f", start #{state.order:,}" if attempt.number == 1 and state.order else ""),
        f"{STYLES[key].label} in {seconds(attempt.duration)} on {attempt.worker}",
    ]
    if attempt.error is not None:
        lines.append(f"{type(attempt.error).__name__}: {clip(str(attempt.error), 300)}")
    return "\n".join(lines)


def _ticks(span: float) -> list[float]:
    """Round tick offsets (1, 2 or 5 times a power of ten) covering ``span``, about eight."""
    raw = span / 8
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)
    count = int(span / step + 1e-9)
    return [k * step for k in range(count + 1)]


def _tick_text(offset: float, span: float) -> str:
    if span < 1:
        return f"{offset * 1000:.0f} ms"
    if span < 120:
        return f"{offset:g} s"
    return f"{int(offset // 60)}:{int(offset % 60):02d}"


# --- summary table -----------------------------------------------------------------


def _rows(result: RunResult) -> list[Row]:
    return [
        Row(row.name, None, "", 0, None, "", row.item) if row.status is None else
        Row(row.name, style_key(row.status), row.status.value, row.attempts, row.duration,
            row.cause, row.item, row.order, row.pool, row.pool_wait)
        for row in result.summary_rows()  # a mapped task's items folded into its row
    ]


def task_table(rows: Iterable[Row], href: Link | None = None) -> str:
    """The summary table: task, status, attempts, duration, cause; names linked by ``href``.

    When the rows know it, a "start" column gives each task's place in the
    order the scheduler started tasks, and a "pool wait" column how long a task
    waited for slots of its pool.
    """
    rows = list(rows)
    ordered = any(row.order is not None for row in rows)
    waited = any(row.pool_wait for row in rows)
    heads = ["task", "status", *(["start"] if ordered else []), "attempts", "duration",
             *(["pool wait"] if waited else []), "cause"]
    out = []
    for row in rows:
        item = ' class="item"' if row.item else ""
        if row.key is None:  # "… and N more failed"
            out.append(f'<tr{item}><td colspan="{len(heads)}">{_esc(row.name)}</td></tr>')
            continue
        url = href(row.name) if href is not None else None
        name = _esc(row.name) if url is None else f'<a href="{_esc(url)}">{_esc(row.name)}</a>'
        duration = "" if row.duration is None else seconds(row.duration)
        cells = [name, badge(row.status.replace("_", " "), row.key)]
        if ordered:
            cells.append("" if row.order is None else f"#{row.order:,}")
        cells += [f"{row.attempts:,}", duration]
        if waited:
            cells.append(_wait_text(row))
        cells.append(_esc(clip(row.cause, 200)))
        numeric = {"start", "attempts", "duration", "pool wait"}
        out.append(f"<tr{item}>" + "".join(
            f'<td class="num">{cell}</td>' if head in numeric else f"<td>{cell}</td>"
            for head, cell in zip(heads, cells, strict=True)) + "</tr>")
    return (
        '<table class="summary"><thead><tr>'
        + "".join(f"<th>{head}</th>" for head in heads)
        + "</tr></thead><tbody>"
        + "".join(out)
        + "</tbody></table>"
    )


def _wait_text(row: Row) -> str:
    """``1.20 s for pool db``: how long a task waited for its pool ("" when it did not)."""
    if not row.pool_wait:
        return ""
    pool = f" for pool {_esc(row.pool)}" if row.pool else ""
    return f'<span class="wait">{seconds(row.pool_wait)}{pool}</span>'


# --- graph -------------------------------------------------------------------------

_BOX_W, _BOX_H, _COL_GAP, _ROW_GAP, _PAD = 140, 28, 48, 12, 12


def _graph(result: RunResult) -> str:
    keys, tips = {}, {}
    for name, state in result.states.items():
        keys[name] = style_key(state.status)
        cause = cause_text(state)
        tips[name] = (
            f"{name}: {STYLES[keys[name]].label}, {state.attempts} attempt(s), "
            f"{seconds(state.duration)}" + (f"\n{cause}" if cause else "")
        )
    return graph_svg(result.graph, keys, tips)


def graph_svg(
    graph: Mapping[str, Sequence[str]],
    keys: Mapping[str, str],
    tips: Mapping[str, str],
    href: Link | None = None,
) -> str:
    """A picture of ``graph`` (task -> upstream names), each box coloured by its
    :data:`~flowkit.render.STYLES` key in ``keys`` (``not_run`` when absent), with
    ``tips`` as tooltips and, with ``href``, each box a link."""
    if len(graph) > GRAPH_LIMIT:
        return (
            f'<p class="note">The DAG has {len(graph)} tasks, too many to draw legibly here '
            f"(the limit is {GRAPH_LIMIT}); render <code>dag.to_dot(result)</code> with "
            "Graphviz for a picture.</p>"
        )
    if not graph:
        return '<p class="note">The run had no tasks.</p>'
    layout = _Layout(graph)
    width, height = layout.size
    out = [
        f'<svg class="graph" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="task graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#78909c"/>'
        "</marker></defs>",
    ]
    out += [
        f'<path class="edge" d="{path}" marker-end="url(#arrow)"/>' for path in layout.edge_paths()
    ]
    for name in graph:
        key = keys.get(name, "not_run")
        style = STYLES.get(key, STYLES["not_run"])
        bx, by = layout.box[name]
        node = (
            f'<g class="node {_esc(key)}"><title>{_esc(tips.get(name, name))}</title>'
            f'<rect x="{bx:.1f}" y="{by:.1f}" width="{_BOX_W}" height="{_BOX_H}" rx="6" '
            f'fill="{style.fill}" stroke="{style.stroke}"/>'
            f'<text x="{bx + _BOX_W / 2:.1f}" y="{by + _BOX_H / 2 + 4:.1f}" '
            f'text-anchor="middle" fill="{style.text}">{_esc(clip(name, 19))}</text></g>'
        )
        url = href(name) if href is not None else None
        out.append(node if url is None else f'<a href="{_esc(url)}">{node}</a>')
    out.append("</svg>")
    return '<div class="scroll">' + "".join(out) + "</div>"


class _Layout:
    """A layered drawing of a DAG, left to right (the Sugiyama recipe, simplified).

    A task's column is its longest path from a root. An edge that skips columns
    is routed through a thin "waypoint" in each column it crosses, so it never
    runs behind a box. Within a column, nodes are sorted by the mean row of
    their neighbours (barycenter heuristic: down, up, down again), which removes
    most crossings at a cost linear in the number of edges per sweep.
    """

    _WAYPOINT_H = 8.0

    def __init__(self, graph: Mapping[str, Sequence[str]]):
        names = list(_topological(graph))
        depth: dict[str, int] = {}
        for name in names:
            depth[name] = 1 + max((depth[u] for u in graph.get(name, ())), default=-1)
        # Nodes are ints: tasks first (in topological order), then waypoints.
        index = {name: i for i, name in enumerate(names)}
        self.names = names
        self.column = [depth[name] for name in names]
        self.up: list[list[int]] = [[] for _ in names]
        self.chains: list[list[int]] = []  # per edge: upstream, waypoints…, downstream
        for name in names:
            for upstream in graph.get(name, ()):
                chain = [index[upstream]]
                for col in range(depth[upstream] + 1, depth[name]):
                    self.column.append(col)
                    self.up.append([chain[-1]])
                    chain.append(len(self.column) - 1)
                self.up[index[name]].append(chain[-1])
                chain.append(index[name])
                self.chains.append(chain)
        self.down: list[list[int]] = [[] for _ in self.column]
        for node, ups in enumerate(self.up):
            for u in ups:
                self.down[u].append(node)
        columns: list[list[int]] = [[] for _ in range(max(self.column) + 1)]
        for node, col in enumerate(self.column):
            columns[col].append(node)
        self._order(columns)
        self._place(columns)

    def _order(self, columns: list[list[int]]) -> None:
        row = {node: r for column in columns for r, node in enumerate(column)}

        def sweep(cols: Iterable[list[int]], neighbours: list[list[int]]) -> None:
            for column in cols:
                column.sort(key=lambda n: _mean([row[m] for m in neighbours[n]], row[n]))
                row.update((node, r) for r, node in enumerate(column))

        sweep(columns[1:], self.up)
        sweep(reversed(columns[:-1]), self.down)
        sweep(columns[1:], self.up)

    def _place(self, columns: list[list[int]]) -> None:
        n_tasks = len(self.names)
        slot = [(_BOX_H if node < n_tasks else self._WAYPOINT_H) + _ROW_GAP for node in
                range(len(self.column))]
        heights = [sum(slot[node] for node in column) - _ROW_GAP for column in columns]
        tallest = max(heights)
        self.y = [0.0] * len(self.column)
        for column, height in zip(columns, heights, strict=True):
            top = _PAD + (tallest - height) / 2  # centre short columns
            for node in column:
                self.y[node] = top
                top += slot[node]
        self.box = {
            name: (_PAD + self.column[i] * (_BOX_W + _COL_GAP), self.y[i])
            for i, name in enumerate(self.names)
        }
        self.size = (
            _PAD * 2 + len(columns) * _BOX_W + (len(columns) - 1) * _COL_GAP,
            _PAD * 2 + tallest,
        )

    def edge_paths(self) -> Iterable[str]:
        """SVG path data of every edge: smooth curves from box to box, via waypoints."""
        n_tasks = len(self.names)

        def mid(node: int) -> float:
            return self.y[node] + (_BOX_H if node < n_tasks else self._WAYPOINT_H) / 2

        for chain in self.chains:
            x = _PAD + self.column[chain[0]] * (_BOX_W + _COL_GAP) + _BOX_W
            y = mid(chain[0])
            parts = [f"M{x:.1f},{y:.1f}"]
            for node in chain[1:]:
                x2 = _PAD + self.column[node] * (_BOX_W + _COL_GAP)
                y2 = mid(node)
                bend = (x2 - x) / 2
                parts.append(f"C{x + bend:.1f},{y:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}")
                if node >= n_tasks:  # a waypoint: straight through its column
                    parts.append(f"L{x2 + _BOX_W:.1f},{y2:.1f}")
                    x2 += _BOX_W
                x, y = x2, y2
            yield " ".join(parts)


def _mean(values: list[int], default: float) -> float:
    return sum(values) / len(values) if values else default


def _topological(graph: Mapping[str, Sequence[str]]) -> Iterable[str]:
    """Names of ``graph`` with every upstream name before its downstream ones."""
    seen: dict[str, None] = {}
    for root in graph:
        if root in seen:
            continue
        stack = [(root, iter(graph.get(root, ())))]
        while stack:
            name, ups = stack[-1]
            for up in ups:
                if up not in seen:
                    stack.append((up, iter(graph.get(up, ()))))
                    break
            else:
                stack.pop()
                seen.setdefault(name, None)
    return seen


# --- errors ------------------------------------------------------------------------


def _failures(result: RunResult) -> list[ErrorText]:
    found: list[ErrorText] = []
    for state in result.states.values():
        if state.status is Status.FAILED and state.error is not None:
            if len(found) >= ERRORS_SHOWN:  # only counted from here on: no traceback built
                found.append(ErrorText(state.name, "", ""))
                continue
            summary = f"{type(state.error).__name__}: {clip(str(state.error), 200)}"
            text = "".join(traceback.format_exception(state.error))
            found.append(ErrorText(state.name, summary, text))
    return found


def errors(failures: Sequence[ErrorText]) -> str:
    """The "Errors" section: one collapsible traceback per failure, at most
    :data:`ERRORS_SHOWN`, then how many more ("" for none)."""
    if not failures:
        return ""
    items = [
        f"<details><summary>{_esc(f.name)} — {_esc(f.summary)}</summary>"
        f"<pre>{_esc(f.text)}</pre></details>"
        for f in failures[:ERRORS_SHOWN]
    ]
    if len(failures) > ERRORS_SHOWN:
        items.append(f'<p class="note">… and {len(failures) - ERRORS_SHOWN:,} more failed '
                     "task(s), not shown: the table above counts them.</p>")
    return '<h2>Errors</h2><div class="errors">' + "".join(items) + "</div>"


# --- small things ------------------------------------------------------------------


def seconds(value: float) -> str:
    """A duration for people: ``12.3 ms``, ``4.56 s``, ``3:07``, ``1:02:03``."""
    if value < 1:
        return f"{value * 1000:.1f} ms"
    if value < 120:
        return f"{value:.2f} s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{rest:02d}" if minutes >= 60 else \
        f"{minutes}:{rest:02d}"


def clip(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def _natural(text: str) -> tuple[tuple[int, str, int], ...]:
    """Sort key putting ``worker-2`` before ``worker-10``."""
    return tuple(
        (0, "", int(part)) if part.isdigit() else (1, part, 0)
        for part in re.split(r"(\d+)", text)
        if part
    )


CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1f2933; margin: 24px 32px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid #e4e7eb; padding-bottom: 4px; }
.meta { color: #52606d; margin: 0; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.badge, .status { display: inline-block; border: 1px solid; border-radius: 10px;
                  padding: 0 8px; font-size: 12px; font-weight: 600; vertical-align: middle; }
.legend { list-style: none; padding: 0; margin: 16px 0 0; display: flex; flex-wrap: wrap;
          gap: 6px 18px; color: #3e4c59; font-size: 13px; }
.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { width: 14px; height: 14px; border: 1px solid; border-radius: 3px; display: inline-block; }
.scroll { overflow-x: auto; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.lane-label { fill: #3e4c59; }
.tick { stroke: #e4e7eb; }
.tick-label { fill: #7b8794; font-size: 11px; text-anchor: middle; }
.bar-label { font-size: 11px; pointer-events: none; }
.edge { fill: none; stroke: #90a4ae; stroke-width: 1.3; }
table.summary { border-collapse: collapse; min-width: 60%; }
.summary th, .summary td { text-align: left; padding: 4px 12px 4px 0; vertical-align: top;
                           border-bottom: 1px solid #eef0f2; }
.summary th { color: #52606d; font-weight: 600; }
.summary tr.item td:first-child { padding-left: 18px; color: #52606d; }
.summary td.num { text-align: right; padding-right: 20px; font-variant-numeric: tabular-nums; }
rect.wait { stroke-dasharray: 4 2; }
.note { color: #52606d; font-style: italic; }
details { margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f5f7fa; border: 1px solid #e4e7eb; padding: 10px; overflow-x: auto;
      font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
"""
