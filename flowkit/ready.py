"""Which task starts next: the ready queue and the start queue.

A task is *ready* the moment its last upstream task finishes; the scheduler
then decides what becomes of it (trigger rule, condition, cache). The ones
that must run wait in the :class:`StartQueue` until a worker and, for a task
with a ``pool``, enough slots of that pool are free. That is where the order
of starts is chosen, in one place:

1. higher ``priority`` first;
2. then the longer remaining path to the end of the DAG (the task's *bottom
   level*), each task weighted by its expected duration: the median recorded
   in the state's run history (the DAG's five latest runs), else 1 — the
   critical path starts first;
3. then declaration order.

Keeping tasks here rather than in a backend's queue is what makes the order
hold: a backend is given no more calls than it has workers.
"""

from __future__ import annotations

import collections
import heapq
import logging
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flowkit.exceptions import DAGValidationError, StateError
from flowkit.graph import Graph
from flowkit.outcome import TaskState
from flowkit.task import Task

logger = logging.getLogger("flowkit.state")

__all__ = ["ReadyQueue", "StartQueue", "bottom_levels", "check_pools"]


class ReadyQueue(collections.deque[int]):
    """The tasks whose upstream tasks have all finished, first come, first decided.

    A deque, so that the run loop's "anything ready?" and "the next one" cost no
    Python call: ``while ready: start(ready.popleft())``.
    """

    __slots__ = ()

    push = collections.deque.append


