"""Serializers: how task results are written to a state file and read back.

A serializer turns a value into data JSON can hold (``encode``) and back
(``decode``). The default, :class:`JSONSerializer`, stores plain data and a
few standard types *exactly*: a tuple comes back a tuple, a set a set, ``nan``
a float. It never imports or calls anything named in the file, so reading a
state file cannot run code. A value it cannot represent raises
:class:`SerializationError`; the state manager then logs a warning naming the
task and the type, and that result is simply not cached nor restorable.

:class:`PickleSerializer` is an opt-in for results JSON cannot hold (arrays,
data frames, your own classes). Unpickling runs code, so it signs every payload
with an HMAC key and refuses any payload whose signature does not match:
whoever holds the key can still make you run code, so keep the key secret and
never use it on files from an untrusted source.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import hashlib
import hmac
import math
import pathlib
import pickle
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from flowkit.exceptions import StateError

__all__ = ["JSONSerializer", "PickleSerializer", "SerializationError", "Serializer"]

_TAG = "__flowkit__"


class SerializationError(StateError):
    """A value cannot be written by a serializer, or a payload cannot be read back."""


class Serializer(Protocol):
    """Turns results into JSON-compatible data and back."""

    name: str

    def encode(self, value: Any) -> Any:
        """Return JSON-compatible data for ``value`` or raise :class:`SerializationError`."""
        ...

    def decode(self, data: Any) -> Any:
        """Return the value ``data`` was made from, or raise :class:`SerializationError`."""
        ...


class JSONSerializer:
    """Plain JSON data plus tagged tuples, sets, bytes, dates, decimals, UUIDs and paths.

    Only exact types are accepted (a ``dict``, not a subclass of it), so what
    comes back is always what went in.
    """

    name = "json"

    def encode(self, value: Any) -> Any:
        try:
            return _encode(value)
        except RecursionError:
            raise SerializationError("a value nested too deeply or referring to itself") from None

    def decode(self, data: Any) -> Any:
        try:
            return _decode(data)
        except (KeyError, TypeError, ValueError, IndexError, decimal.InvalidOperation) as exc:
            raise SerializationError(f"a stored value cannot be read back: {exc!r}") from None
        except RecursionError:
            raise SerializationError("a stored value is nested too deeply") from None


def _tagged(tag: str, value: Any) -> dict[str, Any]:
    return {_TAG: tag, "v": value}


_TO_TEXT: dict[type, str] = {
    datetime.datetime: "datetime",
    datetime.date: "date",
    datetime.time: "time",
    decimal.Decimal: "decimal",
    uuid.UUID: "uuid",
    pathlib.PurePosixPath: "pureposixpath",
    pathlib.PureWindowsPath: "purewindowspath",
    pathlib.PosixPath: "path",
    pathlib.WindowsPath: "path",
}


# Ints beyond this many digits are written in hex: Python refuses to turn ints of
# more than ``sys.get_int_max_str_digits()`` digits (4300 by default, 640 at
# least) into decimal text and back; hex has no such limit.
_LONG_INT = 10**600


def _encode(value: Any) -> Any:
    encode = _ENCODERS.get(type(value))
    if encode is None:
        kind = type(value)
        raise SerializationError(
            f"a value of type {kind.__module__}.{kind.__qualname__} cannot be stored as JSON"
        )
    return encode(value)


def _as_is(value: Any) -> Any:
    return value


def _encode_int(value: int) -> Any:
    return value if -_LONG_INT < value < _LONG_INT else _tagged("int", hex(value))


def _encode_float(value: float) -> Any:
    return value if math.isfinite(value) else _tagged("float", repr(value))


def _encode_dict(value: dict[Any, Any]) -> Any:
    if all(type(k) is str for k in value) and _TAG not in value:
        return {k: _encode(v) for k, v in value.items()}
    return _tagged("dict", [[_encode(k), _encode(v)] for k, v in value.items()])


def _encode_items(value: Any) -> Any:  # tuple, set, frozenset: tagged by their type
    return _tagged(type(value).__name__, [_encode(item) for item in value])


def _encode_bytes(value: bytes | bytearray) -> Any:
    return _tagged(type(value).__name__, base64.b64encode(value).decode("ascii"))


def _encode_text(value: Any) -> Any:  # the types of _TO_TEXT
    text = value.isoformat() if isinstance(value, datetime.date | datetime.time) else str(value)
    return _tagged(_TO_TEXT[type(value)], text)


# How each type is written, by exact type: a subclass would not read back as itself.
_ENCODERS: dict[type, Callable[[Any], Any]] = {
    type(None): _as_is,
    bool: _as_is,
    int: _encode_int,
    str: _as_is,
    float: _encode_float,
    list: lambda value: [_encode(item) for item in value],
    dict: _encode_dict,
    tuple: _encode_items,
    set: _encode_items,
    frozenset: _encode_items,
    bytes: _encode_bytes,
    bytearray: _encode_bytes,
    complex: lambda value: _tagged("complex", [_encode(value.real), _encode(value.imag)]),
    datetime.timedelta: lambda v: _tagged("timedelta", [v.days, v.seconds, v.microseconds]),
    **dict.fromkeys(_TO_TEXT, _encode_text),
}


_FROM_TEXT: dict[str, Any] = {
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
    "pureposixpath": pathlib.PurePosixPath,
    "purewindowspath": pathlib.PureWindowsPath,
    "path": pathlib.Path,
    "float": float,
    "int": lambda text: int(text, 16),
}


def _decode(data: Any) -> Any:
    kind = type(data)
    if kind is list:
        return [_decode(item) for item in data]
    if kind is not dict:
        return data
    tag = data.get(_TAG)
    if tag is None:
        return {k: _decode(v) for k, v in data.items()}
    v = data["v"]
    if tag == "tuple":
        return tuple(_decode(item) for item in v)
    if tag == "dict":
        return {_decode(k): _decode(item) for k, item in v}
    if tag == "set":
        return {_decode(item) for item in v}
    if tag == "frozenset":
        return frozenset(_decode(item) for item in v)
    if tag == "bytes":
        return base64.b64decode(v)
    if tag == "bytearray":
        return bytearray(base64.b64decode(v))
    if tag == "complex":
        return complex(_decode(v[0]), _decode(v[1]))
    if tag == "timedelta":
        return datetime.timedelta(days=v[0], seconds=v[1], microseconds=v[2])
    convert = _FROM_TEXT.get(tag)
    if convert is None or type(v) is not str:
        raise ValueError(f"unknown tag {tag!r}")
    return convert(v)


class PickleSerializer:
    """Pickle results, signed with an HMAC key. **Unsafe for untrusted files.**

    Unpickling can run arbitrary code. Each payload is signed with ``key``
    (HMAC-SHA256) and only payloads with a valid signature are unpickled, so a
    state file written by someone without the key is refused. Use it only with
    state files you create yourself, and keep the key secret.

    Args:
        key: at least 16 bytes of secret, e.g. ``secrets.token_bytes(32)`` kept
            in your environment or a secrets store.
        protocol: the pickle protocol (default: the highest).
    """

    name = "pickle"

    def __init__(self, key: bytes, *, protocol: int = pickle.HIGHEST_PROTOCOL):
        if not isinstance(key, bytes) or len(key) < 16:
            raise StateError(
                "PickleSerializer needs a secret key of at least 16 bytes, "
                "e.g. secrets.token_bytes(32)"
            )
        self._key = key
        self._protocol = protocol

    def __repr__(self) -> str:
        return "PickleSerializer(key=...)"

    def _sign(self, blob: bytes) -> str:
        return hmac.new(self._key, blob, hashlib.sha256).hexdigest()

    def encode(self, value: Any) -> Any:
        try:
            blob = pickle.dumps(value, protocol=self._protocol)
        except Exception as exc:
            raise SerializationError(f"pickle cannot store it: {exc!r}") from None
        return _tagged("pickle", [self._sign(blob), base64.b64encode(blob).decode("ascii")])

    def decode(self, data: Any) -> Any:
        try:
            tag, (signature, text) = data[_TAG], data["v"]
            blob = base64.b64decode(text)
        except (KeyError, TypeError, ValueError):
            raise SerializationError("a stored value is not a signed pickle payload") from None
        if tag != "pickle" or not hmac.compare_digest(signature, self._sign(blob)):
            raise SerializationError(
                "a stored pickle payload has no valid signature for this key; "
                "it was not unpickled"
            )
        return pickle.loads(blob)  # signed with our key: created by us
