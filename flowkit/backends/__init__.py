"""Where attempts run: the backends behind ``executor="sync" | "thread" | "process" | "dask"``
and any ``concurrent.futures.Executor``, plus the event loop of ``async def`` tasks.

- :mod:`~flowkit.backends.base`: the contract, and inline runs (``"sync"``);
- :mod:`~flowkit.backends.thread`: a pool of daemon threads (``"thread"``);
- :mod:`~flowkit.backends.futures`: any ``concurrent.futures.Executor``, and
  flowkit's own process pool (``"process"``);
- :mod:`~flowkit.backends.dask`: connecting to Dask (``"dask"``);
- :mod:`~flowkit.backends.asyncio`: coroutine tasks on an event loop.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import queue

from flowkit.backends.base import Backend, Completion
from flowkit.backends.dask import connect as _connect_dask
from flowkit.backends.futures import FutureBackend, ProcessBackend
from flowkit.backends.thread import ThreadBackend
from flowkit.exceptions import FlowkitError
from flowkit.executors import EXECUTOR_NAMES

__all__ = ["Backend", "Completion", "default_workers", "make_backend"]

def default_workers(kind: str) -> int:
    cpus = os.cpu_count() or 1
    return cpus if kind == "process" else min(32, cpus + 4)


def make_backend(
    executor: str | cf.Executor,
    max_workers: int | None,
    done: queue.SimpleQueue[Completion],
    *,
    address: str | None = None,
) -> Backend:
    """The backend for ``dag.run(executor=..., max_workers=..., address=...)``.

    ``executor="dask"`` connects to the Dask scheduler at ``address`` (default:
    ``$DASK_SCHEDULER_ADDRESS``), or starts a local cluster of ``max_workers``
    processes; the backend closes what it opened when the run ends.
    """
    if max_workers is not None and (
        not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
    ):
        raise FlowkitError(f"max_workers must be a positive integer or None, got {max_workers!r}")
    if address is not None and executor != "dask":
        raise FlowkitError(
            f"address={address!r} only applies to executor='dask' (got executor={executor!r})"
        )
    if isinstance(executor, cf.Executor):
        return FutureBackend(done, executor, owned=False)
    if executor == "dask":
        session = _connect_dask(address, n_workers=max_workers)
        return FutureBackend(done, session.executor, owned=False, name="dask",
                             on_close=session.close)
    if executor == "sync":
        return Backend(done)
    if executor == "thread":
        return ThreadBackend(done, max_workers or default_workers("thread"))
    if executor == "process":
        return ProcessBackend(done, max_workers or default_workers("process"))
    raise FlowkitError(
        f"unknown executor {executor!r}: use one of {', '.join(map(repr, EXECUTOR_NAMES))} "
        "or pass a concurrent.futures.Executor instance"
    )

