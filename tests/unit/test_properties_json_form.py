"""The JSON form writer over random values: what decoded Avro holds, and what workers output.

``alert_worker.codecs.encode_json`` has two writers, orjson's and the standard
library's, that must write the same bytes; what orjson refuses (integers
beyond 64 bits, keys that are not str, lone surrogates) the standard library's
writes. The properties: the written bytes are UTF-8 JSON that reads back as
what the value means in the contract's JSON form (bytes base64, timestamps ISO
8601 with Z for UTC, NaN and infinities null, decimals and UUIDs strings), the
same with and without orjson; a value of a type JSON has no form for is a
TypeError with a message, and nothing else is ever raised.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import enum
import json
import math
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import numpy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from alert_worker.codecs import encode_json, encode_json_form, json_form
from alert_sidecar.formats.decoding import to_json

# Writing a value costs microseconds and making a random one some
# milliseconds: 150 examples take a second or two a property. No deadline
# and no example database, as for the decoders.
PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def writer(with_orjson: bool) -> Iterator[None]:
    """encode_json as the sidecar has it (orjson installed), or as a worker without orjson has it."""
    if with_orjson:
        yield
    else:
        with mock.patch.object(json_form, "orjson", None):
            yield


class Band(enum.Enum):
    R = "r"
    G = 2


class Flag(enum.IntEnum):
    ON = 1


_UTC = datetime.timezone.utc
_DAY = datetime.timedelta(hours=23, minutes=59)  # the largest offset a timezone takes, either way
OFFSETS = st.one_of(st.just(_UTC), st.timedeltas(min_value=-_DAY, max_value=_DAY).map(datetime.timezone))
TEXT = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=12)  # lone surrogates too
# A float of every decade, where spellings change (1e-5 against 0.00001, 1e+16 against 1e16).
DECADES = st.tuples(st.floats(-10, 10), st.integers(-30, 30)).map(lambda pair: pair[0] * 10.0 ** pair[1])
HUGE_INTS = st.integers(19, 6000).flatmap(lambda digits: st.sampled_from([10**digits + 7, -(10**digits) - 3]))

LEAVES = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(-(2**63), 2**64 - 1), HUGE_INTS,
    st.floats(), st.floats(width=32), DECADES,
    TEXT,
    st.binary(max_size=24), st.binary(max_size=8).map(bytearray), st.binary(max_size=8).map(memoryview),
    st.decimals(), st.uuids(),
    st.datetimes(), st.datetimes(timezones=OFFSETS), st.dates(), st.times(), st.times(timezones=OFFSETS),
    st.sampled_from([Band.R, Band.G, Flag.ON]),
    st.floats().map(numpy.float64), st.floats(width=32).map(numpy.float32), st.integers(-(2**63), 2**63 - 1)
    .map(numpy.int64),
)
KEYS = st.one_of(TEXT, st.integers(), st.booleans(), st.none())


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5), st.lists(children, max_size=3).map(tuple),
        st.dictionaries(TEXT, children, max_size=5),  # Avro records and maps
        st.dictionaries(KEYS, children, max_size=3),  # what a worker may put in an output
        st.frozensets(st.integers(), max_size=3),
        st.lists(st.floats(), max_size=4).map(numpy.array),
    )


VALUES = st.recursive(LEAVES, containers, max_leaves=40)


def read(written: bytes) -> Any:
    """The JSON text read back, integers in full whatever their size (json.loads refuses more than 4300 digits)."""
    return json.loads(written.decode("utf-8"), parse_int=lambda digits: int(decimal.Decimal(digits)))


def key_meaning(key: Any) -> str:
    if isinstance(key, str):
        return key
    return {True: "true", False: "false", None: "null"}[key] if key is None or isinstance(key, bool) else str(key)


def meaning(value: Any) -> Any:
    """What a JSON reader finds where ``value`` was written in the JSON form (the contract's rules, on their own)."""
    if isinstance(value, enum.Enum):
        return meaning(value.value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, numpy.integer)):
        return int(value)
    if isinstance(value, (float, numpy.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime.datetime):
        offset = value.utcoffset()
        return value.replace(tzinfo=None).isoformat() + "Z" if not offset else value.isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, dict):
        return {key_meaning(k): meaning(v) for k, v in value.items()}
    if isinstance(value, numpy.ndarray):
        return meaning(value.tolist())
    return [meaning(item) for item in value]  # lists, tuples, sets


