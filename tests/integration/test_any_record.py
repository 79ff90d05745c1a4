"""Any record a Kafka client can write is processed or dead-lettered with its reason, and the stage goes on.

Real records on the session's real Kafka, written with a plain client (which,
like kcat and the Java client, writes whatever header bytes it is given),
through the real sidecar and the pass-through worker.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.stage_support import free_port, header, read_topic

pytestmark = pytest.mark.kafka

MB = 1024 * 1024


def _topic(bootstrap: str, max_message_bytes: int | None = None) -> str:
    name = f"test-any-record-{uuid.uuid4().hex[:8]}"
    config = {"max.message.bytes": str(max_message_bytes)} if max_message_bytes else {}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 1, config=config)])[name].result(timeout=30)
    return name


def _good(i: int) -> bytes:
    return json.dumps({"diaSourceId": 2**60 + i, "seq": i}).encode()


def _run(procs, bootstrap: str, source: str, sink: str, dead: str, expect_out: int, expect_dead: int):
    port = free_port()
    procs.worker("passthrough.py", port)
    sidecar = procs.sidecar("--in", f"kafka://{bootstrap}/{source}", "--out", f"kafka://{bootstrap}/{sink}",
                            "--dead-letter", f"kafka://{bootstrap}/{dead}", "--worker", f"127.0.0.1:{port}")
    out = read_topic(bootstrap, sink, minimum=expect_out, timeout=60, settle=2)
    letters = read_topic(bootstrap, dead, minimum=expect_dead, timeout=30, settle=1)
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(40) == 0, sidecar.output
    assert "Traceback" not in sidecar.output
    return out, letters, sidecar


def _kcat_produce(bootstrap: str, topic: str, value: bytes, header: bytes) -> None:
    """One record with a raw header (``key=value`` bytes), written by kcat as an operator would."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is needed (make tools-setup installs Debian's)"
    subprocess.run([kcat.encode(), b"-P", b"-b", bootstrap.encode(), b"-t", topic.encode(), b"-p", b"0",
                    b"-H", header], input=value, check=True, timeout=30)


def test_odd_headers_keys_and_values_never_stop_a_stage(kafka_bootstrap, procs):
    source, sink, dead = (_topic(kafka_bootstrap) for _ in range(3))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    records = [
        dict(value=_good(0)),
        dict(value=_good(1)),  # written by kcat below, with a header key that is not UTF-8
        dict(value=_good(2), headers=[("latin", b"caf\xe9"), ("none", None)]),  # value not UTF-8, a null value
        dict(value=b""),  # an empty value
        dict(value=None, key=b"tombstone"),  # a null value
        dict(value=_good(5), key=b""),  # an empty key
        dict(value=b"\x00\x00\x00\x00\x07garbage"),  # framed like Confluent Avro, but no schema 7 anywhere
        dict(value=_good(7)),
    ]
    for i, record in enumerate(records):
        if i == 1:
            assert producer.flush(10) == 0
            _kcat_produce(kafka_bootstrap, source, record["value"], b"\xff\xfebad-key=x")
            continue
        producer.produce(source, partition=0, **record)
    assert producer.flush(10) == 0
    # Every record but the unreadable one passes through a worker that keeps all.
    out, letters, _ = _run(procs, kafka_bootstrap, source, sink, dead, expect_out=7, expect_dead=1)
    by_offset = {int(header(m, "x-alert-source").decode().rsplit("/", 1)[1]): m for m in out}
    assert sorted(by_offset) == [0, 2, 3, 4, 5, 6, 7]
    assert by_offset[2].headers()[:2] == [("latin", b"caf\xe9"), ("none", None)]
    assert by_offset[3].value() == b"" or by_offset[3].value() is None  # Kafka does not tell empty from null
    assert by_offset[4].value() is None and by_offset[4].key() == b"tombstone"
    assert by_offset[5].key() == b"" and by_offset[5].value() == _good(5)
    assert by_offset[6].value() == records[6]["value"]
    assert len(letters) == 1
    letter = letters[0]
    assert letter.value() == _good(1)
    assert header(letter, "x-dead-letter-source").decode() == f"{source}/0/1"
    assert "not UTF-8" in header(letter, "x-dead-letter-reason").decode()


def test_records_larger_than_an_output_takes_are_dead_lettered_and_the_producer_sized_to_the_topic(
        kafka_bootstrap, procs):
    # Input and output take 4 MB records, the dead-letter buffer 1 MB: a 1.5 MB
    # record passes (the producer is sized past librdkafka's 1 MB default).
    source = _topic(kafka_bootstrap, 4 * MB)
    sink = _topic(kafka_bootstrap, 4 * MB)
    dead = _topic(kafka_bootstrap, 1 * MB)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 8 * MB})
    large = b"L" * (3 * MB // 2)
    for value in (_good(0), large, _good(2)):
        producer.produce(source, value=value)
    assert producer.flush(30) == 0
    out, letters, sidecar = _run(procs, kafka_bootstrap, source, sink, dead, expect_out=3, expect_dead=0)
    assert [m.value() for m in out] == [_good(0), large, _good(2)]
    assert letters == []
    assert "producer sized" in sidecar.output


def test_a_record_too_large_for_the_output_and_the_dead_letter_buffer_leaves_a_small_dead_letter(
        kafka_bootstrap, procs):
    source = _topic(kafka_bootstrap, 4 * MB)
    sink = _topic(kafka_bootstrap, 1 * MB)
    dead = _topic(kafka_bootstrap, 1 * MB)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 8 * MB})
    large = b"L" * (3 * MB // 2)
    for value in (_good(0), large, _good(2)):
        producer.produce(source, value=value)
    assert producer.flush(30) == 0
    out, letters, _ = _run(procs, kafka_bootstrap, source, sink, dead, expect_out=2, expect_dead=1)
    assert [m.value() for m in out] == [_good(0), _good(2)]
    assert len(letters) == 1
    letter = letters[0]
    summary = json.loads(letter.value())
    assert summary["source"] == f"{source}/0/1" and summary["size"] == len(large)
    assert "too large" in summary["reason"] and "too large" in summary["dead_letter"]
    assert header(letter, "x-dead-letter-size") == str(len(large)).encode()
