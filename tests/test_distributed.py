"""DAGs on a real Dask cluster: two worker processes on loopback, shared by the module.

Task functions are module-level: the workers are spawned with this process's
``sys.path`` (which holds ``tests/``), so they import them as ``test_distributed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip(
    "distributed",
    reason="dask.distributed is not installed: pip install 'dask[distributed]' "
    "(or poetry install --with dist)",
)
import dask  # noqa: E402  (installed with distributed)
from endings import assert_lost, bounded  # noqa: E402
from file_counter import bump, flaky  # noqa: E402

import flowkit.executors  # noqa: E402
from flowkit import (  # noqa: E402
    DAG,
    FlowkitError,
    Status,
    Task,
    TaskExecutionError,
    TaskTimeoutError,
    task,
)
from flowkit.cli import main as cli_main  # noqa: E402

pytestmark = pytest.mark.dask


# --- task functions ---------------------------------------------------------------


def const(value: Any) -> Any:
    return value


def pid_after(seconds: float, *_: Any) -> int:
    time.sleep(seconds)
    return os.getpid()


def add(*values: int) -> int:
    return sum(values)


def die_once(path: str) -> int:
    """Kill the worker process on the first call; succeed afterwards."""
    if bump(path) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


def first_fails(path: str) -> str:
    """The first call (across processes) fails at once; the others take a while."""
    try:
        os.close(os.open(Path(path) / "first", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(0.3)
        return "done"
    raise ValueError("the first task to start fails")


def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def remote_pid() -> int:
    """A module-level task: it travels by name and the worker imports this module."""
    return os.getpid()


# --- the cluster ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(dask_cluster: Any) -> Iterator[Any]:
    """A client on the session's cluster (see conftest.py), ready with two workers."""
    dask_client = distributed.Client(dask_cluster, set_as_default=False)
    try:
        dask_client.wait_for_workers(2, timeout=120)
        yield dask_client
    finally:
        dask_client.close()


@pytest.fixture
def executor(client: Any) -> Iterator[Any]:
    """The client's executor; afterwards the client must still work."""
    yield client.get_executor()
    assert client.submit(lambda: 1).result(timeout=30) == 1


def worker_pids(client: Any) -> set[int]:
    return set(client.run(os.getpid).values())


# --- tests -------------------------------------------------------------------------------


def test_tasks_run_in_the_worker_processes(client: Any, executor: Any) -> None:
    # Independent tasks: Dask would run tasks that share an input next to it,
    # on one worker, and spread them only as fast as it steals work.
    fan = [Task(functools.partial(pid_after, 0.2), name=f"pid_{n}") for n in range(8)]
    run = bounded(lambda: DAG(fan).run(executor=executor))
    pids = {run[t.name] for t in fan}
    assert os.getpid() not in pids
    assert pids <= worker_pids(client)
    assert len(pids) >= 2, "the fan-out should use both worker processes"
    assert run.states["pid_0"].history[-1].worker == f"pid {run['pid_0']}"


def test_values_flow_and_module_level_tasks_travel_by_name(executor: Any) -> None:
    two = Task(functools.partial(const, 2), name="two")
    three = Task(functools.partial(const, 3), name="three")
    summed = Task(add, name="summed")
    [two, three] >> summed
    run = bounded(lambda: DAG([summed, remote_pid]).run(executor=executor))
    assert run["summed"] == 5
    assert run["remote_pid"] != os.getpid()


def test_a_failed_attempt_is_retried_on_the_cluster(executor: Any, tmp_path: Path) -> None:
    # Dask keys a call by its inputs unless told otherwise: the retry must run
    # again, not be answered with the first attempt's stored error.
    retried = Task(flaky, retries=1)
    Task(functools.partial(const, str(tmp_path)), name="where") >> retried
    run = bounded(lambda: DAG([retried]).run(executor=executor))
    assert run["flaky"] == "recovered"
    assert run.states["flaky"].attempts == 2
    first_error = run.states["flaky"].history[0].error
    assert isinstance(first_error, ConnectionError)
    assert any("Traceback in worker process" in note for note in first_error.__notes__)


