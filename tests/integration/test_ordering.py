"""Ordering modes: what a worker may see out of order, and the commit rule that holds in all of them."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from .stage_support import (committed_offsets, count_records, free_consecutive_ports, free_port, header,
                            produce_alerts, read_topic)

pytestmark = pytest.mark.kafka


def max_concurrency(worker_output: str) -> int:
    return max((int(n) for n in re.findall(r"concurrent batches: (\d+)", worker_output)), default=0)


def test_partition_ordering_sends_one_batch_of_a_partition_at_a_time(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=1), new_topic(partitions=1)
    sent = produce_alerts(kafka_bootstrap, source, 1_000, partitions=1)
    port = free_port()
    worker = procs.worker("slow.py", port, "--delay-ms", "5", "--jitter-ms", "20")
    procs.sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out", f"kafka://{kafka_bootstrap}/{sink}",
                  "--worker", f"127.0.0.1:{port}", "--batch-size", "20", "--ordering", "partition")
    outputs = read_topic(kafka_bootstrap, sink, minimum=1_000, timeout=90)
    assert [json.loads(m.value())["seq"] for m in outputs] == [a["seq"] for a in sent]
    assert max_concurrency(worker.output) == 1


@pytest.mark.parametrize("ordering", ["none", "key"])
def test_unordered_modes_run_concurrently_and_never_commit_past_an_unfinished_alert(
        kafka_bootstrap, new_topic, procs, ordering, tmp_path):
    source, sink = new_topic(partitions=1), new_topic(partitions=1)
    count = 6_000
    # 1,000 keys (objects), each seen 6 times, 1,000 offsets apart: batches rarely share a key.
    sent = produce_alerts(kafka_bootstrap, source, count, partitions=1, keys=1_000)
    port = free_port()
    record = tmp_path / "seen.txt"
    # Batches of 20 take 10 to 50 ms each and finish out of order.
    worker = procs.worker("slow.py", port, "--delay-ms", "10", "--jitter-ms", "40", "--record", str(record))
    group = f"g-{source}"
    args = ["--in", f"kafka://{kafka_bootstrap}/{source}", "--out", f"kafka://{kafka_bootstrap}/{sink}",
            "--worker", f"127.0.0.1:{port}", "--batch-size", "20", "--max-in-flight", "4",
            "--ordering", ordering, "--group", group]
    victim = procs.sidecar(*args, name="victim")
    deadline = time.monotonic() + 60
    while count_records(kafka_bootstrap, sink) < 1_500 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # let a commit or two happen
    victim.signal(signal.SIGKILL)
    victim.wait(10)
    committed = committed_offsets(kafka_bootstrap, group, source, 1)[0]
    outputs = read_topic(kafka_bootstrap, sink, settle=1)
    done = {int(header(m, "x-alert-source").decode().rsplit("/", 1)[1]) for m in outputs}
    assert 0 < committed < count, "the kill should land mid-run, after a commit"
    unfinished = [offset for offset in range(committed) if offset not in done]
    assert not unfinished, f"committed {committed} past unfinished alerts {unfinished[:5]}"
    assert max_concurrency(worker.output) > 1  # batches of one partition really ran together
    finished = [line.split() for line in record.read_text().splitlines()]
    seqs = [int(seq) for _, seq in finished]
    assert seqs != sorted(seqs)  # the worker finished alerts out of offset order
    if ordering == "key":
        per_key: dict[str, list[int]] = {}
        for key, seq in finished:
            per_key.setdefault(key, []).append(int(seq))
        for key, order in per_key.items():
            assert order == sorted(order), f"key {key} finished out of order"

    procs.sidecar(*args, name="restarted")
    outputs = read_topic(kafka_bootstrap, sink, minimum=count, timeout=120, settle=2)
    seen = {json.loads(m.value())["seq"] for m in outputs}
    assert seen == {a["seq"] for a in sent}
    print(f"ordering {ordering}: committed {committed} at the kill, {len(outputs) - count} duplicates")


def test_a_worker_served_by_several_processes_gets_batches_in_all(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=4), new_topic(partitions=4)
    sent = produce_alerts(kafka_bootstrap, source, 4_000, partitions=4)
    port = free_consecutive_ports(2)
    worker = procs.worker("slow.py", port, "--delay-ms", "5", "--processes", "2")
    procs.sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out", f"kafka://{kafka_bootstrap}/{sink}",
                  "--worker", f"127.0.0.1:{port}-{port + 1}", "--batch-size", "50")
    outputs = read_topic(kafka_bootstrap, sink, minimum=4_000, timeout=90)
    assert {json.loads(m.value())["seq"] for m in outputs} == {a["seq"] for a in sent}
    pids = set(re.findall(r"concurrent batches: \d+ pid (\d+)", worker.output))
    assert len(pids) == 2, worker.output[-2000:]
