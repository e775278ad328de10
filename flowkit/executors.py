"""Executor settings users may read or change: the executor names, and the size
above which a result coming back from another process is reported.

The backends themselves live in :mod:`flowkit.backends`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXECUTOR_NAMES", "LARGE_RESULT_BYTES"]

EXECUTOR_NAMES = ("thread", "process", "sync", "dask")

LARGE_RESULT_BYTES = 10 * 1024 * 1024
"""Pickled size above which a result coming back from another process is
reported (once per run, as a WARNING of the ``flowkit.executors`` logger).
Assign a new value to change the threshold."""


def __getattr__(name: str) -> Any:
    # The backend contract, under the name it had before flowkit.backends existed;
    # imported on first use so that reading a setting loads no backend.
    if name == "Backend":
        from flowkit.backends.base import Backend

        return Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