def test_a_killed_worker_fails_the_attempt_clearly_and_the_retry_runs(
    client: Any, executor: Any, tmp_path: Path
) -> None:
    victim = Task(die_once, retries=1)
    Task(functools.partial(const, str(tmp_path)), name="where") >> victim
    run = bounded(lambda: DAG([victim]).run(executor=executor))
    state = run.states["die_once"]
    assert state.status is Status.SUCCESS
    assert state.attempts == 2
    first_error = state.history[0].error
    assert isinstance(first_error, TaskExecutionError)
    assert first_error.task_name == "die_once"
    assert "Dask worker running task 'die_once' died" in str(first_error)
    client.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker


def test_a_killed_worker_without_retries_fails_the_run(
    client: Any, executor: Any, tmp_path: Path
) -> None:
    victim = Task(die_once)
    Task(functools.partial(const, str(tmp_path)), name="where") >> victim
    with pytest.raises(TaskExecutionError) as caught:
        bounded(lambda: DAG([victim]).run(executor=executor))
    assert caught.value.task_name == "die_once"
    assert "died" in str(caught.value)
    client.wait_for_workers(2, timeout=120)


def test_a_timeout_abandons_the_attempt(client: Any, executor: Any) -> None:
    sleepy = Task(functools.partial(nap, 0.8), name="sleepy", timeout=0.2)
    started = time.monotonic()
    with pytest.raises(TaskExecutionError) as caught:
        bounded(lambda: DAG([sleepy]).run(executor=executor))
    assert time.monotonic() - started < 0.7
    assert isinstance(caught.value.__cause__, TaskTimeoutError)
    assert "Dask cannot stop a running call" in str(caught.value.__cause__)
    # The worker thread runs on: wait for it, so later tests get both workers.
    assert wait_for(lambda: not any(client.run(executing).values()))


def executing(dask_worker: Any) -> int:
    return int(dask_worker.state.executing_count)


def test_fail_fast_cancels_the_rest(executor: Any, tmp_path: Path) -> None:
    # Dask picks the order; whichever task starts first fails, the rest are in flight.
    tasks = [Task(functools.partial(first_fails, str(tmp_path)), name=f"t{n}") for n in range(9)]
    started = time.monotonic()
    with pytest.raises(TaskExecutionError) as caught:
        bounded(lambda: DAG(tasks).run(executor=executor))
    assert time.monotonic() - started < 8 * 0.3 / 2  # did not wait for every task
    run = caught.value.result
    assert run is not None
    statuses = {name: state.status for name, state in run.states.items()}
    assert statuses[str(caught.value.task_name)] is Status.FAILED
    assert list(statuses.values()).count(Status.FAILED) == 1
    assert Status.CANCELLED in statuses.values()
    assert set(statuses.values()) <= {Status.FAILED, Status.SUCCESS, Status.CANCELLED}


def test_large_results_stay_on_the_cluster_and_are_not_reported(
    executor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The warning about results travelling back is for process pools: on Dask
    # they stay on the workers.
    monkeypatch.setattr(flowkit.executors, "LARGE_RESULT_BYTES", 1_000)
    bigs = [Task(functools.partial(numbers, 1_000), name=f"big_{n}") for n in range(2)]
    log = logging.getLogger("flowkit.executors")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        run = bounded(lambda: DAG(bigs).run(executor=executor))
    finally:
        log.removeHandler(handler)
    assert isinstance(run.futures["big_1"], distributed.Future)
    assert run["big_1"] == list(range(1_000))
    assert records == []


# --- executor="dask" -----------------------------------------------------------------


def scheduler_clients(client: Any) -> int:
    return int(client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.clients)))


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_executor_dask_with_an_address_closes_only_its_client(client: Any) -> None:
    before = scheduler_clients(client)
    pid = Task(functools.partial(pid_after, 0), name="pid")
    run = bounded(lambda: DAG([pid]).run(executor="dask", address=client.scheduler.address))
    assert run["pid"] in worker_pids(client)
    assert wait_for(lambda: scheduler_clients(client) == before)
    assert client.submit(lambda: 1).result(timeout=30) == 1  # the cluster is untouched


