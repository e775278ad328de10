"""The pages of the web UI, rendered on the server from run records.

Every page is complete without JavaScript: the runs (filtered by DAG and
status, with each DAG's duration trend), one run (the HTML report's views:
timeline, task table, graph, errors, plus its parameters), and one task
across runs. A running run's page loads ``/static/live.js``, which polls the
run's JSON and updates the page in place. Every piece of text from the state
goes through :func:`html.escape`; URLs are built with :func:`urllib.parse.quote`.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from flowkit import report
from flowkit.outcome import item_of
from flowkit.render import STYLES
from flowkit.state.history import RunRecord, RunSummary, TaskRecord, TaskStats
from flowkit.ui.text import cause, when

__all__ = [
    "PAGE_SIZE",
    "RunsQuery",
    "escape",
    "layout",
    "not_found",
    "run_json",
    "run_page",
    "runs_page",
    "select",
    "task_page",
]

PAGE_SIZE = 50
LISTED_ITEMS = 5  # failed items of a mapped task listed under it
TREND_RUNS = 60  # runs drawn in each DAG's duration trend

_esc = escape = html.escape

_RUN_KEYS = {"success": "success", "failed": "failed", "interrupted": "cancelled",
             "running": "not_run"}
_TASK_KEYS = {"success", "failed", "skipped", "cached", "upstream_failed", "cancelled"}


class RunsQuery(NamedTuple):
    """The filters and page of the runs page, from its query string."""

    dag: str | None = None
    status: str | None = None
    page: int = 1


def run_url(run_id: str) -> str:
    return "/runs/" + quote(run_id, safe="")


def task_url(dag: str, name: str) -> str:
    return "/task?" + urlencode({"dag": dag, "name": name})


def runs_url(query: RunsQuery) -> str:
    params = {k: v for k, v in (("dag", query.dag), ("status", query.status)) if v}
    if query.page > 1:
        params["page"] = str(query.page)
    return "/" + ("?" + urlencode(params) if params else "")


# --- the runs ---------------------------------------------------------------------


def runs_page(
    title: str, every: Sequence[RunSummary], query: RunsQuery, failed: Mapping[str, list[str]]
) -> str:
    """The runs page: filters, each DAG's duration trend, a page of runs.

    Args:
        every: every run, newest first.
        failed: the names of the failed tasks of this page's runs, by run id.
    """
    shown = select(every, query)
    pages = max(1, -(-len(shown) // PAGE_SIZE))
    rows = page_of(shown, query)
    dags = sorted({r.dag_name for r in every})
    body = [
        f"<h1>Runs <small>{len(shown)} of {len(every)}</small></h1>",
        _filters(dags, query),
        _trends(every if query.dag is None else [r for r in every if r.dag_name == query.dag]),
        _runs_table(rows, failed),
        _pager(query, pages),
    ]
    return layout(title, "".join(body))


def page_of(shown: Sequence[RunSummary], query: RunsQuery) -> Sequence[RunSummary]:
    """The runs on ``query``'s page."""
    return shown[(query.page - 1) * PAGE_SIZE : query.page * PAGE_SIZE]


def select(every: Sequence[RunSummary], query: RunsQuery) -> list[RunSummary]:
    """The runs ``query`` filters in, newest first."""
    return [
        r for r in every
        if (query.dag is None or r.dag_name == query.dag)
        and (query.status is None or r.status == query.status)
    ]


def _filters(dags: Sequence[str], query: RunsQuery) -> str:
    dag_options = "".join(
        f'<option value="{_esc(d)}"{" selected" if d == query.dag else ""}>{_esc(d)}</option>'
        for d in dags
    )
    statuses = ("success", "failed", "interrupted", "running")
    status_options = "".join(
        f'<option value="{s}"{" selected" if s == query.status else ""}>{s}</option>'
        for s in statuses
    )
    return (
        '<form class="filters" method="get" action="/">'
        f'<label>DAG <select name="dag"><option value="">all</option>{dag_options}</select></label>'
        f'<label>status <select name="status"><option value="">all</option>{status_options}'
        "</select></label>"
        '<button type="submit">Filter</button> <a href="/">clear</a></form>'
    )


