"""The contract's JSON form of an alert, and JSON as workers write and read it.

The JSON form (documented above ``AlertBatch`` in the contract) is what a
sidecar sends a worker that accepts ``application/json`` for an Avro alert:
records and maps are objects, a union its value, int and long integers
written in full (64-bit ids stay exact), float and double numbers with NaN and
infinities as null, bytes and fixed base64 strings, timestamps ISO 8601 in
UTC (``2025-11-02T03:04:05.123456Z``). ``encode_json`` writes it, and every
JSON value a Python worker outputs; ``encode_json_form`` adds the projection a
worker's ``fields`` ask for.

The sidecar writes it on its hot path with orjson (several times faster than
the standard library's json for an alert); a worker needs no orjson. So there
are two writers, chosen by whether orjson can be imported, that give the same
bytes: the standard library's is made to spell everything as orjson does
(floats, timestamps, strings), and a test holds the two to each other on real
alerts and edge values. What orjson refuses (integers beyond 64 bits, keys
that are not strings, strings with lone surrogates) is written by the standard
library's writer.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import enum
import functools
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, overload

from ..exceptions import AlertDecodeError

try:
    import orjson
except ImportError:  # the SDK works without it (the extra "fast" installs it)
    orjson = None  # type: ignore[assignment]

__all__ = [
    "encode_json",
    "encode_json_form",
    "decode_json",
    "projection_tree",
    "project",
    "b64bytes",
    "as_datetime",
]


# --- Writing ------------------------------------------------------------------------


def encode_json(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON in the contract's JSON form.

    Integers are written exactly, whatever their size. Values JSON has no form
    for are written as what a decoded alert means by them:

    - bytes (cutout stamps) as base64 strings (RFC 4648, padded);
    - datetimes (Avro timestamp logical types) as ISO 8601, ``Z`` for UTC; a
      datetime without a time zone is taken to be UTC, as the contract's
      timestamps are; dates and times as ISO 8601;
    - NaN and infinities as ``null``: they are not JSON, and readers in other
      languages (Jackson, jsonlite) reject them or turn them into strings;
    - decimals and UUIDs as strings, sets as arrays, numpy scalars and arrays
      as numbers and arrays.

    Raises TypeError for a value of any other type, and for arrays and
    objects nested deeper than ``MAX_JSON_DEPTH`` (10,000) levels.
    """
    if orjson is not None:
        try:
            return _encode_with_orjson(value)
        except orjson.JSONEncodeError:
            pass  # integers beyond 64 bits, keys that are not str, ...: the standard library's writer decides
    return _encode_with_stdlib(value)


def encode_json_form(record: Any, fields: Sequence[str] | None = None) -> bytes:
    """The JSON form of a decoded alert, with only ``fields`` (dotted paths) when given: see ``project``."""
    if fields:
        record = project(record, projection_tree(tuple(fields)))
    return encode_json(record)


def _json_default(obj: Any) -> Any:
    """What both writers write for a value JSON has no type for (orjson calls it for those)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return _timestamp(obj)
    if isinstance(obj, float):  # a subclass of float, such as numpy.float64
        return float(obj)
    if isinstance(obj, (decimal.Decimal, uuid.UUID)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return tolist()
    raise TypeError(f"a {type(obj).__name__} cannot be written as JSON")


def _encode_with_orjson(value: Any) -> bytes:
    """orjson's writer; raises orjson.JSONEncodeError for what it refuses."""
    # Timestamps go through _json_default, so that both writers spell them by
    # one function (orjson's own spelling of UTC offsets that are not whole
    # minutes is its own), and dataclasses too, which the standard library's
    # writer does not take either.
    return orjson.dumps(value, default=_json_default,
                        option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS)


def _timestamp(value: datetime.datetime | datetime.date | datetime.time) -> str:
    if isinstance(value, datetime.datetime) and not value.utcoffset():  # naive (taken as UTC), or UTC
        return value.replace(tzinfo=None).isoformat() + "Z"
    return value.isoformat()


# -- the standard library's writer

# json's own string escaping (its C version when built), which is orjson's:
# '"', '\\' and the control characters escaped, everything else as UTF-8.
_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
_INFINITY = float("inf")


