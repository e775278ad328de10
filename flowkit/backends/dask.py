"""Dask: ``dag.run(executor="dask")`` and Dask clients' executors.

:class:`DaskBackend` runs attempts on a Dask cluster and leaves their results
there: a task's inputs are the Dask futures of its upstream results, so Dask
moves data from worker to worker, and this process keeps a :class:`DaskValue`
per result, fetched when read. ``executor="dask"`` connects to a running Dask
scheduler — ``address=``, else ``$DASK_SCHEDULER_ADDRESS`` — or starts a local
cluster, and closes what it opened when the run ends. What runs on the workers
is in :mod:`flowkit.backends.dask_worker`.

Dask is optional: this module is imported only when a run asks for Dask, and
Dask itself only when a run starts, so ``import flowkit`` never pays for it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import importlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from flowkit.backends import dask_worker as on_worker
from flowkit.backends.base import Backend, Call, Clock, Inbox, executor_lost
from flowkit.backends.dask_code import MISSING, Shipped, shipped
from flowkit.backends.dask_worker import Spec, WhenFalse
from flowkit.backends.futures import executor_failure
from flowkit.exceptions import FlowkitError, TaskExecutionError
from flowkit.outcome import NOT_KEPT, Decided, Outcome, Remote, Status
from flowkit.state.cachekey import UncacheableInput
from flowkit.task import Task

__all__ = [
    "ADDRESS_ENV",
    "STATE_LIMIT_BYTES",
    "TIMEOUT_NOTE",
    "WATCH_SECONDS",
    "DaskBackend",
    "DaskSession",
    "DaskValue",
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


def is_dask_executor(executor: object) -> bool:
    """True for a Dask client's executor (``client.get_executor()``); imports nothing."""
    return type(executor).__module__.partition(".")[0] == "distributed"


def is_killed_worker(error: BaseException) -> bool:
    """True for Dask's ``KilledWorker``: the workers running a call kept dying."""
    return type(error).__name__ == "KilledWorker" and is_dask_executor(error)


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
        raise FlowkitError(MISSING) from exc
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


# --- the backend: values stay on the cluster ------------------------------------------------

STATE_LIMIT_BYTES = 1024 * 1024
"""Largest result (as Dask measures it, on the worker) that a Dask run brings back
for the state, when the task has ``cache_ttl`` or the state is a file: larger
ones stay on the cluster and are recorded as not restorable, with a warning.
Assign a new value to change it."""

logger = logging.getLogger("flowkit.backends.dask")

WATCH_SECONDS = 0.5
"""How often a collect that waits checks that the Dask client still runs: when its
scheduler is gone, Dask may never settle a call sent meanwhile."""

_CLOSED_STATUSES = frozenset({"closing", "closed", "failed"})
_LOST_STATUSES = _CLOSED_STATUSES | {"connecting"}
_LOST_TODO = (
    "The results held on the cluster are lost with it: start the scheduler again (or pass a "
    "running client) and run the DAG again (with a state and resume=True, the tasks whose "
    "results the state kept are not run again)"
)


class DaskValue(Remote):
    """A task's result held by a Dask worker: ``handle`` is its ``distributed.Future``."""

    __slots__ = ("client", "name")

    def __init__(self, future: Any, client: Any, name: str):
        super().__init__(future)
        self.client = client
        self.name = name

    def fetch(self) -> Any:
        return self.fetch_all([self])[0]

    @classmethod
    def fetch_all(cls, values: list[Remote]) -> list[Any]:
        waiting = [v for v in values if v.kept is NOT_KEPT and isinstance(v, DaskValue)]
        by_client: dict[int, list[DaskValue]] = {}
        for value in waiting:
            by_client.setdefault(id(value.client), []).append(value)
        for group in by_client.values():
            client = group[0].client
            if client.status not in ("running", "connecting"):
                raise FlowkitError(
                    f"the value of task {group[0].name!r} stayed on the Dask cluster, and the "
                    "client that held it is closed. Read values (or gather run.futures) before "
                    "closing your client; with executor='dask', whose client closes when the "
                    "run ends, only the final tasks' values are kept: run on your own client "
                    "(executor=client.get_executor()) to read the others"
                )
            try:
                fetched = client.gather([v.handle for v in group])
            except Exception as exc:
                raise FlowkitError(
                    f"the value of task {group[0].name!r} (or of another task fetched with it) "
                    f"could not be fetched from the Dask cluster: {type(exc).__name__}: {exc}"
                ) from exc
            for value, local in zip(group, fetched, strict=True):
                value.kept = local
        return [value.kept if isinstance(value, DaskValue) else value.fetch() for value in values]

    def item(self, index: int) -> _Item:
        return _Item(self, index)

    def __repr__(self) -> str:
        return f"<value of {self.name!r} on the Dask cluster ({self.handle.key})>"


