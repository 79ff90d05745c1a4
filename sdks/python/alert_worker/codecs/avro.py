"""Avro alerts: the Confluent wire format (Rubin's form) and Object Container Files (ZTF's form).

- Confluent wire format: byte 0 is the magic byte 0, bytes 1 to 4 the schema
  id as a big-endian unsigned integer, the rest a schemaless Avro body
  (Confluent's serializers document it so). The writer schema comes from a
  ``SchemaResolver``; the default one is Rubin's registry in
  ``lsst-alert-packet``.
- Object Container File: a file with its schema in the header, then blocks of
  records (Avro specification, "Object Container Files"). ZTF sends one alert
  per Kafka message, each a container file of one record: a file of several
  records is refused, not read in part.

A record of a recursive schema (a named type that contains itself, as a
linked list does) may nest as deep as its bytes go, and fastavro's compiled
reader follows it on the C stack: some 8000 levels (8 KB of body) crash the
process. Such schemas are read with fastavro's pure-Python reader, whose
depth Python's recursion limit bounds: too deep a record is an
``AlertDecodeError``. Every other schema, as every ZTF and Rubin schema is,
keeps the compiled reader.
"""

from __future__ import annotations

import io
import struct
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import fastavro
import fastavro._read_py

from ..exceptions import AlertDecodeError
from .empty_items import check_items, holds_empty_items
from .schema_names import is_recursive

if TYPE_CHECKING:
    from .resolvers import SchemaResolver

__all__ = [
    "CONFLUENT_HEADER_SIZE",
    "confluent_header",
    "schema_id_of",
    "split_confluent",
    "decode_confluent",
    "encode_confluent",
    "decode_ocf",
]

_CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER = struct.Struct(">BI")  # the magic byte, the schema id
CONFLUENT_HEADER_SIZE = _CONFLUENT_HEADER.size


# --- Confluent wire format -------------------------------------------------------------


def confluent_header(schema_id: int) -> bytes:
    """The 5 bytes that open a Confluent-framed value of ``schema_id``."""
    if not 0 <= schema_id < 2**32:
        raise ValueError(f"a Confluent schema id is 4 bytes unsigned; {schema_id} is out of range")
    return _CONFLUENT_HEADER.pack(_CONFLUENT_MAGIC, schema_id)


def schema_id_of(value: bytes | None) -> int | None:
    """The schema id of a Confluent-framed value, or None if it is not framed (no magic byte 0, too short)."""
    if value is None or len(value) < CONFLUENT_HEADER_SIZE or value[0] != _CONFLUENT_MAGIC:
        return None
    return _CONFLUENT_HEADER.unpack_from(value)[1]


def split_confluent(data: bytes) -> tuple[int, bytes]:
    """Split Confluent wire-format bytes into ``(schema_id, avro_body)``."""
    if len(data) < CONFLUENT_HEADER_SIZE:
        raise AlertDecodeError(
            f"the value is {len(data)} bytes, too short for the Confluent wire format "
            f"(a magic byte 0, a 4-byte schema id, then the Avro body)")
    magic, schema_id = _CONFLUENT_HEADER.unpack_from(data)
    if magic != _CONFLUENT_MAGIC:
        raise AlertDecodeError(
            f"the value is not Confluent wire format: its first byte is 0x{magic:02x}, "
            f"not the magic byte 0x00")
    return schema_id, bytes(data[CONFLUENT_HEADER_SIZE:])


def decode_confluent(data: bytes, resolver: SchemaResolver | None = None) -> Any:
    """Decode Confluent wire-format bytes with the writer schema ``resolver`` gives for their id.

    ``resolver`` defaults to Rubin's registry (``rubin_resolver()``). Raises
    ``AlertDecodeError`` when the bytes are not framed or the body does not
    match its schema, and lets the resolver's error for an unknown id
    (``UnknownSchemaError``) through.
    """
    if len(data) < CONFLUENT_HEADER_SIZE or data[0] != _CONFLUENT_MAGIC:
        split_confluent(data)  # raises, saying what is wrong
    schema_id = _CONFLUENT_HEADER.unpack_from(data)[1]
    if resolver is None:
        from .rubin import rubin_resolver

        resolver = rubin_resolver()
    schema = resolver.schema(schema_id)
    view = memoryview(data)[CONFLUENT_HEADER_SIZE:]
    read, empty_items = _schemaless_reader(schema)
    if empty_items:
        check_items(view, schema)
    body = io.BytesIO(view)
    try:
        record = read(body, schema, None)
    except RecursionError:
        raise AlertDecodeError(_too_deep(f"the Avro body of schema id {schema_id}")) from None
    except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, UnicodeDecodeError, ...
        raise AlertDecodeError(
            f"the Avro body does not decode with schema id {schema_id}: "
            f"{type(exc).__name__}: {exc}") from exc
    left = len(data) - CONFLUENT_HEADER_SIZE - body.tell()
    if left:
        # A body written with another schema than its id names can decode
        # without an error into garbage; bytes left over are the tell-tale.
        raise AlertDecodeError(
            f"the Avro body leaves {left} bytes after a whole record of schema id {schema_id}: "
            f"the record was not written with that schema")
    return record