@PROPERTY
@given(value=VALUES, with_orjson=st.booleans())
@example(value=["\ud800", {"\udfff": 1}], with_orjson=True)  # lone surrogates: orjson refuses them
@example(value=10**5000, with_orjson=True)  # more digits than int.__repr__ writes by default
@example(value=[math.nan, -math.inf, decimal.Decimal("sNaN"), b""], with_orjson=False)
def test_the_json_form_reads_back_as_what_the_value_means(value: Any, with_orjson: bool) -> None:
    with writer(with_orjson):
        written = encode_json(value)
    assert isinstance(written, bytes)
    assert read(written) == meaning(value)


@PROPERTY
@given(value=VALUES)
def test_with_and_without_orjson_the_bytes_are_the_same(value: Any) -> None:
    with writer(True):
        with_orjson = encode_json(value)
    with writer(False):
        without = encode_json(value)
    assert with_orjson == without == json_form._encode_with_stdlib(value)


@PROPERTY
@given(values=st.lists(st.one_of(st.floats(), st.floats(width=32), DECADES), max_size=20))
def test_both_writers_spell_every_float_alike(values: list[float]) -> None:
    # Floats are where the two writers part most easily: orjson's spelling of
    # exponents is its own, and the standard library's writer imitates it.
    with writer(True):
        with_orjson = encode_json(values)
    with writer(False):
        assert encode_json(values) == with_orjson
    assert read(with_orjson) == [v if math.isfinite(v) else None for v in values]  # the same doubles back


class NotJson:
    pass


@PROPERTY
@given(value=st.recursive(st.one_of(LEAVES, st.sampled_from([NotJson(), complex(1, 2), object(), Ellipsis])),
                          containers, max_leaves=12),
       with_orjson=st.booleans())
def test_a_value_is_written_or_refused_with_a_type_error(value: Any, with_orjson: bool) -> None:
    with writer(with_orjson):
        try:
            read(encode_json(value))
        except TypeError as exc:
            assert str(exc)


@settings(PROPERTY, max_examples=60)
@given(depth=st.integers(0, 600), kind=st.sampled_from(["list", "record"]), with_orjson=st.booleans())
def test_deep_values_are_written_by_either_writer(depth: int, kind: str, with_orjson: bool) -> None:
    # orjson refuses more than 255 levels; the standard library's writer takes over.
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"next": value}
    with writer(with_orjson):
        written = encode_json(value)
    assert written == (b"[" * depth + b"1" + b"]" * depth if kind == "list" else
                       b'{"next":' * depth + b"1" + b"}" * depth)


# --- Projection by a worker's fields ------------------------------------------------------

RECORD_NAMES = st.sampled_from(["a", "b", "ra"])  # few names: paths meet and overlap
_FIELD_VALUES = st.recursive(st.one_of(st.none(), st.integers(), st.floats(), TEXT, st.binary(max_size=4)),
                             lambda children: st.one_of(st.lists(children, max_size=3),
                                                        st.dictionaries(RECORD_NAMES, children, max_size=3)),
                             max_leaves=20)
RECORDS = st.dictionaries(RECORD_NAMES, _FIELD_VALUES, min_size=1)  # an alert is a record
PATHS = st.lists(RECORD_NAMES, min_size=1, max_size=3).map(".".join)
# Paths and their parents in any order: "a.b" then "a" keeps all of a, as "a" then "a.b" does.
FIELDS = st.lists(PATHS, max_size=3).flatmap(
    lambda paths: st.permutations(paths + [p.rsplit(".", 1)[0] for p in paths if "." in p])).map(tuple)


def projected(value: Any, paths: list[list[str]]) -> Any:
    """``value`` with only the fields on ``paths`` (each a list of names), as a worker's fields documents it."""
    if isinstance(value, list):
        return [projected(item, paths) for item in value]
    if not isinstance(value, dict):
        return value  # a path into a null or a scalar leaves it as it is
    kept = {}
    for name in dict.fromkeys(path[0] for path in paths):  # the order fields are first asked in
        if name not in value:
            continue
        rests = [path[1:] for path in paths if path[0] == name]
        kept[name] = value[name] if [] in rests else projected(value[name], rests)
    return kept


@settings(PROPERTY, max_examples=300)
@given(record=RECORDS, fields=st.one_of(st.none(), FIELDS), with_orjson=st.booleans())
def test_the_projection_keeps_what_fields_ask_for(record: Any, fields: tuple[str, ...] | None,
                                                  with_orjson: bool) -> None:
    with writer(with_orjson):
        written = to_json(record, fields)
        assert written == encode_json_form(record, fields)
    expected = projected(record, [path.split(".") for path in fields]) if fields else record
    assert read(written) == meaning(expected)
