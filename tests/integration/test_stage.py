"""One stage end to end on a real Kafka: buffer -> sidecar -> Python worker -> buffer.

Sidecars and workers run as real processes; alerts are checked by id, so a
loss, a duplicate or a reordering shows.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter, defaultdict

import pytest

from .stage_support import committed_offsets, count_records, free_port, header, produce_alerts, read_topic

pytestmark = pytest.mark.kafka


def uri(bootstrap: str, topic: str) -> str:
    return f"kafka://{bootstrap}/{topic}"


def ids_of(messages) -> list[int]:
    return [json.loads(m.value())["diaSourceId"] for m in messages]


def order_per_input_partition(messages) -> dict[int, list[int]]:
    """seq numbers per input partition, in the order they appear in the output, duplicates dropped."""
    seen = set()
    order = defaultdict(list)
    for message in messages:
        alert = json.loads(message.value())
        if alert["seq"] in seen:
            continue
        seen.add(alert["seq"])
        order[alert["partition"]].append(alert["seq"])
    return order


def assert_complete_and_ordered(sent: list[dict], messages) -> int:
    """Every alert arrived, in input order per input partition; return the number of duplicates."""
    counts = Counter(ids_of(messages))
    missing = [a["diaSourceId"] for a in sent if a["diaSourceId"] not in counts]
    assert not missing, f"{len(missing)} alerts lost, e.g. {missing[:5]}"
    expected = defaultdict(list)
    for alert in sent:
        expected[alert["partition"]].append(alert["seq"])
    assert order_per_input_partition(messages) == dict(expected)
    for message in messages:  # lineage header on every output
        assert header(message, "x-alert-source").decode().count("/") == 2
    return sum(counts.values()) - len(counts)


def test_two_instances_share_four_partitions_and_keep_order(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=4), new_topic(partitions=4)
    sent = produce_alerts(kafka_bootstrap, source, 10_000, partitions=4)
    port = free_port()
    procs.worker("passthrough.py", port)
    args = ["--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
            "--worker", f"127.0.0.1:{port}", "--group", f"g-{source}"]
    first = procs.sidecar(*args, name="first")
    second = procs.sidecar(*args, name="second")
    messages = read_topic(kafka_bootstrap, sink, minimum=10_000, timeout=120, settle=3)
    duplicates = assert_complete_and_ordered(sent, messages)
    # Both instances took part: each was assigned partitions of the input.
    for proc in (first, second):
        proc.wait_for_line("partitions assigned", 30)
    print(f"10,000 alerts through two instances: {duplicates} duplicates")
    for proc in (first, second):
        proc.signal(signal.SIGTERM)
    assert first.wait(30) == 0 and second.wait(30) == 0
    committed = committed_offsets(kafka_bootstrap, f"g-{source}", source, 4)
    assert committed == {p: 2500 for p in range(4)}


def test_sidecar_killed_mid_run_loses_nothing(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=4), new_topic(partitions=4)
    sent = produce_alerts(kafka_bootstrap, source, 20_000, partitions=4)
    port = free_port()
    # About 1,600 alerts/s (4 partitions x 20 alerts per 50 ms): slow enough to kill mid-run.
    procs.worker("slow.py", port, "--delay-ms", "50")
    args = ["--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
            "--worker", f"127.0.0.1:{port}", "--batch-size", "20"]
    victim = procs.sidecar(*args, name="victim")
    victim.wait_for_line("rate=", 60)
    # Kill it once a part of the alerts went through, without any chance to commit or drain.
    deadline = time.monotonic() + 60
    while count_records(kafka_bootstrap, sink) < 3_000 and time.monotonic() < deadline:
        time.sleep(0.2)
    victim.signal(signal.SIGKILL)
    victim.wait(10)
    produced_before_kill = count_records(kafka_bootstrap, sink)
    assert produced_before_kill < len(sent), "the kill came too late to test anything"
    procs.sidecar(*args, name="restarted")
    messages = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=180, settle=3)
    duplicates = assert_complete_and_ordered(sent, messages)
    print(f"SIGKILL after {produced_before_kill} outputs: no loss, {duplicates} duplicates")


def test_worker_killed_mid_run_sidecar_waits_and_loses_nothing(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=2), new_topic(partitions=2)
    sent = produce_alerts(kafka_bootstrap, source, 8_000, partitions=2)
    port = free_port()
    # About 800 alerts/s (2 partitions x 20 alerts per 50 ms): slow enough to kill mid-run.
    worker = procs.worker("slow.py", port, "--delay-ms", "50", name="worker")
    sidecar = procs.sidecar("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
                            "--worker", f"127.0.0.1:{port}", "--batch-size", "20")
    deadline = time.monotonic() + 60
    while count_records(kafka_bootstrap, sink) < 1_000 and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.signal(signal.SIGKILL)
    worker.wait(10)
    sidecar.wait_for_line("worker unavailable", 30)
    time.sleep(3)  # the worker stays away for a while; the sidecar must neither exit nor skip
    assert sidecar.alive
    stalled = count_records(kafka_bootstrap, sink)
    assert stalled < len(sent)
    procs.worker("slow.py", port, "--delay-ms", "50", name="worker-again")
    sidecar.wait_for_line("worker back", 30)
    messages = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=180, settle=3)
    duplicates = assert_complete_and_ordered(sent, messages)
    assert sidecar.alive
    print(f"worker SIGKILL after {stalled} outputs: no loss, {duplicates} duplicates")


def test_sigterm_drains_commits_and_exits_zero(kafka_bootstrap, new_topic, procs, tmp_path):
    source, sink = new_topic(partitions=2), new_topic(partitions=2)
    produce_alerts(kafka_bootstrap, source, 3_000, partitions=2)
    stats = tmp_path / "stats.json"
    args = ["--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink), "--group", f"g-{source}",
            "--stats-file", str(stats), "--", sys.executable, "examples/python/passthrough.py"]
    sidecar = procs.sidecar(*args)
    read_topic(kafka_bootstrap, sink, minimum=3_000, timeout=60)
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(30) == 0
    assert "stage stopped" in sidecar.output
    assert json.loads(stats.read_text())["kept"] == 3_000
    assert committed_offsets(kafka_bootstrap, f"g-{source}", source, 2) == {0: 1500, 1: 1500}
    # Started again, the same group has nothing left to do: no duplicate is written.
    again = procs.sidecar(*args, name="again")
    again.wait_for_line("partitions assigned", 30)
    time.sleep(2)
    again.signal(signal.SIGTERM)
    assert again.wait(30) == 0
    assert len(read_topic(kafka_bootstrap, sink, settle=1)) == 3_000


def test_verdicts_retries_and_dead_letters(kafka_bootstrap, new_topic, procs):
    """OK, drop, several outputs, routes, RETRY that succeeds, RETRY forever, DEAD_LETTER, unbound route."""
    source, sink, routed, dead = (new_topic(partitions=1) for _ in range(4))
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    cases = ["keep", "drop", "twice", "route", "retry-once", "retry-always", "dead", "bad-route", "crash"]
    for i, case in enumerate(cases):
        producer.produce(source, value=json.dumps({"diaSourceId": 2**62 + i, "case": case}).encode(), key=case.encode())
    producer.flush(10)
    port = free_port()
    procs.worker("verdicts.py", port)
    sidecar = procs.sidecar("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
                            "--route", f"special={uri(kafka_bootstrap, routed)}",
                            "--dead-letter", uri(kafka_bootstrap, dead), "--worker", f"127.0.0.1:{port}",
                            "--max-retries", "2", "--retry-backoff", "0.1")
    outputs = read_topic(kafka_bootstrap, sink, minimum=4, timeout=60, settle=2)
    by_case = Counter(json.loads(m.value())["case"] for m in outputs)
    assert by_case == {"keep": 1, "twice": 2, "retry-once": 1}
    kept = next(m for m in outputs if json.loads(m.value())["case"] == "keep")
    assert kept.key() == b"keep"  # forwarded with its key
    assert json.loads(kept.value())["diaSourceId"] == 2**62  # 64-bit id exact
    routed_out = read_topic(kafka_bootstrap, routed, minimum=1, timeout=30)
    assert [json.loads(m.value())["case"] for m in routed_out] == ["route"]
    assert header(routed_out[0], "note") == b"routed"
    letters = read_topic(kafka_bootstrap, dead, minimum=4, timeout=60, settle=2)
    reasons = {json.loads(m.value())["case"]: header(m, "x-dead-letter-reason").decode() for m in letters}
    assert set(reasons) == {"retry-always", "dead", "bad-route", "crash"}
    assert "gave up after 3 attempts" in reasons["retry-always"] and "catalogue down" in reasons["retry-always"]
    assert reasons["dead"] == "not an alert of ours"
    assert "route 'nowhere'" in reasons["bad-route"]
    assert "ZeroDivisionError" in reasons["crash"]
    letter = next(m for m in letters if json.loads(m.value())["case"] == "dead")
    assert header(letter, "x-dead-letter-source").decode() == f"{source}/0/6"
    assert letter.key() == b"dead"  # the original record, key and value
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(30) == 0
    assert "dead_lettered=4" in sidecar.output
    # The one drop is counted as such, not merely absent: a lost alert would not be.
    assert "consumed=9 kept=4 filtered=1 dead_lettered=4" in sidecar.output
