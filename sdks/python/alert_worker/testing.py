"""Run a worker on alerts in a test: no Kafka, no sidecar, no network.

``run()`` sends the alerts through exactly the code the gRPC server uses
(``alert_worker.processing``), including the encoding of the contract's
messages to bytes and back; only the transport differs. So::

    from alert_worker import Verdict
    from alert_worker.testing import make_alert, run

    def test_keeps_bright_alerts():
        [result] = run(my_worker, [make_alert({"mag": 17.2})])
        assert result.verdict is Verdict.OK and result.outputs[0].forward_input

``rubin_sample()``/``rubin_alert()`` make Rubin alerts from the sample alerts
of ``lsst-alert-packet``, in the Confluent wire format a Rubin stream carries;
``ztf_alert()`` reads a ZTF alert packet (an Avro container file);
``json_form()`` turns either into the JSON form a sidecar sends a worker that
accepts ``application/json``. ``run(..., schemas=...)`` sends writer schemas
with each batch, as a sidecar does for Confluent-framed alerts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import fastavro

from alertsidecar.v1 import worker_pb2

from . import codecs, processing
from .alert import Alert
from .exceptions import MissingDependencyError
from .results import HeaderValue, Result
from .workers import Worker

__all__ = ["make_alert", "run", "json_form", "rubin_sample", "rubin_alert", "ztf_alert"]

AlertLike = Alert | worker_pb2.Alert


def make_alert(value: Any, *, key: bytes | str | None = None, content_type: str | None = None,
               topic: str = "test", partition: int = 0, offset: int = 0, timestamp_ms: int = 0,
               headers: Iterable[tuple[str, HeaderValue]] = (), attempt: int = 0,
               source_content_type: str = "", schema_id: int | None = None) -> Alert:
    """An alert as the sidecar would send it, with id ``"<topic>/<partition>/<offset>"``.

    ``value`` is bytes, or a dict or list (encoded as JSON), or a str (UTF-8
    text). Without ``content_type`` it is guessed: JSON for a dict or list, an
    Avro container file for bytes that start like one, text for a str, else
    ``application/octet-stream``. Give ``content_type`` for Confluent
    wire-format bytes, or use ``rubin_alert()``.

    ``source_content_type`` is the form the alert had in the input buffer when
    the sidecar converted it (``json_form()`` sets it). ``schema_id`` is the
    Confluent schema id of the input alert; None takes it, as the sidecar
    does, from bytes 1 to 4 of a Confluent-framed value (0 for other values).
    """
    if isinstance(value, (dict, list)):
        data = codecs.encode_json(value)
        guessed = codecs.JSON
    elif isinstance(value, str):
        data = value.encode("utf-8")
        guessed = "text/plain; charset=utf-8"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        guessed = codecs.AVRO_OCF if data.startswith(codecs.OCF_MAGIC) else codecs.OCTET_STREAM
    else:
        raise TypeError(f"make_alert takes bytes, a dict, a list or a str, not {type(value).__name__}")
    content_type = content_type or guessed
    if schema_id is None:  # a broken value, to test dead letters, has no id
        framed = codecs.media_type(content_type) == codecs.AVRO_CONFLUENT
        schema_id = (codecs.schema_id_of(data) if framed else None) or 0
    message = worker_pb2.Alert(
        id=f"{topic}/{partition}/{offset}", topic=topic, partition=partition, offset=offset,
        timestamp_ms=timestamp_ms, value=data, content_type=content_type, attempt=attempt,
        source_content_type=source_content_type, schema_id=schema_id)
    if key is not None:
        message.key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    for name, header_value in headers:
        message.headers.add(key=name, value=header_value.encode("utf-8") if isinstance(header_value, str)
                            else bytes(header_value))
    return Alert(message)


def run(worker: Worker, alerts: Iterable[AlertLike], *, schemas: Mapping[int, str | dict[str, Any]] | None = None
        ) -> list[Result]:
    """Run a worker on alerts as the sidecar would, and return one ``Result`` per alert, in order.

    The alerts go in batches of the worker's ``batch_size`` (all in one batch
    if it is 0), each encoded and decoded as on the wire. ``schemas`` (Avro
    schemas as JSON text or dicts, by Confluent schema id) go with every batch
    as ``AlertBatch.schemas``, the writer schemas a sidecar sends for the
    Confluent-framed alerts it passes as they are; without them the worker
    falls back on its ``schema_resolver`` (or Rubin's registry). The worker's
    ``setup()`` runs first if it has not run yet.
    """
    worker.ensure_setup()  # a badly defined worker fails here, as serve() would refuse it
    messages = [_as_message(alert) for alert in alerts]
    if not messages:
        return []
    texts = {int(schema_id): schema if isinstance(schema, str) else json.dumps(schema)
             for schema_id, schema in (schemas or {}).items()}
    size = worker.batch_size or len(messages)
    results: list[Result] = []
    for batch_id, start in enumerate(range(0, len(messages), size)):
        sent = worker_pb2.AlertBatch(batch_id=batch_id, alerts=messages[start:start + size], schemas=texts)
        received = worker_pb2.AlertBatch.FromString(sent.SerializeToString())
        answer = processing.process_batch(worker, received)
        answer = worker_pb2.BatchResult.FromString(answer.SerializeToString())
        ids = [message.id for message in received.alerts]
        answered = [result.id for result in answer.results]
        if answered != ids:  # a bug of the SDK, not of the worker
            raise AssertionError(f"batch {batch_id} was answered for ids {answered}, not {ids}")
        results.extend(processing.result_from_proto(result) for result in answer.results)
    return results


def _as_message(alert: AlertLike) -> worker_pb2.Alert:
    if isinstance(alert, Alert):
        return alert.to_proto()
    if isinstance(alert, worker_pb2.Alert):
        return alert
    raise TypeError(f"run() takes Alert objects (see make_alert), not {type(alert).__name__}")


# --- The JSON form ---------------------------------------------------------------


def json_form(alert: Alert, fields: Sequence[str] = ()) -> Alert:
    """An Avro alert as a sidecar sends it to a worker that accepts ``application/json``, byte for byte.

    The alert (from ``rubin_alert``, ``ztf_alert`` or a ``make_alert`` with an
    Avro content type) is decoded and written in the contract's JSON form by
    the functions the sidecar uses (``codecs.encode_json_form``): 64-bit
    integers in full, bytes as base64, timestamps ISO 8601 in UTC, NaN as null.
    ``fields`` projects it as the worker's ``fields`` would (dotted paths; a
    path through an array applies to each element; a path to a field the
    alert lacks is left out). The Kafka fields stay as they were;
    ``source_content_type`` and ``schema_id`` say what the alert was.
    """
    kind = codecs.media_type(alert.content_type)
    if kind not in (codecs.AVRO_CONFLUENT, codecs.AVRO_OCF):
        raise ValueError(f"json_form() converts Avro alerts, and alert {alert.id} is {alert.content_type!r}")
    message = alert.to_proto()
    message.value = codecs.encode_json_form(alert.avro(), fields)
    message.content_type = codecs.JSON
    message.source_content_type = alert.content_type
    message.schema_id = alert.schema_id
    return Alert(message)


# --- Rubin and ZTF alerts -------------------------------------------------------


def _rubin_package() -> Any:
    try:
        import lsst.alert.packet as packet
    except ImportError as exc:
        raise MissingDependencyError(
            "Rubin sample alerts come from the lsst-alert-packet package, which is not installed: "
            "pip install lsst-alert-packet") from exc
    return packet


def _rubin_version(version: str | None) -> tuple[int, int]:
    if version is None:
        _rubin_package()  # says what to install if it is missing
        version = codecs.rubin_resolver().latest_version()
    try:
        major_text, minor_text = version.split(".")
        return int(major_text), int(minor_text)
    except ValueError:
        raise ValueError(f"a Rubin schema version is MAJOR.MINOR, like '7.1', not {version!r}") from None


def rubin_sample(version: str | None = None) -> dict[str, Any]:
    """The sample alert ``lsst-alert-packet`` ships for a schema version ("7.1"; None: the latest).

    A new dict each call: change it freely, then encode it with ``rubin_alert``.
    """
    major, minor = _rubin_version(version)
    path = os.path.join(_rubin_package().get_schema_path(major, minor), "sample_data", "fakeAlert.avro")
    if not os.path.exists(path):
        raise ValueError(f"lsst-alert-packet has no sample alert for schema {major}.{minor} ({path})")
    with open(path, "rb") as sample:
        return cast(dict[str, Any], next(fastavro.reader(sample)))


def rubin_alert(record: dict[str, Any] | None = None, *, version: str | None = None,
                **make_alert_args: Any) -> Alert:
    """A Rubin alert as a Rubin stream carries it: Confluent wire format, registry schema id.

    ``record`` (default: the version's sample alert) is encoded with the Rubin
    schema ``version`` ("7.1"; None: the latest) under its registry id (701).
    Other keyword arguments go to ``make_alert`` (topic, offset, key, ...).
    """
    major, minor = _rubin_version(version)
    resolver = codecs.rubin_resolver()
    schema_id = resolver.schema_id(f"{major}.{minor}")
    if record is None:
        record = rubin_sample(f"{major}.{minor}")
    value = codecs.encode_confluent(record, resolver.schema(schema_id), schema_id)
    return make_alert(value, content_type=codecs.AVRO_CONFLUENT, **make_alert_args)


def ztf_alert(path: str | os.PathLike[str] | bytes, **make_alert_args: Any) -> Alert:
    """A ZTF alert from an alert packet file (an Avro container file), or from its bytes.

    Keyword arguments go to ``make_alert`` (topic, offset, key, ...).
    """
    if isinstance(path, bytes):
        data = path
    else:
        with open(path, "rb") as packet:
            data = packet.read()
    if not data.startswith(codecs.OCF_MAGIC):
        raise ValueError(f"{path if not isinstance(path, bytes) else 'the bytes'} is not an Avro container file")
    codecs.decode_ocf(data)  # fail here, not in the worker, on a broken file
    return make_alert(data, content_type=codecs.AVRO_OCF, **make_alert_args)
