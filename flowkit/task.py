"""Tasks: plain functions with orchestration options, wired with ``>>``.

``@task`` wraps a function in a :class:`Task`. Calling the task calls the
function, so users unit-test their tasks as plain code. ``a >> b`` records that
``b`` depends on ``a``; a DAG is built later from these edges.

Every task registers itself by name in a :class:`Registry` (by default the
global :data:`registry`), which is where ``DAG()`` finds tasks when it is given
none. Defining a task again under the same name replaces the old entry, so a
module re-import or a notebook cell run twice does not pile up duplicates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import pickle
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from flowkit.exceptions import TaskDefinitionError

__all__ = ["MapTask", "Registry", "Task", "TaskOptions", "registry", "task"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

Trigger = Literal["all_success", "none_failed", "all_done"]
TRIGGERS: tuple[str, ...] = ("all_success", "none_failed", "all_done")


@dataclasses.dataclass(frozen=True, slots=True)
class TaskOptions:
    """How the scheduler runs a task. See ``@task`` for the meaning of each option."""

    retries: int = 0
    retry_delay: float = 0.0
    backoff: float = 2.0
    max_delay: float | None = None
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    timeout: float | None = None
    when: Callable[..., Any] | None = None
    trigger: Trigger = "all_success"
    cache_ttl: float | None = None
    cache_key: Callable[..., Any] | None = None

    def validated(self, task_name: str) -> TaskOptions:
        """Return these options after checking each one, or raise ``TaskDefinitionError``."""

        def fail(option: str, problem: str) -> TaskDefinitionError:
            return TaskDefinitionError(
                f"task {task_name!r}: option {option}={getattr(self, option)!r} {problem}",
                task_name=task_name,
                option=option,
            )

        if not _is_int(self.retries) or self.retries < 0:
            raise fail("retries", "must be an integer >= 0")
        if not _is_number(self.retry_delay) or self.retry_delay < 0:
            raise fail("retry_delay", "must be a number >= 0 (seconds)")
        if not _is_number(self.jitter) or self.jitter < 0:
            raise fail("jitter", "must be a number >= 0, a fraction of the delay (0.1: up to 10%)")
        if not _is_number(self.backoff) or self.backoff < 1:
            raise fail("backoff", "must be a number >= 1 (1 keeps the delay constant)")
        if self.max_delay is not None and (not _is_number(self.max_delay) or self.max_delay < 0):
            raise fail("max_delay", "must be None or a number >= 0 (seconds)")
        if self.timeout is not None and (not _is_number(self.timeout) or self.timeout <= 0):
            raise fail("timeout", "must be None or a number > 0 (seconds)")
        if self.cache_ttl is not None and (not _is_number(self.cache_ttl) or self.cache_ttl < 0):
            raise fail("cache_ttl", "must be None, a number of seconds >= 0, or math.inf")
        if self.when is not None and not callable(self.when):
            raise fail("when", "must be a callable that takes the task's inputs")
        if self.cache_key is not None and not callable(self.cache_key):
            raise fail("cache_key", "must be a callable that takes the task's inputs")
        if self.trigger not in TRIGGERS:
            raise fail("trigger", f"is not a trigger rule; use one of {', '.join(TRIGGERS)}")
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        if not isinstance(retry_on, tuple) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in retry_on
        ):
            raise fail("retry_on", "must be an exception class or a tuple of them")
        if retry_on is not self.retry_on:
            return dataclasses.replace(self, retry_on=retry_on)
        return self


_DEFAULT_OPTIONS = TaskOptions()


_DEFAULT_VALUES = dataclasses.astuple(_DEFAULT_OPTIONS)


def _all_default(*values: object) -> bool:
    """Whether the options passed to Task are the defaults (then they need no checks)."""
    return values == _DEFAULT_VALUES


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True, slots=True)
class Signature:
    """What a task's function accepts, worked out once at decoration time.

    Upstream values fill the positional parameters from the left; a named
    parameter that no upstream task feeds is a *run parameter*, filled by
    keyword from ``dag.run(params=...)`` or left to its default.
    """

    takes_nothing: bool  # no parameters at all: upstream edges only order the work
    positional: tuple[str, ...]  # names of the positional parameters, in order
    positional_only: int  # how many of them cannot be passed by keyword
    required_positional: int  # leading positional parameters without a default
    variadic: bool  # has *args
    keyword_only: tuple[str, ...]
    required_keywords: tuple[str, ...]  # keyword-only parameters without a default
    text: str = ""  # the signature as written, when known; see describe()

    @property
    def max_positional(self) -> float:
        """How many upstream values the function can take (``math.inf`` with *args)."""
        return math.inf if self.variadic else len(self.positional)

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> Signature:
        if isinstance(fn, types.FunctionType):
            return cls._of_function(fn)
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none: accept anything
            return cls(False, (), 0, 0, True, (), (), "(...)")
        params = list(sig.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        keyword_only = [p for p in params if p.kind is p.KEYWORD_ONLY]
        return cls(
            takes_nothing=not params,
            positional=tuple(p.name for p in positional),
            positional_only=sum(p.kind is p.POSITIONAL_ONLY for p in positional),
            required_positional=sum(p.default is p.empty for p in positional),
            variadic=any(p.kind is p.VAR_POSITIONAL for p in params),
            keyword_only=tuple(p.name for p in keyword_only),
            required_keywords=tuple(p.name for p in keyword_only if p.default is p.empty),
            text=str(sig),
        )

    @classmethod
    def _of_function(cls, fn: types.FunctionType) -> Signature:
        # Read the code object directly: inspect.signature costs several
        # microseconds per task, which adds up over 100,000 tasks. Generated
        # DAGs make many tasks of one function: they share one Signature, keyed
        # by everything it depends on (the code, and which parameters have defaults).
        key = (fn.__code__, len(fn.__defaults__ or ()), frozenset(fn.__kwdefaults__ or ()))
        known = _SIGNATURES.get(key)
        if known is None:
            if len(_SIGNATURES) >= 4096:  # bound it: code can be generated without end
                _SIGNATURES.clear()
            known = _SIGNATURES[key] = cls._read_function(fn)
        return known

    @classmethod
    def _read_function(cls, fn: types.FunctionType) -> Signature:
        code = fn.__code__
        n_positional = code.co_argcount
        n_keyword_only = code.co_kwonlyargcount
        variadic = bool(code.co_flags & inspect.CO_VARARGS)
        var_keywords = bool(code.co_flags & inspect.CO_VARKEYWORDS)
        names = code.co_varnames
        keyword_only = names[n_positional : n_positional + n_keyword_only]
        keyword_defaults = fn.__kwdefaults__ or {}
        return cls(
            takes_nothing=not (n_positional or n_keyword_only or variadic or var_keywords),
            positional=names[:n_positional],
            positional_only=code.co_posonlyargcount,
            required_positional=n_positional - len(fn.__defaults__ or ()),
            variadic=variadic,
            keyword_only=keyword_only,
            required_keywords=tuple(n for n in keyword_only if n not in keyword_defaults),
        )

    def describe(self, fn: Callable[..., Any]) -> str:
        """The signature as written, for messages."""
        if self.text:
            return self.text
        try:
            return str(inspect.signature(fn))
        except (TypeError, ValueError):
            return "(...)"

    def accepts(self, inputs: int) -> bool:
        """Whether ``inputs`` upstream values fit, leaving only nameable parameters unfed."""
        if self.takes_nothing:
            return True
        return inputs <= self.max_positional and inputs >= min(
            self.positional_only, self.required_positional
        )

    def run_parameters(self, inputs: int) -> tuple[tuple[str, bool], ...]:
        """``(name, required)`` of the parameters left for run parameters after
        ``inputs`` upstream values fill the positional ones."""
        if self.takes_nothing:
            return ()
        positional = tuple(
            (name, k < self.required_positional)
            for k, name in enumerate(self.positional)
            if k >= inputs and k >= self.positional_only  # those cannot be passed by name
        )
        return positional + tuple((n, n in self.required_keywords) for n in self.keyword_only)


_SIGNATURES: dict[tuple[types.CodeType, int, frozenset[str]], Signature] = {}


class Task(Generic[P, R]):
    """A function the scheduler can run, with its options and its place in the graph.

    Create one with ``@task`` or ``Task(fn, name=..., **options)``. Calling a task
    calls the plain function (``task.fn``).
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        backoff: float = 2.0,
        max_delay: float | None = None,
        jitter: float = 0.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        timeout: float | None = None,
        when: Callable[..., Any] | None = None,
        trigger: Trigger = "all_success",
        cache_ttl: float | None = None,
        cache_key: Callable[..., Any] | None = None,
        registry: Registry | None = None,
    ) -> None:
        if not callable(fn):
            raise TaskDefinitionError(
                f"@task needs a function, got {fn!r}; decorate a def or pass one to Task(fn)",
                task_name=name,
            )
        if name is None:
            name = getattr(fn, "__name__", None)
        if not isinstance(name, str) or not name:
            raise TaskDefinitionError(
                f"cannot name a task after {fn!r}; pass name='...'", task_name=None, option="name"
            )
        self.name: str = name
        self.fn: Callable[P, R] = fn
        self.options = _DEFAULT_OPTIONS if _all_default(
            retries, retry_delay, backoff, max_delay, jitter, retry_on, timeout, when, trigger,
            cache_ttl, cache_key,
        ) else TaskOptions(
            retries=retries,
            retry_delay=retry_delay,
            backoff=backoff,
            max_delay=max_delay,
            jitter=jitter,
            retry_on=retry_on,  # type: ignore[arg-type]  # normalised by validated()
            timeout=timeout,
            when=when,
            trigger=trigger,
            cache_ttl=cache_ttl,
            cache_key=cache_key,
        ).validated(name)
        self.signature = Signature.of(fn)
        self.is_async = (
            bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
            if isinstance(fn, types.FunctionType)
            else inspect.iscoroutinefunction(fn)
        )
        self._upstream: dict[Task[..., Any], None] = {}  # ordered set: declaration order
        # No duplicates by construction (an edge is added once, when it is new to
        # _upstream), so a list does: smaller than a dict, for 100,000 tasks.
        self._downstream: list[Task[..., Any]] = []
        # What functools.update_wrapper would copy, without its per-call cost.
        self.__module__ = getattr(fn, "__module__", None) or __name__
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__name__ = getattr(fn, "__name__", name)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn
        self.registry = registry if registry is not None else _default_registry()
        self.registry.register(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    @property
    def upstream(self) -> tuple[Task[..., Any], ...]:
        """Tasks this one depends on, in the order the dependencies were declared."""
        return tuple(self._upstream)

    @property
    def downstream(self) -> tuple[Task[..., Any], ...]:
        """Tasks that depend on this one, in declaration order."""
        return tuple(self._downstream)

    def _depend_on(self, other: Task[..., Any]) -> None:
        # Callers check the edge first (see _as_tasks), so a bad list wires nothing.
        if other not in self._upstream:
            self._upstream[other] = None
            other._downstream.append(self)

    # --- wiring ---------------------------------------------------------
    # ``a >> b`` returns ``b`` so chains read left to right; lists fan out/in.

    # Lists are typed ``list[Any]``: a type checker infers a list of tasks with
    # different signatures, ``[extract, load]``, as ``list[object]`` (the join of
    # invariant generics). The items are checked at run time by ``_as_tasks``.

    @overload
    def __rshift__(self, other: Task[..., T]) -> Task[..., T]: ...
    @overload
    def __rshift__(self, other: list[Any]) -> list[Task[..., Any]]: ...
    def __rshift__(self, other: Task[..., Any] | list[Any]) -> object:
        for downstream in _as_tasks(other, self):
            downstream._depend_on(self)
        return other

    def __rrshift__(self, other: list[Any]) -> Task[P, R]:
        for upstream in _as_tasks(other, self):
            self._depend_on(upstream)
        return self

    def __lshift__(self, other: Task[..., Any] | list[Any]) -> Task[P, R]:
        for upstream in _as_tasks(other, self):
            self._depend_on(upstream)
        return self

    def __rlshift__(self, other: list[Any]) -> list[Task[..., Any]]:
        for downstream in _as_tasks(other, self):
            downstream._depend_on(self)
        return other

    # --- pickling -------------------------------------------------------

    def __reduce__(self) -> str:
        # @task replaces the function in its module by this object, so pickling
        # the function by reference would find the Task instead. Pickle the
        # Task by its module-level name: the worker imports it back.
        module = sys.modules.get(self.__module__)
        found: object = module
        for part in self.__qualname__.split("."):
            found = getattr(found, part, None)
        if found is not self:
            raise pickle.PicklingError(
                f"task {self.name!r} cannot be sent to another process: it is not reachable "
                f"as {self.__module__}.{self.__qualname__}. Define it with @task at module "
                "level in an importable module, or run with executor='thread'."
            )
        return self.__qualname__

    def __repr__(self) -> str:
        return f"<Task {self.name!r}>"

    is_map = False  # see MapTask

    def map(self, *, name: str | None = None) -> MapTask[R]:
        """A node that calls this task once per item of its first upstream's result.

        At run time each item becomes its own attempt on the executor — with
        this task's retries, timeout, condition and cache entry — named
        ``"<name>[<index>]"`` in the run's states; the node's result is the list
        of item results, in input order. Other upstream tasks, if any, are
        passed unchanged after the item::

            list_files >> process.map() >> total

        The node is named like this task unless ``name`` is given, and replaces
        it in the registry (the unmapped task is a template, not a step).
        """
        return MapTask(self, name=name)


class MapTask(Task[..., list[R]]):
    """A task mapped over the items of its first upstream's result (see :meth:`Task.map`)."""

    is_map = True

    def __init__(self, template: Task[..., R], *, name: str | None = None):
        if not isinstance(template, Task) or isinstance(template, MapTask):
            raise TaskDefinitionError(f"only a plain task can be mapped, got {template!r}")
        options = template.options
        super().__init__(
            typing.cast(Callable[..., list[R]], template),
            name=name or template.name,
            **{f.name: getattr(options, f.name) for f in dataclasses.fields(options)},
            registry=template.registry,
        )
        self.template = template
        self.is_async = template.is_async

    def __call__(self, items: Iterable[Any], *extra: Any) -> list[R]:
        """Call the template once per item, like a run does (for unit tests)."""
        return [self.template(item, *extra) for item in items]

    def __repr__(self) -> str:
        return f"<MapTask {self.name!r} of {self.template.name!r}>"


def _as_tasks(other: object, this: Task[..., Any]) -> Sequence[Task[..., Any]]:
    """The tasks on the other side of ``this >>`` / ``<<``, each checked before any is wired."""
    if isinstance(other, list | tuple):
        for item in other:
            _check_edge(this, item)
        return other
    if isinstance(other, Task):
        _check_edge(this, other)
        return (other,)
    raise TaskDefinitionError(
        f"cannot wire task {this.name!r} to {other!r}: use a task or a list of tasks",
        task_name=this.name,
    )


def _check_edge(this: Task[..., Any], other: object) -> None:
    if not isinstance(other, Task):
        raise TaskDefinitionError(
            f"cannot wire task {this.name!r} to {other!r}: only tasks (or lists of tasks) "
            "can be wired with >> and <<",
            task_name=this.name,
        )
    if other is this:
        raise TaskDefinitionError(
            f"task {this.name!r} cannot depend on itself", task_name=this.name
        )


class Registry:
    """Tasks by name. Registering a name again replaces the old task."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[..., Any]] = {}

    def register(self, task: Task[..., Any]) -> None:
        """Add ``task``, replacing any task of the same name."""
        self._tasks.pop(task.name, None)  # re-insert so the newest definition sorts last
        self._tasks[task.name] = task

    def get(self, name: str) -> Task[..., Any] | None:
        """The task named ``name``, or ``None``."""
        return self._tasks.get(name)

    def __getitem__(self, name: str) -> Task[..., Any]:
        return self._tasks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task[..., Any]]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._tasks)

    def clear(self) -> None:
        """Forget every task."""
        self._tasks.clear()

    @contextlib.contextmanager
    def isolated(self) -> Iterator[Registry]:
        """Within the block the registry starts empty; afterwards it is restored.

        >>> with registry.isolated():
        ...     pass  # tasks defined here vanish afterwards
        """
        saved = self._tasks
        self._tasks = {}
        try:
            yield self
        finally:
            self._tasks = saved

    def __repr__(self) -> str:
        return f"<Registry of {len(self._tasks)} tasks>"


registry = Registry()
"""The default registry: where ``@task`` registers and ``DAG()`` looks."""


def _default_registry() -> Registry:
    return registry


@overload
def task(
    fn: Callable[P, R],
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    backoff: float = 2.0,
    max_delay: float | None = None,
    jitter: float = 0.0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    timeout: float | None = None,
    when: Callable[..., Any] | None = None,
    trigger: Trigger = "all_success",
    cache_ttl: float | None = None,
    cache_key: Callable[..., Any] | None = None,
    registry: Registry | None = None,
) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    backoff: float = 2.0,
    max_delay: float | None = None,
    jitter: float = 0.0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    timeout: float | None = None,
    when: Callable[..., Any] | None = None,
    trigger: Trigger = "all_success",
    cache_ttl: float | None = None,
    cache_key: Callable[..., Any] | None = None,
    registry: Registry | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Callable[P, R] | None = None, /, **options: Any) -> object:
    """Turn a function into a :class:`Task`: ``@task``, ``@task(...)``, or ``task(fn, ...)``.

    Args:
        name: the task's name (default: the function's ``__name__``).
        retries: extra attempts after a failure (default 0).
        retry_delay: seconds before the first retry (default 0).
        backoff: multiplier of the delay for each further retry (default 2.0).
        max_delay: cap on the delay, in seconds (default none).
        jitter: up to ``jitter * delay`` random extra seconds (default 0).
        retry_on: exception types that are retried (default ``(Exception,)``).
        timeout: seconds an attempt may run before it fails with ``TaskTimeoutError``.
        when: predicate over the task's inputs; falsy skips the task.
        trigger: ``"all_success"`` (default), ``"none_failed"`` or ``"all_done"``.
        cache_ttl: seconds a cached result stays valid (``math.inf``: forever;
            ``None``, the default: no caching).
        cache_key: function of the inputs that replaces them in the cache key.
        registry: where to register (default: the global ``flowkit.registry``).

    Raises:
        TaskDefinitionError: an option is invalid; the message names the task and option.
    """
    if fn is not None:  # @task, or task(fn, name=..., ...) like Task(fn, ...)
        return Task(fn, **options)

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        return Task(function, **options)

    return decorate
