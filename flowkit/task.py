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
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from typing import Any, Generic, Literal, ParamSpec, TypedDict, TypeVar, Unpack, overload

from flowkit.exceptions import TaskDefinitionError

__all__ = ["MapTask", "Registry", "Task", "TaskOptionArgs", "TaskOptions", "registry", "task"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

Trigger = Literal["all_success", "none_failed", "all_done"]
TRIGGERS: tuple[str, ...] = ("all_success", "none_failed", "all_done")


class _Invalid(Exception):
    """An option value fails its check; the message says what it must be."""


def _spec(check: Callable[[Any], Any], meaning: str, shown: str = "") -> dict[str, Any]:
    """The metadata of a :class:`TaskOptions` field: its check and what it means.

    ``check`` returns the value (normalised if need be) or raises :class:`_Invalid`.
    ``meaning`` and ``shown`` (the default as the docs write it; ``repr`` of
    the default if empty) make the option's row in :func:`options_table`.
    """
    return {"check": check, "meaning": meaning, "shown": shown}


def _count(minimum: int, unit: str = "") -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not _is_int(value) or value < minimum:
            raise _Invalid(f"must be an integer >= {minimum}{unit}")
        return value

    return check


def _any_int(value: Any) -> Any:
    if not _is_int(value):
        raise _Invalid("must be an integer (higher starts first)")
    return value


def _seconds(
    minimum: float,
    *,
    optional: bool,
    strict: bool = False,
    more: str = " (seconds)",
    infinity: Literal["refuse", "none", "keep"] = "refuse",
) -> Callable[[Any], Any]:
    """A check of a number of seconds (or a factor). ``infinity``: ``math.inf`` is
    refused (a delay that would never end, or arithmetic that overflows), means
    ``None`` ("never": no timeout, no cap), or is kept as it is (a TTL)."""
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    finite = "a finite number" if infinity == "refuse" else "a number"
    problem = f"must be {'None or ' if optional else ''}{finite} {bound}{more}"

    def check(value: Any) -> Any:
        if value is None and optional:
            return value
        if not _is_number(value) or value < minimum or (strict and value == minimum):
            raise _Invalid(problem)
        if type(value) is int and value > sys.float_info.max:  # arithmetic would overflow
            raise _Invalid(problem)
        if value == math.inf and infinity != "keep":
            if infinity == "refuse":
                raise _Invalid(problem)
            return None
        return value

    return check


def _callable_or_none(value: Any) -> Any:
    if value is not None and not callable(value):
        raise _Invalid("must be a callable that takes the task's inputs")
    return value


def _trigger(value: Any) -> Any:
    if value not in TRIGGERS:
        raise _Invalid(f"is not a trigger rule; use one of {', '.join(TRIGGERS)}")
    return value


def _exception_types(value: Any) -> Any:
    if isinstance(value, type):
        value = (value,)
    if not isinstance(value, tuple) or not all(
        isinstance(e, type) and issubclass(e, BaseException) for e in value
    ):
        raise _Invalid("must be an exception class or a tuple of them")
    return value


def _pool_name(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not value):
        raise _Invalid("must be None or the name of a pool given to run(pools=...)")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class TaskOptions:
    """How the scheduler runs a task: the one definition of the task options.

    ``@task``, :class:`Task`, the checks made when a task is defined and the
    option table of the documentation all derive from these fields.
    """

    retries: int = field(default=0, metadata=_spec(_count(0), "extra attempts after a failure"))
    retry_delay: float = field(
        default=0.0, metadata=_spec(_seconds(0, optional=False), "seconds before the first retry")
    )
    backoff: float = field(
        default=2.0,
        metadata=_spec(
            _seconds(1, optional=False, more=" (1 keeps the delay constant)"),
            "multiplier of the delay for each further retry (≥ 1)",
        ),
    )
    max_delay: float | None = field(
        default=None,
        metadata=_spec(
            _seconds(0, optional=True, infinity="none"),
            "cap on the delay, in seconds (`math.inf` is the same as `None`: no cap)",
        ),
    )
    jitter: float = field(
        default=0.0,
        metadata=_spec(
            _seconds(0, optional=False, more=", a fraction of the delay (0.1: up to 10%)"),
            "a fraction of the delay: adds up to `jitter × delay` random seconds "  # noqa: RUF001
            "(`0.1`: up to 10 % more)",
        ),
    )
    retry_on: tuple[type[BaseException], ...] = field(
        default=(Exception,),
        metadata=_spec(_exception_types, "exception types that are retried", "(Exception,)"),
    )
    timeout: float | None = field(
        default=None,
        metadata=_spec(
            _seconds(0, optional=True, strict=True, infinity="none"),
            "seconds an attempt may run before it fails with `TaskTimeoutError` "
            "(`math.inf` is the same as `None`: no timeout)",
        ),
    )
    when: Callable[..., Any] | None = field(
        default=None,
        metadata=_spec(
            _callable_or_none, "predicate over the task's inputs; falsy skips the task"
        ),
    )
    trigger: Trigger = field(
        default="all_success",
        metadata=_spec(
            _trigger, '`"all_success"`, `"none_failed"` or `"all_done"`', '"all_success"'
        ),
    )
    cache_ttl: float | None = field(
        default=None,
        metadata=_spec(
            _seconds(0, optional=True, more=" (seconds), or math.inf", infinity="keep"),
            "seconds a cached result stays valid (`math.inf`: forever; `None`: no caching)",
        ),
    )
    cache_key: Callable[..., Any] | None = field(
        default=None,
        metadata=_spec(
            _callable_or_none, "function of the inputs that replaces them in the cache key"
        ),
    )
    priority: int = field(
        default=0,
        metadata=_spec(_any_int, "among the tasks ready to start, higher starts first"),
    )
    pool: str | None = field(
        default=None,
        metadata=_spec(
            _pool_name, "the resource pool (`run(pools={...})`) whose slots the task takes"
        ),
    )
    pool_slots: int = field(
        default=1, metadata=_spec(_count(1), "how many slots of `pool` an attempt takes")
    )

    def validated(self, task_name: str) -> TaskOptions:
        """Return these options after checking each one, or raise ``TaskDefinitionError``."""
        changes: dict[str, Any] = {}
        for option in _FIELDS:
            value = getattr(self, option.name)
            checked = _check(option.name, value, task_name)
            if checked is not value:
                changes[option.name] = checked
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def given(cls, options: Mapping[str, Any], task_name: str) -> TaskOptions:
        """The options passed by keyword to ``Task``/``@task``, checked (the rest are defaults)."""
        return cls(**{name: _check(name, value, task_name) for name, value in options.items()})


def _check(name: str, value: Any, task_name: str) -> Any:
    """``value`` for option ``name``, normalised; ``TaskDefinitionError`` if it is invalid."""
    option = _BY_NAME.get(name)
    if option is None:
        raise TaskDefinitionError(
            f"task {task_name!r}: unknown option {name}=; the options are "
            f"{', '.join(_BY_NAME)} (and name=, registry=)",
            task_name=task_name,
            option=name,
        )
    try:
        return option.metadata["check"](value)
    except _Invalid as problem:
        raise TaskDefinitionError(
            f"task {task_name!r}: option {name}={value!r} {problem}",
            task_name=task_name,
            option=name,
        ) from None


class TaskOptionArgs(TypedDict, total=False):
    """The keyword arguments ``Task(...)``/``@task(...)`` take for :class:`TaskOptions`.

    For type checkers only; the fields of :class:`TaskOptions` are the definition
    (a test keeps the two in step). ``retry_on`` also takes a single class.
    """

    retries: int
    retry_delay: float
    backoff: float
    max_delay: float | None
    jitter: float
    retry_on: type[BaseException] | tuple[type[BaseException], ...]
    timeout: float | None
    when: Callable[..., Any] | None
    trigger: Trigger
    cache_ttl: float | None
    cache_key: Callable[..., Any] | None
    priority: int
    pool: str | None
    pool_slots: int


_FIELDS = dataclasses.fields(TaskOptions)
_BY_NAME = {option.name: option for option in _FIELDS}
_DEFAULT_OPTIONS = TaskOptions()


def options_table() -> str:
    """The Markdown table of the task options, as the documentation shows it."""
    rows = [
        "| option | default | meaning |",
        "| --- | --- | --- |",
        "| `name` | the function's `__name__` | unique name in the DAG, used in results, logs "
        "and state |",
    ]
    for option in _FIELDS:
        meta = option.metadata
        shown = meta["shown"] or repr(option.default)
        rows.append(f"| `{option.name}` | `{shown}` | {meta['meaning']} |")
    return "\n".join(rows) + "\n"


def _is_number(value: object) -> bool:
    if isinstance(value, float):
        return not math.isnan(value)
    return isinstance(value, int) and not isinstance(value, bool)  # an int may be huge


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

    @property
    def max_positional(self) -> float:
        """How many upstream values the function can take (``math.inf`` with *args)."""
        return math.inf if self.variadic else len(self.positional)

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> Signature:
        if not isinstance(fn, types.FunctionType) or fn.__dict__:
            # Not a plain function, or one whose signature may be another's: the
            # wrappers of one decorator share their code, and inspect.signature
            # follows each one's __wrapped__ (or __signature__).
            return cls._read(fn)
        # Generated DAGs make many tasks of one function, and inspect.signature
        # costs several microseconds: they share one Signature, keyed by
        # everything it depends on (the code, and which parameters have defaults).
        defaults, keyword_defaults = fn.__defaults__, fn.__kwdefaults__
        key: types.CodeType | tuple[types.CodeType, int, frozenset[str]] = fn.__code__
        if defaults is not None or keyword_defaults is not None:  # else the code alone
            key = (fn.__code__, len(defaults or ()), frozenset(keyword_defaults or ()))
        known = _SIGNATURES.get(key)
        if known is None:
            if len(_SIGNATURES) >= 4096:  # bound it: code can be generated without end
                _SIGNATURES.clear()
            known = _SIGNATURES[key] = cls._read(fn)
        return known

    @classmethod
    def _read(cls, fn: Callable[..., Any]) -> Signature:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none: accept anything
            return cls(False, (), 0, 0, True, (), ())
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
        )

    @staticmethod
    def describe(fn: Callable[..., Any]) -> str:
        """The signature of ``fn`` as written, for messages."""
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


