"""The outcome of a whole run: :class:`RunResult`, plain data about what happened.

Presentation sits above this module: :mod:`flowkit.render` and
:mod:`flowkit.report` read a ``RunResult``; this module never loads them at
import. Its ``to_html``/``to_mermaid``/``to_dot`` conveniences fetch them when
called, so ``import flowkit`` stays light.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flowkit.outcome import Status, TaskState

__all__ = ["RunResult"]


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
        self._values = {
            name: state.value for name, state in states.items() if state.status.produced_value
        }

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            state = self.states.get(name)
            if state is None:
                raise KeyError(f"no task named {name!r} in run {self.run_id}") from None
            raise KeyError(
                f"task {name!r} produced no value: it is {state.status.name}"
                + (f" (cause: {state.cause})" if state.cause else "")
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def graph(self) -> Mapping[str, tuple[str, ...]]:
        """Each task's upstream task names, in declaration order."""
        if callable(self._graph):  # made on first use: most runs never draw their graph
            self._graph = self._graph()
        return self._graph

    @property
    def ok(self) -> bool:
        """True when no task FAILED, was UPSTREAM_FAILED or CANCELLED (skips are fine)."""
        bad = (
            Status.FAILED,
            Status.UPSTREAM_FAILED,
            Status.CANCELLED,
            Status.PENDING,
            Status.RUNNING,
        )
        return not self.interrupted and all(s.status not in bad for s in self.states.values())

    @property
    def counts(self) -> dict[Status, int]:
        """How many tasks ended in each status."""
        return dict(Counter(state.status for state in self.states.values()))

    @property
    def failed(self) -> list[TaskState]:
        """States of the tasks that FAILED, in scheduling order."""
        return [s for s in self.states.values() if s.status is Status.FAILED]

    def summary(self) -> str:
        """A plain-text table: task, status, attempts, duration, cause."""
        rows = [("task", "status", "attempts", "duration", "cause")]
        for state in self.states.values():
            cause = state.cause if state.cause and state.cause != state.name else ""
            if state.status is Status.FAILED and state.error is not None:
                cause = f"{type(state.error).__name__}: {state.error}"
            elif state.reason and not cause:
                cause = state.reason
            rows.append(
                (
                    state.name,
                    state.status.name,
                    str(state.attempts),
                    f"{state.duration:.3f}s",
                    _shorten(cause, 60),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        counts = ", ".join(f"{n} {status.value}" for status, n in sorted(
            self.counts.items(), key=lambda item: item[0].name))
        verdict = "ok" if self.ok else ("interrupted" if self.interrupted else "FAILED")
        lines.append(f"run {self.run_id} of {self.dag_name!r}: {verdict} in "
                     f"{self.duration:.3f}s ({counts or 'no tasks'})")
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


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