def bottom_levels(graph: Graph, weights: Mapping[str, float]) -> list[int]:
    """Each task's longest path to the end of the DAG, itself included.

    A task weighs ``weights[name]`` (its expected seconds, counted in whole
    milliseconds: finer differences are noise, and must not reorder equal
    tasks) or, unknown, the median of the known weights (1 when none is
    known). O(V + E): the graph's tasks are in topological order, so one
    backward sweep sees every downstream task before its upstream ones.
    """
    ms = {name: max(1, round(w * 1000)) for name, w in weights.items()}
    known = sorted(ms.values())
    default = known[len(known) // 2] if known else 1
    names, down = graph.names, graph.down
    level = [0] * len(names)
    below = level.__getitem__  # max(map(...)): the longest path below, found in C
    weight = [ms.get(name, default) for name in names] if ms else [default] * len(names)
    for i in range(len(names) - 1, -1, -1):
        level[i] = weight[i] + (max(map(below, down[i])) if down[i] else 0)
    return level


def check_pools(tasks: Sequence[Task[..., Any]], pools: Mapping[str, int] | None) -> dict[str, int]:
    """``pools`` checked against the tasks that use them, before anything runs.

    Raises:
        DAGValidationError: a task names a pool that ``pools`` lacks, or needs
            more slots than the pool has; a pool size is not a positive integer.
    """
    if pools is not None and not isinstance(pools, Mapping):
        raise DAGValidationError(
            f"pools must be a mapping of pool name to its number of slots, like "
            f"pools={{'db': 2}}; got {type(pools).__name__}"
        )
    sizes = dict(pools or {})
    if not sizes and not uses_pools(tasks):
        return sizes
    for name, size in sizes.items():
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise DAGValidationError(f"pool {name!r} must have a positive whole number of slots, "
                            f"got {size!r}")
    for task in tasks:
        pool, slots = task.options.pool, task.options.pool_slots
        if pool is None:
            continue
        if pool not in sizes:
            known = ", ".join(repr(p) for p in sizes) or "none"
            raise DAGValidationError(
                f"task {task.name!r} runs in pool {pool!r}, which this run does not define "
                f"(pools given: {known}); pass pools={{{pool!r}: N}} to run() "
                f"or --pool {pool}=N on the command line",
                task_name=task.name,
            )
        if slots > sizes[pool]:
            raise DAGValidationError(
                f"task {task.name!r} needs {slots} slots of pool {pool!r}, which has only "
                f"{sizes[pool]}: give the pool more slots or the task fewer (pool_slots)",
                task_name=task.name,
            )
    return sizes


def uses_pools(tasks: Sequence[Task[..., Any]]) -> bool:
    """Whether any of ``tasks`` runs in a pool."""
    # A C getter: no Python frame per task. A pool's name is never empty.
    return any(map(_POOL, tasks))


_POOL = operator.attrgetter("options.pool")
_PRIORITY = operator.attrgetter("options.priority")


class StartQueue:
    """Tasks that must run, waiting for a worker and for their pool's slots.

    ``capacity`` is how many attempts may run at once (``None``: no limit, the
    backend queues and orders what it is given). Within one ordering key the
    tasks wait in a heap of their indices (declaration order); the keys wait
    in a heap of their own, so the common case — many tasks sharing a key, as
    in a fan-out — costs an integer heap operation per task.
    """

    __slots__ = (
        "_buckets", "_dag_name", "_direct", "_graph", "_history", "_keys", "_level", "_told",
        "_uniform", "_waiting_for_pool",
        "capacity", "durations", "free", "index", "pooled",
    )

    def __init__(
        self, graph: Graph, capacity: int | None, pools: Mapping[str, int], history: object,
        dag_name: str,
    ):
        self.capacity = capacity
        self.index = graph.index
        self.free = dict(pools)  # pool -> slots not taken
        self.pooled = uses_pools(graph.tasks)
        self._graph, self._history, self._dag_name = graph, history, dag_name
        self._level: list[int] | None = None
        # When no task can ever wait (see prepare), tasks simply start in the
        # order they come: no keys, no heaps.
        self._direct: list[int] | None = None
        self.durations: dict[str, float] = {}  # expected seconds per task, from history
        self._buckets: dict[tuple[int, int], list[int]] = {}
        self._keys: list[tuple[int, int]] = []
        self._waiting_for_pool: dict[str, list[tuple[tuple[int, int], int]]] = {}
        self._told: set[int] = set()  # tasks waiting for a pool whose wait was reported
        self._uniform: bool | None = None  # every task has the same priority (None: not asked)

    def prepare(self) -> None:
        """Work out the critical path, once the run's state is known to be readable.

        Ordering is worth its cost only where something can wait: pools, or
        a backend with a bounded number of workers that more tasks could be
        ready for at once.
        """
        if not self.pooled and self.capacity is not None and self._never_crowded():
            self._direct = []
            return
        if self.capacity is not None or self.pooled:
            # The state's run history knows how long each task took (a state
            # without history weighs every task 1).
            durations = getattr(self._history, "expected_durations", None)
            try:
                weights = durations(self._dag_name) if durations is not None else {}
            except StateError as exc:  # a damaged history must not stop the run
                logger.warning("%s Tasks are ordered without their recorded durations.", exc)
                weights = {}
            # Durations read from a file may be anything a float can be.
            self.durations = {k: v for k, v in weights.items() if 0 <= v < math.inf}
            self._level = bottom_levels(self._graph, self.durations)

    def _never_crowded(self) -> bool:
        """Whether never more tasks are ready at once than the backend has workers.

        True when no task has two downstream tasks and there are no more roots
        than workers: two tasks ready at once then share no upstream task, so
        each descends from roots of its own. A chain is the common case.
        """
        graph = self._graph
        assert self.capacity is not None
        return (not graph.has_map and max(map(len, graph.down), default=0) <= 1
                and graph.up.count(()) <= self.capacity)

    def push(self, i: int, task: Task[..., Any]) -> None:
        """Task ``i`` (an attempt of ``task``) may start once there is room."""
        # Once per attempt: one call, and one integer heap push when the key's
        # bucket exists (an item node ``i`` of a map has its map's level).
        if self._direct is not None:
            self._direct.append(i)
            return
        level = self._level[self.index[task.name]] if self._level is not None else 0
        key = (-task.options.priority, -level)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._line_up(key, i)
        else:
            heapq.heappush(bucket, i)

    def _line_up(self, key: tuple[int, int], i: int) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = bucket = []
            heapq.heappush(self._keys, key)
        heapq.heappush(bucket, i)

    def can_take(self, running: int) -> bool:
        """Whether :meth:`take` would start something now."""
        if self._direct:
            return True
        return bool(self._keys) and (self.capacity is None or running < self.capacity)

    def take(
        self, running: int, states: Sequence[TaskState], on_wait: Callable[[int, str], None],
    ) -> list[int]:
        """The tasks to start now, in order, with their pool slots taken.

        ``running`` attempts run already; a task whose pool is full waits aside
        (without holding up the others) until :meth:`release` frees a slot;
        ``on_wait(task, pool)`` is told the first time it does.
        """
        direct = self._direct
        if direct is not None:
            self._direct = []
            return direct
        keys, buckets = self._keys, self._buckets
        if not keys:
            return []
        room = self.capacity - running if self.capacity is not None else -1  # -1: no limit
        if len(keys) == 1 and not self.pooled and (
            room < 0 or len(buckets[keys[0]]) <= room or (not running and self._same_priority())
        ):
            # One key (a fan-out's branches) and room for all of it, or nothing
            # running: then every task that becomes ready later descends from
            # one of these and has a shorter path (a retry waiting for its
            # delay aside), so none could start before them; handing them all
            # over keeps the workers fed. Otherwise the rest wait here, where
            # a task that becomes ready later with a higher priority or a
            # longer path still starts first (in the backend's queue it could
            # not).
            bucket = buckets.popitem()[1]
            keys.clear()
            bucket.sort()
            return bucket
        started: list[int] = []
        while keys and room != 0:
            key = keys[0]
            bucket = buckets[key]
            i = heapq.heappop(bucket)
            if not bucket:
                heapq.heappop(keys)
                del buckets[key]
            if self.pooled and not self._take_slots(i, key, states[i].task, on_wait):
                continue
            started.append(i)
            room -= 1
        return started

    def _same_priority(self) -> bool:
        if self._uniform is None:  # once per run, and only if asked
            self._uniform = len(set(map(_PRIORITY, self._graph.tasks))) == 1
        return self._uniform

    def _take_slots(
        self, i: int, key: tuple[int, int], task: Task[..., Any],
        on_wait: Callable[[int, str], None],
    ) -> bool:
        pool = task.options.pool
        if pool is None:
            return True
        slots = task.options.pool_slots
        if self.free[pool] >= slots:
            self.free[pool] -= slots
            self._told.discard(i)
            return True
        heapq.heappush(self._waiting_for_pool.setdefault(pool, []), (key, i))
        if i not in self._told:
            self._told.add(i)
            on_wait(i, pool)
        return False

    def release(self, i: int, task: Task[..., Any]) -> None:
        """An attempt of task ``i`` ended: free its pool slots, and put the tasks
        that waited for them back in line (in their order)."""
        pool = task.options.pool
        if pool is None:
            return
        self.free[pool] += task.options.pool_slots
        for key, j in self._waiting_for_pool.pop(pool, ()):
            self._line_up(key, j)

    def clear(self) -> list[int]:
        """Forget every waiting task (the run stops); return them."""
        dropped = [i for bucket in self._buckets.values() for i in bucket]
        if self._direct:
            dropped += self._direct
            self._direct = []
        dropped += [i for waiting in self._waiting_for_pool.values() for _, i in waiting]
        self._buckets.clear()
        self._keys.clear()
        self._waiting_for_pool.clear()
        self._told.clear()
        return dropped