# By code, or by code and which parameters have defaults when some have.
_SIGNATURES: dict[types.CodeType | tuple[types.CodeType, int, frozenset[str]], Signature] = {}


_ABSENT: Any = object()


class _FromFunction:
    """An attribute that ``functools.update_wrapper`` would copy from a task's function.

    On a task it is read from ``task.fn`` when asked, so a task keeps no copy
    of it; on the class it is the class's own value.
    """

    __slots__ = ("attr", "own")

    def __init__(self, attr: str, own: Any):
        self.attr, self.own = attr, own

    def __get__(self, task: Task[..., Any] | None, owner: type | None = None) -> Any:
        if task is None:
            if self.own is _ABSENT:  # as a class has no such attribute (inspect.unwrap)
                raise AttributeError(self.attr)
            return self.own
        fn = task.fn
        if self.attr == "__wrapped__":
            return fn
        return getattr(fn, self.attr, task.name if self.attr == "__name__" else None)


class _FromFunctionModule(str):
    """``__module__``, like :class:`_FromFunction`. A string itself: a class's
    ``__module__`` is read from the class's namespace as it is stored there."""

    __slots__ = ()

    def __get__(self, task: Task[..., Any] | None, owner: type | None = None) -> str:
        if task is None:
            return str(self)
        return getattr(task.fn, "__module__", None) or __name__


