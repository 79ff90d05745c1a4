"""The formats alerts travel in, as pure functions: bytes in, Python values out, and back.

Nothing here knows gRPC or Kafka. ``Alert.json()``, ``Alert.avro()`` and
``Alert.decode()`` call these functions; tests and tools may call them
directly.

The formats, named by the media types of the contract (``Alert.content_type``):

- ``application/json``: a JSON document. Integers stay exact Python ints,
  so 64-bit alert ids (``diaSourceId``, ``candid``) survive a round trip.
- ``application/vnd.apache.avro+confluent``: the Confluent wire format, Rubin's
  form. Byte 0 is the magic byte 0, bytes 1 to 4 a big-endian schema id, the
  rest a schemaless Avro body. The schema comes from a ``SchemaResolver``; the
  default one is Rubin's registry shipped in ``lsst-alert-packet``.
- ``application/vnd.apache.avro.ocf``: an Avro Object Container File with its
  schema inside, ZTF's form. One Kafka record holds one alert, so the first
  record of the file is the alert.

A sidecar either passes an Avro alert as it is (with the writer schemas of the
batch's Confluent-framed alerts in ``AlertBatch.schemas``, read here by
``BatchSchemaResolver``) or decodes it for the worker into the contract's JSON
form (``application/json`` with ``Alert.source_content_type`` naming the Avro
form). The two decoded forms hold the same values except where JSON has no
type for them: bytes (cutouts) are base64 strings, timestamps ISO 8601
strings, NaN and infinities null. ``b64bytes`` and ``as_datetime`` read such a
field the same way from either form.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import io
import json
import math
import os
import re
import struct
import threading
import uuid
from collections.abc import Mapping
from typing import Any, Protocol, overload, runtime_checkable

import fastavro

from .exceptions import AlertDecodeError, MissingDependencyError, UnknownSchemaError

__all__ = [
    "JSON",
    "AVRO_CONFLUENT",
    "AVRO_OCF",
    "OCTET_STREAM",
    "media_type",
    "decode_json",
    "encode_json",
    "split_confluent",
    "decode_confluent",
    "encode_confluent",
    "decode_ocf",
    "b64bytes",
    "as_datetime",
    "SchemaResolver",
    "MappingSchemaResolver",
    "BatchSchemaResolver",
    "RubinSchemaResolver",
    "rubin_resolver",
    "parse_writer_schema",
]

JSON = "application/json"
AVRO_CONFLUENT = "application/vnd.apache.avro+confluent"
AVRO_OCF = "application/vnd.apache.avro.ocf"
OCTET_STREAM = "application/octet-stream"

# Confluent wire format: magic byte 0, then the schema id as a 4-byte
# big-endian integer (Confluent's serializers document it as such).
_CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER = struct.Struct(">BI")


def media_type(content_type: str) -> str:
    """The bare media type of a content type: parameters dropped, lower case.

    ``"Application/JSON; charset=utf-8"`` gives ``"application/json"``.
    """
    return content_type.split(";", 1)[0].strip().lower()


# --- JSON -------------------------------------------------------------------


def decode_json(data: bytes) -> Any:
    """Decode a JSON document (UTF-8, -16 or -32). Integers stay exact Python ints."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AlertDecodeError(f"the value is not a JSON document: {exc}") from exc


def encode_json(value: Any) -> bytes:
    """Encode a value as compact UTF-8 JSON that any language's reader accepts.

    Integers are written exactly, whatever their size. Values JSON has no form
    for are written as what a decoded alert usually means by them:

    - bytes (cutout stamps) as base64 strings;
    - datetimes, dates and times (Avro timestamp logical types) as ISO 8601;
    - decimals and UUIDs as strings;
    - numpy scalars and arrays as numbers and lists;
    - NaN and infinities as ``null``: they are not JSON, and readers in other
      languages (Jackson, jsonlite) reject them or turn them into strings.
    """
    try:
        text = json.dumps(value, allow_nan=False, default=_json_default, ensure_ascii=False,
                          separators=(",", ":"))
    except ValueError:
        # Only a non-finite float gets here (json refuses them with allow_nan
        # off); floats never reach ``default``, so they are replaced by a walk
        # that costs nothing on the common, finite path above.
        text = json.dumps(_finite(value), allow_nan=False, default=_json_default,
                          ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, (decimal.Decimal, uuid.UUID)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return _finite(tolist())
    raise TypeError(f"a {type(obj).__name__} cannot be written as JSON")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- Fields that differ between the decoded forms --------------------------------


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


# --- Avro, Confluent wire format ----------------------------------------------


def split_confluent(data: bytes) -> tuple[int, bytes]:
    """Split Confluent wire-format bytes into ``(schema_id, avro_body)``."""
    if len(data) < _CONFLUENT_HEADER.size:
        raise AlertDecodeError(
            f"the value is {len(data)} bytes, too short for the Confluent wire format "
            f"(a magic byte 0, a 4-byte schema id, then the Avro body)")
    magic, schema_id = _CONFLUENT_HEADER.unpack_from(data)
    if magic != _CONFLUENT_MAGIC:
        raise AlertDecodeError(
            f"the value is not in the Confluent wire format: its first byte is 0x{magic:02x}, "
            f"not the magic byte 0x00")
    return schema_id, bytes(data[_CONFLUENT_HEADER.size:])


def decode_confluent(data: bytes, resolver: SchemaResolver | None = None) -> Any:
    """Decode Confluent wire-format bytes with the writer schema ``resolver`` gives for their id.

    ``resolver`` defaults to Rubin's registry (``rubin_resolver()``). Raises
    ``UnknownSchemaError`` for an id the resolver does not know and
    ``AlertDecodeError`` when the body does not match its schema.
    """
    schema_id, body = split_confluent(data)
    schema = (resolver or rubin_resolver()).schema(schema_id)
    buffer = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buffer, schema)
    except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError, ...
        raise AlertDecodeError(
            f"the Avro body does not decode with schema id {schema_id}: "
            f"{type(exc).__name__}: {exc}") from exc
    left = len(body) - buffer.tell()
    if left:
        # A body written with another schema than its id names can decode
        # without an error into garbage; bytes left over are the tell-tale.
        raise AlertDecodeError(
            f"{left} bytes are left after decoding the Avro body with schema id {schema_id}: "
            f"the record was not written with that schema")
    return record


