"""The ready queue: which of the tasks that may start now starts first.

The scheduler pushes a task here the moment its last upstream task finishes,
and takes every ready task at once when it starts work. This is the one place
that orders ready work: a scheduling policy (priorities, the critical path,
resource pools) is a replacement for :class:`ReadyQueue`.
"""

from __future__ import annotations

from collections.abc import Callable

from flowkit.graph import Graph

__all__ = ["ReadyQueue"]


class ReadyQueue:
    """The tasks ready to start, in the order they start: first come, first started.

    The one place that orders ready work; a scheduling policy (priorities,
    resource pools) replaces this class.
    """

    __slots__ = ("_items", "push")

    def __init__(self, graph: Graph, initial: list[int]):
        self._items = initial
        self.push: Callable[[int], None] = initial.append

    def __bool__(self) -> bool:
        return bool(self._items)

    def take(self) -> list[int]:
        """Every ready task, in start order; the queue is empty afterwards."""
        items = self._items[:]
        self._items.clear()
        return items
