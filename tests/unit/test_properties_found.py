"""What the property-based tests (test_properties_*.py) found, each as its smallest input.

Bugs that are fixed keep a plain test here, so that the input that broke the
code is run by name on every run. Bugs not fixed yet are marked xfail
(strict: once fixed, the mark must go) with what breaks and where.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from typing import Any
from unittest import mock

import fastavro
import pytest
from fastavro._read_common import HEADER_SCHEMA

from alert_worker import codecs
from alert_worker.codecs import json_form
from alert_worker.exceptions import AlertDecodeError
from alert_sidecar.exceptions import DecodeError, EncodeError, InvalidSchemaError
from alert_sidecar.formats.avro_outputs import AvroOutput
from alert_sidecar.formats.content import AVRO_CONFLUENT, AVRO_OCF, JSON, RAW
from alert_sidecar.formats.decoding import convert_batch, decode
from alert_sidecar.formats.schemas import DirectorySchemas, RubinSchemas, SchemaSource
from alert_sidecar.stage.offsets import PartitionLedger

WRITERS = pytest.mark.parametrize("with_orjson", [True, False], ids=["orjson", "stdlib"])


def encode_json(value: Any, with_orjson: bool) -> bytes:
    """encode_json as the sidecar has it (orjson installed), or as a worker without orjson has it."""
    if with_orjson:
        return codecs.encode_json(value)
    with mock.patch.object(json_form, "orjson", None):
        return codecs.encode_json(value)


# --- Fixed: the SDK's codecs ----------------------------------------------------------------

def test_json_nested_deeper_than_the_recursion_limit_is_a_decode_error() -> None:
    # json.loads raised RecursionError, which escaped decode_json (and convert_batch).
    with pytest.raises(AlertDecodeError, match="nested deeper than Python's recursion limit"):
        codecs.decode_json(b"[" * 100_000)


@WRITERS
def test_a_lone_surrogate_is_written_as_its_json_escape(with_orjson: bool) -> None:
    # json.loads('["\\ud800"]') holds a str UTF-8 cannot encode: orjson refuses
    # it, and the standard library's writer raised UnicodeEncodeError.
    value = codecs.decode_json(b'["\\ud800", {"\\udfff": "a\\udc80b"}]')
    written = encode_json(value, with_orjson)
    assert written == b'["\\ud800",{"\\udfff":"a\\udc80b"}]'
    assert json.loads(written) == value


@WRITERS
def test_integers_of_any_size_are_written_in_full(with_orjson: bool) -> None:
    # int.__repr__ refuses more than 4300 digits (sys.get_int_max_str_digits):
    # encode_json raised ValueError for what its docstring says it writes.
    assert encode_json([10**5000, -(10**4300) - 7], with_orjson) == (
        b"[1" + b"0" * 5000 + b",-1" + b"0" * 4299 + b"7]")


@pytest.mark.parametrize("schema, names", [
    ({"type": []}, []), ({"type": {}}, []), ({"type": "record", "name": "A", "fields": 5}, ["A"]),
    ([{"type": "record", "name": "B", "fields": None}], ["B"]),
], ids=repr)
def test_walking_named_types_takes_any_json(schema: Any, names: list[str]) -> None:
    # A "type" that is a list or an object is unhashable: "kind in _NAMED_KINDS"
    # raised TypeError, and so did fields that are not a list. What is not a
    # schema is left as it is, for fastavro to refuse with its message.
    assert list(codecs.named_types(schema)) == names
    assert codecs.inline_named_types(schema, {}) == schema


def test_fields_project_an_alert_of_arrays_nested_hundreds_deep() -> None:
    # project recursed twice per level of nested arrays: a JSON alert 500
    # deep, which decodes, raised RecursionError in convert_batch once a
    # worker asked for fields.
    value = b"[" * 900 + b'{"a": 1, "b": 2}' + b"]" * 900
    [converted] = convert_batch([value], [JSON], ("a",), RubinSchemas())
    assert converted.payload == b"[" * 900 + b'{"a":1}' + b"]" * 900


# --- Fixed: the sidecar's formats ------------------------------------------------------------

@pytest.mark.parametrize("content_type", [AVRO_CONFLUENT, AVRO_OCF, JSON, RAW])
def test_a_record_without_a_value_is_refused_for_every_content_type(content_type: str) -> None:
    # A tombstone (value None) read from an input buffer of a fixed format:
    # decode raised TypeError for Confluent and JSON, and convert_batch with it.
    with pytest.raises(DecodeError, match="no value"):
        decode(None, content_type, RubinSchemas())
    [converted] = convert_batch([None], [content_type], None, RubinSchemas())
    assert converted.payload is None and converted.error


@pytest.mark.parametrize("value, payload", [
    (b"[" * 100_000, None),  # RecursionError from json.loads
    (b'["\\ud800"]', b'["\\ud800"]'),  # UnicodeEncodeError from the JSON form writer
], ids=["deep", "surrogate"])
def test_json_alerts_that_raised_in_convert_batch_are_answered(value: bytes, payload: bytes | None) -> None:
    [converted] = convert_batch([value], [JSON], None, RubinSchemas())
    assert converted.payload == payload and (converted.error is None) == (payload is not None)


class TextSchemas(SchemaSource):
    """A source that holds one text for every id, as a registry or a folder may hold anything."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__()

    def schema_text(self, schema_id: int) -> str:
        return self.text

    def describe(self) -> str:
        return "the test's text"


