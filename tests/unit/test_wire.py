"""The hand-written AlertBatch bytes parse to the message the generated code would build."""

from __future__ import annotations

import random

import pytest

from alert_sidecar.workers.wire import BatchEncoder, varint
from alertsidecar.v1 import worker_pb2


def _alert_tuple(alert: worker_pb2.Alert) -> tuple:
    return (alert.id, alert.offset, alert.timestamp_ms, alert.key if alert.HasField("key") else None, alert.value,
            alert.content_type, [(h.key, h.value) for h in alert.headers] or None, alert.attempt,
            alert.source_content_type, alert.schema_id)


def _expected(topic: str, partition: int, batch_id: int, alerts: list[dict], schemas: dict[int, str]):
    batch = worker_pb2.AlertBatch(batch_id=batch_id)
    for fields in alerts:
        batch.alerts.add(topic=topic, partition=partition, **fields)
    for schema_id, text in schemas.items():
        batch.schemas[schema_id] = text
    return batch


def _roundtrip(topic: str, partition: int, batch_id: int, alerts: list[dict], schemas: dict[int, str]):
    expected = _expected(topic, partition, batch_id, alerts, schemas)
    written = BatchEncoder(topic, partition).encode(batch_id, [_alert_tuple(a) for a in expected.alerts], schemas)
    assert worker_pb2.AlertBatch.FromString(written) == expected
    return expected, written


def test_every_field_and_edge_value() -> None:
    alerts = [
        dict(id="alerts/3/0", offset=0, value=b"", content_type=""),  # defaults: nothing but the id
        dict(id="alerts/3/1", offset=1, timestamp_ms=1_764_000_000_000, key=b"", value=b"x" * 300,
             content_type="application/json", attempt=2, source_content_type="application/vnd.apache.avro+confluent",
             schema_id=1101,
             headers=[worker_pb2.Header(key="a", value=b"1"), worker_pb2.Header(key="", value=b""),
                      worker_pb2.Header(key="ünï", value=b"\x00\xff")]),
        dict(id="alerts/3/9223372036854775807", offset=2**63 - 1, timestamp_ms=-1, key=b"k" * 200,
             value=bytes(range(256)) * 70, attempt=2**32 - 1, schema_id=2**32 - 1),
    ]
    _roundtrip("alerts", 3, 2**64 - 1, alerts, {1101: '{"type": "record"}', 0: "", 7: "é" * 200})


def test_partition_zero_batch_zero_and_unicode_topic() -> None:
    _roundtrip("ßtopic", 0, 0, [dict(id="ßtopic/0/5", offset=5, value=b"v")], {})


def test_random_alerts_match() -> None:
    rng = random.Random(11)
    for _ in range(50):
        alerts = []
        for offset in sorted(rng.sample(range(10**12), rng.randint(1, 20))):
            fields = dict(id=f"t/{offset}", offset=offset, value=rng.randbytes(rng.choice([0, 1, 127, 128, 20000])),
                          content_type=rng.choice(["", "application/json", "text/plain"]),
                          timestamp_ms=rng.choice([0, -1, rng.randint(1, 2**50)]), attempt=rng.randint(0, 3))
            if rng.random() < 0.5:
                fields["key"] = rng.randbytes(rng.randint(0, 40))
            if rng.random() < 0.5:
                fields["headers"] = [worker_pb2.Header(key=f"h{i}", value=rng.randbytes(rng.randint(0, 5)))
                                     for i in range(rng.randint(1, 4))]
            alerts.append(fields)
        _roundtrip("t", rng.randint(0, 2**31 - 1), rng.randint(0, 2**40), alerts, {})


@pytest.mark.parametrize("n", [1, 127, 128, 300, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 2**32, 2**63 - 1, -1, -(2**63)])
def test_varint_matches_protobuf(n: int) -> None:
    # An int64 field holding n is its tag (0x20 for Alert.offset) then the varint.
    assert b"\x20" + varint(n) == worker_pb2.Alert(offset=n).SerializeToString()
