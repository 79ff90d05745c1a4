"""A damaged count of items that take no bytes is refused at once, by the SDK and by the sidecar.

A few bytes can claim billions of nulls (or of a fixed of size 0, or of a record
of only nulls), and fastavro builds every one: these bodies would take a
decoder's memory or its time without end. Each case here is refused in well
under a second, by ``alert_worker.codecs`` (which walks the body before fastavro
for such schemas) and by the sidecar's compiled reader, which bound the items
the same way: one per byte of the body and ``ZERO_SIZE_ITEMS`` more.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import fastavro
import pytest

from alert_worker import AlertDecodeError, codecs
from alert_worker.codecs.empty_items import ZERO_SIZE_ITEMS, check_items, holds_empty_items
from alert_sidecar.formats import avro_projection
from alert_sidecar.formats.content import AVRO_CONFLUENT, AVRO_OCF
from alert_sidecar.formats.decoding import convert_batch
from tests.data import ZTF_PACKETS


def zigzag(n: int) -> bytes:
    """An Avro long."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def record(*fields: tuple[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "test",
            "fields": [{"name": field, "type": kind} for field, kind in fields]}


NULLS = record(("id", "long"), ("flags", {"type": "array", "items": "null"}))
EMPTY_FIXED = record(("id", "long"), ("a", {"type": "fixed", "name": "Nothing", "size": 0}),
                     ("b", {"type": "array", "items": "Nothing"}))  # by name: a fixed of size 0
EMPTY_RECORDS = record(("id", "long"),
                       ("marks", {"type": "array", "items": record(("x", "null"), name="Mark")}))
SCHEMAS = {"nulls": NULLS, "fixed of size 0": EMPTY_FIXED, "records of nulls": EMPTY_RECORDS}


def resolver(schema: dict[str, Any]) -> codecs.MappingSchemaResolver:
    return codecs.MappingSchemaResolver({7: schema})


def array_body(*blocks: int) -> bytes:
    """id 1, then the array (the last field; EMPTY_FIXED's fixed before it writes nothing) as blocks of
    the given counts, then its end."""
    return zigzag(1) + b"".join(zigzag(n) for n in blocks) + zigzag(0)


def compiled(value: bytes, schema: dict[str, Any]) -> Any:
    parsed = resolver(schema).schema(7)
    return avro_projection.decode_confluent_projected(value, 7, avro_projection.reader_for(parsed, None))


def both_refuse(value: bytes, schema: dict[str, Any], match: str) -> None:
    started = time.monotonic()
    with pytest.raises(AlertDecodeError, match=match):
        codecs.decode_confluent(value, resolver(schema))
    with pytest.raises(AlertDecodeError, match="more than the .* bytes of the value can hold"):
        compiled(value, schema)
    assert time.monotonic() - started < 5, "a refusal must not first follow the count"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@pytest.mark.parametrize("count", [2**40, 2**62, -(2**62)], ids=["2^40", "2^62", "-2^62 (with a size)"])
def test_a_huge_count_is_refused_at_once(name: str, count: int) -> None:
    body = zigzag(1) + zigzag(count) + (zigzag(0) if count < 0 else b"") + zigzag(0)
    both_refuse(codecs.confluent_header(7) + body, SCHEMAS[name], "claims a block of")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_many_blocks_within_the_budget_each_are_refused_together(name: str) -> None:
    # Each block's count is below the body's budget; together they claim far more.
    body = array_body(*([ZERO_SIZE_ITEMS] * 1000))
    both_refuse(codecs.confluent_header(7) + body, SCHEMAS[name], "claims a block of")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_budget_is_one_item_a_byte_and_zero_size_items_more(name: str) -> None:
    schema = SCHEMAS[name]
    parsed = resolver(schema).schema(7)

    def value(count: int) -> bytes:
        return codecs.confluent_header(7) + array_body(count)

    budget = len(value(ZERO_SIZE_ITEMS)) - codecs.CONFLUENT_HEADER_SIZE + ZERO_SIZE_ITEMS
    # The largest count a body of that many bytes may claim is read, by both, as fastavro reads it.
    at = ZERO_SIZE_ITEMS + len(value(ZERO_SIZE_ITEMS)) - codecs.CONFLUENT_HEADER_SIZE
    assert len(value(at)) == len(value(ZERO_SIZE_ITEMS))  # the same number of bytes for the count
    assert at == budget
    expected = fastavro.schemaless_reader(io.BytesIO(value(at)[5:]), parsed, None)
    assert codecs.decode_confluent(value(at), resolver(schema)) == expected
    assert compiled(value(at), schema) == expected
    assert len(expected[list(expected)[-1]]) == at
    # One more is refused by both.
    both_refuse(value(at + 1), schema, "claims a block of")