def _float(value: float) -> str:
    """A float as orjson (3.11.7 and later) writes it: the shortest digits that read back the same.

    Those are Python's ``repr`` digits, and mostly its spelling too; orjson
    writes a negative exponent without a leading zero (``1e-7``, where Python
    writes ``1e-07``) and a number of exponent -5 positionally (``0.000015``,
    where Python writes ``1.5e-05``).
    """
    if value != value or value in (_INFINITY, -_INFINITY):
        return "null"
    text = float.__repr__(value)
    if "e" not in text:
        return text
    mantissa, _, exponent = text.partition("e")
    power = int(exponent)
    if power == -5:
        sign, digits = ("-", mantissa[1:]) if mantissa.startswith("-") else ("", mantissa)
        return f"{sign}0.0000{digits.replace('.', '')}"
    return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"


# Arrays and objects nest at most this deep in what the standard library's
# writer writes. It walks them with a stack of its own, not one call per
# level (orjson stops at 255 levels and sends deeper values here), so a decoded
# alert nested a thousand deep is written; deeper than this is refused, which
# also ends a list or dict that contains itself.
MAX_JSON_DEPTH = 10_000


def _encode_with_stdlib(value: Any) -> bytes:
    pieces: list[str] = []
    out = pieces.append
    # The innermost array or object being written (at first the value alone,
    # in brackets of none): the iterator of its items left, whether it is an
    # object, its closing bracket. The stack holds those of the ones around it.
    items: Any = iter((value,))
    is_object, closing, separator = False, "", ""
    stack: list[tuple[Any, bool, str]] = []
    while True:
        for item in items:
            if is_object:
                key, item = item
                out(separator + (_string(key) if type(key) is str else _key(key)) + ":")
            elif separator:
                out(separator)
            separator = ","
            kind = type(item)
            if kind is str:
                out(_string(item))
            elif kind is float:
                out(_float(item))
            elif kind is int:
                out(_int(item))
            elif item is None:
                out("null")
            elif kind is bool:
                out("true" if item else "false")
            elif (kind is dict or kind is list or kind is tuple) and not item:
                out("{}" if kind is dict else "[]")
            else:  # its items next; for a value of another type, what _plain makes it, in brackets of none
                if len(stack) >= MAX_JSON_DEPTH:
                    raise TypeError(_too_deep(item))
                stack.append((items, is_object, closing))
                if kind is dict:
                    out("{")
                    items, is_object, closing = iter(item.items()), True, "}"
                elif kind is list or kind is tuple:
                    out("[")
                    items, is_object, closing = iter(item), False, "]"
                else:
                    items, is_object, closing = iter((_plain(item),)), False, ""
                separator = ""
                break
        else:  # every item written
            out(closing)
            if not stack:
                break
            items, is_object, closing = stack.pop()
            separator = ","
    # A str may hold lone surrogates (json.loads makes them of "\ud800"),
    # which UTF-8 cannot encode and orjson refuses: written as JSON escapes
    # (\ud800), they read back as the same str. Every other character is
    # written as UTF-8.
    return "".join(pieces).encode("utf-8", "backslashreplace")


def _too_deep(value: Any) -> str:
    return (f"the value cannot be written as JSON: it nests arrays and objects deeper than {MAX_JSON_DEPTH} "
            f"levels (a {type(value).__name__} at that depth): a list or dict that contains itself, or a value "
            f"whose JSON form is itself, never ends")


