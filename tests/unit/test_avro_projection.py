"""The compiled projection decoder reads what fastavro reads, keeps what ``project`` keeps, and refuses the rest.

fastavro is the reference: for random records of random schemas (records,
unions, arrays, maps, enums, fixed, logical types, named types used again),
for Rubin's sample alerts of every schema version and for both ZTF packets, the
compiled reader's value for a set of fields is ``project(fastavro's record)``,
in the same key order. Damaged and random bytes give a record fastavro agrees
with or ``AlertDecodeError``: never a crash, another exception or a hang.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from alert_worker import codecs
from alert_worker.codecs import project, projection_tree
from alert_worker.codecs.empty_items import check_items, holds_empty_items
from alert_worker.exceptions import AlertDecodeError
from alert_sidecar.formats import avro_projection
from alert_sidecar.formats.content import AVRO_CONFLUENT
from alert_sidecar.formats.decoding import convert_batch, decode, to_json
from alert_sidecar.formats.schemas import RubinSchemas
from tests.data import ZTF_PACKETS
from tests.unit.test_properties_decoding import _REFUSED, RUBIN_ALERTS, avro_values, fastavro_body

PROPERTY = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

pytestmark = pytest.mark.skipif(not avro_projection.AVAILABLE, reason="the compiled extension is not built")


def test_this_checkout_built_the_extension() -> None:
    # `make` builds it (pip install -e . runs setup.py): a checkout where the
    # extension is missing would pass every other test here by skipping them.
    assert avro_projection.AVAILABLE, "runtime/alert_sidecar/formats/_avro_projection.pyx was not compiled"


# --- Comparing ------------------------------------------------------------------------


def canonical(value: Any) -> Any:
    """A form of a value where equal means the same: dict keys in order, NaN equal to NaN, 1 not True."""
    if isinstance(value, dict):
        return ("dict", [(key, canonical(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [canonical(item) for item in value])
    if isinstance(value, float):
        return ("float", struct.pack("<d", value) if not math.isnan(value) else "nan")
    return (type(value).__name__, repr(value))


def framed(body: bytes, schema_id: int = 7) -> bytes:
    return codecs.confluent_header(schema_id) + body


def compiled(body: bytes, parsed: Any, fields: tuple[str, ...] | None, schema_id: int = 7) -> Any:
    reader = avro_projection.reader_for(parsed, fields)
    assert reader is not None
    return avro_projection.decode_confluent_projected(framed(body, schema_id), schema_id, reader)


def claims_more_items_than_it_holds(body: bytes, parsed: Any) -> bool:
    """Whether the SDK's walk refuses a body for its count of items (alert_worker.codecs.empty_items)."""
    if not holds_empty_items(parsed):
        return False
    try:
        check_items(body, parsed)
    except AlertDecodeError:
        return True
    return False


def assert_reads_as_fastavro(body: bytes, parsed: Any, fields: tuple[str, ...] | None) -> None:
    """The compiled reader's value is project(fastavro's), or both refuse (bar the documented differences)."""
    if claims_more_items_than_it_holds(body, parsed):
        # fastavro would build every item a damaged count claims (a few bytes can
        # claim billions of nulls): it cannot be the reference. The compiled
        # reader bounds the items the same way, and refuses.
        with pytest.raises(AlertDecodeError, match="^the Avro body "):
            compiled(body, parsed, fields)
        event("more items than the body holds")
        return
    expected = fastavro_body(body, parsed)
    try:
        got = compiled(body, parsed, fields)
    except AlertDecodeError as exc:
        assert str(exc).startswith("the Avro body ")
        if expected is not _REFUSED:
            # The records fastavro reads that we refuse: an enum index or a union
            # branch below zero, which fastavro takes from the end of the list.
            assert "enum symbol -" in str(exc) or "union branch -" in str(exc), (
                f"fastavro reads these bytes and the compiled reader says: {exc}")
        event("refused")
        return
    event("decoded")
    if expected is _REFUSED:
        # The one record we read that fastavro refuses: a string we skipped is not UTF-8
        # (or a skipped logical value fastavro cannot convert). Reading every field finds it.
        reader = avro_projection.reader_for(parsed, None)
        with pytest.raises(AlertDecodeError):
            avro_projection.decode_confluent_projected(framed(body), 7, reader)
        return
    want = project(expected, projection_tree(fields) if fields else None)
    assert canonical(got) == canonical(want)


