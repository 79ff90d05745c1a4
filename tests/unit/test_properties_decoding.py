"""Bad input never crashes a decoder: properties of the alert formats over random and damaged bytes.

Every decoder either gives a record or raises its documented error with a
message (``DecodeError`` and the schema errors for the sidecar's ``decode``,
``AlertDecodeError`` for the SDK's codecs); ``convert_batch``, what the
sidecar's decoder processes run, never raises and answers once per alert.
fastavro is the reference: wherever it reads bytes whole, ours gives the same
record, and wherever ours gives a record, fastavro reads the bytes whole.

The inputs are random bytes, real alerts (both ZTF packets of tests/data, the
sample alert of every Rubin schema version) truncated or with one byte changed,
alerts of small schemas of this file's own, unknown schema ids, and null values.
"""

from __future__ import annotations

import datetime
import io
import json
import math
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from alert_worker import codecs
from alert_worker.exceptions import AlertDecodeError
from alert_worker.testing import rubin_sample
from alert_sidecar.exceptions import DecodeError, InvalidSchemaError, SchemaRegistryUnavailable, UnknownSchemaError
from alert_sidecar.formats.content import AVRO_CONFLUENT, AVRO_OCF, JSON, RAW
from alert_sidecar.formats.decoding import Converted, convert_batch, decode, to_json
from alert_sidecar.formats.schemas import DirectorySchemas, RubinSchemas, SchemaSource, schema_source
from tests.data import ZTF_PACKETS

# Decoding an alert costs well under a millisecond, a ZTF packet a few: 300
# examples keep each property to a second or two. No deadline: a slow
# machine is not a failure. No example database: the tests leave nothing in
# the checkout; a failure prints the example to replay.
PROPERTY = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CONTENT_TYPES = [AVRO_CONFLUENT, AVRO_OCF, JSON, RAW, "text/plain", ""]


# --- Small schemas of our own, and records that fit them -------------------------------

SMALL_SCHEMAS: dict[int, Any] = {
    42: {"type": "record", "name": "Small", "fields": [
        {"name": "id", "type": "long"},
        {"name": "flag", "type": "boolean"},
        {"name": "ratio", "type": ["null", "float"]},
        {"name": "mag", "type": "double"},
        {"name": "name", "type": "string"},
        {"name": "stamp", "type": ["null", "bytes"]},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 4}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "extra", "type": {"type": "map", "values": "long"}},
        {"name": "prv", "type": {"type": "array", "items": {"type": "record", "name": "Prv", "fields": [
            {"name": "mjd", "type": "double"}, {"name": "flux", "type": ["null", "float"]}]}}},
        {"name": "again", "type": ["null", "Prv"]},
    ]},
    43: {"type": "record", "name": "Timed", "fields": [
        {"name": "t_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "t_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tod", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
    ]},
    44: {"type": "record", "name": "Many", "fields": [
        {"name": "any", "type": ["null", "int", "string", "bytes", {"type": "map", "values": "double"},
                                 {"type": "array", "items": ["null", "long"]}]},
    ]},
    45: "string",  # a Confluent schema may be a primitive
}

_UTC = datetime.timezone.utc
_PRIMITIVES = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32),
    "double": st.floats(),
    "bytes": st.binary(max_size=40),
    "string": st.text(max_size=20),
}
_LOGICAL = {
    "timestamp-millis": st.datetimes(timezones=st.just(_UTC)),
    "timestamp-micros": st.datetimes(timezones=st.just(_UTC)),
    "date": st.dates(),
    "time-millis": st.times(),
    "decimal": st.decimals(min_value=-(10**8) + 1, max_value=10**8 - 1, places=2, allow_nan=False),
    "uuid": st.uuids().map(str),
}


MAP_KEYS = st.text(max_size=6)


