"""The local Kafka cluster: real brokers that take records and give them back.

What a user of ``alert-sidecar kafka up|status|down`` and of the test
fixtures relies on: records written come back, a three-broker cluster
replicates, ``status`` tells a stopped broker, ``down`` leaves no process, and
a machine without Java gets one clear line instead of a traceback.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from alert_sidecar.commands.kafka import kafka_group
from alert_sidecar.kafka import local as local_kafka
from alert_sidecar.kafka.local import LocalKafka, find_java


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    failures = []
    for key, value in records:
        producer.produce(topic, value=value, key=key,
                         on_delivery=lambda err, msg: failures.append(err) if err else None)
    assert producer.flush(30) == 0, "records still unacknowledged after 30 s"
    assert failures == []


def consume(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    messages = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def processes_using(folder: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``folder``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(folder).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.mark.kafka
def test_records_come_back_from_a_three_partition_topic(kafka_bootstrap, new_topic):
    topic = new_topic(partitions=3)
    sent = [(f"key-{n}".encode(), f"alert-{n}".encode()) for n in range(100)]

    produce(kafka_bootstrap, topic, sent)
    received = consume(kafka_bootstrap, topic, len(sent))

    assert sorted((m.key(), m.value()) for m in received) == sorted(sent)
    # The keys spread over every partition, so the topic really has three.
    assert {m.partition() for m in received} == {0, 1, 2}
    # Within a partition, records come back in the order they were written.
    for partition in range(3):
        numbers = [int(m.value().split(b"-")[1]) for m in received if m.partition() == partition]
        assert numbers == sorted(numbers)


@pytest.mark.kafka
@pytest.mark.skipif(find_java() is None, reason="needs Java to start a local cluster")
def test_three_broker_cluster_from_the_command_line(tmp_path):
    state_dir = tmp_path / "cluster"
    runner = CliRunner()
    try:
        result = runner.invoke(kafka_group, ["up", "--brokers", "3", "--state-dir", str(state_dir)])
        assert result.exit_code == 0, result.output
        bootstrap = result.stdout.strip().splitlines()[-1]
        assert len(bootstrap.split(",")) == 3 and bootstrap.startswith("127.0.0.1:")

        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert len(admin.list_topics(timeout=10).brokers) == 3
        admin.create_topics([NewTopic("replicated", 2, replication_factor=3)])["replicated"].result(timeout=30)
        partitions = admin.list_topics("replicated", timeout=10).topics["replicated"].partitions
        assert all(len(p.replicas) == 3 for p in partitions.values())
        sent = [(b"k%d" % n, b"v%d" % n) for n in range(20)]
        produce(bootstrap, "replicated", sent)
        assert sorted((m.key(), m.value()) for m in consume(bootstrap, "replicated", 20)) == sorted(sent)

        # A second `up` finds the running cluster instead of starting another.
        again = runner.invoke(kafka_group, ["up", "--brokers", "3", "--state-dir", str(state_dir)])
        assert again.exit_code == 0 and again.stdout.strip().splitlines()[-1] == bootstrap

        status = runner.invoke(kafka_group, ["status", "--state-dir", str(state_dir)])
        assert status.exit_code == 0, status.output
        assert status.stdout.count(" alive") == 3

        cluster = LocalKafka(state_dir)
        cluster.stop_broker(2)
        status = runner.invoke(kafka_group, ["status", "--state-dir", str(state_dir)])
        assert status.exit_code == 1
        stopped = [line.split()[1] for line in status.stdout.splitlines() if line.endswith("not running")]
        assert stopped == ["2"]
        # Two of three replicas are enough to take writes (min.insync.replicas=2).
        produce(bootstrap, "replicated", [(b"while-down", b"x")])

        cluster.start_broker(2)
        assert runner.invoke(kafka_group, ["status", "--state-dir", str(state_dir)]).exit_code == 0

        pids = [broker.pid for broker in cluster.status().brokers]
        result = runner.invoke(kafka_group, ["down", "--state-dir", str(state_dir)])
        assert result.exit_code == 0, result.output
        assert "stopped 3 broker(s)" in result.stdout
        assert processes_using(state_dir) == []
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert not (state_dir / "cluster.json").exists()
    finally:
        LocalKafka(state_dir).down(timeout=5)


def test_up_without_java_says_so_in_one_line(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    result = CliRunner().invoke(kafka_group, ["up", "--state-dir", str(tmp_path / "cluster")])

    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("alert-sidecar: error: java not found")
    assert "Traceback" not in result.output
    assert processes_using(tmp_path) == []


def test_down_and_status_without_a_cluster(tmp_path):
    runner = CliRunner()

    down = runner.invoke(kafka_group, ["down", "--state-dir", str(tmp_path)])
    assert down.exit_code == 0
    assert "nothing to stop" in down.stdout

    status = runner.invoke(kafka_group, ["status", "--state-dir", str(tmp_path)])
    assert status.exit_code == 1
    assert status.stderr.startswith("alert-sidecar: error: no Kafka cluster is recorded in")


@pytest.mark.kafka
@pytest.mark.skipif(find_java() is None, reason="needs Java to start a local cluster")
def test_broker_that_dies_while_starting_shows_its_log(tmp_path, monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    free = local_kafka._free_ports(1)[0]
    # The broker is given a port that another program already listens on.
    monkeypatch.setattr(local_kafka, "_free_ports", lambda count: [port, free])
    try:
        result = CliRunner().invoke(kafka_group, ["up", "--state-dir", str(tmp_path / "cluster")])
    finally:
        taken.close()

    assert result.exit_code == 1
    assert "alert-sidecar: error: broker 1 stopped while starting; from its log:" in result.stderr
    # Kafka's own words for the cause, not only the last of its stack traces.
    assert f"failed to bind to 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.output
    assert processes_using(tmp_path) == []
