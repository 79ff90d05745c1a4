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
    ``headers``, ``attempt``); ``json()``, ``avro()`` and ``decode()`` turn the
    value into Python objects. Each call decodes again: keep the result if you
    need it twice.
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
        """The Kafka record key, or None if the record has none (an empty key reads as None)."""
        return self._message.key or None

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

    def json(self) -> Any:
        """The value decoded as JSON, whatever the content type says. Integers stay exact."""
        return codecs.decode_json(self._message.value)

    def avro(self) -> Any:
        """The value decoded as Avro, by its content type.

        - ``application/vnd.apache.avro+confluent`` (Rubin): the schema id in
          bytes 1 to 4 is looked up with the worker's ``schema_resolver``,
          Rubin's registry from ``lsst-alert-packet`` by default;
        - ``application/vnd.apache.avro.ocf`` (ZTF): the first record of the
          container file, with the schema it carries.

        Raises ``AlertDecodeError`` (the alert is then dead-lettered if the
        worker lets it escape) for any other content type or bad bytes.
        """
        kind = codecs.media_type(self._message.content_type)
        if kind == codecs.AVRO_CONFLUENT:
            return codecs.decode_confluent(self._message.value, self._resolver)
        if kind == codecs.AVRO_OCF:
            return codecs.decode_ocf(self._message.value)
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
        return (f"Alert(id={self.id!r}, content_type={self.content_type!r}, "
                f"value=<{len(self._message.value)} bytes>, attempt={self.attempt})")
