"""Recursive Avro schemas: which schemas are, and which reader each schema gets.

A record of a recursive schema may nest as deep as its bytes go, which
fastavro's compiled reader follows on the C stack until the process dies;
such schemas get fastavro's pure-Python reader (``codecs/avro.py``). Every
ZTF and Rubin schema must keep the compiled one: it is several times faster.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import fastavro._read_py
import pytest

from alert_worker import codecs
from alert_worker.codecs import avro
from tests.data import ZTF_PACKETS

NODE = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
TREE = {"type": "record", "name": "Tree", "namespace": "t",
        "fields": [{"name": "children", "type": {"type": "array", "items": "t.Tree"}}]}
# Through another named type, defined inside the first and referring to it by its short name.
MUTUAL = {"type": "record", "name": "A", "namespace": "m", "fields": [
    {"name": "b", "type": {"type": "record", "name": "B", "fields": [
        {"name": "a", "type": ["null", {"type": "map", "values": "A"}]}]}}]}
# A named type used twice, neither inside itself: not recursive.
REUSED = {"type": "record", "name": "Pair", "fields": [
    {"name": "first", "type": {"type": "record", "name": "Point", "fields": [{"name": "x", "type": "double"}]}},
    {"name": "second", "type": "Point"},
    {"name": "more", "type": {"type": "array", "items": ["null", "Point"]}}]}


@pytest.mark.parametrize("schema, recursive", [
    (NODE, True), (TREE, True), (MUTUAL, True), (["null", NODE], True),
    (REUSED, False), ("long", False), ({"type": "array", "items": "string"}, False),
], ids=repr)
def test_recursive_schemas_are_told_apart(schema: Any, recursive: bool) -> None:
    assert codecs.is_recursive(schema) is recursive
    assert codecs.is_recursive(fastavro.parse_schema(schema)) is recursive  # full names, as resolvers give them


@pytest.mark.parametrize("schema, recursive", [
    ({"type": NODE}, True),  # a "type" that is a schema, which fastavro does not parse at the top
    # What is not a schema has no named type.
    ({"type": []}, False), ({"type": "record", "name": "A", "fields": 5}, False), ({"type": "record"}, False),
    (7, False), (None, False),
], ids=repr)
def test_any_json_is_answered(schema: Any, recursive: bool) -> None:
    assert codecs.is_recursive(schema) is recursive


def test_a_type_defined_elsewhere_that_refers_back_is_recursive() -> None:
    # A schema parsed with named types of other schemas (fastavro's named_schemas) carries them under
    # "__named_schemas"; one of them may refer back to the schema's own type.
    schema = {"type": "record", "name": "Outer", "fields": [{"name": "inner", "type": "Inner"}],
              "__named_schemas": {"Inner": {"type": "record", "name": "Inner",
                                            "fields": [{"name": "outer", "type": ["null", "Outer"]}]}}}
    assert codecs.is_recursive(schema)


def test_a_schema_nested_as_deep_as_json_reads_is_answered() -> None:
    schema: Any = "int"
    for _ in range(900):
        schema = {"type": "array", "items": schema}
    assert codecs.is_recursive(json.loads(json.dumps(schema))) is False


def test_rubin_schemas_keep_the_compiled_reader() -> None:
    resolver = codecs.rubin_resolver()
    for schema_id in sorted(resolver.known_ids()):
        assert avro._schemaless_reader(resolver.schema(schema_id)) == (fastavro.schemaless_reader, False), schema_id


def test_a_recursive_schema_gets_the_pure_python_reader_and_is_kept() -> None:
    schema = codecs.MappingSchemaResolver({7: NODE}).schema(7)
    assert avro._schemaless_reader(schema)[0] is fastavro._read_py.schemaless_reader
    assert avro._recursive_parsed[id(schema)][:2] == (schema, True)


@pytest.mark.parametrize("path", ZTF_PACKETS, ids=lambda p: Path(p).name)
def test_ztf_files_keep_the_compiled_reader(path: str) -> None:
    data = Path(path).read_bytes()
    header = fastavro.reader(io.BytesIO(data))
    assert avro._text_traits(header.metadata["avro.schema"], header.writer_schema) == (False, None)
    assert codecs.decode_ocf(data)["candid"] == next(fastavro.reader(io.BytesIO(data)))["candid"]