def _trends(runs: Sequence[RunSummary]) -> str:
    by_dag: dict[str, list[RunSummary]] = {}
    for record in runs:  # newest first
        found = by_dag.setdefault(record.dag_name, [])
        if len(found) < TREND_RUNS:
            found.append(record)
    if not by_dag:
        return '<p class="note">No runs recorded yet.</p>'
    items = "".join(
        f'<div class="trend"><h3><a href="{_esc(runs_url(RunsQuery(dag=dag)))}">{_esc(dag)}</a>'
        f"</h3>{trend_svg(list(reversed(found)))}</div>"
        for dag, found in sorted(by_dag.items())
    )
    return f'<h2>Duration trend</h2><div class="trends">{items}</div>'


def trend_svg(runs: Sequence[RunSummary], *, width: int = 360, height: int = 56) -> str:
    """Bars of the durations of ``runs`` (oldest first), coloured by status, each a link."""
    durations = [r.duration or 0.0 for r in runs]
    top = max(durations, default=0.0) or 1.0
    step = min(width / max(len(runs), 1), 14.0)
    out = [f'<svg class="spark" width="{width}" height="{height}" role="img" '
           f'aria-label="durations of the latest runs">']
    for i, (record, seconds) in enumerate(zip(runs, durations, strict=True)):
        style = STYLES[_RUN_KEYS.get(record.status, "not_run")]
        h = max(2.0, (height - 4) * seconds / top)
        tip = f"{record.run_id}: {record.status}, " + (
            report.seconds(seconds) if record.duration is not None else "not ended"
        )
        out.append(
            f'<a href="{_esc(run_url(record.run_id))}"><rect x="{i * step + 1:.1f}" '
            f'y="{height - h:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="{style.fill}" stroke="{style.stroke}"><title>{_esc(tip)}</title></rect></a>'
        )
    out.append("</svg>")
    return "".join(out)


def _runs_table(rows: Sequence[RunSummary], failed: Mapping[str, list[str]]) -> str:
    if not rows:
        return '<p class="note">No run matches.</p>'
    out = []
    for r in rows:
        duration = "" if r.duration is None else report.seconds(r.duration)
        out.append(
            f'<tr data-run="{_esc(r.run_id)}">'
            f'<td><a href="{_esc(run_url(r.run_id))}"><code>{_esc(r.run_id)}</code></a></td>'
            f'<td><a href="{_esc(runs_url(RunsQuery(dag=r.dag_name)))}">{_esc(r.dag_name)}</a></td>'
            f"<td>{run_badge(r.status)}</td>"
            f"<td>{_esc(when(datetime.fromtimestamp(r.started, UTC)))}</td>"
            f'<td class="num">{duration}</td>'
            f"<td>{_esc(report.clip(', '.join(failed.get(r.run_id, ())), 80))}</td>"
            "</tr>"
        )
    return (
        '<table class="summary runs"><thead><tr><th>run</th><th>DAG</th><th>status</th>'
        "<th>started (UTC)</th><th>duration</th><th>failed tasks</th></tr></thead><tbody>"
        + "".join(out) + "</tbody></table>"
    )


def _pager(query: RunsQuery, pages: int) -> str:
    if pages <= 1:
        return ""
    links = []
    if query.page > 1:
        links.append(f'<a href="{_esc(runs_url(query._replace(page=query.page - 1)))}">newer</a>')
    links.append(f"page {query.page} of {pages}")
    if query.page < pages:
        links.append(f'<a href="{_esc(runs_url(query._replace(page=query.page + 1)))}">older</a>')
    return '<p class="pager">' + " · ".join(links) + "</p>"