def test_a_schema_nested_deeper_than_the_recursion_limit_is_invalid() -> None:
    # RecursionError from json.loads escaped SchemaSource.parsed, and every
    # convert_batch of an alert with that id.
    source = TextSchemas("[" * 5000 + "]" * 5000)
    with pytest.raises(InvalidSchemaError, match="nested deeper"):
        source.parsed(9)
    [converted] = convert_batch([codecs.confluent_header(9)], [AVRO_CONFLUENT], None, source)
    assert converted.payload is None and "schema id 9" in converted.error


@pytest.mark.parametrize("text", ['{"type": []}', "[" * 5000 + "]" * 5000], ids=["list-type", "deep"])
def test_a_schema_file_that_is_not_a_schema_is_invalid(text: str, tmp_path) -> None:
    # DirectorySchemas.schema_text raised TypeError (unhashable type: 'list')
    # and RecursionError for these files; the dispatcher calls it on the loop.
    (tmp_path / "9.avsc").write_text(text)
    source = DirectorySchemas(tmp_path)
    with pytest.raises(InvalidSchemaError) as refused:
        source.parsed(9)
    assert refused.value.schema_id == 9


# --- Fixed: records of recursive schemas ------------------------------------------------------

# A record type that contains itself (a linked list), as a registry may hold:
# the deeper the chain, the deeper every reader and writer recurses.
_NODE = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}


def _chain(depth: int) -> bytes:
    """A Confluent-framed Node chain ``depth`` deep: union branch 1 (a Node) ``depth`` times, then null."""
    return codecs.confluent_header(7) + b"\x02" * depth + b"\x00"


def _chain_file(depth: int) -> bytes:
    """The same chain as the one record of an Avro container file."""
    return _container(json.dumps(_NODE), b"\x02" * depth + b"\x00")


def _container(schema_text: str, body: bytes) -> bytes:
    """An Avro container file of one record, written by hand: fastavro's writer recurses on what is tested here."""
    sync = bytes(range(16))
    out = io.BytesIO()
    fastavro.schemaless_writer(out, HEADER_SCHEMA, {
        "magic": b"Obj\x01", "meta": {"avro.schema": schema_text.encode(), "avro.codec": b"null"}, "sync": sync})
    for count in (1, len(body)):  # the block: its count of records and its size, as Avro longs
        fastavro.schemaless_writer(out, "long", count)
    return out.getvalue() + body + sync


def test_a_record_nested_a_thousand_deep_is_answered_not_raised() -> None:
    # RecursionError escaped convert_batch: fastavro's C reader decoded it, and the stdlib JSON writer recursed.
    resolver = codecs.MappingSchemaResolver({7: _NODE})
    [converted] = convert_batch([_chain(1000)], [AVRO_CONFLUENT], None, resolver)
    assert (converted.payload is None) != (converted.error is None)
    assert converted.schema_id == 7


@WRITERS
def test_a_value_nested_a_thousand_deep_is_written_or_refused_with_a_type_error(with_orjson: bool) -> None:
    # RecursionError, not TypeError: orjson refuses 256 levels, and the stdlib writer then recursed per level.
    value: Any = 1
    for _ in range(1000):
        value = [value]
    assert encode_json(value, with_orjson) == b"[" * 1000 + b"1" + b"]" * 1000


@WRITERS
def test_a_list_that_contains_itself_is_refused_with_a_type_error(with_orjson: bool) -> None:
    value: list[Any] = [1]
    value.append({"again": value})
    with pytest.raises(TypeError, match="nests arrays and objects deeper than 10000 levels"):
        encode_json(value, with_orjson)


