"""Helpers for testing workflows, and flowkit's pytest plugin.

- Call a task like a function to test its logic: ``transform([1]) == [2]``.
- :func:`run_task` runs one task the way a DAG runs it — retries and their
  waits, ``when``, ``timeout``, the executor — with inputs you give it, and
  returns a :class:`TaskRun` to assert on (or ``.result()``, which returns the
  value or raises the task's error).
- :func:`isolated_registry` (a context manager) and the ``flowkit_registry``
  fixture give a test an empty default registry.

The plugin (registered through the ``pytest11`` entry point) only defines the
``flowkit_registry`` fixture; importing this module costs nothing beyond flowkit
itself, and without pytest installed everything but the fixture still works.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from flowkit.dag import DAG
from flowkit.exceptions import FlowkitError, TaskExecutionError
from flowkit.outcome import Attempt, Status, TaskState
from flowkit.results import RunResult
from flowkit.task import Registry, Task, registry

__all__ = ["FakeClock", "TaskRun", "flowkit_registry", "isolated_registry", "run_task"]

R = TypeVar("R")

# dag.run options that make no sense for one task run on given inputs.
_REFUSED = {
    "targets": "run_task runs exactly one task",
    "state": "run_task never caches; to test caching, build a DAG with a StateManager",
    "resume": "run_task never resumes; to test resume, build a DAG with a StateManager",
}


@contextlib.contextmanager
def isolated_registry() -> Iterator[Registry]:
    """Within the block, ``@task`` registers into an empty default registry."""
    with registry.isolated() as isolated:
        yield isolated


class FakeClock:
    """A clock that only moves when slept on, for instant retry waits.

    Pass it as both ``clock=`` and ``sleep=`` of ``dag.run`` (or of
    :func:`run_task`); ``sleeps`` records every wait the scheduler asked for::

        clock = FakeClock()
        dag.run(clock=clock, sleep=clock.sleep)
        assert clock.sleeps == [1.0, 2.0]
    """

    def __init__(self, start: float = 0.0):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record ``seconds`` and move the clock forward by it, at once."""
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r}, sleeps={self.sleeps!r})"


class TaskRun(Generic[R]):
    """What became of a task run by :func:`run_task`.

    Assert on the outcome (``status``, ``attempts``, ``error``, ``history`` …),
    or call :meth:`result` for the value, which raises if the task did not
    produce one.

    Attributes:
        state: the task's :class:`~flowkit.TaskState`.
        run: the :class:`~flowkit.RunResult` of the tiny run around it.
    """

    __slots__ = ("run", "state")

    def __init__(self, state: TaskState, run: RunResult):
        self.state = state
        self.run = run

    @property
    def status(self) -> Status:
        """The task's final :class:`~flowkit.Status`."""
        return self.state.status

    @property
    def ok(self) -> bool:
        """True when the task produced a value (SUCCESS or CACHED)."""
        return self.state.status.produced_value

    @property
    def value(self) -> Any:
        """The task's value; ``None`` when it produced none (see :meth:`result`)."""
        return self.state.value

    @property
    def attempts(self) -> int:
        """How many times the function was called."""
        return self.state.attempts

    @property
    def error(self) -> BaseException | None:
        """The exception of the last failed attempt, if any."""
        return self.state.error

    @property
    def history(self) -> list[Attempt]:
        """One :class:`~flowkit.Attempt` per attempt, in order."""
        return self.state.history

    @property
    def duration(self) -> float:
        """Seconds spent running, summed over the attempts."""
        return self.state.duration

    @property
    def reason(self) -> str | None:
        """Why the task did not run (SKIPPED and the like), in words."""
        return self.state.reason

    def result(self) -> R:
        """The task's value.

        Raises:
            Exception: the task's own error when it FAILED (as raised by the
                function, or ``TaskTimeoutError``), so ``pytest.raises`` works.
            FlowkitError: the task did not run (for example its ``when`` was false).
        """
        state = self.state
        if state.status.produced_value:
            return state.value  # type: ignore[no-any-return]
        if state.status is Status.FAILED and state.error is not None:
            raise state.error
        raise FlowkitError(
            f"task {state.name!r} produced no value: it is {state.status.name}"
            + (f" ({state.reason})" if state.reason else "")
            + "; assert on .status instead of calling .result()"
        )

    def __repr__(self) -> str:
        return f"TaskRun({self.state!r})"


