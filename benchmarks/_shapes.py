"""The graphs the overhead benchmark runs, as plain data every system can build from.

A :class:`Spec` lists, in topological order, each task's function and the
indices of its upstream tasks (in the order their values are passed). Making
a spec is not timed: it stands for the user's knowledge of their workflow.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

from benchmarks._noops import gather, source, step

__all__ = ["SHAPES", "Spec", "make_spec"]

SHAPES = ("chain", "fanout", "random")
RANDOM_MAX_UPSTREAM = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    """One graph: ``fns[i]`` is called with the values of ``ups[i]``."""

    shape: str
    size: int  # the N the tables show; a fan-out has N + 2 tasks
    fns: list[Callable[..., Any]]
    ups: list[tuple[int, ...]]
    names: list[str]
    sinks: list[int]  # tasks nothing depends on: what a peer must compute
    expected: tuple[int, int]  # (task index, value) a correct run produces

    @property
    def tasks(self) -> int:
        """How many tasks the graph has (the divisor of every per-task figure)."""
        return len(self.fns)


def make_spec(shape: str, size: int, seed: int = 0) -> Spec:
    """The ``shape`` graph with ``size`` tasks (fan-out: ``size`` parallel tasks)."""
    fns: list[Callable[..., Any]]
    ups: list[tuple[int, ...]]
    if shape == "chain":
        # each task takes its predecessor's value: fully sequential
        fns = [source, *[step] * (size - 1)]
        ups = [()] + [(i - 1,) for i in range(1, size)]
        expected = (size - 1, size - 1)
    elif shape == "fanout":
        # one root -> size parallel tasks -> one join taking size inputs
        fns = [source, *[step] * size, gather]
        ups = [()] + [(0,)] * size + [tuple(range(1, size + 1))]
        expected = (size + 1, size)
    elif shape == "random":
        # each task depends on 0-3 earlier tasks picked at random (seeded)
        rng = random.Random(f"{seed}:{size}")
        fns = [gather for _ in range(size)]
        ups = [
            tuple(rng.sample(range(i), rng.randint(0, min(RANDOM_MAX_UPSTREAM, i))))
            for i in range(size)
        ]
        expected = (size - 1, len(ups[size - 1]))
    else:
        raise ValueError(f"unknown shape {shape!r}: use one of {', '.join(SHAPES)}")
    has_downstream = {u for up in ups for u in up}
    return Spec(
        shape=shape,
        size=size,
        fns=fns,
        ups=ups,
        names=[f"t{i}" for i in range(len(fns))],
        sinks=[i for i in range(len(fns)) if i not in has_downstream],
        expected=expected,
    )
