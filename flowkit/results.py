"""The outcome of a whole run: :class:`RunResult`, plain data about what happened.

Presentation sits above this module: :mod:`flowkit.render` and
:mod:`flowkit.report` read a ``RunResult``; this module never loads them at
import. Its ``to_html``/``to_mermaid``/``to_dot`` conveniences fetch them when
called, so ``import flowkit`` stays light.
"""

from __future__ import annotations

import operator
import os
from collections import Counter
from collections.abc import Callable, ItemsView, Iterator, Mapping, ValuesView
from typing import Any, NamedTuple

from flowkit.outcome import Remote, Status, TaskState, fetch_remote, is_remote, item_of

_STATUS = operator.attrgetter("status")
_NOT_OK = (Status.FAILED, Status.UPSTREAM_FAILED, Status.CANCELLED, Status.PENDING, Status.RUNNING)

__all__ = ["LISTED_ITEMS", "RunResult", "SummaryRow", "cause_text"]

LISTED_ITEMS = 5
"""How many failed items of one mapped task the summary lists by name."""


class SummaryRow(NamedTuple):
    """One row of :meth:`RunResult.summary_rows`.

    Attributes:
        name: the task's name (an item's, for a failed item listed under its map node).
        status: its status; ``None`` on the row saying how many more items failed.
        attempts: attempts made (for a map node: by all its items).
        duration: seconds spent running (for a map node: by all its items).
        cause: why it ended as it did (for a map node: its items counted by status).
        item: True for a failed item listed under its map node.
        order: its place in the order the scheduler started attempts
            (:attr:`TaskState.order <flowkit.TaskState>`; for a map node: its first item's).
        pool: the pool it runs in, if any.
        pool_wait: seconds it waited for slots of that pool (for a map node: all its items).
    """

    name: str
    status: Status | None
    attempts: int
    duration: float
    cause: str
    item: bool = False
    order: int | None = None
    pool: str | None = None
    pool_wait: float = 0.0


