"""How a task's code reaches Dask workers: by name, or by value.

A task defined in an importable module travels by name: the worker imports
the module. A task whose module the cluster cannot import — a script's
``__main__``, a notebook, a workflow file the CLI loaded, or any module
registered with ``cloudpickle.register_pickle_by_value`` — travels by value:
its function (and its ``when`` and ``cache_key`` callables) is pickled with
cloudpickle, which sends the code itself.

Registering a module is not enough on its own: Dask pickles a graph with the
standard pickle first, which sends such a function by name, and only falls
back to cloudpickle for ``__main__`` or when the graph's outermost object comes
from a registered module. :class:`ByValue` makes the choice per function.
Dask installs cloudpickle: this module is loaded with the Dask backend only.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

from flowkit.backends.futures import sendable_callable
from flowkit.exceptions import FlowkitError
from flowkit.task import Task

__all__ = ["MISSING", "ByValue", "Shipped", "ship_by_value", "shipped"]

MISSING = (
    "executor='dask' needs dask.distributed, which is not installed: "
    "pip install 'dask[distributed]' (in a Poetry checkout of flowkit: poetry install --with dist)"
)
"""The error message when Dask is needed and missing."""


class ByValue:
    """A callable that pickles by value: unpickled, it is the function itself.

    Calling it calls the function, for a cluster that does not pickle at all
    (threads in this process). The cloudpickled bytes are made once.
    """

    __slots__ = ("_data", "fn")

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self._data: bytes | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple[Callable[[bytes], Any], tuple[bytes]]:
        if self._data is None:
            self._data = _cloudpickle().dumps(self.fn, protocol=pickle.HIGHEST_PROTOCOL)
        return (pickle.loads, (self._data,))


class Shipped(NamedTuple):
    """What goes to a worker for one task: its callable, condition and cache key function."""

    fn: Callable[..., Any]
    when: Callable[..., Any] | None
    cache_key: Callable[..., Any] | None


def shipped(task: Task[..., Any]) -> Shipped:
    """What to send for ``task``: by name where the workers can import it, else by value."""
    registered = tuple(_cloudpickle().list_registry_pickle_by_value())
    plain: Callable[..., Any] = task
    while isinstance(plain, Task):  # a mapped task wraps its template, which wraps the function
        plain = plain.fn
    if _by_value(plain, registered):
        fn: Callable[..., Any] = ByValue(plain)
    else:
        fn = sendable_callable(task, check_pickle=False)
    options = task.options
    return Shipped(fn, _as_needed(options.when, registered),
                   _as_needed(options.cache_key, registered))


def _as_needed(fn: Callable[..., Any] | None,
               registered: tuple[str, ...]) -> Callable[..., Any] | None:
    return ByValue(fn) if fn is not None and _by_value(fn, registered) else fn


def _by_value(fn: Callable[..., Any], registered: tuple[str, ...]) -> bool:
    """True when ``fn``'s module is ``__main__`` or registered by value, itself or
    as part of a registered package (as cloudpickle counts it)."""
    module = getattr(fn, "__module__", None)
    if not isinstance(module, str):
        return False
    return module == "__main__" or any(
        module == name or module.startswith(f"{name}.") for name in registered
    )


def ship_by_value(module: ModuleType) -> Callable[[], None]:
    """Send the functions and classes of ``module`` to Dask workers by value.

    For a module the workers cannot import, such as a workflow file loaded by
    the ``flowkit`` command. Modules it imports still travel by name.

    Returns:
        A function that undoes the registration.

    Raises:
        FlowkitError: cloudpickle (installed with Dask) is missing.
    """
    cloudpickle = _cloudpickle()
    if module.__name__ in cloudpickle.list_registry_pickle_by_value():
        return _nothing
    cloudpickle.register_pickle_by_value(module)
    return lambda: cloudpickle.unregister_pickle_by_value(module)


def _cloudpickle() -> Any:
    """The cloudpickle module (Dask's; untyped, hence ``Any``)."""
    try:
        return importlib.import_module("cloudpickle")
    except ImportError as exc:
        raise FlowkitError(MISSING) from exc


def _nothing() -> None:
    """Nothing to undo."""