def encode_confluent(record: Any, schema: Any, schema_id: int) -> bytes:
    """Encode a record in the Confluent wire format with a schema and the id it is registered under.

    ``schema`` is an Avro schema as a dict (parsed or not, as fastavro takes it).
    """
    buffer = io.BytesIO()
    buffer.write(confluent_header(schema_id))
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


# --- Object Container Files -------------------------------------------------------------


def decode_ocf(data: bytes) -> Any:
    """The one record of an Avro Object Container File (one ZTF alert per file).

    Raises ``AlertDecodeError`` for bytes that are not a readable container
    file, and for a file of no record or of several: one Kafka message holds
    one alert, and reading only the first of several would lose the others
    without a word.
    """
    records = None
    try:
        header = fastavro.reader(io.BytesIO(data))  # reads the header and its schema, not yet a record
        recursive, empty_items = _text_traits(header.metadata.get("avro.schema", ""), header.writer_schema)
        if empty_items is not None:
            _check_container(data, empty_items)
        records = fastavro._read_py.reader(io.BytesIO(data)) if recursive else header
        first = next(records, _NONE)
        extra = sum(1 for _ in records) if first is not _NONE else 0
    except AlertDecodeError:
        raise
    except RecursionError:
        if records is None:  # json.loads of the header's schema recurses per level
            raise AlertDecodeError("the schema in the header of the Avro container file is JSON nested deeper "
                                   f"than Python's recursion limit ({sys.getrecursionlimit()}) allows to "
                                   f"read") from None
        raise AlertDecodeError(_too_deep("the record of the Avro container file")) from None
    except Exception as exc:  # fastavro raises ValueError, EOFError, SchemaParseException, ...
        raise AlertDecodeError(
            f"the value is not a readable Avro container file: {type(exc).__name__}: {exc}") from exc
    _one_record(0 if first is _NONE else 1 + extra)
    return first


def _one_record(count: int) -> None:
    if count == 0:
        raise AlertDecodeError("the Avro container file holds no record; one alert per message is expected")
    if count > 1:
        raise AlertDecodeError(f"the Avro container file holds {count} records; one alert per message is "
                               f"expected (ZTF's form): send each alert as a message of its own")


def _check_container(data: bytes, parsed: Any) -> None:
    """For a schema that can hold items of no bytes: count the file's records by its blocks, check the one.

    Counting by reading records would follow a block that claims billions of
    a record type that takes no bytes (see ``empty_items``).
    """
    count, holder = 0, None
    for block in fastavro.block_reader(io.BytesIO(data)):
        count += block.num_records
        if block.num_records and holder is None:
            holder = block
    _one_record(count)
    check_items(holder.bytes_.getvalue(), parsed)


_NONE = object()


# --- Recursive schemas: the pure-Python reader ----------------------------------------------


def _too_deep(what: str) -> str:
    return (f"{what} nests the types of its recursive schema deeper than Python's recursion limit "
            f"({sys.getrecursionlimit()} calls) allows to read")


# Whether a schema is recursive, found once per schema and kept: for parsed
# schemas by identity (a resolver answers an id with the same object every
# time; each entry holds its schema, so that its id is not another's), for
# container files by the schema text of their header. A few schemas per
# stream; the bound only guards memory against a resolver that parses anew
# for every call.
_MAX_KEPT = 64
_recursive_parsed: dict[int, tuple[Any, bool]] = {}
_recursive_texts: dict[str, tuple[bool, Any]] = {}
_kept_lock = threading.Lock()


def _schemaless_reader(schema: Any) -> tuple[Callable[..., Any], bool]:
    """fastavro's compiled schemaless_reader, or its pure-Python one for a recursive schema.

    And whether a body of the schema is to be checked first for more items
    than it can hold (``empty_items``).
    """
    kept = _recursive_parsed.get(id(schema))
    if kept is None or kept[0] is not schema:
        kept = (schema, is_recursive(schema), holds_empty_items(schema))
        _keep(_recursive_parsed, id(schema), kept)
    return (fastavro._read_py.schemaless_reader if kept[1] else fastavro.schemaless_reader), kept[2]


def _text_traits(text: str, schema: Any) -> tuple[bool, Any]:
    """For the schema of a container file's header (its text, and as its header reads):

    whether it is recursive, and if it can hold items of no bytes
    (``empty_items``), the schema parsed for checking them (else None).
    """
    traits = _recursive_texts.get(text)
    if traits is None:
        parsed = fastavro.parse_schema(schema)
        traits = (is_recursive(parsed), parsed if holds_empty_items(parsed) else None)
        _keep(_recursive_texts, text, traits)
    return traits


def _keep(kept: dict[Any, Any], key: Any, value: Any) -> None:
    with _kept_lock:
        if len(kept) >= _MAX_KEPT:
            del kept[next(iter(kept))]  # the oldest
        kept[key] = value