def run_badge(status: str) -> str:
    return report.badge(status, _RUN_KEYS.get(status, "not_run"), cls="badge")


# --- one run ----------------------------------------------------------------------------


def run_page(title: str, record: RunRecord) -> str:
    """A run: header, params, the report's timeline, task table, graph and errors."""
    names = ordered_tasks(record)
    live = record.status == "running"
    href = lambda name: task_url(record.dag_name, name)  # noqa: E731 - a one-line link maker
    keys = {name: task_key(t) for name, t in record.tasks.items()}
    tips = {name: _tip(name, t) for name, t in record.tasks.items()}
    body = [
        f'<header{_live_attr(record) if live else ""}><h1>{_esc(record.dag_name)} '
        f'<span id="run-status">{run_badge(record.status)}</span></h1>'
        f'<p class="meta">run <code>{_esc(record.run_id)}</code> · started '
        f"{_esc(when(record.started))} UTC · "
        f'<span id="progress">{_progress(record)}</span>'
        f"{'' if record.duration is None else ' · ' + report.seconds(record.duration)}"
        f" · on {_esc(record.host)} (pid {record.pid}) · flowkit "
        f"{_esc(record.flowkit_version)}</p></header>",
        "<h2>Parameters</h2>",
        _params(record.params),
        report.legend(),
        "<h2>Timeline</h2>",
        report.timeline(*_bars(record)),
        "<h2>Tasks</h2>",
        report.task_table(table_rows(record, names), href),
        "<h2>Graph</h2>",
        report.graph_svg(record.graph, keys, tips, href),
        report.errors([
            report.ErrorText(name, f"{t.error_type}: {report.clip(t.error or '', 200)}",
                             t.traceback or f"{t.error_type}: {t.error}")
            for name, t in record.tasks.items() if t.status == "failed" and t.error_type
        ]),
    ]
    return layout(title, "".join(body), live=live)


def ordered_tasks(record: RunRecord) -> list[str]:
    """The run's tasks in graph order, then any recorded outside it (mapped items)."""
    return list(record.graph) + [n for n in record.tasks if n not in record.graph]


def task_key(task: TaskRecord) -> str:
    return task.status if task.status in _TASK_KEYS else "not_run"


def run_json(record: RunRecord) -> dict[str, Any]:
    """What ``live.js`` polls: status, progress and each task's status."""
    return {
        "run_id": record.run_id,
        "status": record.status,
        "progress": _progress(record),
        "tasks": {name: task.status for name, task in record.tasks.items()},
    }


def _progress(record: RunRecord) -> str:
    total = len(set(record.graph) | set(record.tasks))
    return f"{len(record.tasks)} of {total} tasks done"


def _live_attr(record: RunRecord) -> str:
    return f' data-live="/api{_esc(run_url(record.run_id))}"'


def _params(params: Mapping[str, Any]) -> str:
    if not params:
        return '<p class="note">none</p>'
    rows = "".join(
        f"<tr><td>{_esc(k)}</td><td><code>{_esc(json.dumps(v))}</code></td></tr>"
        for k, v in sorted(params.items())
    )
    return f'<table class="summary params"><tbody>{rows}</tbody></table>'


def _row(name: str, task: TaskRecord | None) -> report.Row:
    if task is None:
        return report.Row(name, "not_run", "pending", 0, None, "")
    return report.Row(name, task_key(task), task.status, task.attempts, task.duration,
                      cause(name, task))


def _tip(name: str, task: TaskRecord) -> str:
    label = STYLES[task_key(task)].label
    text = f"{name}: {label}, {task.attempts} attempt(s)"
    if task.duration is not None:
        text += f", {report.seconds(task.duration)}"
    why = cause(name, task)
    return text + (f"\n{why}" if why else "")


