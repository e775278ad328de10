"""The shape of a DAG: tasks in topological order, as integer-indexed edge lists.

Built once per DAG (and per ``targets``) so that a run does no graph work per
task beyond following these lists.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from flowkit.exceptions import DAGCycleError, DAGValidationError, TaskDefinitionError
from flowkit.task import MapTask, Task

__all__ = [
    "SCHEDULE_PARAMS",
    "Graph",
    "UpstreamNames",
    "stale_message",
    "stale_upstream",
    "upstream_closure",
]

SCHEDULE_PARAMS = frozenset({"interval_start", "interval_end"})
"""Run parameters a scheduled run always has (``DAG.serve``): never reported as typos."""


def upstream_closure(roots: Iterable[object]) -> list[Task[..., Any]]:
    """``roots`` and everything upstream of them, in topological order.

    A depth-first walk whose post-order is the topological order; meeting a
    task that is still on the walk's path means a cycle.

    Raises:
        DAGCycleError: with the cycle, e.g. ``a -> b -> a``.
        DAGValidationError: two distinct tasks share a name.
    """
    order: list[Task[..., Any]] = []
    mark: dict[Task[..., Any], bool] = {}  # False: on the current path, True: done
    names: dict[str, Task[..., Any]] = {}
    for root in roots:
        if not isinstance(root, Task):
            raise TaskDefinitionError(f"DAG tasks must be Task objects, got {root!r}")
        if root in mark:
            continue
        mark[root] = False
        path = [root]
        stack = [iter(root.upstream)]
        while stack:
            for up in stack[-1]:
                seen = mark.get(up)
                if seen is None:
                    mark[up] = False
                    path.append(up)
                    stack.append(iter(up.upstream))
                    break
                if seen is False:  # ``up`` is on the path: a cycle closes here
                    start = path.index(up)
                    # path[k + 1] is upstream of path[k]: reverse it to read along ``>>``.
                    cycle = [up.name] + [t.name for t in reversed(path[start:])]
                    raise DAGCycleError(cycle)
            else:
                stack.pop()
                done = path.pop()
                mark[done] = True
                _check_unique(names, done)
                order.append(done)
    return order


def stale_upstream(graph: Graph) -> list[tuple[Task[..., Any], Task[..., Any]]]:
    """``(task, upstream)`` pairs of ``graph`` where ``upstream`` is no longer its
    registry's task of that name: it was defined again (a notebook cell or a
    module run again) after it was wired, so the DAG would run the old definition."""
    stale = []
    tasks = graph.tasks
    for task, ups in zip(tasks, graph.up, strict=True):
        for u in ups:
            up = tasks[u]
            current = up.registry.get(up.name)
            if current is None or current is up:
                continue
            if isinstance(current, MapTask) and current.template is up:
                continue  # ``up.map()`` took the name over: a template, not a redefinition
            stale.append((task, up))
    return stale


def stale_message(task: Task[..., Any], up: Task[..., Any]) -> str:
    return (
        f"task {task.name!r} is wired to an old definition of {up.name!r}: {up.name!r} was "
        "defined again after the wiring, and this DAG runs the old one. Re-run the wiring "
        f"({up.name} >> {task.name}) after redefining a task, then build the DAG again."
    )


def _check_unique(names: dict[str, Task[..., Any]], task: Task[..., Any]) -> None:
    other = names.setdefault(task.name, task)
    if other is not task:
        raise DAGValidationError(
            f"two different tasks are named {task.name!r}. Give each task a unique name; "
            "if you redefined a task (a notebook cell run again), re-run the wiring of "
            "the tasks that depend on it too, so they point at the new definition.",
            task_name=task.name,
        )


class UpstreamNames(Mapping[str, tuple[str, ...]]):
    """Each task's upstream task names, in declaration order: a read-only view of
    a graph's edges, made when read. It holds the graph's names and edges (never
    changed once built), not its tasks, and no copy of them."""

    __slots__ = ("_index", "_names", "_up")

    def __init__(
        self, names: list[str], up: list[tuple[int, ...]], index: dict[str, int]
    ) -> None:
        self._names, self._up, self._index = names, up, index

    def __getitem__(self, name: str) -> tuple[str, ...]:
        # map() with a C getter: no Python frame per edge
        return tuple(map(self._names.__getitem__, self._up[self._index[name]]))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __repr__(self) -> str:
        return f"UpstreamNames({dict(self)!r})"

    @property
    def names(self) -> Sequence[str]:
        """The task names, in the graph's order (the order of iteration)."""
        return self._names

    @property
    def positions(self) -> Mapping[str, int]:
        """Each task name's place in :attr:`names`."""
        return self._index