def run_task(
    task: Task[..., R], /, *inputs: Any, executor: Any = "sync", **options: Any
) -> TaskRun[R]:
    """Run one task with ``inputs`` as a DAG would, and return its :class:`TaskRun`.

    The inputs stand for the values of its upstream tasks, in order; the task's
    own wiring is ignored (and left as it was). Its options apply as in a real
    run: retries with their delays, ``retry_on``, ``when``, ``timeout``.
    Keyword ``options`` go to :meth:`DAG.run`: ``params=`` fills keyword
    parameters, ``hooks=``, ``rng=``, ``max_workers=`` … A ``sleep=`` given
    without ``clock=`` gets a :class:`FakeClock` that it moves forward, so retry
    waits are instant and the callable sees each delay.

    >>> from flowkit import task
    >>> @task(retries=2, retry_delay=5)
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> run_task(double, 21, sleep=lambda s: None).result()
    42

    A task failure does not raise here: it is in the returned ``TaskRun``
    (``.status``, ``.error``), and ``.result()`` raises it. Errors in the call
    itself — inputs the function cannot take — raise ``DAGValidationError``.

    The task runs as a copy wired to stand-ins for its inputs (see
    :meth:`~flowkit.Task.rewired`); the task itself is left untouched.
    """
    if not isinstance(task, Task):
        raise TypeError(f"run_task needs a flowkit Task, got {task!r}; decorate it with @task")
    for option, why in _REFUSED.items():
        if option in options:
            raise TypeError(f"run_task() got the option {option}=: {why}")
    if "sleep" in options and "clock" not in options:
        options["clock"], options["sleep"] = _instant(options["sleep"])
    stand_ins = Registry()
    feeds = [
        _StandIn(_stand_in, name=f"<input {k}>", registry=stand_ins)
        for k in range(1, len(inputs) + 1)
    ]
    values = {feed.name: (Status.SUCCESS, value) for feed, value in zip(feeds, inputs, strict=True)}
    alone = task.rewired(feeds, registry=stand_ins)
    dag = DAG([alone], name=task.name, state=_Inputs(values))
    try:
        run = dag.run(executor=executor, **options)
    except TaskExecutionError as exc:
        if exc.result is None:
            raise
        run = exc.result
    return TaskRun(run.states[task.name], run)


class _StandIn(Task[[], None]):
    """An input of :func:`run_task`: named ``<input k>``, a name no task of yours can have."""

    _reserved_names_ok = True


def _instant(sleep: Callable[[float], object]) -> tuple[FakeClock, Callable[[float], None]]:
    """A fake clock and a sleep that moves it, then calls ``sleep`` (to record the delay)."""
    clock = FakeClock()

    def instant_sleep(seconds: float) -> None:
        clock.sleep(seconds)
        sleep(seconds)

    return clock, instant_sleep


def _stand_in() -> None:  # pragma: no cover - stand-ins are served as done, never called
    raise AssertionError("a run_task input stand-in was called")


class _Inputs:
    """State for :func:`run_task`: serves the inputs as already-finished upstream tasks."""

    def __init__(self, values: dict[str, tuple[Status, Any]]):
        self._values = values

    def begin_run(
        self, run: object, graph: object, *, resume: bool
    ) -> dict[str, tuple[Status, Any]]:
        return self._values

    def lookup(self, task: object, args: object, kwargs: object) -> tuple[None, bool, None]:
        return None, False, None  # never served from a cache: the function always runs


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional for run_task users
    pass
else:

    @pytest.fixture
    def flowkit_registry() -> Iterator[Registry]:
        """An empty default registry for the test; the previous tasks come back afterwards."""
        with isolated_registry() as isolated:
            yield isolated
