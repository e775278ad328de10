"""Executor settings users may read or change: the executor names, and the size
above which a result coming back from another process is reported.

The backends themselves live in :mod:`flowkit.backends`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BATCH_BELOW_SECONDS", "BATCH_SECONDS", "EXECUTOR_NAMES", "LARGE_RESULT_BYTES", "MAX_BATCH",
]

EXECUTOR_NAMES = ("thread", "process", "sync", "dask")

LARGE_RESULT_BYTES = 10 * 1024 * 1024
"""Pickled size above which a result coming back from another process is
reported (once per run, as a WARNING of the ``flowkit.executors`` logger).
Assign a new value to change the threshold."""


BATCH_BELOW_SECONDS = 0.01
"""On ``executor="process"``, once some task's recorded median duration (the
run history of a state) is below this, calls travel to the workers in batches
(those of longer tasks too, while they fit in one; see ``BATCH_SECONDS``):
the calling process spends about 0.2-0.3 ms per call sent alone, which on a
machine with as many workers as cores is taken from the workers."""

BATCH_SECONDS = 0.1
"""About how many seconds of expected work one batch holds."""

MAX_BATCH = 64
"""At most this many calls in one batch."""


def __getattr__(name: str) -> Any:
    # The backend contract, under the name it had before flowkit.backends existed;
    # imported on first use so that reading a setting loads no backend.
    if name == "Backend":
        from flowkit.backends.base import Backend

        return Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