def test_executor_dask_reads_the_address_from_the_environment(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", client.scheduler.address)
    pid = Task(functools.partial(pid_after, 0), name="pid")
    run = bounded(lambda: DAG([pid]).run(executor="dask"))
    assert run["pid"] in worker_pids(client)
    assert run.states["pid"].history[-1].worker == f"pid {run['pid']}"


def test_executor_dask_starts_and_stops_its_own_local_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    children = set(multiprocessing.active_children())
    pid = Task(functools.partial(pid_after, 0), name="pid")
    with dask.config.set({"scheduler-address": None}):
        run = bounded(lambda: DAG([pid]).run(executor="dask", max_workers=1))
    assert run["pid"] != os.getpid()
    assert wait_for(lambda: set(multiprocessing.active_children()) <= children)


SCRIPT = """
import os
from flowkit import DAG, task

@task
def first() -> int:
    return os.getpid()

@task(retries=1)
def second(pid: int) -> str:
    return f"{pid} {os.getpid()}"

first >> second

if __name__ == "__main__":
    print(DAG().run(executor="dask")["second"])
"""


def test_tasks_of_a_script_travel_by_value(client: Any, tmp_path: Path) -> None:
    # A script's tasks live in its __main__, which the workers cannot import.
    script = tmp_path / "workflow.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": client.scheduler.address}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    pids = {int(pid) for pid in done.stdout.split()}
    assert pids <= worker_pids(client)


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    one = Task(functools.partial(const, 1), name="one")
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}),
        pytest.raises(FlowkitError, match="cannot connect to the Dask scheduler at"),
    ):
        DAG([one]).run(executor="dask", address="tcp://127.0.0.1:9")


def test_a_malformed_address_is_a_clear_error() -> None:
    only = Task(functools.partial(pid_after, 0), name="only")
    started = time.monotonic()
    with pytest.raises(FlowkitError, match="unknown address scheme"):
        DAG([only]).run(executor="dask", address="foo://nowhere:1")
    assert time.monotonic() - started < 10


# --- a workflow file, run by the command line on a cluster of its own ------------------------

FLOW = """
import os
from pathlib import Path

from flowkit import task


def has_pid(pid: int) -> bool:
    return pid > 0


@task
def worker_pid() -> int:
    return os.getpid()


@task(when=has_pid)
def record(pid: int, out: str) -> None:
    Path(out).write_text(f"{pid} {os.getpid()}")


worker_pid >> record
"""