def avro_values(schema: Any, named: dict[str, Any],
                keys: st.SearchStrategy[str] = MAP_KEYS) -> st.SearchStrategy[Any]:
    """Values that fit an Avro schema (as written: dicts and names, not parsed), maps' keys from ``keys``."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        return st.deferred(lambda: avro_values(named[schema], named, keys))
    if isinstance(schema, list):
        return st.one_of([avro_values(branch, named, keys) for branch in schema])
    if "logicalType" in schema:
        return _LOGICAL[schema["logicalType"]]
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return st.fixed_dictionaries({f["name"]: avro_values(f["type"], named, keys) for f in schema["fields"]})
    if kind == "enum":
        named[schema["name"]] = schema
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        named[schema["name"]] = schema
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(avro_values(schema["items"], named, keys), max_size=4)
    if kind == "map":
        return st.dictionaries(keys, avro_values(schema["values"], named, keys), max_size=3)
    return avro_values(kind, named, keys)


@st.composite
def small_alerts(draw) -> tuple[int, Any, bytes]:
    """(schema id, record, Confluent-framed bytes) of one of SMALL_SCHEMAS."""
    schema_id = draw(st.sampled_from(sorted(SMALL_SCHEMAS)))
    record = draw(avro_values(SMALL_SCHEMAS[schema_id], {}))
    return schema_id, record, codecs.encode_confluent(record, PARSED_SMALL[schema_id], schema_id)


PARSED_SMALL = {schema_id: fastavro.parse_schema(schema) for schema_id, schema in SMALL_SCHEMAS.items()}


# --- Real alerts -------------------------------------------------------------------------

def _rubin_alerts() -> dict[int, bytes]:
    """Every Rubin schema version's sample alert, Confluent-framed under its registry id."""
    resolver = codecs.rubin_resolver()
    alerts = {}
    for version in resolver.versions():
        try:
            record = rubin_sample(version)
        except ValueError:  # lsst-alert-packet ships no sample for this version
            continue
        schema_id = resolver.schema_id(version)
        alerts[schema_id] = codecs.encode_confluent(record, resolver.schema(schema_id), schema_id)
    return alerts


RUBIN_ALERTS = _rubin_alerts()
ZTF_ALERTS = [path.read_bytes() for path in ZTF_PACKETS]


def test_the_real_alerts_are_there() -> None:
    assert len(RUBIN_ALERTS) >= 10 and 1101 in RUBIN_ALERTS  # a property over no alert would prove nothing
    assert len(ZTF_ALERTS) == 2


@st.composite
def damaged(draw, value: bytes) -> bytes:
    """``value`` cut short, with one byte changed, dropped or added: what a broken producer or disk gives."""
    how = draw(st.sampled_from(["truncate", "change", "drop", "insert"]))
    at = draw(st.integers(0, len(value) - 1))
    if how == "truncate":
        return value[:at]
    if how == "change":
        byte = draw(st.integers(0, 255).filter(lambda b: b != value[at]))
        return value[:at] + bytes([byte]) + value[at + 1:]
    if how == "drop":
        return value[:at] + value[at + 1:]
    return value[:at] + bytes([draw(st.integers(0, 255))]) + value[at:]


def damaged_among(values: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.sampled_from(values).flatmap(damaged)


# Damage near the start (the framing, the schema id, an OCF header) is worth
# more than damage deep in a cutout stamp, which still decodes: bias towards it.
def damaged_head(values: list[bytes], head: int) -> st.SearchStrategy[bytes]:
    return st.sampled_from([v[:head] for v in values]).flatmap(damaged).flatmap(
        lambda start: st.sampled_from(values).map(lambda v: start + v[head:]))


# --- Schema sources: the sidecar's, with our small schemas in a folder -----------------

@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> SchemaSource:
    """The chain the command line builds for ``--schema-dir``: the folder, then Rubin's ids."""
    folder = tmp_path_factory.mktemp("schemas")
    for schema_id, schema in SMALL_SCHEMAS.items():
        (folder / f"{schema_id}.avsc").write_text(json.dumps(schema))
    return schema_source(None, folder)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory):
    """An empty schema folder, for one id file at a time."""
    return tmp_path_factory.mktemp("folder")


SDK_RESOLVER = codecs.BatchSchemaResolver({i: json.dumps(s) for i, s in SMALL_SCHEMAS.items()})

_REFUSED = object()
_EITHER = object()


def same(a: Any, b: Any) -> bool:
    """Equal records, NaN equal to NaN (a float field of damaged bytes is often NaN), at any depth."""
    pairs = [(a, b)]
    while pairs:
        x, y = pairs.pop()
        if isinstance(x, float) and isinstance(y, float):
            if not (x == y or (math.isnan(x) and math.isnan(y))):
                return False
        elif isinstance(x, dict) and isinstance(y, dict):
            if x.keys() != y.keys():
                return False
            pairs.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                return False
            pairs.extend(zip(x, y))
        elif type(x) is not type(y) or x != y:
            return False
    return True


