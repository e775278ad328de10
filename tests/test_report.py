"""The HTML run report: structure checked with html.parser, self-containment, escaping."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

import flowkit
from flowkit import DAG, RunResult, Status, task
from flowkit.render import STYLES
from flowkit.report import GRAPH_LIMIT
from flowkit.testing import FakeClock


class _Page(HTMLParser):
    """Collects what the tests look at: elements by class, titles, table rows, links."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.titles: list[str] = []
        self.rows: list[list[str]] = []
        self._stack: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._title: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag == "tr" and "tbody" in self._stack:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "title":
            self._title = []
        if tag == "tbody":
            self._stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "title" and self._title is not None:
            self.titles.append("".join(self._title))
            self._title = None
        elif tag == "tbody" and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        for buffer in (self._cell, self._title):
            if buffer is not None:
                buffer.append(data)

    def with_class(self, name: str, tag: str | None = None) -> list[dict[str, str]]:
        return [
            attrs
            for t, attrs in self.tags
            if name in attrs.get("class", "").split() and (tag is None or t == tag)
        ]


def _retry_and_failure_run() -> RunResult:
    calls: list[int] = []

    @task
    def extract() -> list[int]:
        return [1, 2, 3]

    @task(retries=2, retry_delay=1.0)
    def flaky(rows: list[int]) -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again <later> & \"soon\"")
        return sum(rows)

    @task
    def broken(rows: list[int]) -> int:
        raise ValueError("bad <b>input</b>")

    @task
    def load(total: int, other: int) -> int:
        return total + other

    @task(when=lambda rows: False)
    def audit(rows: list[int]) -> None:
        return None

    extract >> [flaky, broken, audit]
    [flaky, broken] >> load
    clock = FakeClock()
    with pytest.raises(flowkit.TaskExecutionError) as caught:
        DAG(name="report <test>").run(
            executor="sync", fail_fast=False, clock=clock, sleep=clock.sleep
        )
    assert caught.value.result is not None
    return caught.value.result


@pytest.fixture
def page() -> tuple[RunResult, str, _Page]:
    result = _retry_and_failure_run()
    text = result.to_html()
    return result, text, _Page(text)


def test_one_bar_per_attempt_coloured_by_outcome(page: tuple[RunResult, str, _Page]) -> None:
    result, _, parsed = page
    bars = parsed.with_class("bar", "rect")
    attempts = sum(len(s.history) for s in result.states.values())
    assert attempts == 5  # extract, flaky x3, broken
    assert len(bars) == attempts
    kinds = [next(c for c in b["class"].split() if c != "bar") for b in bars]
    assert sorted(kinds) == ["failed", "retried", "retried", "success", "success"]
    fills = {kind: bar["fill"] for kind, bar in zip(kinds, bars, strict=True)}
    assert len(set(fills.values())) == 3  # retried attempts look different from failures


def test_lanes_per_worker(page: tuple[RunResult, str, _Page]) -> None:
    result, _, parsed = page
    workers = {a.worker for s in result.states.values() for a in s.history}
    assert len(parsed.with_class("lane", "g")) == len(workers)


def test_tooltips_name_task_attempt_duration_and_error(page: tuple[RunResult, str, _Page]) -> None:
    _, _, parsed = page
    tips = [t for t in parsed.titles if t.startswith("flaky — attempt")]
    assert len(tips) == 3
    assert "attempt 1 of 3" in tips[0]
    assert re.search(r"failed, then retried in [\d.]+ (ms|s) on \S+", tips[0])
    assert 'ConnectionError: try again <later> & "soon"' in tips[0]
    broken = next(t for t in parsed.titles if t.startswith("broken — attempt 1 of 1"))
    assert "ValueError: bad <b>input</b>" in broken


def test_summary_table_has_a_row_per_task(page: tuple[RunResult, str, _Page]) -> None:
    result, _, parsed = page
    rows = {row[0]: row for row in parsed.rows}
    assert set(rows) == set(result.states)
    assert all(len(row) == 6 for row in rows.values())  # no pool: no "pool wait" column
    assert rows["flaky"][1:4] == ["success", "#2", "3"]
    assert rows["broken"][1] == "failed" and rows["broken"][5] == "ValueError: bad <b>input</b>"
    assert rows["load"][1] == "upstream failed" and "broken" in rows["load"][5]
    assert rows["audit"][1] == "skipped" and "when=" in rows["audit"][5]
    assert [rows[name][2] for name in ("extract", "flaky", "broken", "load", "audit")] == \
        ["#1", "#2", "#3", "", ""]  # the order the scheduler started them; never started: blank


def test_legend_graph_and_errors(page: tuple[RunResult, str, _Page]) -> None:
    result, text, parsed = page
    legend = re.search(r'<ul class="legend">(.*?)</ul>', text, flags=re.S)
    assert legend is not None
    for label in ("success", "failed", "failed, then retried", "skipped", "cached",
                  "upstream failed", "cancelled"):
        assert f"</span>{label}</li>" in legend.group(1)
    nodes = parsed.with_class("node", "g")
    assert len(nodes) == len(result.graph)
    assert {n["class"].split()[1] for n in nodes} == {"success", "failed", "upstream_failed",
                                                      "skipped"}
    edges = parsed.with_class("edge", "path")
    assert len(edges) == sum(len(ups) for ups in result.graph.values())
    assert "<h2>Errors</h2>" in text and "Traceback" in text