def items_of(record: RunRecord) -> dict[str, list[tuple[str, TaskRecord]]]:
    """The recorded items of each mapped task of the run, by the task's name."""
    found: dict[str, list[tuple[str, TaskRecord]]] = {}
    for name, task in record.tasks.items():
        owner = item_of(name)
        if owner is not None and owner[0] in record.graph:
            found.setdefault(owner[0], []).append((name, task))
    return found


def table_rows(record: RunRecord, names: Sequence[str]) -> list[report.Row]:
    """A row per task; a mapped task's items folded into its row (counted by status),
    its failed items listed after it, as in the HTML report."""
    items = items_of(record)
    rows = []
    for name in names:
        owner = item_of(name)
        if owner is not None and owner[0] in items:
            continue  # an item: folded into its task's row
        mine = items.get(name)
        row = _row(name, record.tasks.get(name))
        if not mine:
            rows.append(row)
            continue
        counts = Counter(t.status for _, t in mine)
        counted = ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))
        rows.append(row._replace(
            attempts=sum(t.attempts for _, t in mine),
            duration=sum(t.duration or 0.0 for _, t in mine),
            cause=f"{len(mine):,} items: {counted}",
        ))
        failed = [(n, t) for n, t in mine if t.status == "failed"]
        rows += [_row(n, t)._replace(item=True) for n, t in failed[:LISTED_ITEMS]]
        if len(failed) > LISTED_ITEMS:
            more = f"… and {len(failed) - LISTED_ITEMS:,} more failed items"
            rows.append(report.Row(more, None, "", 0, None, "", True))
    return rows


def _bars(record: RunRecord) -> tuple[list[report.Bar], float, float]:
    """One bar per task that ran (one for all the items of a big map), packed into as
    few lanes as overlap allows (the history keeps no worker names)."""
    spans = sorted(_spans(record))
    lane_ends: list[float] = []
    bars = []
    for start, end, label, key, tip in spans:
        lane = next((i for i, last in enumerate(lane_ends) if last <= start), len(lane_ends))
        if lane == len(lane_ends):
            lane_ends.append(end)
        lane_ends[lane] = end
        bars.append(report.Bar(label, f"lane {lane + 1}", start, end, key, tip))
    begin = record.started.timestamp()
    finish = begin if record.ended is None else record.ended.timestamp()
    return bars, begin, finish


def _spans(record: RunRecord) -> list[tuple[float, float, str, str, str]]:
    """``(start, end, label, style key, tip)`` of each task that ran, a big map's items as one."""
    big = {name: mine for name, mine in items_of(record).items()
           if len(mine) > report.FOLD_ITEMS}
    folded = {n for mine in big.values() for n, _ in mine}
    spans = [
        (t.started.timestamp(), t.ended.timestamp(), name, task_key(t), _tip(name, t))
        for name, t in record.tasks.items()
        if t.started is not None and t.ended is not None and name not in folded
    ]
    for name, mine in big.items():
        ran = [t for _, t in mine if t.started is not None and t.ended is not None]
        if ran:
            keys = {task_key(t) for t in ran}
            key = "failed" if "failed" in keys else "success"
            spans.append((min(t.started.timestamp() for t in ran),  # type: ignore[union-attr]
                          max(t.ended.timestamp() for t in ran),  # type: ignore[union-attr]
                          f"{name} ({len(ran):,} items)", key,
                          f"{name}: {len(ran):,} items ran between these times"))
    return spans


# --- one task ---------------------------------------------------------------------------


