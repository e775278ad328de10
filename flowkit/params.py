"""Run parameters given as text (``--param NAME=VALUE``), typed by the annotation
of the task parameter that receives them.

A run parameter reaches a task by keyword (see ``DAG.run(params=...)``), so the
type a value must have is written on the receiving function: ``def load(day:
date, limit: int = 100)``. Text from the command line is converted to that type
before anything runs; a value that does not convert is refused then, naming the
parameter, the task and the type. Without an annotation (or with ``Any``), a
value is read as JSON when it is valid JSON, else kept as the string.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import inspect
import json
import pathlib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flowkit.exceptions import DAGValidationError
from flowkit.task import Task

__all__ = ["from_text", "typed_params"]

_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})
_NONE = frozenset({"none", "null"})
_UNTYPED: tuple[object, ...] = (Any, object, inspect.Parameter.empty)


def typed_params(tasks: Iterable[Task[..., Any]], texts: Mapping[str, str]) -> dict[str, Any]:
    """``texts`` (parameter name → text) converted for the tasks that take them.

    A name no task takes is read as JSON-or-text: the run reports it as a typo.

    Raises:
        DAGValidationError: a value does not convert to the annotated type, or
            two tasks annotate one parameter with different types.
    """
    wanted = _annotations(tasks, set(texts))
    typed = {}
    for name, text in texts.items():
        if name not in wanted:
            typed[name] = _json_or_text(text)
            continue
        task_name, annotation = wanted[name]
        try:
            typed[name] = from_text(text, annotation)
        except (ValueError, TypeError) as exc:
            raise DAGValidationError(
                f"run parameter {name}={text!r} does not fit task {task_name!r}, which takes "
                f"{name} as {_type_name(annotation)}: {exc}. Nothing was run.",
                task_name=task_name,
            ) from None
    return typed


def _annotations(
    tasks: Iterable[Task[..., Any]], names: set[str]
) -> dict[str, tuple[str, Any]]:
    """For each of ``names`` that a task takes with a type annotation: (task, annotation)."""
    found: dict[str, tuple[str, Any]] = {}
    for task in tasks:
        slots = [n for n, _ in task.signature.run_parameters(len(task.upstream)) if n in names]
        if not slots:
            continue
        hints = _hints(task.fn)
        for name in slots:
            annotation = hints.get(name, inspect.Parameter.empty)
            if annotation in _UNTYPED:
                continue
            first = found.setdefault(name, (task.name, annotation))
            if _strip_none(first[1]) != _strip_none(annotation):
                raise DAGValidationError(
                    f"run parameter {name!r} is taken as {_type_name(first[1])} by task "
                    f"{first[0]!r} but as {_type_name(annotation)} by task {task.name!r}: one "
                    "value cannot be both. Annotate the parameter alike in both functions.",
                    task_name=task.name,
                )
    return found


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of ``fn`` (of the function a Task wraps); {} if unresolvable."""
    try:
        return typing.get_type_hints(inspect.unwrap(fn))
    except Exception:  # a forward reference to a name the module lacks, a broken hint
        return {}