def test_self_contained_and_escaped(page: tuple[RunResult, str, _Page]) -> None:
    _, text, parsed = page
    assert "<script" not in text.lower()
    assert not re.search(r"https?://", text)
    assert not [a for t, a in parsed.tags if t == "link" or "src" in a]
    assert "<b>input</b>" not in text and "&lt;b&gt;input&lt;/b&gt;" in text
    assert "<title>flowkit run" in text and "report &lt;test&gt;" in text
    assert text.startswith("<!DOCTYPE html>")


def test_to_html_writes_the_file(tmp_path: Path) -> None:
    @task
    def only() -> int:
        return 1

    result = DAG().run(executor="sync")
    target = tmp_path / "run.html"
    text = result.to_html(target)
    assert target.read_text(encoding="utf-8") == text
    assert result.to_html(str(target)) == text


def test_run_without_attempts_has_notes() -> None:
    @task(when=lambda: False)
    def never() -> None:
        return None

    text = DAG().run(executor="sync").to_html()
    assert "No task ran an attempt" in text


def _chain_of(make: Callable[[int], object], n: int) -> None:
    previous = None
    for i in range(n):
        current = make(i)
        if previous is not None:
            previous >> current  # type: ignore[operator]
        previous = current


def test_many_tasks_graph_stays_drawn_up_to_the_limit() -> None:
    roots = [flowkit.Task(lambda: 1, name=f"root {i}") for i in range(10)]
    layer = [flowkit.Task(lambda *xs: 1, name=f"mid {i}") for i in range(80)]
    for i, mid in enumerate(layer):
        roots[i % 10] >> mid
    join = flowkit.Task(lambda *xs: 1, name="join")
    layer >> join
    roots[0] >> join  # an edge that skips a column
    result = DAG().run(executor="sync")
    parsed = _Page(result.to_html())
    assert len(parsed.with_class("node", "g")) == 91
    assert len(parsed.with_class("edge", "path")) == 80 + 80 + 1


def test_huge_graph_is_left_out_with_a_note() -> None:
    _chain_of(lambda i: flowkit.Task(lambda *xs: i, name=f"t{i}"), GRAPH_LIMIT + 1)
    result = DAG().run(executor="sync")
    text = result.to_html()
    assert f"The DAG has {GRAPH_LIMIT + 1} tasks" in text
    assert 'class="node' not in text
    assert len(_Page(text).with_class("bar", "rect")) == GRAPH_LIMIT + 1


def test_statuses_match_the_palette() -> None:
    result = _retry_and_failure_run()
    assert result.states["broken"].status is Status.FAILED
    html = result.to_html()
    assert STYLES["failed"].fill in html



def _pool_run() -> RunResult:
    """Two tasks in pool "db <main>" of one slot, ready together: the second waits."""

    @task
    def source() -> int:
        return 1

    @task(pool="db <main>", priority=1)  # starts first
    def first(x: int) -> int:
        time.sleep(0.05)  # holds the slot a while: the other one waits for it
        return x

    @task(pool="db <main>")
    def second(x: int) -> int:
        return x

    source >> [first, second]
    return DAG().run(executor="thread", max_workers=4, pools={"db <main>": 1})


def test_report_shows_the_start_order_and_who_waited_for_a_pool() -> None:
    result = _pool_run()
    assert result.start_order == ["source", "first", "second"]
    assert result.states["first"].pool_wait == 0.0 and result.states["first"].pool_waits == []
    waits = result.states["second"].pool_waits
    assert [w.pool for w in waits] == ["db <main>"] and waits[0].duration > 0
    assert result.states["second"].pool_wait == waits[0].duration

    text = result.to_html()
    parsed = _Page(text)
    heads = re.findall(r"<th>(.*?)</th>", text)
    assert heads == ["task", "status", "start", "attempts", "duration", "pool wait", "cause"]
    rows = {row[0]: dict(zip(heads, row, strict=True)) for row in parsed.rows}
    assert {name: row["start"] for name, row in rows.items()} == \
        {"source": "#1", "first": "#2", "second": "#3"}
    assert re.fullmatch(r"[\d.]+ (ms|s) for pool db <main>", rows["second"]["pool wait"])
    assert rows["first"]["pool wait"] == "" and rows["source"]["pool wait"] == ""

    wait_bars = parsed.with_class("wait", "rect")
    assert len(wait_bars) == 1  # only "second" waited, on a lane of its own
    tip = next(t for t in parsed.titles if t.startswith("second waited"))
    assert tip.endswith("for a slot of pool db <main>")
    assert "waiting for pool db <main>" in parsed.titles  # the lane's label
    assert "waiting for a pool slot" in text  # in the legend
    assert "db <main>" not in text and "db &lt;main&gt;" in text


def test_a_big_map_waiting_for_its_pool_is_one_wait_bar() -> None:
    @task
    def shards() -> list[int]:
        return list(range(25))

    @task(pool="db")
    def write(shard: int) -> int:
        return shard

    shards >> write.map()
    result = DAG().run(executor="thread", max_workers=4, pools={"db": 1})
    waited = [s for s in result.map_items("write") if s.pool_waits]
    assert len(waited) == 24  # all but the first item found the slot taken
    parsed = _Page(result.to_html())
    bars = parsed.with_class("wait", "rect")
    assert len(bars) == 1
    assert any(t.startswith("write: 24 items waited for pool db") for t in parsed.titles)
    row = next(r for r in parsed.rows if r[0] == "write")
    assert row[2] == "#2"  # the map's first item started right after "shards"