class Task(Generic[P, R]):
    """A function the scheduler can run, with its options and its place in the graph.

    Create one with ``@task`` or ``Task(fn, name=..., **options)``. Calling a task
    calls the plain function (``task.fn``).
    """

    # Slots: a generated DAG has a great many tasks. ``__dict__`` keeps
    # ``__qualname__`` (which no class attribute can provide) and attributes a
    # user sets; ``__weakref__`` is for weak maps.
    __slots__ = (
        "__dict__", "__weakref__", "_downstream", "_original", "_upstream", "fn",
        "is_async", "name", "options", "registry", "signature",
    )
    # What functools.update_wrapper would copy, read from the function when
    # asked (``__doc__`` and ``__module__`` too, see _copy_from_function).
    __name__ = _FromFunction("__name__", _ABSENT)  # the class's own comes from its type
    __wrapped__ = _FromFunction("__wrapped__", _ABSENT)

    # flowkit's own stand-in tasks (see flowkit.testing) take reserved names on
    # purpose, so that they cannot collide with a user's.
    _reserved_names_ok: typing.ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _copy_from_function(cls)

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        registry: Registry | None = None,
        **options: Unpack[TaskOptionArgs],
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
        if not self._reserved_names_ok:
            _check_name(name)
        self.name: str = name
        self.fn: Callable[P, R] = fn
        self.options = TaskOptions.given(options, name) if options else _DEFAULT_OPTIONS
        self.signature = Signature.of(fn)
        self.is_async = (
            bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
            if isinstance(fn, types.FunctionType)
            else inspect.iscoroutinefunction(fn)
        )
        # In declaration order, without duplicates (see _depend_on): no edge (the
        # empty tuple), one edge as the task itself, more in a list. A tuple per
        # edge would cost a generated chain two objects per task.
        self._upstream: _Edges = ()
        self._downstream: _DownEdges = ()
        self._original: Task[..., Any] | None = None  # what a rewired() copy stands for
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.registry = registry if registry is not None else _default_registry()
        self.registry.register(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    @property
    def upstream(self) -> tuple[Task[..., Any], ...]:
        """Tasks this one depends on, in the order the dependencies were declared."""
        return _as_tuple(self._upstream)

    @property
    def downstream(self) -> tuple[Task[..., Any], ...]:
        """Tasks that depend on this one, in declaration order."""
        return _as_tuple(self._downstream)

    def rewired(self, upstream: Iterable[Task[..., Any]], *, registry: Registry) -> Task[P, R]:
        """A copy of this task that depends on ``upstream`` instead, registered in ``registry``.

        This task and its wiring are left as they are. The copy runs the same
        function with the same options, and pickles as this task (a worker only
        calls it). It is how :func:`flowkit.testing.run_task` runs a task alone.
        """
        copy = object.__new__(type(self))
        for attr in _slots(type(self)):
            if hasattr(self, attr):
                setattr(copy, attr, getattr(self, attr))
        copy.__dict__.update(self.__dict__)
        copy._upstream = ()
        copy._downstream = ()
        copy._original = self._original or self
        copy.registry = registry
        for up in _as_tasks(list(upstream), copy):
            copy._depend_on(up)
        registry.register(copy)
        return copy

    def _depend_on(self, other: Task[..., Any]) -> None:
        # Callers check the edge first (see _as_tasks), so a bad list wires nothing.
        ups = self._upstream
        if isinstance(ups, dict):  # past _SCAN: an ordered set
            if other in ups:
                return
            ups[other] = None
        elif isinstance(ups, list):
            if other in ups:  # a scan of a few
                return
            if len(ups) >= _SCAN:
                self._upstream = dict.fromkeys([*ups, other])
            else:
                ups.append(other)
        elif ups is other:
            return
        else:  # none, or one: the second edge makes a list
            self._upstream = other if isinstance(ups, tuple) else [ups, other]
        # No duplicates by construction: an edge is added once, when it is new upstream.
        down = other._downstream
        if isinstance(down, list):
            down.append(self)
        else:
            other._downstream = self if isinstance(down, tuple) else [down, self]

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

    def __reduce__(self) -> str | tuple[Callable[[T], T], tuple[Task[..., Any]]]:
        if self._original is not None:  # a rewired() copy travels as the task it copies
            return (_itself, (self._original,))
        # @task replaces the function in its module by this object, so pickling
        # the function by reference would find the Task instead. Pickle the
        # Task by its module-level name: the worker imports it back.
        module = sys.modules.get(self.__module__)
        found: object = module
        for part in self.__qualname__.split("."):
            found = getattr(found, part, None)
        if found is not self:
            import pickle  # for its error type only; loaded by whoever pickles anyway

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


def _itself(value: T) -> T:
    return value


# A task's edges one way (see Task.__init__): none, one task, or a list; past
# _SCAN upstream tasks, a dict (an ordered set).
_DownEdges = tuple[()] | Task[..., Any] | list[Task[..., Any]]
_Edges = _DownEdges | dict[Task[..., Any], None]
# Upstream tasks past this many are kept in a dict, which finds a duplicate in one step.
_SCAN = 8


def _as_tuple(edges: _Edges) -> tuple[Task[..., Any], ...]:
    if isinstance(edges, Task):
        return (edges,)
    return edges if isinstance(edges, tuple) else tuple(edges)


def _copy_from_function(cls: type) -> None:
    """Serve ``cls``'s tasks' ``__doc__`` and ``__module__`` from their function."""
    own = cls.__dict__
    cls.__doc__ = _FromFunction("__doc__", own.get("__doc__"))  # type: ignore[assignment]
    cls.__module__ = _FromFunctionModule(own["__module__"])


def _slots(cls: type) -> list[str]:
    """Every slot of ``cls`` and its bases that holds a value (``__dict__`` and
    ``__weakref__`` are not values)."""
    return [
        attr for klass in cls.__mro__ for attr in klass.__dict__.get("__slots__", ())
        if attr not in ("__dict__", "__weakref__")
    ]


_copy_from_function(Task)


class MapTask(Task[..., list[R]]):
    """A task mapped over the items of its first upstream's result (see :meth:`Task.map`)."""

    __slots__ = ("template",)
    is_map = True

    def __init__(self, template: Task[..., R], *, name: str | None = None):
        if not isinstance(template, Task) or isinstance(template, MapTask):
            raise TaskDefinitionError(f"only a plain task can be mapped, got {template!r}")
        super().__init__(
            typing.cast(Callable[..., list[R]], template),
            name=name or template.name,
            registry=template.registry,
        )
        self.options = template.options
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


_RESERVED_NAME = re.compile(r"<[a-z][a-z0-9_ ]*>")
_ITEM_NAME = re.compile(r".+\[[0-9]+\]", re.DOTALL)


def _check_name(name: str) -> None:
    """Refuse the names flowkit keeps for its own records, which a task would collide with:
    lowercase words in angle brackets (run-level records such as ``<params>``;
    Python's ``<lambda>`` is fine) and ``name[3]`` (the items of a mapped task)."""
    if name[-1] not in ">]":  # neither form: most names, decided without a pattern
        return
    if _RESERVED_NAME.fullmatch(name) and name != "<lambda>":
        why = (
            "lowercase words in angle brackets are reserved for the records flowkit keeps "
            "beside tasks"
        )
    elif _ITEM_NAME.fullmatch(name):
        why = "names ending in [N] are reserved for the items of mapped tasks"
    else:
        return
    raise TaskDefinitionError(
        f"cannot name a task {name!r}: {why}; pass another name='...'",
        task_name=name, option="name",
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
    registry: Registry | None = None,
    **options: Unpack[TaskOptionArgs],
) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    registry: Registry | None = None,
    **options: Unpack[TaskOptionArgs],
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Callable[P, R] | None = None, /, **options: Any) -> object:
    """Turn a function into a :class:`Task`: ``@task``, ``@task(...)``, or ``task(fn, ...)``.

    Args:
        name: the task's name (default: the function's ``__name__``).
        registry: where to register (default: the global ``flowkit.registry``).
        **options: the task options, each one a field of :class:`TaskOptions`
            (``retries``, ``retry_delay``, ``timeout``, ``when``, ``trigger``,
            ``cache_ttl``, ...), documented there with its default.

    Raises:
        TaskDefinitionError: an option is invalid or unknown; the message names
            the task and the option.
    """
    if fn is not None:  # @task, or task(fn, name=..., ...) like Task(fn, ...)
        return Task(fn, **options)

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        return Task(function, **options)

    return decorate
