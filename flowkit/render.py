"""Pictures of a DAG as text: Mermaid flowcharts and Graphviz DOT.

Both renderers work from a plain mapping of task name to upstream names (what
``RunResult.graph`` holds, and what ``DAG.to_mermaid`` builds), optionally with
each task's :class:`~flowkit.Status`, so they know nothing of how a DAG runs.
Task names become labels only: node ids are generated (``n0``, ``n1`` …), so
quotes, spaces, brackets or keywords in a name can never break the syntax.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from flowkit.outcome import Status

__all__ = ["LEGEND", "NOT_RUN", "STYLES", "Style", "to_dot", "to_mermaid"]


class Style(NamedTuple):
    """How a status is drawn: fill, border and text colours, and the legend label."""

    fill: str
    stroke: str
    text: str
    label: str


# One palette for every picture flowkit draws (Mermaid, DOT and the HTML report).
STYLES: dict[str, Style] = {
    "success": Style("#c8e6c9", "#2e7d32", "#1b3d1e", "success"),
    "failed": Style("#ffcdd2", "#c62828", "#5c1010", "failed"),
    "retried": Style("#fff3b0", "#c79a00", "#4d3b00", "failed, then retried"),
    "skipped": Style("#eceff1", "#78909c", "#37474f", "skipped"),
    "cached": Style("#bbdefb", "#1565c0", "#0d2c54", "cached"),
    "upstream_failed": Style("#ffe0b2", "#e65100", "#5a2000", "upstream failed"),
    "cancelled": Style("#e1d5e7", "#7b5e8b", "#3b2a45", "cancelled"),
    "not_run": Style("#ffffff", "#9e9e9e", "#616161", "not run"),
    "waiting": Style("#f5f5f5", "#90a4ae", "#455a64", "waiting for a pool slot"),
}

NOT_RUN = "not_run"
"""Style key of a task that has no status (outside the run's targets, or no result)."""

LEGEND: tuple[str, ...] = (
    "success",
    "failed",
    "skipped",
    "cached",
    "upstream_failed",
    "cancelled",
)
"""The statuses every coloured picture explains, in legend order."""

_FINAL = {
    Status.SUCCESS: "success",
    Status.FAILED: "failed",
    Status.SKIPPED: "skipped",
    Status.CACHED: "cached",
    Status.UPSTREAM_FAILED: "upstream_failed",
    Status.CANCELLED: "cancelled",
}


def style_key(status: Status | None) -> str:
    """The :data:`STYLES` key for a status (``"not_run"`` for none or an unfinished one)."""
    return _FINAL.get(status, NOT_RUN) if status is not None else NOT_RUN


def to_mermaid(
    graph: Mapping[str, Sequence[str]],
    statuses: Mapping[str, Status] | None = None,
) -> str:
    """A Mermaid ``flowchart`` of ``graph`` (task name → upstream names).

    With ``statuses``, each node is coloured by its status (``classDef``) and a
    legend subgraph explains the colours.
    """
    ids = _ids(graph)
    lines = ["flowchart LR"]
    lines += [f'    {ids[name]}["{_mermaid_text(name)}"]' for name in ids]
    lines += [f"    {ids[up]} --> {ids[name]}" for name, up in _edges(graph)]
    if statuses is None:
        return "\n".join(lines) + "\n"
    keys = {name: style_key(statuses.get(name)) for name in ids}
    used = [*LEGEND, *([NOT_RUN] if NOT_RUN in keys.values() else [])]
    for key in used:
        style = STYLES[key]
        lines.append(
            f"    classDef {key} fill:{style.fill},stroke:{style.stroke},color:{style.text}"
        )
    for key in used:
        members = [ids[name] for name, k in keys.items() if k == key]
        if members:
            lines.append(f"    class {','.join(members)} {key}")
    lines.append('    subgraph legend["Legend"]')
    lines.append("        direction LR")
    lines += [f'        legend_{key}["{STYLES[key].label}"]:::{key}' for key in used]
    # Invisible links keep the legend in one row.
    lines.append("        " + " ~~~ ".join(f"legend_{key}" for key in used))
    lines.append("    end")
    lines.append("    style legend fill:#ffffff,stroke:#9e9e9e")
    return "\n".join(lines) + "\n"


def to_dot(
    graph: Mapping[str, Sequence[str]],
    statuses: Mapping[str, Status] | None = None,
    *,
    name: str = "flowkit",
) -> str:
    """A Graphviz ``digraph`` of ``graph`` (task name → upstream names).

    With ``statuses``, nodes are filled by status and a legend cluster explains
    the colours. Render it with ``dot -Tsvg``.
    """
    ids = _ids(graph)
    plain = STYLES[NOT_RUN]
    lines = [
        f"digraph {_dot_text(name)} {{",
        '    graph [rankdir=LR, fontname="Helvetica"];',
        f'    node [shape=box, style="rounded,filled", fontname="Helvetica", '
        f'fillcolor="{plain.fill}", color="{plain.stroke}"];',
        '    edge [color="#607d8b"];',
    ]
    keys = {task: style_key(statuses.get(task)) for task in ids} if statuses is not None else {}
    for task, node in ids.items():
        colour = ""
        if task in keys:
            style = STYLES[keys[task]]
            colour = f', fillcolor="{style.fill}", color="{style.stroke}", fontcolor="{style.text}"'
        lines.append(f"    {node} [label={_dot_text(task)}{colour}];")
    lines += [f"    {ids[up]} -> {ids[task]};" for task, up in _edges(graph)]
    if statuses is not None:
        used = [*LEGEND, *([NOT_RUN] if NOT_RUN in keys.values() else [])]
        lines += [
            "    subgraph cluster_legend {",
            '        label="Legend"; style="rounded"; color="#9e9e9e"; fontname="Helvetica";',
        ]
        for key in used:
            style = STYLES[key]
            lines.append(
                f'        legend_{key} [label="{style.label}", fillcolor="{style.fill}", '
                f'color="{style.stroke}", fontcolor="{style.text}"];'
            )
        # Invisible edges keep the legend in one tidy row.
        lines.append("        " + " -> ".join(f"legend_{key}" for key in used) + " [style=invis];")
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _ids(graph: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """A safe node id per task, upstream-only names included."""
    names: dict[str, None] = dict.fromkeys(graph)
    for ups in graph.values():
        names.update(dict.fromkeys(ups))
    return {name: f"n{i}" for i, name in enumerate(names)}


def _edges(graph: Mapping[str, Sequence[str]]) -> Iterable[tuple[str, str]]:
    for name, ups in graph.items():
        for up in ups:
            yield name, up


# Mermaid labels may contain markup and entity codes; encode everything that is
# not plainly harmless as ``#<code>;`` (Mermaid's own escape) so a name shows as written.
_MERMAID_SAFE = frozenset("_-.,:/()+=*!?@%^~ ")


def _mermaid_text(text: str) -> str:
    return "".join(c if c.isalnum() or c in _MERMAID_SAFE else f"#{ord(c)};" for c in text)


def _dot_text(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return f'"{escaped}"'