def encode_confluent(record: Any, schema: Any, schema_id: int) -> bytes:
    """Encode a record in the Confluent wire format with a schema and the id it is registered under.

    ``schema`` is an Avro schema as a dict (parsed or not, as fastavro takes it).
    """
    if not 0 <= schema_id < 2**32:
        raise ValueError(f"a Confluent schema id is 4 bytes unsigned; {schema_id} is out of range")
    buffer = io.BytesIO()
    buffer.write(_CONFLUENT_HEADER.pack(_CONFLUENT_MAGIC, schema_id))
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


# --- Avro, object container file ---------------------------------------------


def decode_ocf(data: bytes) -> Any:
    """Decode the first record of an Avro Object Container File (one ZTF alert per file)."""
    try:
        reader = fastavro.reader(io.BytesIO(data))
        return next(reader)
    except StopIteration:
        raise AlertDecodeError("the Avro container file holds no record") from None
    except Exception as exc:  # fastavro raises ValueError, EOFError, SchemaParseException, ...
        raise AlertDecodeError(
            f"the value is not a readable Avro container file: {type(exc).__name__}: {exc}") from exc


# --- Schema resolvers ---------------------------------------------------------


@runtime_checkable
class SchemaResolver(Protocol):
    """Finds the Avro writer schema of a Confluent wire-format schema id.

    Implementations must be safe to call from several threads, and should
    cache: they are called once per alert.
    """

    def schema(self, schema_id: int) -> Any:
        """The parsed (``fastavro.parse_schema``) schema for ``schema_id``.

        Raises ``UnknownSchemaError`` when the id is not known.
        """
        ...


class MappingSchemaResolver:
    """A resolver over a fixed mapping of ids to Avro schemas (for streams other than Rubin's, and tests)."""

    def __init__(self, schemas: Mapping[int, Any]) -> None:
        self._parsed = {int(schema_id): fastavro.parse_schema(schema) for schema_id, schema in schemas.items()}

    def schema(self, schema_id: int) -> Any:
        try:
            return self._parsed[schema_id]
        except KeyError:
            known = ", ".join(str(i) for i in sorted(self._parsed)) or "none"
            raise UnknownSchemaError(f"schema id {schema_id} is not one of this resolver's ids ({known})") from None


class BatchSchemaResolver:
    """The writer schemas a sidecar sent with one batch (``AlertBatch.schemas``), then a fallback.

    ``schemas`` maps schema ids to Avro schema JSON text, as the batch carries
    them. An id the batch has no schema for goes to ``fallback`` (the worker's
    own resolver; None: Rubin's registry). Texts are parsed once per process
    and shared by every batch that repeats them, so a batch costs a look-up
    per schema id it uses, not a parse. One object serves one batch.
    """

    def __init__(self, schemas: Mapping[int, str], fallback: SchemaResolver | None = None) -> None:
        self._texts = dict(schemas)
        self._fallback = fallback
        self._resolved: dict[int, Any] = {}

    @property
    def schema_ids(self) -> list[int]:
        """The ids the batch carries a writer schema for, in order."""
        return sorted(self._texts)

    def schema(self, schema_id: int) -> Any:
        parsed = self._resolved.get(schema_id)
        if parsed is None:
            text = self._texts.get(schema_id)
            parsed = self._from_fallback(schema_id) if text is None else parse_writer_schema(schema_id, text)
            self._resolved[schema_id] = parsed
        return parsed

    def _from_fallback(self, schema_id: int) -> Any:
        try:
            return (self._fallback or rubin_resolver()).schema(schema_id)
        except UnknownSchemaError as exc:
            carried = ", ".join(str(i) for i in self.schema_ids) or "none"
            raise UnknownSchemaError(
                f"the batch carries no writer schema for id {schema_id} (it carries: {carried}), "
                f"and {exc}") from exc