class _Item(NamedTuple):
    """Item ``position`` of a value on the cluster: the call gets the value's future and
    takes the item out on the worker, so only the item's worker needs the value."""

    source: DaskValue
    position: int


class _Job:
    """What one attempt is doing on the cluster: a probe (a cached task's inputs
    digested, its condition checked), the attempt, or its result measured."""

    __slots__ = ("args", "attempt_key", "cache_key", "call", "future", "kind", "result",
                 "spec", "submitted", "wall")

    def __init__(self, call: Call, kind: str, spec: Spec, args: tuple[Any, ...]):
        self.call = call
        self.kind = kind  # "probe", "attempt" or "describe"
        self.spec = spec
        self.args = args
        self.future: Any = None
        self.submitted: float | None = None  # on the run's clock, once sent
        self.wall = time.time()
        self.cache_key: str | None = None
        self.result: DaskValue | None = None  # for "describe": the attempt's value
        self.attempt_key: str | None = None  # for "describe": the attempt's key


class DaskBackend(Backend):
    """Runs attempts on a Dask cluster and leaves their results there.

    What the scheduler needs of a result is worked out next to it: ``when``
    runs on the worker before the function (a false one makes the attempt a
    SKIPPED :class:`~flowkit.outcome.Decided`); a cached task's inputs are
    digested on a worker first, and a hit is a CACHED one; a result that a
    mapped task iterates, or that the state stores, is measured (and, if small
    and wanted, fetched) where it lives.

    Calls submitted together go to the Dask scheduler in one message, each
    attempt under a fresh key named after its task; outcomes come back through
    the futures' callbacks, and each attempt's timing as a Dask event from its worker.

    Args:
        inbox: where ended calls go.
        clock: the run's clock.
        client: the ``distributed.Client``.
        session: the :class:`DaskSession` flowkit opened for this run, closed with
            the backend (after fetching the final values); ``None`` for a caller's client.
    """

    name = "dask"
    remote = True
    remote_values = True
    stop_note = TIMEOUT_NOTE

    def __init__(self, inbox: Inbox, clock: Clock, client: Any,
                 session: DaskSession | None = None):
        super().__init__(clock)
        self.inbox = inbox
        self.client = client
        self._session = session
        self._lock = threading.Lock()
        self._outbox: list[_Job] = []
        self._live: dict[Call, _Job] = {}  # each call in flight -> what it is doing
        self._timing: dict[str, list[Any]] = {}  # attempt key -> [key, started, ended, worker]
        self._topic = f"flowkit-{uuid.uuid4().hex}"
        self._sendables: dict[Task[..., Any], Shipped] = {}
        self._state: Any = None
        self._store_all = False
        self._address = getattr(client.scheduler, "address", None) or "its address"
        self._lost: str | None = None  # why the client can run nothing more
        self._subscribe()

    def _subscribe(self) -> None:
        """Hear each attempt's timing from the workers; a client closed before the
        run cannot be asked, and every call fails as for a client lost later."""
        status = self.client.status
        if status in _CLOSED_STATUSES:
            self._lost = f"the Dask client was closed before the run started (its status: {status})"
            return
        try:
            self.client.subscribe_topic(self._topic, self._on_event)
        except Exception:
            if not self._gone():  # not closed meanwhile: something else went wrong
                raise

    def attach(self, state: Any) -> None:
        self._state = state
        store = getattr(state, "store", None)
        self._store_all = store is not None and not getattr(store, "keeps_objects", True)

    # --- sending ------------------------------------------------------------------

    def submit(self, call: Call) -> None:
        self.submit_many([call])

    def submit_many(self, calls: Iterable[Call]) -> None:
        for call in calls:
            self._prepare(call)
        self._flush()

    def _prepare(self, call: Call) -> None:
        task = call.task
        try:
            code = self._sendable(task)
        except FlowkitError as exc:
            self._fail(call, exc, time.time())
            return
        args = call.args
        item = bool(args) and type(args[0]) is _Item
        position = args[0].position if item else 0
        probing = task.options.cache_ttl is not None and self._state is not None
        kind = "probe" if probing else "attempt"
        key = f"{task.name}-probe-{uuid.uuid4().hex}" if probing else _fresh_key(task)
        spec = Spec(code.fn, code.when, call.kwargs, call.ctx, item, position, self._topic,
                    key, code.cache_key)
        self._queue(_Job(call, kind, spec, tuple(_on_cluster(a) for a in args)))

    def _queue(self, job: _Job) -> None:
        with self._lock:
            self._live[job.call] = job
            self._outbox.append(job)

    def _flush(self) -> None:
        """Send every queued job to the Dask scheduler in one message."""
        with self._lock:
            jobs, self._outbox = self._outbox, []
        if not jobs or self._gone():  # a call sent now might never be settled: collect fails it
            return
        try:
            futures: list[Any] = self._send(jobs)
        except Exception:  # one bad call (it does not pickle) spoils the batch: find it
            futures = [self._send_alone(job) for job in jobs]
        for job, future in zip(jobs, futures, strict=True):
            if isinstance(future, Exception):
                self._fail(job.call, future, job.wall)
                continue
            job.future = future
            job.submitted = self.clock()
            future.add_done_callback(functools.partial(self._settled, job))

    def _send(self, jobs: list[_Job]) -> list[Any]:
        spec_module: Any = importlib.import_module("dask.task_spec")
        graph = {
            job.spec.key: spec_module.Task(job.spec.key, _FUNCTIONS[job.kind], job.spec, *job.args)
            for job in jobs
        }
        futures: list[Any] = self.client.get(graph, list(graph), sync=False)
        return futures

    def _send_alone(self, job: _Job) -> Any:
        try:
            return self._send([job])[0]
        except Exception as exc:
            return exc

    def _sendable(self, task: Task[..., Any]) -> Shipped:
        code = self._sendables.get(task)
        if code is None:
            code = self._sendables[task] = shipped(task)
        return code

    # --- receiving (in Dask's callback thread) -------------------------------------------

    def _on_event(self, event: tuple[float, list[Any]]) -> None:
        record = event[1]
        self._timing[record[0]] = record

    def _settled(self, job: _Job, future: Any) -> None:
        with self._lock:
            if self._live.get(job.call) is not job:
                return  # stopped (timeout) or cancelled by the scheduler
        try:
            self._advance(job, future)
        except Exception as exc:  # never lose an outcome: the scheduler waits for it
            self._fail(job.call, exc, job.wall)

    def _advance(self, job: _Job, future: Any) -> None:
        if future.status == "cancelled":
            self._fail(job.call, cf.CancelledError(), job.wall)
        elif future.status == "error":
            self._fail(job.call, future.exception(), job.wall, job.spec.key)
        elif job.kind == "probe":
            self._probed(job, future.result())
        elif job.kind == "describe":
            self._described(job, future.result())
        elif future.type is WhenFalse:
            self._report(job, Decided(Status.SKIPPED))
        else:
            self._ran(job, DaskValue(future, self.client, job.spec.ctx.task))

    def _probed(self, job: _Job, answer: tuple[str, str | None]) -> None:
        verdict, digest = answer
        if verdict == "skip":
            self._report(job, Decided(Status.SKIPPED))
            return
        inputs = UncacheableInput(digest) if verdict == "uncacheable" else digest
        task = job.call.task
        key, hit, value = self._state.lookup(task, (), job.spec.kwargs, inputs=inputs)
        if hit:
            self._report(job, Decided(Status.CACHED, value, key))
            return
        # A miss: the attempt itself, with the condition already checked.
        spec = job.spec._replace(when=None, key=_fresh_key(task))
        attempt = _Job(job.call, "attempt", spec, job.args)
        attempt.cache_key = key
        self._queue(attempt)
        self._flush()

    def _ran(self, job: _Job, value: DaskValue) -> None:
        task = job.call.task
        # A mapped task iterates this result (an item's result is not iterated:
        # a map over a map node iterates the node's list, here).
        feeds_map = job.call.ctx.task == task.name and any(
            d.is_map and d.upstream[0] is task for d in task.downstream
        )
        wanted = self._store_all or job.cache_key is not None
        if not feeds_map and not wanted:
            self._report(job, value)
            return
        # Measure it where it lives (and fetch it, if small, for the state).
        spec = job.spec._replace(key=f"{task.name}-describe-{uuid.uuid4().hex}")
        limit = STATE_LIMIT_BYTES if wanted else -1
        follow = _Job(job.call, "describe", spec, (value.handle, feeds_map, limit))
        follow.cache_key, follow.result, follow.wall = job.cache_key, value, job.wall
        follow.attempt_key = job.spec.key
        self._queue(follow)
        self._flush()

    def _described(self, job: _Job, info: tuple[Any, int, bool, Any]) -> None:
        length, nbytes, kept, local = info
        value = job.result
        assert value is not None
        value.nbytes = nbytes
        if kept:
            value.kept = local
        elif job.args[2] >= 0:
            logger.warning(
                "task %r: its result (%.1f MB) stays on the Dask cluster, above "
                "flowkit.backends.dask.STATE_LIMIT_BYTES (%d bytes), so it is not "
                "restorable: it is not cached and runs again on resume",
                job.call.task.name, nbytes / 1e6, STATE_LIMIT_BYTES,
            )
        if isinstance(length, str):
            value.length = TypeError(
                f"task {job.call.task.name!r} returned a value of type {length}, which is not "
                "iterable, and a mapped task iterates over it: return a list (or any iterable)"
            )
        else:
            value.length = length
        self._report(job, value, attempt_key=job.attempt_key)

    # --- outcomes ------------------------------------------------------------------

    def _times(self, key: str | None, wall: float) -> tuple[float, float, str]:
        record = self._timing.pop(key, None) if key else None
        if record is None:  # no event (yet): the job's time as seen from here
            return wall, time.time(), self.name
        return record[1], record[2], record[3]

    def _report(self, job: _Job, value: Any, attempt_key: str | None = None) -> None:
        started, ended, worker = self._times(attempt_key or job.spec.key, job.wall)
        if isinstance(value, DaskValue) and job.cache_key is not None:
            value = Decided(Status.SUCCESS, value, job.cache_key)
        call = job.call
        with self._lock:
            if self._live.get(call) is not job:
                return
            del self._live[call]
        call.outcome = Outcome(True, value, None, started, ended, worker)
        self.inbox.put(call)

    def _fail(self, call: Call, error: BaseException | None, wall: float,
              key: str | None = None) -> None:
        """Fail ``call`` with ``error``: the function's own when ``key`` (its attempt's
        key) is given, else Dask's; ``None``: the client was lost before it was sent."""
        started, ended, worker = self._times(key, wall)
        with self._lock:
            self._live.pop(call, None)
        if error is not None and is_killed_worker(error):
            error = _killed(call.task.name, error)
        elif key is None and self._gone():  # no error of the function: the client's
            cause, error = error, executor_lost(call.task.name, self._lost or "", _LOST_TODO)
            error.__cause__ = cause
        else:
            assert error is not None, "a failed call without its error"
            error = _unloadable(call.task.name, error) or executor_failure(call.task.name, error)
        call.outcome = Outcome(False, None, error, started, ended, worker)
        self.inbox.put(call)

    def _gone(self) -> bool:
        """True once the client can run nothing more: it lost its scheduler, or was closed."""
        if self._lost is None:
            status = self.client.status
            if status in _LOST_STATUSES:
                self._lost = (
                    f"the Dask client lost its connection to the scheduler at {self._address} "
                    "(did the scheduler stop?)" if status == "connecting"
                    else f"the Dask client was closed during the run (its status: {status})"
                )
        return self._lost is not None

    def collect(self, timeout: float | None) -> list[Call]:
        """The ended calls; while waiting, every :data:`WATCH_SECONDS` it checks that
        the client still runs, and fails every call in flight once it does not."""
        inbox, left = self.inbox, timeout
        while True:
            self._watch()
            woken = inbox.woken
            step = WATCH_SECONDS if left is None else min(left, WATCH_SECONDS)
            ended = inbox.collect(step)
            if ended or inbox.woken != woken or (left is not None and left <= step):
                return ended  # something ended, wake() was called, or the time is up
            left = None if left is None else left - step

    def _watch(self) -> None:
        """Fail every call in flight once the client can run nothing more. Dask
        settles the calls it held when it lost its scheduler, but not one sent while
        it reconnects; and calls for a lost client stay here, unsent (:meth:`_flush`)."""
        if self._live and self._gone():
            with self._lock:
                jobs = list(self._live.values())
            for job in jobs:
                self._fail(job.call, None, job.wall)

    def wake(self) -> None:
        self.inbox.wake()

    # --- timeouts, cancelling, the end -----------------------------------------------------

    def started_at(self, call: Call) -> float | None:
        # Dask does not say when a call starts: count from when the attempt was sent.
        with self._lock:
            job = self._live.get(call)
        if job is None or job.kind == "probe":
            return None
        return job.submitted

    def stop(self, call: Call) -> None:
        with self._lock:
            job = self._live.pop(call, None)
        if job is not None and job.future is not None and not self._gone():
            self.client.cancel([job.future])

    def cancel_pending(self) -> list[Call]:
        # Dask does not tell a queued call from a running one: cancel every
        # unfinished call (a running one finishes unseen in its worker).
        with self._lock:
            jobs = list(self._live.values())
            self._live.clear()
            self._outbox.clear()
        futures = [job.future for job in jobs if job.future is not None]
        if futures and not self._gone():  # a lost client cancels nothing (and might wait)
            self.client.cancel(futures)
        return [job.call for job in jobs]

    def keep(self, values: list[Any]) -> None:
        """Before a client flowkit opened is closed: fetch the final tasks' values."""
        if self._session is None or self._gone():  # a lost cluster took the values with it
            return
        remote = [v for value in values for v in (value if type(value) is list else [value])
                  if isinstance(v, DaskValue)]
        if remote:
            DaskValue.fetch_all(list(remote))

    def close(self, *, cancel: bool = False) -> None:
        try:
            if cancel:
                self.cancel_pending()
            self._timing.clear()
            if not self._gone():  # a lost client sends nothing (and might wait)
                with contextlib.suppress(Exception):  # closed by its owner meanwhile
                    self.client.unsubscribe_topic(self._topic)
        finally:
            if self._session is not None:
                self._session.close()


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "attempt": on_worker.attempt,
    "probe": on_worker.probe,
    "describe": on_worker.describe,
}


