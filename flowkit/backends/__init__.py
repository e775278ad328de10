"""Where attempts run: the backends behind ``executor="sync" | "thread" | "process" | "dask"``
and any ``concurrent.futures.Executor``, plus the event loop of ``async def`` tasks.

- :mod:`~flowkit.backends.base`: the contract every backend keeps (:class:`Backend`, :class:`Call`);
- :mod:`~flowkit.backends.sync`: inline, in the scheduler's thread (``"sync"``);
- :mod:`~flowkit.backends.thread`: a pool of daemon threads (``"thread"``);
- :mod:`~flowkit.backends.futures`: any ``concurrent.futures.Executor``, and
  flowkit's own process pool (``"process"``);
- :mod:`~flowkit.backends.dask`: Dask's executors, and connecting to Dask (``"dask"``);
- :mod:`~flowkit.backends.asyncio`: coroutine tasks on an event loop.

Each backend module is imported when a run asks for it, so ``import flowkit``
loads no process pool, event loop or Dask.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from typing import TYPE_CHECKING

from flowkit.backends.base import Backend, Call, Clock, Inbox
from flowkit.exceptions import FlowkitError
from flowkit.executors import EXECUTOR_NAMES

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    import asyncio

__all__ = [
    "MAX_WORKERS_PER_CPU", "Backend", "Call", "default_workers", "make_backend", "usable_workers",
]

MAX_WORKERS_PER_CPU = 32
"""The most workers per CPU a pool flowkit creates gets, whatever ``max_workers`` says."""


def default_workers(kind: str) -> int:
    """How many workers a pool of ``kind`` (``"thread"`` or ``"process"``) gets by default."""
    cpus = os.cpu_count() or 1
    return cpus if kind == "process" else min(32, cpus + 4)


def usable_workers(kind: str, requested: int | None, width: int | None) -> int:
    """How many workers a pool of ``kind`` gets: what was asked for (else the
    default), never more than ``width`` tasks can use at once, nor more than
    :data:`MAX_WORKERS_PER_CPU` per CPU: a process pool starts every worker it
    may have, so ``max_workers=10**9`` must not mean a billion processes."""
    workers = requested or default_workers(kind)
    ceiling = MAX_WORKERS_PER_CPU * (os.cpu_count() or 1)
    return max(1, min(workers, ceiling, width if width is not None else workers))


def make_backend(
    executor: str | cf.Executor,
    max_workers: int | None,
    clock: Clock,
    *,
    address: str | None = None,
    coroutines: bool = False,
    loop: asyncio.AbstractEventLoop | None = None,
    max_concurrency: int | None = None,
    width: int | None = None,
) -> Backend:
    """The backend for ``dag.run(executor=..., max_workers=..., address=...)``.

    ``executor="dask"`` connects to the Dask scheduler at ``address`` (default:
    ``$DASK_SCHEDULER_ADDRESS``), or starts a local cluster of ``max_workers``
    processes; the backend closes what it opened when the run ends. With
    ``coroutines``, ``async def`` tasks run on ``loop`` (or a private one).
    ``width`` is the most tasks that can run at once (``None``: unknown): no
    pool flowkit creates gets more workers than that, or than a sane ceiling.
    """
    if max_workers is not None and (
        not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
    ):
        raise FlowkitError(f"max_workers must be a positive integer or None, got {max_workers!r}")
    if address is not None and executor != "dask":
        raise FlowkitError(
            f"address={address!r} only applies to executor='dask' (got executor={executor!r})"
        )
    inbox = Inbox()
    plain = _plain_backend(executor, max_workers, clock, inbox, address, width)
    if not coroutines:
        return plain
    from flowkit.backends.asyncio import AsyncioBackend, Mixed

    return Mixed(plain, AsyncioBackend(inbox, clock, loop, max_concurrency))


def _plain_backend(
    executor: str | cf.Executor, max_workers: int | None, clock: Clock, inbox: Inbox,
    address: str | None, width: int | None = None,
) -> Backend:
    # Imports at first use: each backend pulls in what it runs on (a process
    # pool, Dask), which a run on another backend should not pay for.
    if executor == "sync":
        from flowkit.backends.sync import SyncBackend

        return SyncBackend(inbox, clock)
    if executor == "thread":
        from flowkit.backends.thread import ThreadBackend

        return ThreadBackend(inbox, clock, usable_workers("thread", max_workers, width))
    if executor == "process":
        from flowkit.backends.futures import ProcessBackend

        return ProcessBackend(inbox, clock, usable_workers("process", max_workers, width))
    if executor == "dask" or isinstance(executor, cf.Executor):
        from flowkit.backends.dask import DaskBackend, connect, is_dask_executor
        from flowkit.backends.futures import FutureBackend

        if executor == "dask":
            workers = usable_workers("process", max_workers, width) if max_workers else None
            session = connect(address, n_workers=workers)
            try:
                return DaskBackend(inbox, clock, session.client, session)
            except BaseException:
                session.close()
                raise
        assert isinstance(executor, cf.Executor)
        if is_dask_executor(executor):  # results stay on the client's cluster
            return DaskBackend(inbox, clock, executor._client)  # type: ignore[attr-defined]
        return FutureBackend(inbox, clock, executor, owned=False)
    raise FlowkitError(
        f"unknown executor {executor!r}: use one of {', '.join(map(repr, EXECUTOR_NAMES))} "
        "or pass a concurrent.futures.Executor instance"
    )
