"""The task functions of the overhead benchmark: each does next to nothing.

They live in an importable module, not in the script run as ``__main__``, so
process pools can pickle them by reference under every start method.
"""

from __future__ import annotations


def source() -> int:
    """A task without inputs (the first task of every shape)."""
    return 0


def step(value: int) -> int:
    """A task with one input: the next link of a chain, or a branch of a fan-out."""
    return value + 1


def gather(*values: int) -> int:
    """A task with any number of inputs: the join of a fan-out, a node of the random DAG."""
    return len(values)


def items(count: int) -> list[int]:
    """The list a mapped task runs over: ``count`` zeros."""
    return [0] * count


def total(values: list[int]) -> int:
    """The join after a mapped task: takes the whole list of item results."""
    return len(values)
