"""The items a mapped task runs over, read from its upstream task's value."""

from __future__ import annotations

from typing import Any

from flowkit.outcome import Remote

__all__ = ["Unmappable", "items_of"]


class Unmappable(Exception):
    """The value cannot be mapped over: ``error`` fails the mapped task, ``reason`` says why."""

    def __init__(self, error: BaseException, reason: str):
        super().__init__(reason)
        self.error, self.reason = error, reason


def items_of(task_name: str, source: Any, source_name: str) -> list[Any]:
    """The items of ``source`` (the value of ``source_name``) for mapped task ``task_name``.

    Raises:
        Unmappable: ``source`` is not iterable, or reading it raised.
    """
    if isinstance(source, Remote):  # its items stay where it lives
        if isinstance(source.length, Exception):
            raise Unmappable(source.length, "its input could not be mapped over")
        return [source.item(k) for k in range(source.length or 0)]
    try:
        iterator = iter(source)
    except TypeError:
        raise Unmappable(TypeError(
            f"task {task_name!r} is mapped over the result of {source_name!r}, "
            f"which is a {type(source).__name__}, not an iterable: return a list "
            "(or any iterable)"
        ), "its input could not be mapped over") from None
    try:
        return list(iterator)
    except Exception as exc:  # a generator that raised while it was read
        raise Unmappable(exc, f"reading the items of {source_name!r} raised") from exc
