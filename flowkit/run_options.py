"""The options of one run, as one value: what ``DAG.run`` and ``DAG.arun`` accept.

:class:`RunOptions` travels from the DAG to the scheduler whole; :meth:`RunOptions.timed`
fills in the run's one clock, which the scheduler and the backend then share.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import random
import reprlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from flowkit.exceptions import FlowkitError
from flowkit.task import Task

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    from flowkit.context import RunContext
    from flowkit.graph import Graph
    from flowkit.outcome import Status

__all__ = ["RunOptions", "StateProtocol", "Targets"]

Targets = Sequence[str | Task[..., Any]] | str | Task[..., Any] | None
"""What ``targets=`` takes: task names or Task objects, one or a list of them."""


class StateProtocol(Protocol):
    """What the scheduler needs of a state manager (besides its hook methods)."""

    def begin_run(
        self, run: RunContext, graph: Graph, *, resume: bool
    ) -> Mapping[str, tuple[Status, Any]]: ...

    def lookup(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[str | None, bool, Any]: ...


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Everything ``DAG.run`` accepts, as one value (see :meth:`flowkit.DAG.run`)."""

    executor: str | cf.Executor = "thread"
    max_workers: int | None = None
    fail_fast: bool = True
    targets: Targets = None
    state: StateProtocol | None = None
    resume: bool = False
    hooks: Sequence[object] = ()
    params: Mapping[str, Any] | None = None
    pools: Mapping[str, int] | None = None
    address: str | None = None
    max_concurrency: int | None = None
    rng: random.Random | None = None
    clock: Callable[[], float] | None = None
    sleep: Callable[[float], None] | None = None

    def checked(self) -> RunOptions:
        """These options after checking the type of each (the rest is checked where it
        is used: state, targets, params, executor names and pool sizes).

        Raises:
            FlowkitError: naming the argument and what it takes.
        """
        for name in ("fail_fast", "resume"):
            if type(getattr(self, name)) is not bool:
                raise _bad(name, getattr(self, name), "True or False")
        hooks = self.hooks
        if isinstance(hooks, str | bytes) or not isinstance(hooks, Iterable):
            raise _bad("hooks", hooks, "a list of hook objects, e.g. hooks=[MyHook()]")
        hooks = tuple(hooks)
        for hook in hooks:
            if hook is None or isinstance(hook, str | bytes | int | float):
                raise _bad("hooks", hook, "objects with on_task_success(...) and such methods")
        if self.address is not None and not isinstance(self.address, str):
            raise _bad("address", self.address, "a Dask scheduler address like 'tcp://host:8786'")
        if self.rng is not None and not callable(getattr(self.rng, "random", None)):
            raise _bad("rng", self.rng, "a random.Random, e.g. random.Random(42)")
        for name in ("clock", "sleep"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise _bad(name, getattr(self, name), "a function, or None")
        if not isinstance(self.executor, str | cf.Executor):
            raise _bad("executor", self.executor, "'thread', 'process', 'sync', 'dask' or a "
                       "concurrent.futures.Executor")
        return dataclasses.replace(self, hooks=hooks)

    def timed(self) -> RunOptions:
        """These options with the run's one clock and sleep filled in."""
        clock, sleep = self.clock, self.sleep
        if sleep is not None and clock is None:
            # A fake sleep with the real clock would never see the wait pass:
            # let the clock move on by what was slept.
            clock, sleep = _clock_advanced_by(sleep)
        return dataclasses.replace(self, clock=clock or time.monotonic, sleep=sleep or time.sleep)


def _clock_advanced_by(
    sleep: Callable[[float], None],
) -> tuple[Callable[[], float], Callable[[float], None]]:
    """A monotonic clock that jumps ahead by whatever ``sleep`` was asked to sleep."""
    slept = [0.0]

    def advancing_sleep(seconds: float) -> None:
        slept[0] += seconds
        sleep(seconds)

    return (lambda: time.monotonic() + slept[0]), advancing_sleep


def _bad(name: str, value: object, takes: str) -> FlowkitError:
    return FlowkitError(
        f"run({name}=...) takes {takes}; got {type(value).__name__} {reprlib.repr(value)}"
    )