def _strip_none(annotation: Any) -> Any:
    if _is_union(annotation):
        rest = tuple(a for a in typing.get_args(annotation) if a is not type(None))
        return rest[0] if len(rest) == 1 else frozenset(rest)
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def from_text(text: str, annotation: Any) -> Any:
    """``text`` converted to ``annotation`` (``int``, ``date``, ``list[int]``, an Enum, ...).

    Raises:
        ValueError: the text is not a value of that type (the message says why).
    """
    if annotation in _UNTYPED:
        return _json_or_text(text)
    if _is_union(annotation):
        return _from_union(text, typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        for choice in typing.get_args(annotation):
            if str(choice) == text or (isinstance(choice, bool) and _flag(text) is choice):
                return choice
        raise ValueError(f"expected one of {', '.join(map(repr, typing.get_args(annotation)))}")
    if origin in (list, tuple, set, frozenset, dict) or annotation in (list, tuple, set, dict):
        return _from_json(_json(text), annotation)
    if isinstance(annotation, type):
        return _scalar(text, annotation)
    return _json_or_text(text)  # an annotation flowkit cannot build values of: left as is


def _from_union(text: str, members: tuple[Any, ...]) -> Any:
    if type(None) in members and text.strip().lower() in _NONE:
        return None
    problems = []
    for member in members:
        if member is type(None):
            continue
        try:
            return from_text(text, member)
        except (ValueError, TypeError) as exc:
            problems.append(str(exc))
    raise ValueError("; ".join(problems))


def _scalar(text: str, kind: type) -> Any:
    """Text to one value of a plain class."""
    if kind is str:
        return text
    if kind is bool:
        flag = _flag(text)
        if flag is None:
            raise ValueError("expected true/false, yes/no, on/off or 1/0")
        return flag
    if issubclass(kind, enum.Enum):
        return _enum(text, kind)
    if kind is dt.datetime or kind is dt.date:  # datetime first: it is a date too
        try:
            return kind.fromisoformat(text)
        except ValueError:
            raise ValueError(f"expected an ISO {kind.__name__}, e.g. {_EXAMPLES[kind]}") from None
    if issubclass(kind, pathlib.PurePath):
        return kind(text)
    if kind is decimal.Decimal:
        try:
            return decimal.Decimal(text.strip())
        except decimal.InvalidOperation:
            raise ValueError("expected a decimal number, e.g. 12.50") from None
    if kind is int or kind is float:
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"expected {_EXAMPLES[kind]}") from None
    return _json_or_text(text)


_EXAMPLES: dict[type, str] = {
    dt.date: "2026-11-28",
    dt.datetime: "2026-11-28T06:00:00+00:00",
    int: "an integer, e.g. 42",
    float: "a number, e.g. 0.5",
}


def _flag(text: str) -> bool | None:
    word = text.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def _enum(text: str, kind: type[enum.Enum]) -> enum.Enum:
    if text in kind.__members__:
        return kind[text]
    for member in kind:
        if str(member.value) == text:
            return member
    choices = ", ".join(kind.__members__)
    raise ValueError(f"expected one of {choices}")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError("expected JSON, e.g. [1, 2] or {\"a\": 1}") from None


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _from_json(value: Any, annotation: Any) -> Any:
    """A decoded JSON value checked against (and converted to) ``annotation``."""
    if annotation in _UNTYPED:
        return value
    if _is_union(annotation):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        return _from_union(json.dumps(value) if not isinstance(value, str) else value,
                           typing.get_args(annotation))
    origin = typing.get_origin(annotation) or annotation
    args = typing.get_args(annotation)
    if origin in (list, set, frozenset, tuple):
        return _json_array(value, origin, args)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {json.dumps(value)}")
        key, item = args if args else (Any, Any)
        return {_from_json(k, key): _from_json(v, item) for k, v in value.items()}
    if isinstance(value, str):
        return from_text(value, annotation)
    return _json_scalar(value, annotation)


def _json_array(value: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    """A JSON array as a list, set, frozenset or tuple of ``args``."""
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON array, got {json.dumps(value)}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ValueError(f"expected {len(args)} items, got {len(value)}")
        return tuple(_from_json(v, a) for v, a in zip(value, args, strict=True))
    item = args[0] if args else Any
    return origin(_from_json(v, item) for v in value)


def _json_scalar(value: Any, kind: Any) -> Any:
    """A JSON number, boolean or null as ``kind``."""
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is decimal.Decimal and isinstance(value, int | float) and not isinstance(value, bool):
        return decimal.Decimal(str(value))
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _enum(str(value), kind)
    if isinstance(kind, type) and (
        not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
    ):
        raise ValueError(f"expected {_type_name(kind)}, got {json.dumps(value)}")
    return value


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        name = annotation.__name__
        return f"an {name}" if name[0] in "aeiouAEIOU" else f"a {name}"
    return str(annotation).replace("typing.", "").replace("datetime.", "")