# --- Random schemas ---------------------------------------------------------------------

_NAMES = st.sampled_from(["a", "b", "c", "ra", "dec", "flux", "id", "x"])
_SCALARS = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
_LOGICAL_TYPES = [
    {"type": "long", "logicalType": "timestamp-millis"},
    {"type": "long", "logicalType": "timestamp-micros"},
    {"type": "int", "logicalType": "date"},
    {"type": "int", "logicalType": "time-millis"},
    {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
    {"type": "string", "logicalType": "uuid"},
]


@st.composite
def schemas(draw) -> dict[str, Any]:
    """A record schema, as written, of random fields nesting a few levels deep."""
    counter = itertools.count()
    defined: list[str] = []  # named types defined so far, in the order the schema's JSON defines them

    def named(prefix: str) -> str:
        return f"{prefix}{next(counter)}"

    def record(depth: int) -> dict[str, Any]:
        names = draw(st.lists(_NAMES, min_size=1, max_size=5, unique=True))
        schema = {"type": "record", "name": named("R"),
                  "fields": [{"name": name, "type": any_type(depth + 1)} for name in names]}
        defined.append(schema["name"])  # after its fields: a type of its own fields would make it recursive
        return schema

    def any_type(depth: int) -> Any:
        kinds = ["scalar", "scalar", "logical", "enum", "fixed"]
        if depth < 4:
            kinds += ["record", "array", "map", "union", "union"]
        if defined:
            kinds.append("again")
        kind = draw(st.sampled_from(kinds))
        if kind == "scalar":
            return draw(st.sampled_from(_SCALARS))
        if kind == "logical":
            return dict(draw(st.sampled_from(_LOGICAL_TYPES)))
        if kind == "enum":
            schema = {"type": "enum", "name": named("E"),
                      "symbols": draw(st.lists(st.sampled_from("ABCDEFG"), min_size=1, max_size=5, unique=True))}
            defined.append(schema["name"])
            return schema
        if kind == "fixed":
            schema = {"type": "fixed", "name": named("F"), "size": draw(st.integers(0, 9))}
            defined.append(schema["name"])
            return schema
        if kind == "again":
            return draw(st.sampled_from(defined))
        if kind == "record":
            return record(depth)
        if kind == "array":
            return {"type": "array", "items": any_type(depth + 1)}
        if kind == "map":
            return {"type": "map", "values": any_type(depth + 1)}
        # A union: distinct kinds, no union directly inside it.
        branches = draw(st.lists(st.sampled_from(_SCALARS + ["timestamp", "record", "array", "map", "enum"]),
                                 min_size=1, max_size=4, unique=True))
        if "timestamp" in branches and "long" in branches:
            branches.remove("timestamp")
        out = []
        for branch in branches:
            if branch in _SCALARS:
                out.append(branch)
            elif branch == "timestamp":
                out.append({"type": "long", "logicalType": "timestamp-micros"})
            elif branch == "record":
                out.append(record(depth))
            elif branch == "array":
                out.append({"type": "array", "items": any_type(depth + 1)})
            elif branch == "map":
                out.append({"type": "map", "values": any_type(depth + 1)})
            else:
                schema = {"type": "enum", "name": named("E"), "symbols": ["P", "Q"]}
                defined.append(schema["name"])
                out.append(schema)
        return out

    return record(0)


def paths(schema: Any, named: dict[str, Any], depth: int = 0) -> list[str]:
    """Dotted paths into a schema as written: record fields, map keys a, b, through arrays and unions."""
    if depth > 6:
        return []
    if isinstance(schema, str):
        return paths(named[schema], named, depth) if schema in named else []
    if isinstance(schema, list):
        return [path for branch in schema for path in paths(branch, named, depth)]
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        named[schema["name"]] = schema
    if kind == "record":
        out = []
        for field in schema["fields"]:
            out.append(field["name"])
            out.extend(f"{field['name']}.{path}" for path in paths(field["type"], named, depth + 1))
        return out
    if kind == "array":
        return paths(schema["items"], named, depth + 1)
    if kind == "map":
        inner = paths(schema["values"], named, depth + 1)
        return [key for key in "ab"] + [f"{key}.{path}" for key in "ab" for path in inner]
    return []


@st.composite
def records_of_random_schemas(draw) -> tuple[Any, bytes, tuple[str, ...] | None]:
    """(parsed schema, the body of a record fastavro wrote with it, fields to ask for)."""
    schema = draw(schemas())
    parsed = fastavro.parse_schema(json.loads(json.dumps(schema)))
    named: dict[str, Any] = {}
    known = paths(schema, named)
    # Map keys mostly from the letters the paths use, so that paths through maps find some.
    record = draw(avro_values(schema, {}, keys=st.one_of(st.sampled_from("abc"), st.text(max_size=3))))
    body = io.BytesIO()
    try:
        fastavro.schemaless_writer(body, parsed, record)
    except (ValueError, TypeError, OverflowError) as exc:  # a union fastavro cannot tell a value's branch in
        event(f"fastavro does not write it: {type(exc).__name__}")
        assume(False)
    fields = draw(st.one_of(
        st.none(),
        st.lists(st.sampled_from(known + ["nope", "nope.x", "a.nope"]), min_size=1, max_size=5).map(tuple)))
    return parsed, body.getvalue(), fields


@PROPERTY
@given(case=records_of_random_schemas())
def test_records_of_random_schemas_read_as_fastavro_projects_them(case) -> None:
    parsed, body, fields = case
    expected = fastavro_body(body, parsed)
    assert expected is not _REFUSED  # fastavro reads back what it wrote
    got = compiled(body, parsed, fields)
    assert canonical(got) == canonical(project(expected, projection_tree(fields) if fields else None))


@st.composite
def damaged_bodies(draw) -> tuple[Any, bytes, tuple[str, ...] | None]:
    parsed, body, fields = draw(records_of_random_schemas())
    how = draw(st.sampled_from(["cut", "byte", "insert", "random"]))
    if how == "cut":
        body = body[:draw(st.integers(0, max(len(body) - 1, 0)))]
    elif how == "byte" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1:]
    elif how == "insert":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=12)) + body[at:]
    else:
        body = draw(st.binary(max_size=64))
    return parsed, body, fields