def test_an_ordinary_array_of_nulls_decodes() -> None:
    value = codecs.encode_confluent({"id": 5, "flags": [None] * 1000}, resolver(NULLS).schema(7), 7)
    assert codecs.decode_confluent(value, resolver(NULLS)) == {"id": 5, "flags": [None] * 1000}
    assert compiled(value, NULLS) == {"id": 5, "flags": [None] * 1000}


def test_the_sidecar_answers_such_an_alert_alone_with_its_error() -> None:
    good = codecs.encode_confluent({"id": 5, "flags": [None, None]}, resolver(NULLS).schema(7), 7)
    bad = codecs.confluent_header(7) + array_body(2**50)
    started = time.monotonic()
    out = convert_batch([good, bad, good], [AVRO_CONFLUENT] * 3, None, resolver(NULLS))
    assert time.monotonic() - started < 5
    assert [item.error is None for item in out] == [True, False, True]
    assert "cannot decode the alert" in out[1].error and "can hold" in out[1].error
    assert json.loads(out[0].payload) == {"id": 5, "flags": [None, None]}


def container(schema: dict[str, Any], count: int, data: bytes) -> bytes:
    """An Object Container File of one block claiming ``count`` records in ``data``."""
    out = io.BytesIO()
    fastavro.writer(out, schema, [])  # the header alone
    header = out.getvalue()
    sync = header[-16:]
    return header + zigzag(count) + zigzag(len(data)) + data + sync


def test_a_container_file_claiming_billions_of_empty_records_is_refused_at_once() -> None:
    schema = record(("nothing", "null"))
    started = time.monotonic()
    with pytest.raises(AlertDecodeError, match=f"holds {2**50} records; one alert per message"):
        codecs.decode_ocf(container(schema, 2**50, b""))
    assert time.monotonic() - started < 5
    assert codecs.decode_ocf(container(schema, 1, b"")) == {"nothing": None}


def test_a_container_file_whose_record_claims_billions_of_nulls_is_refused_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(AlertDecodeError, match="claims a block of"):
        codecs.decode_ocf(container(NULLS, 1, array_body(2**50)))
    assert codecs.decode_ocf(container(NULLS, 1, array_body(3))) == {"id": 1, "flags": [None] * 3}
    out = convert_batch([container(NULLS, 1, array_body(2**50))], [AVRO_OCF], None, resolver(NULLS))
    assert out[0].error and "can hold" in out[0].error
    assert time.monotonic() - started < 5


def test_only_schemas_that_can_hold_items_of_no_bytes_are_walked() -> None:
    for schema in SCHEMAS.values():
        assert holds_empty_items(fastavro.parse_schema(schema))
    assert holds_empty_items(fastavro.parse_schema(record(("nothing", "null"))))  # an empty record itself
    # A union writes its branch, a map its keys, an enum its index: none of them is empty.
    assert not holds_empty_items(fastavro.parse_schema(record(
        ("a", {"type": "array", "items": ["null", "long"]}), ("m", {"type": "map", "values": "null"}),
        ("e", {"type": "array", "items": {"type": "enum", "name": "One", "symbols": ["A"]}}))))
    rubin = codecs.rubin_resolver()
    for schema_id in rubin.known_ids():
        assert not holds_empty_items(rubin.schema(schema_id)), schema_id
    for path in ZTF_PACKETS:
        with path.open("rb") as packet:
            assert not holds_empty_items(fastavro.parse_schema(fastavro.reader(packet).writer_schema)), path


def test_a_body_the_walk_cannot_follow_is_left_to_the_reader() -> None:
    parsed = resolver(NULLS).schema(7)
    check_items(zigzag(1), parsed)  # ends inside the array: fastavro says so in its own words
    with pytest.raises(AlertDecodeError, match="does not decode"):
        codecs.decode_confluent(codecs.confluent_header(7) + zigzag(1), resolver(NULLS))
