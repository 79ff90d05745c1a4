"""The hand-written AlertBatch bytes over random alerts: the generated code parses back exactly the fields given.

``alert_sidecar.workers.wire.BatchEncoder`` writes protobuf by hand, skipping
fields at their default and caching what repeats (the topic and partition,
content types, the last timestamp). Whatever the alerts, the generated
``AlertBatch.FromString`` must read back every field as given: ids and texts
of any characters, offsets and timestamps over all of int64, keys absent,
empty or not, values empty or large, headers with any key and bytes or no
value, attempts and schema ids over all of uint32, and the writer schemas.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from alert_sidecar.workers.wire import BatchEncoder
from alertsidecar.v1 import worker_pb2

# Encoding and parsing a batch costs microseconds; 300 examples take a second.
PROPERTY = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.integers(0, 2**64 - 1)
TEXT = st.text(max_size=30)  # any characters a protobuf string holds (Unicode scalar values)
CONTENT_TYPES = st.one_of(st.sampled_from(["", "application/json", "application/vnd.apache.avro+confluent",
                                           "application/vnd.apache.avro.ocf", "application/octet-stream"]), TEXT)
SIZES = st.sampled_from([0, 1, 127, 128, 16383, 16384, 70_000])  # where a length's varint gains a byte
VALUES = st.one_of(st.none(), st.binary(max_size=300), SIZES.flatmap(lambda n: st.binary(min_size=n, max_size=n)))
HEADERS = st.one_of(st.none(), st.lists(st.tuples(TEXT, st.one_of(st.none(), st.binary(max_size=40))), max_size=5))


@st.composite
def alerts(draw) -> tuple:
    """One alert's fields as the dispatcher gives them (stage/dispatch.py ``_alert_fields``)."""
    return (draw(TEXT), draw(INT64), draw(INT64), draw(st.one_of(st.none(), st.binary(max_size=60))), draw(VALUES),
            draw(CONTENT_TYPES), draw(HEADERS), draw(UINT32), draw(CONTENT_TYPES), draw(UINT32))


def check(topic: str, partition: int, batch_id: int, fields: list[tuple], schemas: dict[int, str],
          encoder: BatchEncoder | None = None) -> None:
    written = (encoder or BatchEncoder(topic, partition)).encode(batch_id, iter(fields), schemas)
    batch = worker_pb2.AlertBatch.FromString(written)
    assert batch.batch_id == batch_id
    assert dict(batch.schemas) == schemas
    assert len(batch.alerts) == len(fields)
    for alert, (alert_id, offset, timestamp_ms, key, value, content_type, headers, attempt, source_content_type,
                schema_id) in zip(batch.alerts, fields):
        assert alert.id == alert_id and alert.topic == topic and alert.partition == partition
        assert alert.offset == offset and alert.timestamp_ms == timestamp_ms
        assert alert.HasField("key") == (key is not None) and alert.key == (key or b"")
        assert alert.value == (value or b"")  # protobuf has no null bytes: an absent value is empty
        assert alert.content_type == content_type and alert.source_content_type == source_content_type
        assert [(h.key, h.value) for h in alert.headers] == [(k, v or b"") for k, v in headers or []]
        assert alert.attempt == attempt and alert.schema_id == schema_id


@PROPERTY
@given(topic=TEXT, partition=INT32, batch_id=UINT64, fields=st.lists(alerts(), max_size=6),
       schemas=st.dictionaries(UINT32, st.one_of(TEXT, st.text(min_size=200, max_size=400)), max_size=3))
@example(topic="", partition=0, batch_id=0, fields=[("", 0, 0, None, None, "", None, 0, "", 0)], schemas={0: ""})
@example(topic="alerts", partition=-1, batch_id=2**64 - 1,
         fields=[("a/1/9", -(2**63), -1, b"", b"\x00" * 16384, "application/json", [("", None), ("ü", b"")],
                  2**32 - 1, "application/vnd.apache.avro+confluent", 2**32 - 1)], schemas={2**32 - 1: "é"})
def test_an_encoded_batch_parses_back_to_the_fields_given(topic: str, partition: int, batch_id: int,
                                                          fields: list[tuple], schemas: dict[int, str]) -> None:
    check(topic, partition, batch_id, fields, schemas)


@PROPERTY
@given(topic=TEXT, partition=INT32,
       batches=st.lists(st.tuples(UINT64, st.lists(alerts(), max_size=4)), min_size=2, max_size=4))
def test_one_encoder_writes_every_batch_of_its_partition_as_a_fresh_one_would(topic: str, partition: int,
                                                                             batches: list) -> None:
    # What an encoder caches from one batch (content types, the last
    # timestamp) must never leak into the next.
    encoder = BatchEncoder(topic, partition)
    for batch_id, fields in batches:
        check(topic, partition, batch_id, fields, {}, encoder)
