"""Dask: ``dag.run(executor="dask")`` and Dask's executors.

:class:`DaskBackend` runs calls on a Dask client's executor
(``client.get_executor()``), with what is particular to Dask: a fresh key per
attempt, functions of ``__main__`` sent by value, and Dask's way of saying a
worker died. ``executor="dask"`` connects to a running Dask scheduler —
``address=``, else ``$DASK_SCHEDULER_ADDRESS`` — or starts a local cluster,
and closes what it opened when the run ends.

Dask is optional: it is imported here, lazily, only when a run asks for it, so
``import flowkit`` never pays for it and works without it.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import uuid
from collections.abc import Callable
from typing import Any

from flowkit.backends.base import Call, Clock, Inbox
from flowkit.backends.futures import FutureBackend
from flowkit.exceptions import FlowkitError, TaskExecutionError
from flowkit.outcome import Outcome
from flowkit.task import Task
from flowkit.worker import call_remote

__all__ = [
    "ADDRESS_ENV",
    "TIMEOUT_NOTE",
    "DaskBackend",
    "DaskSession",
    "connect",
    "is_dask_executor",
    "is_killed_worker",
]

ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"
"""Environment variable read for the scheduler address when ``address`` is not given."""

TIMEOUT_NOTE = (
    "Dask cannot stop a running call: it was cancelled on the cluster, but the worker "
    "thread runs on until the function returns"
)

_MISSING = (
    "executor='dask' needs dask.distributed, which is not installed: "
    "pip install 'dask[distributed]' (in a Poetry checkout of flowkit: poetry install --with dist)"
)


def is_dask_executor(executor: object) -> bool:
    """True for a Dask client's executor (``client.get_executor()``); imports nothing."""
    return type(executor).__module__.partition(".")[0] == "distributed"


def is_killed_worker(error: BaseException) -> bool:
    """True for Dask's ``KilledWorker``: the workers running a call kept dying."""
    return type(error).__name__ == "KilledWorker" and is_dask_executor(error)


class DaskBackend(FutureBackend):
    """Runs calls on a Dask client's executor, which stays the caller's unless
    ``on_close`` closes what flowkit opened for the run."""

    stop_note = TIMEOUT_NOTE

    def __init__(
        self, inbox: Inbox, clock: Clock, executor: cf.Executor, *,
        on_close: Callable[[], None] | None = None,
    ):
        super().__init__(inbox, clock, executor, owned=False, name="dask", on_close=on_close)

    def _send(self, fn: Callable[..., Any], call: Call) -> cf.Future[Outcome]:
        # A fresh key per attempt, named after the task for Dask's dashboard.
        # pure=False because Dask would otherwise key the call by its inputs
        # and answer a retry with the failed attempt's error.
        submit: Callable[..., cf.Future[Outcome]] = self.executor.submit
        return submit(
            call_remote, fn, call.args, call.kwargs, call.ctx, call.task.options.timeout,
            key=f"{call.task.name}-{uuid.uuid4().hex}", pure=False,
        )

    def _sendable(self, task: Task[..., Any]) -> Callable[..., Any]:
        if getattr(task.fn, "__module__", None) == "__main__":
            # A script's or notebook's tasks live in __main__, which a Dask worker
            # cannot import by name: send the function, which cloudpickle sends by value.
            return task.fn
        return super()._sendable(task)

    def started_at(self, call: Call) -> float | None:
        return self._submitted.get(call)  # Dask's futures may never say they run

    def _translate(self, task_name: str, error: BaseException) -> BaseException:
        if not is_killed_worker(error):
            return super()._translate(task_name, error)
        wrapped = TaskExecutionError(
            f"the Dask worker running task {task_name!r} died (killed, out of memory, or "
            "crashed) and Dask gave up on the call; the task's attempt counts as failed. "
            f"Dask said: {error}",
            task_name=task_name,
        )
        wrapped.__cause__ = error
        return wrapped


class DaskSession:
    """A Dask client opened for one run, and the local cluster behind it if flowkit started one.

    Attributes:
        client: the ``distributed.Client``.
        cluster: the ``LocalCluster`` flowkit started, or ``None`` when it connected
            to a scheduler someone else runs.
        executor: the client's ``concurrent.futures`` executor.
    """

    def __init__(self, client: Any, cluster: Any = None):
        self.client = client
        self.cluster = cluster
        self.executor: cf.Executor = client.get_executor()

    def close(self) -> None:
        """Close the client, and the cluster when flowkit started it."""
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()

    def __repr__(self) -> str:
        where = "local cluster" if self.cluster is not None else "remote scheduler"
        return f"<DaskSession {self.client.scheduler.address} ({where})>"


def connect(address: str | None = None, *, n_workers: int | None = None) -> DaskSession:
    """Open a Dask client for a run.

    Args:
        address: the scheduler's address (``tcp://host:8786``). Default:
            ``$DASK_SCHEDULER_ADDRESS``, then Dask's ``scheduler-address`` setting;
            with none of them, a local cluster is started.
        n_workers: worker processes of a local cluster (default: one per CPU).

    Raises:
        FlowkitError: Dask is not installed, or the scheduler cannot be reached.
    """
    try:
        import dask
        import distributed
    except ImportError as exc:
        raise FlowkitError(_MISSING) from exc
    # Dask ships without type hints: call its classes through Any.
    client_class: Any = distributed.Client
    cluster_class: Any = distributed.LocalCluster
    address = address or os.environ.get(ADDRESS_ENV) or dask.config.get("scheduler-address", None)
    if address:
        try:
            # Refuse a malformed address before a Client is half-built (its
            # destructor would then wait a minute at exit).
            comm: Any = distributed.comm
            scheme, _ = comm.parse_address(address)
            comm.registry.get_backend(scheme)  # ValueError for an unknown scheme
            # set_as_default=False: a client flowkit closes at the end of the run
            # must not become the process's default client meanwhile.
            client = client_class(address, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise FlowkitError(
                f"cannot connect to the Dask scheduler at {address!r}: {exc}. Check the "
                f"address (tcp://host:8786) and that the scheduler is running, or unset "
                f"{ADDRESS_ENV} to run on a local cluster"
            ) from exc
        return DaskSession(client)
    # One single-threaded process per worker, like executor="process": tasks run
    # in parallel without sharing a GIL. The cluster listens on loopback only, and
    # its HTTP server on a free port (the default, 8787, may belong to another cluster).
    cluster = cluster_class(
        n_workers=n_workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    try:
        client = client_class(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return DaskSession(client, cluster)