def json_reference(value: bytes) -> Any:
    """json.loads on its own: the document, _REFUSED, or _EITHER where it is nested about as deep as the stack allows.

    Near Python's recursion limit, whether a document reads depends on how
    deep the stack already is: there either outcome is right, as long as it
    is one of the two.
    """
    try:
        return json.loads(value)
    except RecursionError:
        return _EITHER
    except Exception:
        return _REFUSED


def fastavro_body(body: bytes, parsed_schema: Any) -> Any:
    """What fastavro alone reads from an Avro body: the record, or _REFUSED if it fails or leaves bytes."""
    stream = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(stream, parsed_schema, None)
    except Exception:
        return _REFUSED
    return record if stream.tell() == len(body) else _REFUSED


def fastavro_confluent(value: bytes, parsed_schema: Any) -> Any:
    """What fastavro alone reads from a Confluent-framed value (see fastavro_body)."""
    return fastavro_body(value[codecs.CONFLUENT_HEADER_SIZE:], parsed_schema)


def fastavro_ocf(value: bytes) -> Any:
    """What fastavro alone reads from a container file of one record, else _REFUSED."""
    try:
        records = list(fastavro.reader(io.BytesIO(value)))
    except Exception:
        return _REFUSED
    return records[0] if len(records) == 1 else _REFUSED


def sidecar_decodes_like_fastavro(value: bytes | None, content_type: str, source: SchemaSource) -> None:
    """The sidecar's ``decode``: a record fastavro agrees with, or a documented error with a message."""
    try:
        record, schema_id = decode(value, content_type, source)
    except DecodeError as exc:
        assert str(exc) and exc.reason == str(exc)
        record, schema_id = _REFUSED, None
    except UnknownSchemaError as exc:  # InvalidSchemaError is one
        assert content_type == AVRO_CONFLUENT and exc.schema_id == codecs.schema_id_of(value) and str(exc)
        return
    except SchemaRegistryUnavailable as exc:
        assert content_type == AVRO_CONFLUENT and str(exc)
        return
    if content_type == AVRO_CONFLUENT:
        framed = codecs.schema_id_of(value)
        if framed is None:
            assert record is _REFUSED
            return
        assert record is _REFUSED or schema_id == framed
        expected = fastavro_confluent(value, source.parsed(framed))
    elif content_type == AVRO_OCF:
        expected = fastavro_ocf(value) if value is not None else _REFUSED
    elif content_type == JSON:
        expected = json_reference(value)
    else:
        expected = _REFUSED  # raw bytes and unknown types are never decoded
    if expected is _EITHER:
        return
    event("refused" if record is _REFUSED else "decoded")  # --hypothesis-show-statistics tells how many of each
    assert (record is _REFUSED) == (expected is _REFUSED), (
        f"fastavro {'refuses' if expected is _REFUSED else 'reads'} these bytes, "
        f"and decode {'refuses' if record is _REFUSED else 'reads'} them")
    if record is not _REFUSED:
        assert same(record, expected)


def sdk_decodes_like_fastavro(value: bytes, content_type: str, resolver: Any = SDK_RESOLVER) -> None:
    """The SDK's codecs: a record fastavro agrees with, or AlertDecodeError with a message."""
    try:
        if content_type == AVRO_CONFLUENT:
            record = codecs.decode_confluent(value, resolver)
        elif content_type == AVRO_OCF:
            record = codecs.decode_ocf(value)
        else:
            record = codecs.decode_json(value)
    except AlertDecodeError as exc:  # UnknownSchemaError is one
        assert str(exc)
        record = _REFUSED
    if content_type == AVRO_CONFLUENT:
        framed = codecs.schema_id_of(value)
        if framed is None:
            assert record is _REFUSED
            return
        try:
            schema = resolver.schema(framed)
        except AlertDecodeError:
            assert record is _REFUSED
            return
        expected = fastavro_confluent(value, schema)
    elif content_type == AVRO_OCF:
        expected = fastavro_ocf(value)
    else:
        expected = json_reference(value)
        if expected is _EITHER:
            return
    assert (record is _REFUSED) == (expected is _REFUSED)
    if record is not _REFUSED:
        assert same(record, expected)


