"""Where a worker finds the writer schema of a Confluent schema id.

A ``SchemaResolver`` answers "which parsed Avro schema is id N". The SDK has
three: a fixed mapping (``MappingSchemaResolver``), the schemas a sidecar sent
with a batch (``BatchSchemaResolver``), and Rubin's registry from
``lsst-alert-packet`` (``RubinSchemaResolver``, in ``rubin.py``), the default.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import fastavro

from ..exceptions import AlertDecodeError, UnknownSchemaError
from .rubin import rubin_resolver

__all__ = ["SchemaResolver", "MappingSchemaResolver", "BatchSchemaResolver", "parse_writer_schema"]


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
