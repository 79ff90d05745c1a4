"""``Alert``: what a worker function receives, one alert as read from the input buffer."""

from __future__ import annotations

from typing import Any

from alertsidecar.v1 import worker_pb2

from . import codecs
from .exceptions import AlertDecodeError

__all__ = ["Alert"]


class Alert:
    """One alert as read from the input buffer: a read-only view of ``worker_pb2.Alert``.

    The Kafka record's fields are properties (``id``, ``topic``, ``partition``,
    ``offset``, ``timestamp_ms``, ``key``, ``value``, ``content_type``,
    ``headers``, ``attempt``), with what the sidecar says of the value
    (``source_content_type``, ``schema_id``); ``record()``, ``json()``,
    ``avro()`` and ``decode()`` turn the value into Python objects. Each call
    decodes again: keep the result if you need it twice.

    ``schema_resolver`` is where ``avro()`` finds the writer schema of a
    Confluent schema id. The SDK gives each alert of a batch one that reads the
    schemas the sidecar sent with the batch first, then the worker's own
    ``schema_resolver``, else Rubin's registry.
    """

    __slots__ = ("_message", "_resolver")

    def __init__(self, message: worker_pb2.Alert, *, schema_resolver: codecs.SchemaResolver | None = None) -> None:
        self._message = message
        self._resolver = schema_resolver

    @property
    def id(self) -> str:
        """Identifies the alert within one call: ``"<topic>/<partition>/<offset>"``."""
        return self._message.id

    @property
    def topic(self) -> str:
        """The Kafka topic of the input buffer."""
        return self._message.topic

    @property
    def partition(self) -> int:
        """The Kafka partition the alert was read from."""
        return self._message.partition

    @property
    def offset(self) -> int:
        """The alert's offset in its partition."""
        return self._message.offset

    @property
    def timestamp_ms(self) -> int:
        """The Kafka record timestamp in milliseconds since the Unix epoch; 0 if none."""
        return self._message.timestamp_ms

    @property
    def key(self) -> bytes | None:
        """The Kafka record key, or None if the record has none (an empty key is ``b""``, as in Kafka)."""
        return self._message.key if self._message.HasField("key") else None

    @property
    def value(self) -> bytes:
        """The Kafka record value: the alert itself, in the form ``content_type`` names."""
        return self._message.value

    @property
    def content_type(self) -> str:
        """What ``value`` holds, as a media type, e.g. ``application/vnd.apache.avro+confluent``."""
        return self._message.content_type

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The Kafka record headers in record order, as ``(name, value)`` pairs (names may repeat)."""
        return [(header.key, header.value) for header in self._message.headers]

    @property
    def attempt(self) -> int:
        """How many times this alert was sent to a worker before: 0 on the first try."""
        return self._message.attempt

    @property
    def source_content_type(self) -> str:
        """What the alert was in the input buffer when the sidecar converted it for the worker.

        ``application/vnd.apache.avro+confluent`` or ``application/vnd.apache.avro.ocf``
        when ``value`` is that Avro alert decoded by the sidecar into the JSON
        form; ``""`` when ``value`` is the input as it was.
        """
        return self._message.source_content_type

    @property
    def schema_id(self) -> int:
        """The Confluent schema id of the input alert (Rubin's encode the version: 1101 is 11.1); 0 if none.

        As the sidecar sent it; for a Confluent-framed value it did not label,
        the id in the value's bytes 1 to 4.
        """
        if self._message.schema_id:
            return self._message.schema_id
        if codecs.media_type(self._message.content_type) == codecs.AVRO_CONFLUENT:
            return codecs.schema_id_of(self._message.value) or 0
        return 0

    def record(self) -> dict[str, Any]:
        """The alert decoded into a dict, whatever form it came in: Avro decoded, JSON parsed.

        Worker code written on ``record()`` stays the same whether the worker
        accepts raw Avro (and decodes it itself) or the JSON form the sidecar
        decodes for it. The forms differ only where JSON has no type: bytes
        fields (cutouts) are bytes from Avro and base64 strings in JSON (read
        either with ``codecs.b64bytes``, or ``cutouts.stamps``); timestamps are
        datetimes from Avro and ISO 8601 strings in JSON (``codecs.as_datetime``);
        NaN is ``nan`` from Avro and None in JSON. With a projection (the
        worker's ``fields``) the JSON form holds only the fields asked for.

        Raises ``AlertDecodeError`` for a value that does not decode, or that is
        not a record (such as a JSON array).
        """
        decoded = self.decode()
        if not isinstance(decoded, dict):
            raise AlertDecodeError(
                f"alert {self.id} holds {type(decoded).__name__} data, not a record; "
                f"use decode() to get it as it is")
        return decoded

    def json(self) -> Any:
        """The value decoded as JSON, whatever the content type says. Integers stay exact.

        For an alert the sidecar decoded from Avro (``source_content_type`` is
        Avro), this is the contract's JSON form: 64-bit ids exact, bytes as
        base64 strings, timestamps ISO 8601, NaN as None.
        """
        return codecs.decode_json(self._message.value)

    def avro(self) -> Any:
        """The value decoded as Avro, by its content type.

        - ``application/vnd.apache.avro+confluent`` (Rubin): the writer schema
          of the id in bytes 1 to 4 comes from the schemas the sidecar sent
          with the batch, else the worker's ``schema_resolver``, else Rubin's
          registry from ``lsst-alert-packet``;
        - ``application/vnd.apache.avro.ocf`` (ZTF): the record of the
          container file, with the schema it carries (a file of several
          records is refused: one message holds one alert).

        Raises ``AlertDecodeError`` (the alert is then dead-lettered if the
        worker lets it escape) for any other content type or bad bytes.
        """
        kind = codecs.media_type(self._message.content_type)
        if kind == codecs.AVRO_CONFLUENT:
            return codecs.decode_confluent(self._message.value, self._resolver)
        if kind == codecs.AVRO_OCF:
            return codecs.decode_ocf(self._message.value)
        if self._message.source_content_type:
            raise AlertDecodeError(
                f"alert {self.id} was {self._message.source_content_type} in the input buffer and the "
                f"sidecar decoded it into {self._message.content_type or '(none)'} for this worker (it "
                f"accepts that form): read it with record() or decode(), or accept "
                f"{codecs.media_type(self._message.source_content_type)} to get the Avro bytes")
        raise AlertDecodeError(
            f"avro() decodes {codecs.AVRO_CONFLUENT} or {codecs.AVRO_OCF}, and alert {self.id} "
            f"has content type {self._message.content_type or '(none)'!r}: "
            f"use decode() or json(), or read alert.value")

    def decode(self) -> Any:
        """The value decoded by its content type: JSON or either Avro form.

        Raises ``AlertDecodeError`` for any other content type (such as
        ``application/octet-stream``, whose bytes only the worker can read).
        """
        kind = codecs.media_type(self._message.content_type)
        if kind == codecs.JSON:
            return self.json()
        if kind in (codecs.AVRO_CONFLUENT, codecs.AVRO_OCF):
            return self.avro()
        raise AlertDecodeError(
            f"decode() reads {codecs.JSON}, {codecs.AVRO_CONFLUENT} or {codecs.AVRO_OCF}, and alert "
            f"{self.id} has content type {self._message.content_type or '(none)'!r}: read alert.value")

    def to_proto(self) -> worker_pb2.Alert:
        """A copy of the underlying ``worker_pb2.Alert`` message."""
        copy = worker_pb2.Alert()
        copy.CopyFrom(self._message)
        return copy

    def __repr__(self) -> str:
        source = f", source_content_type={self.source_content_type!r}" if self.source_content_type else ""
        return (f"Alert(id={self.id!r}, content_type={self.content_type!r}{source}, "
                f"value=<{len(self._message.value)} bytes>, attempt={self.attempt})")
