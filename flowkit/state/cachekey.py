"""Cache keys: what identifies a task's code and its inputs, stably across processes.

A cache key covers three things: the task's name, a hash of its function's
code, and a hash of its inputs (or of what ``cache_key=fn`` returns for them).

- **Code** is hashed from the function's compiled code — bytecode, the names
  it uses, its constants and default values — so comments, docstrings, blank
  lines and line numbers do not count, and what is hashed is what runs (not a
  source file edited since). Functions a closure holds (the body a decorator
  without ``functools.wraps`` wraps) count too; other closure values and the
  globals the function reads are *not* part of the hash.
- **Inputs** are written in a canonical form and hashed with SHA-256 — never
  with ``hash()``, which differs from one process to the next. Equal values
  give equal hashes in any process: dicts and sets are ordered, a tuple is not
  a list, ``1`` is not ``1.0`` nor ``True``. Plain data, dataclasses, named
  tuples, enums and a few standard value types are understood; anything else
  raises :class:`UncacheableInput`, and the task is simply not cached — a miss
  is always better than a wrong hit.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import functools
import hashlib
import inspect
import os
import sys
import time
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from flowkit.outcome import SKIPPED
from flowkit.task import Task

__all__ = [
    "UncacheableInput",
    "cache_key",
    "code_hash",
    "input_hash",
    "inputs_digest",
    "task_version",
]


class UncacheableInput(Exception):
    """An input cannot be hashed stably; the message says which one and why."""


# --- code -----------------------------------------------------------------------

_code_hashes: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def code_hash(fn: Callable[..., Any]) -> str:
    """A hex digest of ``fn``'s code that ignores comments, docstrings and line numbers."""
    if isinstance(fn, functools.partial):  # its bound arguments may change: never memoised
        return hashlib.sha256(_code_text(fn).encode()).hexdigest()
    try:
        return _code_hashes[fn]
    except (KeyError, TypeError):  # TypeError: fn cannot be weakly referenced
        pass
    digest = hashlib.sha256(_code_text(fn).encode()).hexdigest()
    with contextlib.suppress(TypeError):
        _code_hashes[fn] = digest
    return digest


def _code_text(fn: Callable[..., Any], seen: frozenset[int] = frozenset()) -> str:
    target: Any = inspect.unwrap(fn)
    if isinstance(target, functools.partial):
        try:
            bound = input_hash(target.args, target.keywords)
        except UncacheableInput:  # no stable form: never equal to another process's
            bound = f"unstable:{os.getpid()}:{id(target)}:{time.time_ns()}"
        return f"partial:{_code_text(target.func, seen)}:{bound}"
    if isinstance(target, types.MethodType):
        target = target.__func__
    if not isinstance(target, types.FunctionType):
        call = getattr(type(target), "__call__", None)  # noqa: B004 - the class's method
        if not isinstance(call, types.FunctionType):  # a builtin, a class, ...
            kind = target if isinstance(target, type) else type(target)
            name = getattr(target, "__qualname__", None) or kind.__qualname__
            return f"callable:{getattr(target, '__module__', kind.__module__)}.{name}"
        target = call  # an object with a __call__ method: hash the method
    # The code that runs, not the file on disk (which may have been edited since).
    parts = ["code:" + _bytecode_text(target.__code__, target.__doc__)]
    try:
        parts.append("defaults:" + input_hash(target.__defaults__ or (), target.__kwdefaults__))
    except UncacheableInput:  # defaults without a stable form: never equal to another's
        parts.append(f"defaults:unstable:{os.getpid()}:{id(target)}")
    # A decorator without functools.wraps hides the real body in its closure:
    # functions held there are part of the code (plain data there is not).
    seen = seen | {id(target)}  # a recursive closure refers to itself
    for cell in target.__closure__ or ():
        with contextlib.suppress(ValueError):  # an empty cell
            inner = cell.cell_contents
            if isinstance(inner, types.FunctionType | functools.partial) and id(inner) not in seen:
                parts.append("closure:" + _code_text(inner, seen))
    return "|".join(parts)


def _bytecode_text(code: types.CodeType, doc: str | None) -> str:
    consts = list(code.co_consts)
    if doc is not None and consts and consts[0] == doc:
        consts[0] = None  # as if the function had no docstring
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    for const in consts:
        if isinstance(const, types.CodeType):
            parts.append("(" + _bytecode_text(const, None) + ")")
        elif isinstance(const, frozenset):  # its repr order varies with hash seeds
            parts.append("frozenset" + repr(sorted(repr(c) for c in const)))
        else:
            parts.append(repr(const))
    return "|".join(parts)


def task_version(task: Task[..., Any]) -> str:
    """What must not change for a recorded outcome to be restored: code and wiring."""
    names = "\0".join([u.name for u in task.upstream])
    # The condition and the trigger rule decide skips: changing them must
    # re-run a task that a previous run skipped.
    options = task.options
    when = "" if options.when is None else code_hash(options.when)
    text = f"{code_hash(task.fn)}\0{names}\0{when}\0{options.trigger}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# --- inputs ---------------------------------------------------------------------

# Value types hashed through ``str()``, by where they are defined. They are
# looked up by name so that this module imports none of their modules: a value
# of one of these types means its module is loaded already (see _scalar_tag).
_SCALARS: dict[tuple[str, str], str] = {
    ("datetime", "datetime"): "dt",
    ("datetime", "date"): "d",
    ("datetime", "time"): "tm",
    ("datetime", "timedelta"): "td",
    ("decimal", "Decimal"): "dec",
    ("uuid", "UUID"): "uuid",
    ("builtins", "complex"): "c",
    ("pathlib", "PurePosixPath"): "pp",
    ("pathlib", "PureWindowsPath"): "pw",
    ("pathlib", "PosixPath"): "pp",
    ("pathlib", "WindowsPath"): "pw",
}