@PROPERTY
@given(case=damaged_bodies())
def test_damaged_bodies_read_as_fastavro_reads_them_or_are_refused(case) -> None:
    parsed, body, fields = case
    assert_reads_as_fastavro(body, parsed, fields)


# --- Real alerts ------------------------------------------------------------------------

RUBIN_FIELDS = [
    None,
    ("diaSource.psfFlux", "diaSource.psfFluxErr"),  # the README's R filter
    ("diaSourceId", "diaSource.ra", "diaSource.dec", "diaSource.midpointMjdTai", "diaSource.psfFlux",
     "diaSource.psfFluxErr", "diaSource.band", "diaObject.diaObjectId"),
    ("prvDiaSources.midpointMjdTai", "prvDiaSources.psfFlux", "diaSource"),
    ("cutoutDifference", "cutoutScience"),
    ("diaSource.psfFlux", "diaSource"),  # a shorter path keeps the whole field
    ("nope", "diaSource.nope", "diaObject"),
]


@pytest.mark.parametrize("schema_id", sorted(RUBIN_ALERTS))
@pytest.mark.parametrize("fields", RUBIN_FIELDS, ids=lambda fields: "all" if fields is None else ",".join(fields))
def test_rubin_samples_read_as_fastavro_projects_them(schema_id: int, fields) -> None:
    parsed = codecs.rubin_resolver().schema(schema_id)
    body = RUBIN_ALERTS[schema_id][codecs.CONFLUENT_HEADER_SIZE:]
    expected = fastavro_body(body, parsed)
    assert expected is not _REFUSED
    got = compiled(body, parsed, fields, schema_id)
    assert canonical(got) == canonical(project(expected, projection_tree(fields) if fields else None))
    if fields is not None and "nope" not in fields[0]:
        assert got  # a projection that kept nothing would agree with fastavro's and prove little


def _ztf_as_confluent() -> list[tuple[Any, bytes]]:
    out = []
    for path in ZTF_PACKETS:
        with path.open("rb") as packet:
            reader = fastavro.reader(packet)
            parsed = fastavro.parse_schema(reader.writer_schema)
            record = next(reader)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parsed, record)
        out.append((parsed, body.getvalue()))
    return out


ZTF_BODIES = _ztf_as_confluent()