class RunResult(Mapping[str, Any]):
    """The values of a run's tasks, by name, plus what happened to each task.

    It maps the name of every task that produced a value (SUCCESS or CACHED) to
    that value: ``run["load"]``, ``"load" in run``, ``run.get("x")``.

    Attributes:
        states: every task's :class:`~flowkit.TaskState`, in scheduling order.
        run_id: unique id of the run.
        dag_name: name of the DAG that ran.
        started_at: wall-clock start (``time.time()``).
        duration: wall time of the run, in seconds.
        graph: each task's upstream task names, in declaration order.
        interrupted: True when the run was stopped by Ctrl-C.
    """

    def __init__(
        self,
        *,
        states: dict[str, TaskState],
        run_id: str,
        dag_name: str,
        started_at: float,
        duration: float,
        graph: Mapping[str, tuple[str, ...]] | Callable[[], Mapping[str, tuple[str, ...]]],
        interrupted: bool = False,
    ):
        self.states = states
        self.run_id = run_id
        self.dag_name = dag_name
        self.started_at = started_at
        self.duration = duration
        self._graph = graph
        self.interrupted = interrupted
        self._produced: dict[str, Any] | None = None  # see _values
        self._items: dict[str, list[TaskState]] | None = None

    @property
    def _values(self) -> dict[str, Any]:
        """Each task that produced a value -> that value; made on first use, as
        many runs are never read by task name."""
        if self._produced is None:
            self._produced = {
                name: state.value for name, state in self.states.items()
                if state.status.produced_value
            }
        return self._produced

    def __getitem__(self, name: str) -> Any:
        try:
            value = self._values[name]
        except KeyError:
            state = self.states.get(name)
            if state is None:
                raise KeyError(f"no task named {name!r} in run {self.run_id}") from None
            raise KeyError(
                f"task {name!r} produced no value: it is {state.status.name}"
                + (f" (cause: {state.cause})" if state.cause else "")
            ) from None
        if is_remote(value):
            value = self._values[name] = fetch_remote([value])[0]
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._values  # without fetching a value that lives elsewhere

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> ValuesView[Any]:
        self._fetch_all()
        return super().values()

    def items(self) -> ItemsView[str, Any]:
        self._fetch_all()
        return super().items()

    def _fetch_all(self) -> None:
        """Bring every value that lives elsewhere here, in one round trip per backend."""
        names = [name for name, value in self._values.items() if is_remote(value)]
        if names:
            fetched = fetch_remote([self._values[n] for n in names])
            self._values.update(zip(names, fetched, strict=True))

    @property
    def futures(self) -> Mapping[str, Any]:
        """The Dask future of each value that lives on a Dask cluster (empty elsewhere).

        A mapped task's entry is the list of its items' futures.
        """
        found: dict[str, Any] = {}
        for name, state in self.states.items():
            value = state.value if state.status.produced_value else None
            if isinstance(value, Remote):
                found[name] = value.handle
            elif type(value) is list and any(isinstance(v, Remote) for v in value):
                found[name] = [v.handle if isinstance(v, Remote) else v for v in value]
        return found

    @property
    def graph(self) -> Mapping[str, tuple[str, ...]]:
        """Each task's upstream task names, in declaration order."""
        if callable(self._graph):  # made on first use: most runs never draw their graph
            self._graph = self._graph()
        return self._graph

    @property
    def ok(self) -> bool:
        """True when no task FAILED, was UPSTREAM_FAILED or CANCELLED (skips are fine)."""
        # map() with C getters: no Python frame per task (every run asks this)
        statuses = map(_STATUS, self.states.values())
        return not self.interrupted and not any(map(_NOT_OK.__contains__, statuses))

    @property
    def counts(self) -> dict[Status, int]:
        """How many tasks ended in each status."""
        return dict(Counter(state.status for state in self.states.values()))

    @property
    def failed(self) -> list[TaskState]:
        """States of the tasks that FAILED, in scheduling order."""
        return [s for s in self.states.values() if s.status is Status.FAILED]

    def map_items(self, name: str) -> list[TaskState]:
        """The states of mapped task ``name``'s items, in item order (``[]`` if it has none)."""
        return list(self._item_groups().get(name, ()))

    def _item_groups(self) -> dict[str, list[TaskState]]:
        if self._items is None:  # made on first use, once
            groups: dict[str, list[TaskState]] = {}
            for name, state in self.states.items():
                owner = item_of(name) if state.task.is_map else None
                if owner is not None and owner[0] in self.states:
                    groups.setdefault(owner[0], []).append(state)
            for items in groups.values():
                items.sort(key=lambda s: item_of(s.name) or ("", 0))
            self._items = groups
        return self._items

    def summary_rows(self) -> list[SummaryRow]:
        """The rows of :meth:`summary`: one per task, in scheduling order.

        A mapped task's items are folded into its row — attempts and durations
        summed, the cause counting its items by status — and only its FAILED
        items follow it, at most :data:`LISTED_ITEMS`, then a row saying how
        many more failed.
        """
        groups = self._item_groups()
        folded = {id(s) for items in groups.values() for s in items}
        rows = []
        for name, state in self.states.items():
            if id(state) in folded:
                continue
            items = groups.get(name)
            if not items:
                rows.append(_row(state))
                continue
            orders = [s.order for s in items if s.order is not None]
            rows.append(SummaryRow(
                name, state.status, sum(s.attempts for s in items),
                sum(s.duration for s in items), _item_counts(items),
                order=min(orders, default=None), pool=state.task.options.pool,
                pool_wait=sum(s.pool_wait for s in items),
            ))
            failed = [s for s in items if s.status is Status.FAILED]
            rows += [_row(s)._replace(item=True) for s in failed[:LISTED_ITEMS]]
            if len(failed) > LISTED_ITEMS:
                more = len(failed) - LISTED_ITEMS
                rows.append(SummaryRow(f"… and {more:,} more failed", None, 0, 0.0, "", True))
        return rows

    @property
    def start_order(self) -> list[str]:
        """Names of the tasks that started, in the order the scheduler started them
        (a mapped task's items by their own names); see :attr:`TaskState.order
        <flowkit.TaskState>`."""
        started = [s for s in self.states.values() if s.order is not None]
        return [s.name for s in sorted(started, key=lambda s: s.order or 0)]

    def summary(self) -> str:
        """A plain-text table: task, status, attempts, duration, cause.

        A mapped task takes one row however many items it has (see
        :meth:`summary_rows`); the last line counts tasks, then items.
        """
        rows = [("task", "status", "attempts", "duration", "cause")]
        for row in self.summary_rows():
            indent = "  " if row.item else ""
            if row.status is None:
                rows.append((indent + row.name, "", "", "", ""))
                continue
            rows.append((indent + row.name, row.status.name, f"{row.attempts:,}",
                         f"{row.duration:.3f}s", _shorten(row.cause, 60)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        items = [s for group in self._item_groups().values() for s in group]
        folded = {id(s) for s in items}
        counts = _counted([s for s in self.states.values() if id(s) not in folded]) \
            or "no tasks"
        if items:
            counts += f"; {_item_counts(items)}"
        verdict = "ok" if self.ok else ("interrupted" if self.interrupted else "FAILED")
        lines.append(f"run {self.run_id} of {self.dag_name!r}: {verdict} in "
                     f"{self.duration:.3f}s ({counts})")
        return "\n".join(lines)

    def to_html(self, path: str | os.PathLike[str] | None = None) -> str:
        """A self-contained HTML report of the run (timeline, table, graph); see ``flowkit.report``.

        Writes it to ``path`` (UTF-8) when one is given, and returns it either way.
        """
        from flowkit.report import render_html  # presentation: loaded when asked for

        page = render_html(self)
        if path is not None:
            with open(path, "w", encoding="utf-8") as file:
                file.write(page)
        return page

    def to_mermaid(self) -> str:
        """The run's graph as a Mermaid flowchart, nodes coloured by status."""
        from flowkit.render import to_mermaid  # presentation: loaded when asked for

        return to_mermaid(self.graph, {n: s.status for n, s in self.states.items()})

    def to_dot(self) -> str:
        """The run's graph as Graphviz DOT, nodes coloured by status."""
        from flowkit.render import to_dot  # presentation: loaded when asked for

        statuses = {n: s.status for n, s in self.states.items()}
        return to_dot(self.graph, statuses, name=self.dag_name)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {status.value}" for status, n in self.counts.items())
        return (
            f"RunResult(dag={self.dag_name!r}, run_id={self.run_id!r}, ok={self.ok}, "
            f"tasks={len(self.states)} [{counts}], duration={self.duration:.3f}s)"
        )


def cause_text(state: TaskState) -> str:
    """Why a task ended as it did, in a few words (empty for a plain success)."""
    if state.status is Status.FAILED and state.error is not None:
        return f"{type(state.error).__name__}: {state.error}"
    cause = state.cause if state.cause and state.cause != state.name else ""
    return cause or state.reason or ""


def _row(state: TaskState) -> SummaryRow:
    return SummaryRow(state.name, state.status, state.attempts, state.duration,
                      cause_text(state), order=state.order, pool=state.task.options.pool,
                      pool_wait=state.pool_wait)


def _counted(states: list[TaskState]) -> str:
    """``"1 failed, 10 success"``: statuses by name, each with its count."""
    counts = Counter(state.status for state in states)
    return ", ".join(f"{n:,} {status.value}" for status, n in sorted(
        counts.items(), key=lambda item: item[0].name))


def _item_counts(items: list[TaskState]) -> str:
    """``"14,523 items: 14,520 success, 3 failed"``."""
    counts = Counter(state.status for state in items)
    by_status = ", ".join(f"{counts[s]:,} {s.value}" for s in Status if counts[s])
    return f"{len(items):,} item{'s' if len(items) != 1 else ''}" + \
        (f": {by_status}" if by_status else "")


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