def test_a_record_nested_a_hundred_thousand_deep_is_refused_without_crashing() -> None:
    # SIGSEGV: fastavro's compiled reader recursed on the C stack (decoders, --decoders 0, Alert.avro()).
    program = textwrap.dedent(f"""
        import threading
        from alert_worker import codecs
        from alert_worker.alert import Alert
        from alert_worker.exceptions import AlertDecodeError
        from alertsidecar.v1 import worker_pb2

        resolver = codecs.MappingSchemaResolver({{7: {_NODE!r}}})
        confluent, container = {_chain(100_000)!r}, {_chain_file(100_000)!r}
        refused = []

        def decode():
            for read in (lambda: codecs.decode_confluent(confluent, resolver),
                         lambda: codecs.decode_ocf(container),
                         lambda: Alert(worker_pb2.Alert(value=confluent, content_type=codecs.AVRO_CONFLUENT),
                                       schema_resolver=resolver).record(),
                         lambda: Alert(worker_pb2.Alert(value=container, content_type=codecs.AVRO_OCF)).avro()):
                try:
                    read()
                except AlertDecodeError as exc:
                    refused.append(str(exc))

        threading.stack_size(8 * 2**20)  # a Linux main thread's default, whatever ulimit -s says here
        thread = threading.Thread(target=decode)
        thread.start()
        thread.join()
        assert len(refused) == 4 and all("deeper than" in why for why in refused), refused
    """)
    done = subprocess.run([sys.executable, "-"], input=program.encode(), capture_output=True, timeout=120)
    assert done.returncode == 0, f"the decoding process ended with {done.returncode}: {done.stderr[-2000:]!r}"


@pytest.mark.parametrize("content_type", [AVRO_CONFLUENT, AVRO_OCF])
def test_a_record_of_a_recursive_schema_too_deep_to_read_is_a_decode_error(content_type: str) -> None:
    value = _chain(100_000) if content_type == AVRO_CONFLUENT else _chain_file(100_000)
    resolver = codecs.MappingSchemaResolver({7: _NODE})
    with pytest.raises(DecodeError, match="nests the types of its recursive schema deeper than"):
        decode(value, content_type, resolver)
    [converted] = convert_batch([value], [content_type], None, resolver)
    assert converted.payload is None and "recursive schema" in converted.error


def test_a_container_file_whose_schema_is_nested_too_deep_says_so() -> None:
    # The header's schema, JSON nested 2000 deep, made json.loads raise RecursionError: the file was
    # refused, saying RecursionError; now it says the schema is nested too deep.
    deep = '{"type": "array", "items": ' * 2000 + '"int"' + "}" * 2000
    with pytest.raises(AlertDecodeError, match="the schema in the header .* is JSON nested deeper"):
        codecs.decode_ocf(_container(deep, b"\x00"))
    shallow = '{"type": "array", "items": ' * 900 + '"int"' + "}" * 900  # not recursive: the compiled reader
    record = codecs.decode_ocf(_container(shallow, b"\x02" * 900 + b"\x0e" + b"\x00" * 900))
    assert codecs.encode_json(record) == b"[" * 900 + b"7" + b"]" * 900


@pytest.mark.parametrize("content_type", [AVRO_CONFLUENT, AVRO_OCF])
def test_a_record_of_a_recursive_schema_decodes_as_before(content_type: str) -> None:
    value = _chain(50) if content_type == AVRO_CONFLUENT else _chain_file(50)
    [converted] = convert_batch([value], [content_type], None, codecs.MappingSchemaResolver({7: _NODE}))
    assert converted.payload == b'{"next":' * 51 + b"null" + b"}" * 51  # the record, then 50 in its chain


def test_an_output_of_a_recursive_schema_too_deep_to_encode_is_an_encode_error(tmp_path) -> None:
    # AvroOutput.encode raised RecursionError (its walk of the JSON form
    # recursed per level), which the stage does not catch.
    (tmp_path / "node.avsc").write_text(json.dumps(_NODE))
    output = AvroOutput(str(tmp_path / "node.avsc"), 5)
    assert output.encode(b'{"next": {"next": null}}', JSON) == codecs.confluent_header(5) + b"\x02\x00"
    value = b'{"next":' * 1000 + b"null" + b"}" * 1000
    with pytest.raises(EncodeError, match="deeper than Python's recursion limit"):
        output.encode(value, JSON)


class _Message:
    def key(self) -> None:
        return None


def test_give_back_after_abandon_changes_no_count() -> None:
    # give_back on an abandoned (revoked) ledger made in_flight -1 and the
    # alert ready again, where resolve and acknowledge ignore a revoked ledger.
    ledger = PartitionLedger("alerts", 0)
    ledger.append(_Message(), 0, 10)
    batch = ledger.take(now=0.0, max_alerts=1, max_bytes=10**9)
    ledger.abandon()
    ledger.give_back(batch)  # a retry, or a failed call, answered after the partition was taken away
    assert (ledger.in_flight, ledger.ready, ledger.unfinished, ledger.buffered_bytes) == (0, 0, 0, 0)