@pytest.mark.parametrize("which", range(len(ZTF_BODIES)))
@pytest.mark.parametrize("fields", [None, ("candidate.magpsf", "candidate.sigmapsf", "objectId"),
                                    ("prv_candidates.jd", "prv_candidates.magpsf", "cutoutScience")])
def test_ztf_packets_read_as_fastavro_projects_them(which: int, fields) -> None:
    parsed, body = ZTF_BODIES[which]
    expected = fastavro_body(body, parsed)
    assert expected is not _REFUSED
    got = compiled(body, parsed, fields)
    assert canonical(got) == canonical(project(expected, projection_tree(fields) if fields else None))


@PROPERTY
@given(data=st.data())
def test_damaged_rubin_alerts_read_as_fastavro_reads_them_or_are_refused(data) -> None:
    schema_id = data.draw(st.sampled_from(sorted(RUBIN_ALERTS)))
    body = RUBIN_ALERTS[schema_id][codecs.CONFLUENT_HEADER_SIZE:]
    how = data.draw(st.sampled_from(["cut", "byte"]))
    if how == "cut":
        body = body[:data.draw(st.integers(0, len(body) - 1))]
    else:  # the head of the body holds the lengths and union branches that matter most
        at = data.draw(st.one_of(st.integers(0, min(400, len(body) - 1)), st.integers(0, len(body) - 1)))
        body = body[:at] + bytes([data.draw(st.integers(0, 255))]) + body[at + 1:]
    fields = data.draw(st.sampled_from(RUBIN_FIELDS))
    assert_reads_as_fastavro(body, codecs.rubin_resolver().schema(schema_id), fields)


# --- What is left to fastavro, and the stage's decoding -----------------------------------


def test_a_recursive_schema_is_left_to_fastavro() -> None:
    linked = fastavro.parse_schema({"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "long"}, {"name": "next", "type": ["null", "Node"]}]})
    assert avro_projection.reader_for(linked, None) is None
    assert avro_projection.reader_for(linked, ("value",)) is None


def test_a_schema_nested_deeper_than_the_stack_is_left_to_fastavro() -> None:
    schema: Any = "long"
    for _ in range(3000):
        schema = {"type": "array", "items": schema}
    parsed = fastavro.parse_schema({"type": "record", "name": "Deep", "fields": [{"name": "x", "type": schema}]})
    assert avro_projection.reader_for(parsed, None) is None


def test_a_body_with_bytes_after_its_record_is_refused() -> None:
    parsed = fastavro.parse_schema({"type": "record", "name": "One", "fields": [{"name": "x", "type": "long"}]})
    with pytest.raises(AlertDecodeError, match="leaves 3 bytes after a whole record of schema id 7"):
        compiled(b"\x02abc", parsed, None)


def test_a_huge_length_is_refused_without_allocating_it() -> None:
    parsed = fastavro.parse_schema({"type": "record", "name": "One", "fields": [
        {"name": "blob", "type": "bytes"}, {"name": "items", "type": {"type": "array", "items": "null"}}]})
    too_long = b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f"  # 2**62 - 1 bytes, in nine bytes
    with pytest.raises(AlertDecodeError, match="too early"):
        compiled(too_long, parsed, None)
    with pytest.raises(AlertDecodeError, match="too early"):
        compiled(too_long, parsed, ("items",))  # skipped, it is still a length past the end
    with pytest.raises(AlertDecodeError, match="block of"):
        compiled(b"\x00" + too_long, parsed, None)  # an array of 2**62 nulls in nine bytes


@pytest.mark.parametrize("fields", RUBIN_FIELDS, ids=lambda fields: "all" if fields is None else ",".join(fields))
def test_the_stage_sends_what_fastavro_and_the_json_form_made(fields) -> None:
    # What the stage gave a worker before the compiled reader (fastavro, then
    # the JSON form of the fields asked for) is byte for byte what it gives now.
    source = RubinSchemas()
    values = [RUBIN_ALERTS[schema_id] for schema_id in sorted(RUBIN_ALERTS)]
    converted = convert_batch(values, [AVRO_CONFLUENT] * len(values), fields, source)
    for one, value in zip(converted, values):
        assert one.error is None, one.error
        record, schema_id = decode(value, AVRO_CONFLUENT, source)
        assert one.payload == to_json(record, fields) and one.schema_id == schema_id
