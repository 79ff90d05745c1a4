"""Encoding outputs for output buffers that say what their records must be.

An output buffer given as ``kafka://.../topic?format=avro-confluent&schema=out.avsc``
holds Avro in Confluent wire format: the worker's JSON outputs (and forwarded
JSON alerts) are encoded with that schema and framed with its id, the id the
schema registry gives it (``--schema-registry``) or ``schema-id=N``. An output
that does not fit the schema is not produced: its alert goes to the dead-letter
buffer with the reason. Buffers without a format take outputs as they are.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sys
from typing import Any

import fastavro
import orjson
from fastavro.validation import ValidationError, validate

from alert_worker.codecs import encode_confluent, named_types, plain_schema, schema_id_of

from alert_sidecar.kafka.buffers import Buffer
from alert_sidecar.exceptions import ConfigError, EncodeError
from alert_sidecar.formats.content import AVRO_CONFLUENT, sniff

__all__ = ["AvroOutput", "EncodeError", "OutputEncoders"]

log = logging.getLogger("alert_sidecar.outputs_encoding")


class AvroOutput:
    """Encodes outputs of one buffer with one schema, framed with one id."""

    def __init__(self, schema_path: str, schema_id: int) -> None:
        self.schema_path = schema_path
        self.schema_id = schema_id
        self.schema = fastavro.schema.load_schema(schema_path)
        self._named = named_types(self.schema)

    def encode(self, value: bytes, content_type: str) -> bytes:
        if content_type == AVRO_CONFLUENT or sniff(value) == AVRO_CONFLUENT:
            framed_id = schema_id_of(value)
            if framed_id == self.schema_id:
                return value  # already framed with this schema
            what = "is not Confluent-framed Avro" if framed_id is None else f"is Avro of schema id {framed_id}"
            raise EncodeError(f"{what}, not of {self.schema_id} ({self.schema_path})")
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise EncodeError(f"is neither JSON nor Avro of schema {self.schema_id}; cannot encode it") from None
        try:
            record = _from_json_form(record, self.schema, self._named)
            validate(record, self.schema, raise_errors=True)
        except ValidationError as exc:
            raise EncodeError(f"does not fit schema {self.schema_path} (id {self.schema_id}): "
                              f"{_first_line(exc)}") from None
        except RecursionError:  # a recursive schema's type nested some 340 deep: both walks recurse per level
            raise EncodeError(f"nests the types of schema {self.schema_path} (id {self.schema_id}) deeper than "
                              f"Python's recursion limit ({sys.getrecursionlimit()} calls) allows to "
                              f"encode") from None
        return encode_confluent(record, self.schema, self.schema_id)


def _first_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:500]


def _from_json_form(value: Any, schema: Any, named: dict) -> Any:
    """Undo the JSON form where the schema wants bytes (base64 strings back to bytes)."""
    if isinstance(schema, str):
        if schema in ("bytes", "fixed"):
            return _b64(value)
        if schema in named:
            return _from_json_form(value, named[schema], named)
        return value
    if isinstance(schema, list):  # a union: the branch that fits the JSON value's shape
        for branch in schema:
            resolved = named.get(branch, branch) if isinstance(branch, str) else branch
            kind = resolved.get("type") if isinstance(resolved, dict) else resolved
            if isinstance(value, str) and kind in ("bytes", "fixed"):
                return _b64(value)
            if isinstance(value, dict) and kind in ("record", "map"):
                return _from_json_form(value, resolved, named)
            if isinstance(value, list) and kind == "array":
                return _from_json_form(value, resolved, named)
        return value
    kind = schema.get("type")
    if kind == "record" and isinstance(value, dict):
        types = {f["name"]: f["type"] for f in schema["fields"]}
        return {k: (_from_json_form(v, types[k], named) if k in types else v) for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        return [_from_json_form(v, schema["items"], named) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _from_json_form(v, schema["values"], named) for k, v in value.items()}
    if kind in ("bytes", "fixed"):
        return _b64(value)
    if isinstance(kind, (dict, list)):
        return _from_json_form(value, kind, named)
    return value


def _b64(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            return value  # left for validation to refuse
    return value


class OutputEncoders:
    """The encoders of every output buffer that has a format."""

    def __init__(self, buffers: dict[str, Buffer], registry_url: str | None, schemas) -> None:
        self._buffers = buffers
        self._registry_url = registry_url
        self._encoders: dict[str, AvroOutput] = {}

    def prepare(self) -> None:
        """Load output schemas and learn their ids (registering them when a registry is configured)."""
        for name, buffer in self._buffers.items():
            if buffer.format != "avro-confluent" or name == "dead-letter":
                continue
            if not buffer.schema:
                raise ConfigError(f"output buffer {buffer} is avro-confluent but names no schema: "
                                  "add &schema=PATH.avsc to its URI")
            try:
                text = json.dumps(plain_schema(fastavro.schema.load_schema(buffer.schema)))
            except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
                raise ConfigError(f"output schema {buffer.schema} of {buffer} cannot be read: {exc}") from None
            schema_id = buffer.schema_id
            if self._registry_url:
                from alert_sidecar.formats.schemas import RegistrySchemas

                subject = buffer.subject or f"{buffer.topic}-value"
                registered = RegistrySchemas(self._registry_url).register(subject, text)
                if schema_id is not None and schema_id != registered:
                    raise ConfigError(f"output buffer {buffer}: schema-id={schema_id} but the registry gives "
                                      f"{registered} for subject {subject}")
                schema_id = registered
                log.info("output schema registered buffer=%s subject=%s schema_id=%d", buffer, subject, schema_id)
            if schema_id is None:
                raise ConfigError(f"output buffer {buffer} needs a schema id: add &schema-id=N to its URI, "
                                  "or give --schema-registry to register its schema")
            self._encoders[name] = AvroOutput(buffer.schema, schema_id)

    def get(self, name: str) -> AvroOutput | None:
        return self._encoders.get(name)