# A module next to the workflow file travels by name: the cluster needs it installed.
NEEDS_HELPER = """
import shouting
from flowkit import task


@task(retries=2)
def loud() -> str:
    return shouting.shout("hi")
"""


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[Any]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # stuck: it and whatever it started
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def _scheduler_address(path: Path, scheduler: subprocess.Popen[Any], log: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and scheduler.poll() is None:
        with contextlib.suppress(FileNotFoundError, ValueError):  # not (fully) written yet
            address: str = json.loads(path.read_text())["address"]
            return address
        time.sleep(0.1)
    raise AssertionError(f"the Dask scheduler did not start:\n{log.read_text()}")


def test_a_workflow_file_runs_from_the_command_line_on_a_separate_cluster(
    tmp_path: Path,
) -> None:
    # The file's directory is nowhere on the cluster's path: its module ``flow``
    # cannot be imported there, so its functions must travel as code.
    flows, cluster, client = (tmp_path / d for d in ("flows", "cluster", "client"))
    for directory in (flows, cluster, client):
        directory.mkdir()
    (flows / "flow.py").write_text(FLOW)
    (flows / "loud.py").write_text(NEEDS_HELPER)
    (flows / "shouting.py").write_text("def shout(text: str) -> str:\n    return text.upper()\n")
    out = tmp_path / "pids"
    processes: list[subprocess.Popen[Any]] = []
    try:
        scheduler_file = cluster / "scheduler.json"
        processes.append(_start(
            ["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)], cluster, tmp_path / "scheduler.log"))
        # The worker finds the scheduler through its file, once written; without
        # a nanny, the worker is this process itself.
        processes.append(_start(
            ["dask", "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
             "--nworkers", "1", "--no-nanny", "--host", "127.0.0.1", "--no-dashboard"],
            cluster, tmp_path / "worker.log"))
        address = _scheduler_address(scheduler_file, processes[0], tmp_path / "scheduler.log")
        # The runs' calls wait on the scheduler until the worker has joined.
        runs = [_start(["flowkit", "run", str(flows / name), "--executor", "dask", "--address",
                        address, *more], client, tmp_path / f"{name}.log")
                for name, more in [("flow.py", ["--param", f"out={out}"]), ("loud.py", [])]]
        processes += runs
        for run in runs:
            run.wait(timeout=120)
        logs = [(tmp_path / f"{name}.log").read_text() for name in ("flow.py", "loud.py")]
        assert runs[0].returncode == 0, logs[0]
        first, second = (int(pid) for pid in out.read_text().split())
        assert first == second == processes[1].pid != runs[0].pid  # on the worker, not here
        assert runs[1].returncode == 1, logs[1]
        assert "could not load task 'loud': ModuleNotFoundError: No module named 'shouting'" in (
            logs[1])
        assert "client.upload_file" in logs[1]
        assert "task 'loud' failed after 1 attempt(s)" in logs[1]  # a retry cannot help
    finally:
        for process in reversed(processes):
            _stop(process)


def test_the_command_sends_a_workflow_file_by_value_and_forgets_it_after(
    client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The cluster's workers started before the file's directory went on sys.path.
    cloudpickle = pytest.importorskip("cloudpickle")
    (tmp_path / "by_value_flow.py").write_text(FLOW)
    out = tmp_path / "pids"
    code = cli_main(["run", str(tmp_path / "by_value_flow.py"), "--executor", "dask",
                     "--address", client.scheduler.address, "--param", f"out={out}"])
    assert code == 0, capsys.readouterr().err
    first, second = (int(pid) for pid in out.read_text().split())
    assert {first, second} <= worker_pids(client)
    assert "by_value_flow" not in cloudpickle.list_registry_pickle_by_value()
    assert "by_value_flow" not in sys.modules


def test_a_task_of_a_package_registered_by_value_travels_by_value(
    client: Any, tmp_path: Path
) -> None:
    # cloudpickle sends a registered package's submodules by value too; the
    # cluster's workers started before the package's directory went on sys.path.
    cloudpickle = pytest.importorskip("cloudpickle")
    package = tmp_path / "by_value_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text(
        "import os\n\n\ndef where() -> int:\n    return os.getpid()\n\n\n"
        "def always(*_: object) -> bool:\n    return True\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import by_value_pkg.steps  # type: ignore[import-not-found]

        cloudpickle.register_pickle_by_value(by_value_pkg)
        try:
            where = Task(by_value_pkg.steps.where, name="where", when=by_value_pkg.steps.always)
            result = DAG([where]).run(executor=client.get_executor())
        finally:
            cloudpickle.unregister_pickle_by_value(by_value_pkg)
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("by_value_pkg.steps", "by_value_pkg"):
            sys.modules.pop(name, None)
    assert result["where"] in worker_pids(client)


# --- a scheduler or client lost during the run ------------------------------------------

HELD = threading.Event()  # set by hold(), which runs in this process (processes=False)
RELEASE = threading.Event()


def hold(*_: Any) -> str:
    HELD.set()
    RELEASE.wait(60)
    return "released"


@contextlib.contextmanager
def in_process(threads: int) -> Iterator[Any]:
    """A cluster of its own: one worker with ``threads`` threads in this process (so a
    task can tell the test it runs), its scheduler on loopback."""
    HELD.clear()
    RELEASE.clear()
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=threads, processes=False, protocol="tcp://",
        host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
    )
    try:
        yield cluster
    finally:
        RELEASE.set()
        # Closing asks the scheduler, which may be gone: do not wait 30 s for it.
        with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
            cluster.close()


@pytest.fixture
def doomed() -> Iterator[Any]:
    """A cluster of its own for a test that stops its scheduler (one worker thread)."""
    with in_process(1) as cluster:
        yield cluster


def once_held(action: Callable[[], object]) -> threading.Thread:
    """Run ``action`` in a thread as soon as hold() runs on the cluster."""
    thread = threading.Thread(target=lambda: HELD.wait(60) and action(), daemon=True)
    thread.start()
    return thread


def lost_run(dag: DAG, **options: Any) -> dict[str, Any]:
    """Run ``dag`` (it fails); its states, once it returned. Dask would give up on a
    lost scheduler after 2 minutes: the run must end long before that."""
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "120s"}),
        pytest.raises(TaskExecutionError) as caught,
    ):
        bounded(lambda: dag.run(fail_fast=False, **options), 60)
    assert caught.value.result is not None
    return dict(caught.value.result.states)


def chain_on_hold() -> DAG:
    held = Task(hold, name="held", retries=2)
    after = Task(const, name="after", retries=2)
    held >> after
    return DAG([after])


def test_a_scheduler_that_stops_mid_run_fails_the_attempts_instead_of_hanging(
    doomed: Any,
) -> None:
    address = doomed.scheduler_address
    with distributed.Client(address, set_as_default=False, timeout=120) as client:
        once_held(lambda: doomed.sync(doomed.scheduler.close))
        states = lost_run(chain_on_hold(), executor=client.get_executor())
    assert_lost(states["held"], f"lost its connection to the scheduler at {address}")
    assert states["after"].status is Status.UPSTREAM_FAILED


STOPPED = threading.Event()


async def after_the_stop() -> int:
    """A coroutine task: it runs in the run's process, not on the cluster."""
    await asyncio.to_thread(STOPPED.wait, 60)
    return 1


def test_a_task_ready_after_its_scheduler_stopped_fails_at_once(doomed: Any) -> None:
    STOPPED.clear()

    def stop() -> None:
        doomed.sync(doomed.scheduler.close)
        STOPPED.set()

    held = Task(hold, name="held", retries=2)
    gate = Task(after_the_stop, name="gate")
    late = Task(const, name="late", retries=2)
    gate >> late
    address = doomed.scheduler_address
    with distributed.Client(address, set_as_default=False, timeout=120) as client:
        once_held(stop)
        states = lost_run(DAG([held, late]), executor=client.get_executor())
    assert states["gate"].status is Status.SUCCESS
    assert_lost(states["late"], f"lost its connection to the scheduler at {address}")
    assert_lost(states["held"], f"lost its connection to the scheduler at {address}")


def test_executor_dask_whose_scheduler_stops_mid_run_ends_the_run(doomed: Any) -> None:
    address = doomed.scheduler_address
    once_held(lambda: doomed.sync(doomed.scheduler.close))
    states = lost_run(chain_on_hold(), executor="dask", address=address)
    assert_lost(states["held"], f"the scheduler at {address}")
    assert states["after"].status is Status.UPSTREAM_FAILED


def test_a_client_closed_by_its_owner_mid_run_fails_the_attempts(doomed: Any) -> None:
    client = distributed.Client(doomed, set_as_default=False)
    try:
        once_held(client.close)
        states = lost_run(chain_on_hold(), executor=client.get_executor())
    finally:
        client.close()
    assert_lost(states["held"], "the Dask client was closed during the run")
    assert states["after"].status is Status.UPSTREAM_FAILED


def test_a_client_closed_before_the_run_fails_the_attempts(doomed: Any) -> None:
    client = distributed.Client(doomed, set_as_default=False)
    client.close()
    states = lost_run(chain_on_hold(), executor=client.get_executor())
    assert_lost(states["held"], "the Dask client was closed before the run started")
    assert states["after"].status is Status.UPSTREAM_FAILED
    assert not HELD.is_set()  # nothing was sent


def test_a_backfill_on_a_closed_client_fails_each_partition(doomed: Any) -> None:
    client = distributed.Client(doomed, set_as_default=False)
    client.close()
    echo = Task(const, name="echo", retries=2)
    result = bounded(lambda: DAG([echo]).backfill([{"value": 1}, {"value": 2}], parallel=2,
                                                  executor=client.get_executor()), 60)
    assert result.counts == {"failed": 2}
    for partition in result.results:
        assert partition.run is not None
        assert_lost(partition.run.states["echo"], "closed before the run started")


class CancelOnFailure:
    """A hook that cancels ``arun`` when a task fails, after the scheduler last
    checked for a cancellation and before it waits for the calls still running."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.run: asyncio.Future[Any] | None = None

    def on_task_failure(self, run: Any, state: Any) -> None:
        loop, awaited = self.loop, self.run
        assert loop is not None and awaited is not None
        loop.call_soon_threadsafe(awaited.cancel)
        # Once two more rounds of the loop have run, arun has stopped the run.
        for _ in range(2):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(30)


def test_arun_cancelled_while_the_run_waits_for_dask_stops_at_once() -> None:
    held = Task(hold, name="held")
    slow = Task(hold, name="slow", timeout=0.5)  # its time-out fails it while held runs
    hook = CancelOnFailure()

    async def cancelled() -> None:
        hook.loop = asyncio.get_running_loop()
        hook.run = asyncio.ensure_future(
            DAG([held, slow]).arun(executor=client.get_executor(), hooks=[hook],
                                   fail_fast=False))
        with pytest.raises(asyncio.CancelledError):
            await hook.run

    with in_process(2) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        # Before, the run waited for "held" (a minute) before it saw the cancellation.
        bounded(lambda: asyncio.run(cancelled()), 30)
        assert HELD.is_set()