def _scalar_tag(kind: type) -> str | None:
    """The tag of one of the ``_SCALARS`` types, or ``None`` for any other type."""
    where = (kind.__module__, kind.__qualname__)
    tag = _SCALARS.get(where)
    # The very class, not one that merely claims its name.
    if tag is None or getattr(sys.modules.get(where[0]), where[1], None) is not kind:
        return None
    return tag


_LONG_INT = 10**600  # below the lowest limit Python allows (640 digits)


def input_hash(args: tuple[Any, ...], kwargs: Mapping[str, Any] | None = None) -> str:
    """A hex digest of the inputs, equal for equal values in any process.

    Raises:
        UncacheableInput: an input of a type that cannot be hashed stably.
    """
    out: list[str] = []
    try:
        _canon(tuple(args), out)
        if kwargs:
            _canon(dict(kwargs), out)
    except RecursionError:
        raise UncacheableInput("an input is nested too deeply or refers to itself") from None
    return hashlib.sha256("".join(out).encode("utf-8", "surrogatepass")).hexdigest()


def inputs_digest(
    custom: Callable[..., Any] | None, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> str:
    """The inputs part of a cache key: of ``args`` and ``kwargs``, or of what the
    task's ``cache_key`` function (``custom``) returns for ``args``, plus ``kwargs``.

    Pure and picklable, so it can run where the inputs live (a Dask worker).

    Raises:
        UncacheableInput: an input cannot be hashed stably, or ``custom`` raised.
    """
    if custom is None:
        return input_hash(args, kwargs)
    try:
        made = custom(*args)
    except Exception as exc:
        raise UncacheableInput(f"its cache_key function raised {exc!r}") from None
    return input_hash((made,), kwargs)  # run parameters always count


def _canon(value: Any, out: list[str]) -> None:
    """Append the canonical form of ``value`` to ``out`` (exact types only)."""
    write = _WRITERS.get(type(value))
    if write is not None:
        write(value, out)
    else:
        _canon_other(value, out)


def _canon_items(opening: str, items: Any, closing: str, out: list[str]) -> None:
    out.append(opening)
    for item in items:
        _canon(item, out)
    out.append(closing)


def _canon_mapping(value: Any, out: list[str]) -> None:
    pairs = [(_part(k), _part(v)) for k, v in value.items()]
    if type(value) is dict:  # insertion order does not make two dicts different
        pairs.sort()
        out.append("{")
    else:
        out.append("O{")
    out.extend(k + v for k, v in pairs)
    out.append("}")


def _canon_set(value: Any, out: list[str]) -> None:
    out.append("<" if type(value) is set else "F<")
    out.extend(sorted(_part(item) for item in value))
    out.append(">")


# How each plain type is written, by exact type (a subclass is not the same input).
_WRITERS: dict[type, Callable[[Any, list[str]], None]] = {
    type(None): lambda value, out: out.append("N"),
    bool: lambda value, out: out.append("T" if value else "F"),
    int: lambda value, out: out.append(_int_text(value)),
    float: lambda value, out: out.append(f"f{value.hex()};"),
    str: lambda value, out: out.append(f"s{len(value)}:{value}"),
    bytes: lambda value, out: out.append(f"b{len(value)}:{value.hex()}"),
    bytearray: lambda value, out: out.append(f"B{len(value)}:{value.hex()}"),
    list: lambda value, out: _canon_items("[", value, "]", out),
    tuple: lambda value, out: _canon_items("(", value, ")", out),
    dict: _canon_mapping,
    collections.OrderedDict: _canon_mapping,
    set: _canon_set,
    frozenset: _canon_set,
}


def _int_text(value: int) -> str:
    # Long ints in hex: decimal text of more than sys.get_int_max_str_digits()
    # digits raises ValueError (and costs quadratic time).
    return f"i{value};" if -_LONG_INT < value < _LONG_INT else f"I{value:x};"


def _canon_other(value: Any, out: list[str]) -> None:
    """The canonical form of a value that is not plain data, or ``UncacheableInput``."""
    kind = type(value)
    if (tag := _scalar_tag(kind)) is not None:
        text = str(value)
        out.append(f"{tag}{len(text)}:{text}")
    elif value is SKIPPED:
        out.append("SKIPPED")
    elif isinstance(value, enum.Enum):
        out.append(f"E{_qualified(kind)}.{value.name};")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        out.append(f"D{_qualified(kind)}{{")
        for field in dataclasses.fields(value):
            out.append(f"s{len(field.name)}:{field.name}")
            _canon(getattr(value, field.name), out)
        out.append("}")
    elif isinstance(value, tuple) and hasattr(kind, "_fields"):  # a named tuple
        _canon_items(f"D{_qualified(kind)}(", value, ")", out)
    else:
        raise UncacheableInput(
            f"an input of type {_qualified(kind)} has no stable hash "
            "(plain data, dataclasses, named tuples and enums do)"
        )


def _part(value: Any) -> str:
    out: list[str] = []
    _canon(value, out)
    return "".join(out)


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def cache_key(name: str, code: str, inputs: str) -> str:
    """The key of a cache entry: a digest of the task name, its code and its inputs."""
    return hashlib.sha256(f"{name}\0{code}\0{inputs}".encode()).hexdigest()[:40]