# --- Confluent-framed Avro ---------------------------------------------------------------

@PROPERTY
@given(value=st.one_of(damaged_among(list(RUBIN_ALERTS.values())), damaged_head(list(RUBIN_ALERTS.values()), 40)))
def test_damaged_rubin_alerts_decode_as_fastavro_reads_them_or_are_refused(value: bytes, sources) -> None:
    sidecar_decodes_like_fastavro(value, AVRO_CONFLUENT, sources)
    sdk_decodes_like_fastavro(value, AVRO_CONFLUENT, codecs.rubin_resolver())


@PROPERTY
@given(alert=small_alerts())
def test_alerts_of_our_schemas_decode_to_what_fastavro_reads(alert, sources) -> None:
    schema_id, _record, value = alert
    sidecar_decodes_like_fastavro(value, AVRO_CONFLUENT, sources)
    sdk_decodes_like_fastavro(value, AVRO_CONFLUENT)
    record, found = decode(value, AVRO_CONFLUENT, sources)  # whole alerts are never refused
    assert found == schema_id
    json.loads(to_json(record))


@PROPERTY
@given(value=small_alerts().flatmap(lambda alert: damaged(alert[2])))
def test_damaged_alerts_of_our_schemas_decode_as_fastavro_reads_them_or_are_refused(value: bytes, sources) -> None:
    sidecar_decodes_like_fastavro(value, AVRO_CONFLUENT, sources)
    sdk_decodes_like_fastavro(value, AVRO_CONFLUENT)


# Ids of our schemas, of Rubin's, and ids nobody knows.
SCHEMA_IDS = st.one_of(st.sampled_from([*SMALL_SCHEMAS, *RUBIN_ALERTS]), st.integers(0, 2**32 - 1))


@PROPERTY
@given(schema_id=SCHEMA_IDS, body=st.binary(max_size=300))
@example(schema_id=42, body=b"")
@example(schema_id=7, body=b"\x02")  # an id no source knows
def test_random_bodies_under_any_schema_id_decode_as_fastavro_reads_them_or_are_refused(
        schema_id: int, body: bytes, sources) -> None:
    value = codecs.confluent_header(schema_id) + body
    sidecar_decodes_like_fastavro(value, AVRO_CONFLUENT, sources)
    sdk_decodes_like_fastavro(value, AVRO_CONFLUENT)


@PROPERTY
@given(value=st.binary(max_size=64), content_type=st.sampled_from(CONTENT_TYPES))
@example(value=b"", content_type=AVRO_CONFLUENT)
@example(value=b"\x00\x00\x00", content_type=AVRO_CONFLUENT)
@example(value=b"Obj\x01", content_type=AVRO_OCF)
def test_random_bytes_decode_or_are_refused_for_every_content_type(value: bytes, content_type: str,
                                                                   sources) -> None:
    sidecar_decodes_like_fastavro(value, content_type, sources)
    if content_type in (AVRO_CONFLUENT, AVRO_OCF, JSON):
        sdk_decodes_like_fastavro(value, content_type)


# --- Writer schemas sent as text -------------------------------------------------------

_JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-5, 40), st.text(max_size=8),
                         st.sampled_from(["record", "enum", "fixed", "array", "map", "int", "long", "string",
                                          "bytes", "null", "Small", "name", "fields", "type", "items",
                                          "values", "symbols", "size", "logicalType", "decimal"]))
JSON_VALUES = st.recursive(_JSON_LEAVES, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.sampled_from(["type", "name", "fields", "items", "values", "symbols", "size",
                                     "logicalType", "precision", "scale", "default", "namespace"]),
                    children, max_size=5)), max_leaves=20)
SCHEMA_TEXTS = st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=30),
                         st.integers(0, 3000).map(lambda n: "[" * n + "]" * n),
                         st.sampled_from([json.dumps(s) for s in SMALL_SCHEMAS.values()]))