class Graph:
    """Tasks in topological order with their edges as index tuples."""

    __slots__ = (
        "_run_parameters",
        "_upstream_names",
        "down",
        "has_async",
        "has_map",
        "index",
        "names",
        "numbers",
        "tasks",
        "up",
    )

    def __init__(self, tasks: Sequence[Task[..., Any]]):
        self.tasks = list(tasks)
        self.names = [t.name for t in self.tasks]
        # One int per task, shared by every structure here and by a run's start
        # order (one more: it counts from 1): past 256 an int is an object of
        # its own, and each enumerate() would make them all again.
        self.numbers = list(range(len(self.tasks) + 1))
        numbers = self.numbers[:-1]
        self.index = dict(zip(self.names, numbers, strict=True))
        position = dict(zip(self.tasks, numbers, strict=True))
        # Equal edge tuples are one object: a chain's (i,) is the upstream of
        # i + 1 and the downstream of i - 1; a fan-out's tasks all share theirs.
        same: dict[tuple[int, ...], tuple[int, ...]] = {}
        one = same.setdefault
        made = (tuple([position[u] for u in t.upstream]) for t in self.tasks)
        self.up: list[tuple[int, ...]] = [one(edges, edges) for edges in made]
        down: list[list[int]] = [[] for _ in numbers]
        for i, ups in zip(numbers, self.up, strict=True):
            for u in ups:
                down[u].append(i)
        self.down: list[Sequence[int]] = [one(d, d) for d in map(tuple, down)]
        self.has_async = any(t.is_async for t in self.tasks)
        self.has_map = any(t.is_map for t in self.tasks)
        self._run_parameters: list[tuple[int, tuple[tuple[str, bool], ...]]] | None = None
        self._upstream_names: UpstreamNames | None = None

    def __len__(self) -> int:
        return len(self.tasks)

    def width(self) -> int:
        """At least as many as the most tasks that can run at once: the workers worth starting.

        Tasks that run at once lie on no common path, so at most one task of
        the longest path can be among them. A task with a timeout counts once
        more: a process pool cannot always stop it, and its worker may stay busy.
        """
        depth = [0] * len(self.tasks)
        for i, ups in enumerate(self.up):  # topological order: the upstream first
            depth[i] = 1 + max([depth[u] for u in ups], default=0)
        longest = max(depth, default=0)
        timed = sum(1 for t in self.tasks if t.options.timeout is not None)
        return min(len(self.tasks), len(self.tasks) - longest + 1 + timed)

    @property
    def upstream_names(self) -> UpstreamNames:
        """Each task's upstream task names, in declaration order (a view: no copy)."""
        if self._upstream_names is None:
            self._upstream_names = UpstreamNames(self.names, self.up, self.index)
        return self._upstream_names

    def check_signatures(self) -> None:
        """Every task's function must accept as many inputs as it has upstream tasks.

        Parameters left unfed are run parameters, checked by :meth:`bind_params`.
        """
        for task, ups in zip(self.tasks, self.up, strict=True):
            if task.is_map and task.signature.takes_nothing:
                raise DAGValidationError(
                    f"task {task.name!r} is mapped over a list, but its function takes no "
                    "parameters: give it one for the item",
                    task_name=task.name,
                )
            if task.is_map and not ups:
                raise DAGValidationError(
                    f"task {task.name!r} is mapped over the result of its first upstream task, "
                    f"but it has none: wire one, e.g. items >> {task.name}",
                    task_name=task.name,
                )
            if not task.signature.accepts(len(ups)):
                upstream = ", ".join(self.names[u] for u in ups) or "none"
                raise DAGValidationError(
                    f"task {task.name!r} cannot be called: it receives {len(ups)} upstream "
                    f"value(s) positionally (from: {upstream}) but its signature is "
                    f"{task.signature.describe(task.fn)}. Make the function take one parameter "
                    "per upstream task, in the order the edges were declared, or no parameters "
                    "at all if the edges only order the work.",
                    task_name=task.name,
                )

    def run_parameters(self) -> list[tuple[int, tuple[tuple[str, bool], ...]]]:
        """``(task index, ((name, required), ...))`` for each task that takes run parameters."""
        if self._run_parameters is None:
            found = []
            for i, (task, ups) in enumerate(zip(self.tasks, self.up, strict=True)):
                signature = task.signature
                if len(signature.positional) <= len(ups) and not signature.keyword_only:
                    continue  # every named parameter is fed: the common case, decided fast
                slots = signature.run_parameters(len(ups))
                if slots:
                    found.append((i, slots))
            self._run_parameters = found
        return self._run_parameters

    def parameter_names(self) -> set[str]:
        """Every name a task of this graph takes as a run parameter."""
        return {name for _, slots in self.run_parameters() for name, _ in slots}

    def bind_params(
        self, params: Mapping[str, Any], also_known: Collection[str] = ()
    ) -> dict[int, dict[str, Any]]:
        """The keyword arguments each task gets from ``params``, by task index.

        ``also_known`` are names that are no typo although no task here takes
        them (tasks of the DAG that ``targets`` left out).

        Raises:
            DAGValidationError: a required parameter has no value, or a run
                parameter is taken by no task (a typo, most likely).
        """
        bound: dict[int, dict[str, Any]] = {}
        used: set[str] = set()
        for i, slots in self.run_parameters():
            kwargs = {}
            for name, required in slots:
                if name in params:
                    kwargs[name] = params[name]
                    used.add(name)
                elif required:
                    task = self.tasks[i]
                    upstream = ", ".join(self.names[u] for u in self.up[i]) or "none"
                    raise DAGValidationError(
                        f"task {task.name!r} needs a value for its parameter {name!r}: no "
                        f"upstream task feeds it (upstream: {upstream}; signature "
                        f"{task.signature.describe(task.fn)}). Pass it as a run parameter, "
                        f"dag.run(params={{{name!r}: ...}}), give it a default, or wire "
                        "an upstream task for it.",
                        task_name=task.name,
                    )
            if kwargs:
                bound[i] = kwargs
        # A scheduled run always carries its interval, whether a task takes it or not.
        unknown = sorted(set(params) - used - set(also_known) - SCHEDULE_PARAMS)
        if unknown:
            accepted = sorted(self.parameter_names() | set(also_known))
            raise DAGValidationError(
                f"run parameter {unknown[0]!r} is not a parameter of any task in this run "
                f"(tasks take: {', '.join(accepted) or 'none'}). Check its spelling.",
            )
        return bound