def _killed(task_name: str, error: BaseException) -> TaskExecutionError:
    wrapped = TaskExecutionError(
        f"the Dask worker running task {task_name!r} died (killed, out of memory, or "
        "crashed) and Dask gave up on the call; the task's attempt counts as failed. "
        f"Dask said: {error}",
        task_name=task_name,
    )
    wrapped.__cause__ = error
    return wrapped


def _unloadable(task_name: str, error: BaseException) -> TaskExecutionError | None:
    """The error of a call the cluster could not unpickle for want of a module, else None."""
    cause = error.__cause__
    if not (isinstance(cause, ImportError) and "deserializ" in str(error)):
        return None
    wrapped = TaskExecutionError(
        f"the Dask cluster could not load task {task_name!r}: {type(cause).__name__}: {cause}. "
        "Every module a task uses must be importable on the scheduler and the workers: "
        "install it there, or send it with client.upload_file(path) (a workflow file's "
        "own functions travel by value). Not retried: another attempt would fail the same way",
        task_name=task_name,
        retryable=False,
    )
    wrapped.__cause__ = error
    return wrapped


def _fresh_key(task: Task[..., Any]) -> str:
    # A fresh key per attempt, named after the task for Dask's dashboard: a retry
    # must run again, not be answered with the failed attempt's stored error.
    return f"{task.name}-{uuid.uuid4().hex}"


def _on_cluster(value: Any) -> Any:
    """An input as Dask should get it: a result on the cluster as its future."""
    kind = type(value)
    if kind is DaskValue:
        return value.handle
    if kind is _Item:
        return value.source.handle
    if kind is list and any(type(v) is DaskValue for v in value):  # a mapped task's items
        spec_module: Any = importlib.import_module("dask.task_spec")
        return spec_module.List(*(_on_cluster(v) for v in value))
    return value