class TextSchemas(SchemaSource):
    """A source that holds one text for every id, as a registry or a folder may hold anything."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__()

    def schema_text(self, schema_id: int) -> str:
        return self.text

    def describe(self) -> str:
        return "the test's text"


@PROPERTY
@given(text=SCHEMA_TEXTS, body=st.binary(max_size=40))
@example(text="[" * 5000 + "]" * 5000, body=b"")
def test_any_writer_schema_text_parses_or_is_refused(text: str, body: bytes) -> None:
    value = codecs.confluent_header(9) + body
    # The SDK: a schema sent with a batch.
    try:
        codecs.parse_writer_schema(9, text)
    except AlertDecodeError as exc:
        assert str(exc)
    sdk_decodes_like_fastavro(value, AVRO_CONFLUENT, codecs.BatchSchemaResolver({9: text}))
    # The sidecar: a schema a source holds.
    source = TextSchemas(text)
    try:
        source.parsed(9)
    except InvalidSchemaError as exc:
        assert exc.schema_id == 9 and str(exc)
    [converted] = convert_batch([value], [AVRO_CONFLUENT], None, source)
    assert (converted.payload is None) != (converted.error is None)


@PROPERTY
@given(text=SCHEMA_TEXTS, body=st.binary(max_size=40))
def test_any_schema_file_in_a_schema_folder_is_read_or_refused(text: str, body: bytes, folder) -> None:
    (folder / "9.avsc").write_text(text, encoding="utf-8")
    source = DirectorySchemas(folder)  # anew: a source reads an id's file once
    try:
        json.loads(source.schema_text(9))  # the text it hands workers stands alone
        source.parsed(9)
    except InvalidSchemaError as exc:
        assert exc.schema_id == 9 and str(exc)
    [converted] = convert_batch([codecs.confluent_header(9) + body], [AVRO_CONFLUENT], None, source)
    assert (converted.payload is None) != (converted.error is None)


# --- Avro container files ----------------------------------------------------------------

def container_file(schema: Any, records: list[Any], codec: str) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, schema, records, codec=codec)
    return out.getvalue()


@st.composite
def small_container_files(draw) -> bytes:
    schema_id = draw(st.sampled_from(sorted(SMALL_SCHEMAS)))
    records = draw(st.lists(avro_values(SMALL_SCHEMAS[schema_id], {}), max_size=2))
    return container_file(PARSED_SMALL[schema_id], records, draw(st.sampled_from(["null", "deflate"])))


@PROPERTY
@given(value=st.one_of(damaged_among(ZTF_ALERTS), damaged_head(ZTF_ALERTS, 3000)))
def test_damaged_ztf_alerts_decode_as_fastavro_reads_them_or_are_refused(value: bytes, sources) -> None:
    sidecar_decodes_like_fastavro(value, AVRO_OCF, sources)
    sdk_decodes_like_fastavro(value, AVRO_OCF)


@PROPERTY
@given(value=st.one_of(small_container_files(), small_container_files().flatmap(damaged),
                       st.binary(max_size=200).map(lambda b: codecs.OCF_MAGIC + b)))
def test_container_files_of_one_record_decode_and_others_are_refused(value: bytes, sources) -> None:
    sidecar_decodes_like_fastavro(value, AVRO_OCF, sources)
    sdk_decodes_like_fastavro(value, AVRO_OCF)


# --- JSON ----------------------------------------------------------------------------------

JSON_TEXTS = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.text(alphabet='{}[]",:0123456789.eE+-truefalsnNI\\u ', max_size=40),  # JSON's own characters
    st.integers(0, 3000).flatmap(lambda n: st.sampled_from(["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n])),
)


@PROPERTY
@given(value=st.one_of(
    JSON_TEXTS.flatmap(lambda t: st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1"]).map(
        lambda enc: t.encode(enc, "replace"))),
    st.binary(max_size=64)))
@example(value=b"[" * 100_000)
@example(value=b'["\\ud800"]')  # an escaped lone surrogate: valid JSON, not UTF-8 once written
def test_json_decodes_or_is_refused(value: bytes, sources) -> None:
    sidecar_decodes_like_fastavro(value, JSON, sources)
    sdk_decodes_like_fastavro(value, JSON)
    [converted] = convert_batch([value], [JSON], None, sources)
    assert (converted.payload is None) != (converted.error is None)


# --- Telling formats apart -------------------------------------------------------------------

@PROPERTY
@given(value=st.one_of(st.none(), st.binary(max_size=16), damaged_among([*RUBIN_ALERTS.values(), *ZTF_ALERTS]),
                       JSON_TEXTS.map(str.encode)))
def test_sniff_names_a_content_type_by_the_first_bytes_only(value: bytes | None) -> None:
    found = codecs.sniff(value)
    assert found in (AVRO_CONFLUENT, AVRO_OCF, JSON, RAW)
    if not value:
        assert found == RAW
    elif value.startswith(codecs.OCF_MAGIC):
        assert found == AVRO_OCF
    elif value[0] == 0:
        assert found == (AVRO_CONFLUENT if len(value) > codecs.CONFLUENT_HEADER_SIZE else RAW)
    else:
        assert found == (JSON if value[:1] in (b"{", b"[") else RAW)
    schema_id = codecs.schema_id_of(value)
    assert schema_id is None or (value[0] == 0 and schema_id == int.from_bytes(value[1:5], "big"))


# --- convert_batch: what the decoder processes run ---------------------------------------------

ANY_ALERT = st.one_of(
    st.tuples(st.sampled_from(list(RUBIN_ALERTS.values())), st.just(AVRO_CONFLUENT)),
    st.tuples(damaged_among(list(RUBIN_ALERTS.values())), st.just(AVRO_CONFLUENT)),
    st.tuples(small_alerts().map(lambda alert: alert[2]), st.just(AVRO_CONFLUENT)),
    st.tuples(SCHEMA_IDS.map(codecs.confluent_header), st.just(AVRO_CONFLUENT)),
    st.tuples(damaged_among(ZTF_ALERTS), st.just(AVRO_OCF)),
    st.tuples(small_container_files(), st.just(AVRO_OCF)),
    st.tuples(JSON_TEXTS.map(str.encode), st.just(JSON)),
    st.tuples(st.one_of(st.none(), st.binary(max_size=32)), st.sampled_from(CONTENT_TYPES)),
)
FIELDS = st.one_of(st.none(), st.lists(st.sampled_from(
    ["diaSourceId", "diaSource.ra", "diaSource", "prvDiaSources.midpointMjdTai", "candid", "candidate.magpsf",
     "id", "prv.mjd", "kind", "a", "a.b", "", ".", "x..y"]), max_size=4).map(tuple))


@PROPERTY
@given(alerts=st.lists(ANY_ALERT, max_size=6), fields=FIELDS)
def test_convert_batch_answers_each_alert_and_never_raises(alerts: list[tuple[bytes | None, str]],
                                                           fields: tuple[str, ...] | None, sources) -> None:
    values = [value for value, _ in alerts]
    content_types = [content_type for _, content_type in alerts]
    converted = convert_batch(values, content_types, fields, sources)
    assert len(converted) == len(alerts)
    for one, value, content_type in zip(converted, values, content_types):
        assert isinstance(one, Converted)
        assert not one.transient  # no registry here: nothing is unavailable
        # decode is fastavro's whole record; convert_batch reads Confluent Avro with the
        # compiled reader, which differs from it on two kinds of invalid bytes
        # (alert_sidecar.formats.avro_projection): it does not check strings it skips,
        # and refuses negative enum indices and union branches.
        if one.error is None:
            json.loads(one.payload)
            try:
                record, schema_id = decode(value, content_type, sources)
            except DecodeError:
                assert content_type == AVRO_CONFLUENT and fields, "only a projection skips what fastavro refuses"
                continue
            assert one.payload == to_json(record, fields) and one.schema_id == schema_id
        else:
            assert one.payload is None and one.error.startswith("cannot decode the alert: ")
            if content_type == AVRO_CONFLUENT:  # only a Confluent frame names a schema id
                assert one.schema_id == codecs.schema_id_of(value)
            if "enum symbol -" in one.error or "union branch -" in one.error:
                continue
            with pytest.raises((DecodeError, UnknownSchemaError)):
                decode(value, content_type, sources)


def test_rubin_source_alone_refuses_ids_it_does_not_know() -> None:
    # Without --schema-dir, Rubin's ids are the only ones: an id of ours is unknown, with a message.
    [converted] = convert_batch([codecs.confluent_header(42) + b"\x00"], [AVRO_CONFLUENT], None, RubinSchemas())
    assert converted.payload is None and "schema id 42 is unknown" in converted.error
