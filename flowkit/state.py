"""StateManager (minimal placeholder, replaced by the full implementation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowkit.context import RunContext
from flowkit.outcome import Status, TaskState
from flowkit.task import Task

__all__ = ["StateManager"]


class StateManager:
    """In-memory state."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def begin_run(
        self, run: RunContext, tasks: list[Task[..., Any]], *, resume: bool
    ) -> Mapping[str, tuple[Status, Any]]:
        return {}

    def lookup(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[str | None, bool, Any]:
        key = f"{task.name}:{args!r}"
        if key in self._cache:
            return key, True, self._cache[key]
        return key, False, None

    def on_task_success(self, run: RunContext, state: TaskState) -> None:
        if state.cache_key is not None:
            self._cache[state.cache_key] = state.value
