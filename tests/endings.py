"""Helpers for runs that must end: a guard against hangs, and what an attempt
that lost its executor must say. Importable by any test module."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from flowkit import Status, TaskExecutionError, TaskState

T = TypeVar("T")


def bounded(run: Callable[[], T], seconds: float = 60) -> T:
    """Call ``run`` in a thread; fail the test (rather than hang) if it takes too long."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = run()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the run did not finish within {seconds}s"
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


def assert_lost(state: TaskState, *words: str) -> None:
    """``state`` failed at its first attempt because its executor can run nothing
    more, and was not retried (its task has retries): the error says so, and ``words``."""
    assert state.status is Status.FAILED
    assert state.attempts == 1
    error = state.error
    assert isinstance(error, TaskExecutionError)
    assert not error.retryable
    message = str(error)
    for word in (f"task {state.name!r} did not finish", "not retried", "resume=True", *words):
        assert word in message, message