def task_page(
    title: str, dag: str, name: str, stats: TaskStats, found: Sequence[tuple[str, TaskRecord]]
) -> str:
    """A task across runs: its statistics, its durations, one row per run."""
    median = "-" if stats.median is None else report.seconds(stats.median)
    p90 = "-" if stats.p90 is None else report.seconds(stats.p90)
    rows = "".join(
        f"<tr><td><a href=\"{_esc(run_url(run_id))}\"><code>{_esc(run_id)}</code></a></td>"
        f"<td>{report.badge(t.status.replace('_', ' '), task_key(t))}</td>"
        f'<td class="num">{t.attempts}</td>'
        f'<td class="num">{"" if t.duration is None else report.seconds(t.duration)}</td>'
        f"<td>{_esc(when(t.started))}</td>"
        f"<td>{_esc(report.clip(cause(name, t), 200))}</td></tr>"
        for run_id, t in found
    )
    body = (
        f'<h1>{_esc(name)} <small>in <a href="{_esc(runs_url(RunsQuery(dag=dag)))}">'
        f"{_esc(dag)}</a></small></h1>"
        f'<p class="meta">{stats.count} run(s) · {stats.failures} failure(s) · median '
        f"{median} · p90 {p90} (of its successful runs)</p>"
        f"<h2>Durations</h2>{_durations(found)}"
        '<h2>Runs</h2><table class="summary"><thead><tr><th>run</th><th>status</th>'
        "<th>attempts</th><th>duration</th><th>started (UTC)</th><th>cause</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    return layout(title, body)


def _durations(found: Sequence[tuple[str, TaskRecord]], width: int = 720) -> str:
    points = [(run_id, t) for run_id, t in reversed(found[:TREND_RUNS * 2])]
    if not any(t.duration is not None for _, t in points):
        return '<p class="note">It never ran.</p>'
    height = 80
    top = max(t.duration or 0.0 for _, t in points) or 1.0
    step = min(width / len(points), 14.0)
    out = [f'<svg class="spark" width="{width}" height="{height}" role="img" '
           'aria-label="durations across runs">']
    for i, (run_id, t) in enumerate(points):
        style = STYLES[task_key(t)]
        h = max(2.0, (height - 4) * (t.duration or 0.0) / top)
        tip = f"{run_id}: {t.status}" + (
            "" if t.duration is None else f", {report.seconds(t.duration)}"
        )
        out.append(
            f'<a href="{_esc(run_url(run_id))}"><rect x="{i * step + 1:.1f}" y="{height - h:.1f}"'
            f' width="{max(step - 2, 1):.1f}" height="{h:.1f}" fill="{style.fill}" '
            f'stroke="{style.stroke}"><title>{_esc(tip)}</title></rect></a>'
        )
    out.append("</svg>")
    return "".join(out)


# --- frame --------------------------------------------------------------------------------


def not_found(title: str, message: str) -> str:
    """A page saying what was not found, with a way back."""
    return layout(title, f'<h1>Not found</h1><p>{_esc(message)}</p><p><a href="/">All runs</a></p>')


def layout(title: str, body: str, *, live: bool = False) -> str:
    """A complete page: inline CSS, a top bar linking to the runs, ``body``."""
    script = '<script src="/static/live.js" defer></script>' if live else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{report.CSS}{_CSS}{_status_css()}</style>{script}"
        f'</head><body><nav><a href="/">flowkit runs</a> · <span>{_esc(title)}</span></nav>'
        f"<main>{body}</main></body></html>"
    )


def _status_css() -> str:
    """Status colours as classes too, so that ``live.js`` can recolour a badge."""
    return "".join(
        f".status.{key},.badge.{key}{{background:{s.fill};color:{s.text};border-color:{s.stroke}}}"
        for key, s in STYLES.items()
    )


_CSS = """
nav { margin: -8px 0 16px; color: #52606d; font-size: 13px; }
nav a { font-weight: 600; }
a { color: #1f4e8c; }
h1 small { font-size: 14px; font-weight: normal; color: #52606d; }
h3 { font-size: 14px; margin: 0 0 4px; }
.filters { display: flex; gap: 12px; align-items: center; margin: 8px 0 4px; }
.trends { display: flex; flex-wrap: wrap; gap: 16px 32px; }
.spark rect:hover { opacity: 0.7; }
.pager { margin-top: 12px; }
table.runs td { white-space: nowrap; }
"""