def _plain(value: Any) -> Any:
    """Subclasses of JSON's types as those types, as orjson writes them; anything else through _json_default."""
    if isinstance(value, str):
        return str.__str__(value)  # its characters, not what an overridden __str__ says
    if isinstance(value, int):  # bool is not here: True and False are its only instances
        return int.__int__(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return _json_default(value)


# Python writes at most sys.get_int_max_str_digits() digits of an int at once
# (4300 by default, 640 at least: a guard against slow conversions of
# untrusted text); larger ones are written in pieces of this many digits.
_INT_PIECE_DIGITS = 600
_INT_PIECE = 10**_INT_PIECE_DIGITS


def _int(value: int) -> str:
    """An int in full, whatever its size."""
    try:
        return int.__repr__(value)
    except ValueError:  # more digits than Python converts at once
        pass
    sign, rest = ("-", -int(value)) if value < 0 else ("", int(value))
    pieces = []
    while rest:
        rest, piece = divmod(rest, _INT_PIECE)
        pieces.append(piece)
    last = pieces.pop()
    return sign + str(last) + "".join(f"{piece:0{_INT_PIECE_DIGITS}d}" for piece in reversed(pieces))


def _key(key: Any) -> str:
    """A key that is not a str, as the standard library's json writes it (orjson refuses them)."""
    if isinstance(key, str):
        return _string(key)
    if key is True or key is False or key is None:
        return f'"{json.dumps(key)}"'
    if isinstance(key, int):
        return f'"{_int(key)}"'
    if isinstance(key, float):
        return f'"{_float(key)}"'
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


# --- Projection -------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def projection_tree(fields: tuple[str, ...]) -> dict[str, Any]:
    """``{"diaSource": {"ra": None, "psfFlux": None}}`` from ``("diaSource.ra", "diaSource.psfFlux")``.

    None marks a field kept whole; a shorter path wins over a longer one
    (``"diaSource"`` keeps all of diaSource even if ``"diaSource.ra"`` is
    asked too). Cached, as a stage asks for the same fields for every alert:
    do not change the tree it returns.
    """
    tree: dict[str, Any] = {}
    for path in fields:
        node = tree
        *parents, last = path.split(".")
        for name in parents:
            child = node.setdefault(name, {})
            if child is None:  # a shorter path keeps this field whole already
                break
            node = child
        else:
            node[last] = None
    return tree


def project(value: Any, tree: dict[str, Any] | None) -> Any:
    """Keep only the fields of ``tree`` (see ``projection_tree``), in the tree's order.

    A path through an array applies to each element; a field the record does
    not have is left out; a path into a null or a scalar leaves it as it is.
    """
    if tree is None:
        return value
    if isinstance(value, dict):
        return {name: project(value[name], subtree) for name, subtree in tree.items() if name in value}
    if not isinstance(value, list):
        return value
    # Arrays nested in arrays are walked with a stack of our own, not one call
    # per level: a JSON alert may nest them as deep as its reader allows, and
    # only the records' levels (bounded by the fields asked for) recurse.
    projected: list[Any] = []
    stack = [(iter(value), projected)]
    while stack:
        items, into = stack[-1]
        for item in items:
            if isinstance(item, list):
                inner: list[Any] = []
                into.append(inner)
                stack.append((iter(item), inner))
                break
            into.append(project(item, tree) if isinstance(item, dict) else item)
        else:
            stack.pop()
    return projected


# --- Reading ------------------------------------------------------------------------


def decode_json(data: bytes) -> Any:
    """Decode a JSON document (UTF-8, -16 or -32). Integers stay exact Python ints."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AlertDecodeError(f"the value is not a JSON document: {exc}") from exc
    except RecursionError:  # arrays or objects nested about a thousand deep: json.loads recurses per level
        raise AlertDecodeError("the value is a JSON document nested deeper than Python's recursion limit "
                               f"({sys.getrecursionlimit()} levels) allows to read") from None


@overload
def b64bytes(value: bytes | bytearray | memoryview | str) -> bytes: ...


@overload
def b64bytes(value: None) -> None: ...


def b64bytes(value: bytes | bytearray | memoryview | str | None) -> bytes | None:
    """The bytes of a bytes field (a cutout stamp) of a decoded alert, whatever its form.

    Avro decoding gives bytes, returned as they are; the JSON form gives a
    base64 string (RFC 4648, padded), decoded here. None (a null field) stays
    None. Raises ``AlertDecodeError`` for a string that is not base64.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AlertDecodeError(
                f"a bytes field of the JSON form is a base64 string, and this one is not "
                f"({len(value)} characters starting {value[:16]!r}): {exc}") from exc
    raise TypeError(f"b64bytes takes bytes or a base64 str, not {type(value).__name__}")


@overload
def as_datetime(value: datetime.datetime | str) -> datetime.datetime: ...


@overload
def as_datetime(value: None) -> None: ...


def as_datetime(value: datetime.datetime | str | None) -> datetime.datetime | None:
    """A timestamp field of a decoded alert as a ``datetime``, whatever its form.

    Avro decoding gives an aware ``datetime`` (UTC), returned as it is; the JSON
    form gives an ISO 8601 string, parsed here (a trailing ``Z`` means UTC).
    None (a null field) stays None. Raises ``AlertDecodeError`` for a string
    that is not ISO 8601.
    """
    if value is None or isinstance(value, datetime.datetime):
        return value
    if isinstance(value, str):
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value  # Python < 3.11 refuses Z
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError as exc:
            raise AlertDecodeError(f"the timestamp {value!r} is not an ISO 8601 date and time") from exc
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.timezone.utc)
    raise TypeError(f"as_datetime takes a datetime or an ISO 8601 str, not {type(value).__name__}")