# Writer schemas parsed from batches, by (schema id, schema text). A stream
# carries a few schema versions and every batch repeats them, while parsing a
# Rubin schema costs milliseconds: each is parsed once per process. Keying on
# the text as well as the id means an id registered again with another schema
# is never answered with the old one. The bound only guards memory against a
# sidecar that would send a new schema with every batch.
_MAX_WRITER_SCHEMAS = 256
_writer_schemas: dict[tuple[int, str], Any] = {}
_writer_schemas_lock = threading.Lock()


def parse_writer_schema(schema_id: int, text: str) -> Any:
    """The parsed form of a writer schema sent as Avro schema JSON, cached for the process.

    Raises ``AlertDecodeError`` when the text is not a valid Avro schema.
    """
    key = (schema_id, text)
    with _writer_schemas_lock:
        parsed = _writer_schemas.get(key)
    if parsed is not None:
        return parsed
    try:
        parsed = fastavro.parse_schema(json.loads(text))
    except Exception as exc:  # json's ValueError, fastavro's SchemaParseException, UnknownType, ...
        raise AlertDecodeError(
            f"the writer schema sent for schema id {schema_id} is not a valid Avro schema: "
            f"{type(exc).__name__}: {exc}") from exc
    with _writer_schemas_lock:
        if len(_writer_schemas) >= _MAX_WRITER_SCHEMAS:
            del _writer_schemas[next(iter(_writer_schemas))]  # the oldest
        _writer_schemas[key] = parsed
    return parsed


class RubinSchemaResolver:
    """Rubin's schema registry, from the ``lsst-alert-packet`` package.

    Rubin's ids encode the schema version: 701 is 7.1, 1101 is 11.1. The
    package's schema files are indexed by name on the first call and only the
    schema asked for is read (the package's own ``SchemaRegistry`` reads every
    version, 0.3 s or more before a worker's first alert); each parsed schema
    is kept for the life of the process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[int, str] | None = None
        self._parsed: dict[int, Any] = {}

    def schema(self, schema_id: int) -> Any:
        parsed = self._parsed.get(schema_id)
        if parsed is not None:
            return parsed
        with self._lock:
            parsed = self._parsed.get(schema_id)
            if parsed is None:
                files = self._index()
                if schema_id not in files:
                    known = ", ".join(str(i) for i in sorted(files))
                    raise UnknownSchemaError(
                        f"schema id {schema_id} is not a Rubin schema known to lsst-alert-packet "
                        f"{_package_version()} (known ids: {known}): upgrade lsst-alert-packet, "
                        f"or give the worker a schema_resolver that knows it")
                from lsst.alert.packet import Schema  # imported by _index already

                parsed = fastavro.parse_schema(Schema.from_file(files[schema_id]).definition)
                self._parsed[schema_id] = parsed
        return parsed

    def schema_id(self, version: str) -> int:
        """The registry id of a schema version such as ``"7.1"``."""
        with self._lock:
            files = self._index()
        major, _, minor = version.partition(".")
        if major.isdigit() and minor.isdigit() and rubin_schema_id(int(major), int(minor)) in files:
            return rubin_schema_id(int(major), int(minor))
        known = ", ".join(f"{i // 100}.{i % 100}" for i in sorted(files))
        raise UnknownSchemaError(
            f"{version!r} is not a Rubin schema version known to lsst-alert-packet "
            f"{_package_version()} (known: {known})")

    def _index(self) -> dict[int, str]:
        if self._files is None:
            try:
                import lsst.alert.packet  # noqa: F401 - the package itself, not only its schema module
                from lsst.alert.packet.schema import get_schema_root
            except ImportError as exc:
                raise MissingDependencyError(
                    "decoding Rubin alerts (application/vnd.apache.avro+confluent) needs the "
                    "lsst-alert-packet package, which is not installed: pip install lsst-alert-packet, "
                    "or give the worker a schema_resolver") from exc
            self._files = rubin_schema_files(get_schema_root())
        return self._files


_RUBIN_SCHEMA_FILE = re.compile(r"lsst\.v(\d+)_(\d+)\.alert\.avsc")


def rubin_schema_id(major: int, minor: int) -> int:
    """Rubin's id of schema version major.minor, by lsst-alert-packet's rule (``Schema.get_schema_id``)."""
    return major * 100 + minor


def rubin_schema_files(root: str) -> dict[int, str]:
    """Rubin's id of each top-level alert schema under ``root`` (lsst-alert-packet's schema folder) -> its file."""
    files = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            match = _RUBIN_SCHEMA_FILE.fullmatch(name)
            if match:
                files[rubin_schema_id(int(match.group(1)), int(match.group(2)))] = os.path.join(folder, name)
    return files


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lsst-alert-packet")
    except PackageNotFoundError:
        return "(version unknown)"


_rubin_resolver: RubinSchemaResolver | None = None
_rubin_resolver_lock = threading.Lock()


def rubin_resolver() -> RubinSchemaResolver:
    """The process-wide Rubin resolver: every worker shares its cache of parsed schemas."""
    global _rubin_resolver
    with _rubin_resolver_lock:
        if _rubin_resolver is None:
            _rubin_resolver = RubinSchemaResolver()
        return _rubin_resolver
