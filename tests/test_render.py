"""Mermaid and DOT pictures of a DAG, plain and coloured by a run's statuses."""

from __future__ import annotations

import re

import pytest

import flowkit
from flowkit import DAG, task
from flowkit.render import STYLES

WEIRD = ['say "hi"', "a b", "x[i]", "{curly}", "end", "back\\slash", "semi;colon", "<tag>&#"]


def _branchy() -> DAG:
    @task
    def extract() -> list[int]:
        return [1, 2, 3]

    @task
    def transform(rows: list[int]) -> list[int]:
        return [r * 2 for r in rows]

    @task(when=lambda rows: False)
    def audit(rows: list[int]) -> None:
        return None

    @task
    def load(rows: list[int]) -> int:
        raise ValueError("warehouse down")

    @task
    def report(n: int) -> str:
        return str(n)

    @task
    def other() -> int:
        return 1

    extract >> [transform, audit]
    transform >> load >> report
    return DAG(name="branchy")


def _run(dag: DAG, **options: object) -> flowkit.RunResult:
    with pytest.raises(flowkit.TaskExecutionError) as caught:
        dag.run(executor="sync", **options)  # type: ignore[arg-type]
    result = caught.value.result
    assert result is not None
    return result


def test_mermaid_plain_has_nodes_and_edges_but_no_colours() -> None:
    dag = _branchy()
    text = dag.to_mermaid()
    assert text.startswith("flowchart LR\n")
    labels = re.findall(r'^    (n\d+)\["([^"]*)"\]$', text, flags=re.M)
    ids = {label: node for node, label in labels}
    assert set(ids) == {"extract", "transform", "audit", "load", "report", "other"}
    edges = set(re.findall(r"^    (n\d+) --> (n\d+)$", text, flags=re.M))
    assert edges == {
        (ids["extract"], ids["transform"]),
        (ids["extract"], ids["audit"]),
        (ids["transform"], ids["load"]),
        (ids["load"], ids["report"]),
    }
    assert "classDef" not in text and "Legend" not in text


def test_mermaid_coloured_by_status_with_a_legend() -> None:
    dag = _branchy()
    result = _run(dag, fail_fast=False)
    text = dag.to_mermaid(result)
    assert text == result.to_mermaid()
    for key in ("success", "failed", "skipped", "cached", "upstream_failed", "cancelled"):
        assert re.search(rf"^    classDef {key} fill:#[0-9a-f]{{6}},stroke:#", text, re.M), key
        assert f":::{key}" in text  # a legend entry per status
    ids = dict((label, node) for node, label in re.findall(r'(n\d+)\["([^"]*)"\]', text))
    members = {
        key: set(nodes.split(","))
        for nodes, key in re.findall(r"^    class (\S+) (\w+)$", text, flags=re.M)
    }
    assert members["success"] == {ids["extract"], ids["transform"], ids["other"]}
    assert members["failed"] == {ids["load"]}
    assert members["skipped"] == {ids["audit"]}
    assert members["upstream_failed"] == {ids["report"]}
    assert 'subgraph legend["Legend"]' in text and re.search(r"^    end$", text, re.M)


def test_mermaid_cancelled_and_not_run() -> None:
    dag = _branchy()
    result = _run(dag, fail_fast=True, targets=["report", "other"])
    assert "audit" not in result.states
    text = dag.to_mermaid(result)
    ids = dict((label, node) for node, label in re.findall(r'(n\d+)\["([^"]*)"\]', text))
    # "audit" was outside the targets: drawn, in the "not run" style, and explained.
    assert re.search(rf"^    class {ids['audit']} not_run$", text, re.M)
    assert "legend_not_run" in text


@pytest.mark.parametrize("name", WEIRD)
def test_mermaid_escapes_weird_names(name: str) -> None:
    first = flowkit.Task(lambda: 1, name=name)
    second = flowkit.Task(lambda x: x, name=name + " 2")
    first >> second
    text = DAG([second]).to_mermaid()
    labels = re.findall(r'^    n\d+\["([^"]*)"\]$', text, flags=re.M)
    assert len(labels) == 2
    for label in labels:
        # Outside entity codes, nothing that could close the label or open markup survives.
        assert not set(re.sub(r"#\d+;", "", label)) & set('"[]{}<>;#&`\\'), label
        decoded = re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), label)
        assert decoded in (name, name + " 2")
    assert re.search(r"^    n0 --> n1$", text, re.M)


def test_dot_plain_and_coloured() -> None:
    dag = _branchy()
    plain = dag.to_dot()
    assert plain.startswith('digraph "branchy" {') and plain.rstrip().endswith("}")
    assert "cluster_legend" not in plain
    assert len(re.findall(r"^    n\d+ -> n\d+;$", plain, flags=re.M)) == 4
    result = _run(dag, fail_fast=False)
    coloured = dag.to_dot(result)
    assert coloured == result.to_dot()
    assert "subgraph cluster_legend" in coloured
    load = re.search(r'^    n\d+ \[label="load", fillcolor="(#[0-9a-f]{6})"', coloured, re.M)
    assert load is not None and load.group(1) == STYLES["failed"].fill
    for label in ("success", "failed", "skipped", "cached", "upstream failed", "cancelled"):
        assert f'[label="{label}"' in coloured
    assert coloured.count("{") == coloured.count("}")


@pytest.mark.parametrize("name", WEIRD)
def test_dot_escapes_weird_names(name: str) -> None:
    flowkit.Task(lambda: 1, name=name)
    text = DAG(name='my "dag"').to_dot()
    assert text.startswith('digraph "my \\"dag\\"" {')
    label = re.search(r'^    n0 \[label="((?:[^"\\]|\\.)*)"\];$', text, flags=re.M)
    assert label is not None
    assert re.sub(r"\\(.)", r"\1", label.group(1)) == name


def test_dot_escapes_newlines() -> None:
    flowkit.Task(lambda: 1, name="two\nlines")
    assert '[label="two\\nlines"]' in DAG().to_dot()
