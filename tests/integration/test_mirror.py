"""A mirror stage (``alert-sidecar --mirror``): no worker, every record copied as it is, nothing lost."""

from __future__ import annotations

import signal

import pytest

from .stage_support import committed_offsets, header, read_topic

pytestmark = pytest.mark.kafka


def test_mirror_copies_key_value_and_headers_unchanged(kafka_bootstrap, new_topic, procs):
    from confluent_kafka import Producer

    source, sink = new_topic(partitions=3), new_topic(partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    sent = {}
    for i in range(3_000):
        # Bytes no decoder could read, keys that are not UTF-8, headers of their own: all forwarded as they are.
        value = bytes([0, 0xFF, i % 251]) + i.to_bytes(4, "big") * 50
        key = None if i % 3 == 0 else bytes([0xC3, i % 256])
        producer.produce(source, value=value, key=key, partition=i % 3, headers=[("upstream-id", str(i).encode())])
        sent[str(i)] = (key, value)
    assert producer.flush(30) == 0
    sidecar = procs.sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out",
                            f"kafka://{kafka_bootstrap}/{sink}", "--mirror", "--group", f"g-{source}")
    messages = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=90, settle=2)
    got = {header(m, "upstream-id").decode(): (m.key(), m.value()) for m in messages}
    assert got == sent
    assert len(messages) == len(sent)
    assert all(header(m, "x-alert-source") for m in messages)  # lineage, as from any stage
    sidecar.wait_for_line("worker ready address=mirror", 10)
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(30) == 0
    assert committed_offsets(kafka_bootstrap, f"g-{source}", source, 3) == {p: 1000 for p in range(3)}
    assert "stage stopped consumed=3000 kept=3000 filtered=0 dead_lettered=0 produced=3000" in sidecar.output


def test_mirror_refuses_a_worker_too(procs):
    sidecar = procs.sidecar("--in", "kafka://localhost:9/a", "--out", "kafka://localhost:9/b", "--mirror",
                            "--worker", "localhost:50051")
    assert sidecar.wait(30) == 2
    assert "--mirror has no worker" in sidecar.output
    assert "Traceback" not in sidecar.output
