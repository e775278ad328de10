"""The in-memory store: the default, gone when the process ends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flowkit.state.history import HistoryIndex, HistoryRun, RunEnd, RunHead, RunRow, TaskEnd
from flowkit.state.stores.base import CacheEntry, Outcome, Store, belongs_to

__all__ = ["MemoryStore"]

# What a subclass may override to watch records as they come (see lazy_records).
_WATCHED = ("record", "history_start", "history_task", "history_tasks_add", "history_end")


class MemoryStore(Store):
    """Keeps results as the Python objects themselves: no copy, no serializer.

    A cached value is handed to downstream tasks as the very object that was
    stored, so a task that mutates its input also mutates the cache.
    """

    keeps_objects = True

    @property
    def lazy_records(self) -> bool:  # type: ignore[override]
        # A crash loses this store anyway, so records may come late — unless a
        # subclass overrides a method to watch each one as it happens.
        kind = type(self)
        return all(getattr(kind, name) is getattr(MemoryStore, name) for name in _WATCHED)
    location = "memory"

    def __init__(self) -> None:
        self._entries: dict[str, CacheEntry] = {}
        self._runs: dict[str, tuple[str, dict[str, Outcome]]] = {}
        self._history = HistoryIndex()

    def get_entry(self, key: str) -> CacheEntry | None:
        return self._entries.get(key)

    def entries(self) -> list[CacheEntry]:
        return sorted(self._entries.values(), key=lambda e: e.created)

    def start_run(
        self, dag: str, run_id: str, started: float, carried: Iterable[Outcome] = ()
    ) -> None:
        self._runs[dag] = (run_id, {o.name: o for o in carried})

    def record(self, outcome: Outcome, entry: CacheEntry | None = None) -> None:
        run = self._runs.get(outcome.dag)
        if run is not None and run[0] == outcome.run_id:
            run[1][outcome.name] = outcome
        if entry is not None:
            self._entries.pop(entry.key, None)  # re-insert: newest last
            self._entries[entry.key] = entry

    def latest_run(self, dag: str) -> tuple[str, Mapping[str, Outcome]] | None:
        run = self._runs.get(dag)
        return None if run is None else (run[0], dict(run[1]))

    def invalidate(self, name: str | None = None) -> int:
        if name is None:
            dropped = len(self._entries)
            self._entries.clear()
            for _, outcomes in self._runs.values():
                outcomes.clear()
            return dropped
        keys = [k for k, e in self._entries.items() if belongs_to(e.name, name)]
        for key in keys:
            del self._entries[key]
        for _, outcomes in self._runs.values():
            for gone in [n for n in outcomes if belongs_to(n, name)]:
                del outcomes[gone]
        return len(keys)

    def clear(self) -> None:
        self._entries.clear()
        self._runs.clear()
        self._history.clear()

    def history_start(self, head: RunHead, tasks: Iterable[TaskEnd] = ()) -> None:
        self._history.start(head)
        for task in tasks:
            self._history.task(task)

    def history_task(self, task: TaskEnd) -> None:
        self._history.task(task)

    def history_tasks_add(self, tasks: Iterable[TaskEnd]) -> None:
        if type(self).history_task is not MemoryStore.history_task:
            super().history_tasks_add(tasks)  # a subclass watches each record
            return
        self._history.tasks(tasks)

    def history_end(self, end: RunEnd) -> None:
        self._history.end(end)

    def history_runs(
        self, dag: str | None = None, limit: int | None = None, *, tasks: bool = True
    ) -> list[HistoryRun]:
        return self._history.runs(dag, limit, tasks=tasks)

    def history_run(self, run_id: str) -> HistoryRun | None:
        return self._history.run(run_id)

    def history_rows(self, dag: str | None = None) -> list[RunRow]:
        return self._history.rows(dag)

    def history_tasks(self, dag: str | None, name: str | None) -> list[TaskEnd]:
        return self._history.task_ends(dag, name)

    def history_durations(self, dag: str, runs: int) -> dict[str, float]:
        return self._history.durations(dag, runs)
