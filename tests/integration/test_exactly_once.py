"""--exactly-once on a real Kafka: each alert's outputs are seen once by a read_committed reader.

The same faults that make an at-least-once stage write duplicates (a SIGKILL
mid-transaction, a rebalance, a sidecar frozen past its transaction's timeout)
are run here with --exactly-once, and the output buffer is read as a
downstream stage reads it (isolation.level=read_committed, librdkafka's
default): every alert once, in input order per partition. Read uncommitted,
the same buffer shows the records of the aborted transactions.
"""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from .stage_support import committed_offsets, count_records, free_port, produce_alerts, read_topic
from .test_stage import assert_complete_and_ordered, uri

pytestmark = pytest.mark.kafka

COMMITTED = {"isolation.level": "read_committed"}
UNCOMMITTED = {"isolation.level": "read_uncommitted"}


def wait_for_records(bootstrap: str, topic: str, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while (count := count_records(bootstrap, topic)) < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


def test_a_sidecar_killed_mid_transaction_writes_each_alert_once(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=2), new_topic(partitions=2)
    sent = produce_alerts(kafka_bootstrap, source, 8_000, partitions=2)
    port = free_port()
    # About 800 alerts/s (2 partitions x 20 alerts per 50 ms): slow enough to kill mid-run.
    procs.worker("slow.py", port, "--delay-ms", "50")
    args = ["--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink), "--worker", f"127.0.0.1:{port}",
            "--batch-size", "20", "--group", f"eos-{source}", "--exactly-once"]
    stable_id = f"eos-test-{uuid.uuid4().hex[:8]}"

    first = procs.sidecar(*args, "--transactional-id", stable_id, name="first")
    first.wait_for_line("transactions started", 60)
    wait_for_records(kafka_bootstrap, sink, 2_000)
    first.signal(signal.SIGKILL)
    first.wait(10)
    # The same id: starting fences the killed producer and aborts its open transaction at once.
    second = procs.sidecar(*args, "--transactional-id", stable_id, name="second")
    second.wait_for_line("transactions started", 60)
    wait_for_records(kafka_bootstrap, sink, count_records(kafka_bootstrap, sink) + 2_000)
    second.signal(signal.SIGKILL)
    second.wait(10)
    # A new id (the default, unique to the process): the killed transaction is
    # aborted by the broker when it times out, and readers wait for that.
    procs.sidecar(*args, name="third")

    messages = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=180, settle=3, config=COMMITTED)
    duplicates = assert_complete_and_ordered(sent, messages)
    assert duplicates == 0, f"{duplicates} duplicates read committed"
    everything = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=30, settle=2, config=UNCOMMITTED)
    aborted = len(everything) - len(messages)
    print(f"two SIGKILLs with --exactly-once: 0 duplicates read committed; {aborted} records of aborted "
          "transactions (and transaction markers' gaps) left unread")
    assert aborted > 0, "the kills cut no transaction with records in it: the test showed nothing"


def test_a_rebalance_with_exactly_once_writes_each_alert_once(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=4), new_topic(partitions=4)
    sent = produce_alerts(kafka_bootstrap, source, 8_000, partitions=4)
    port = free_port()
    procs.worker("slow.py", port, "--delay-ms", "50")
    args = ["--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink), "--worker", f"127.0.0.1:{port}",
            "--batch-size", "20", "--group", f"eos-{source}", "--exactly-once"]
    first = procs.sidecar(*args, name="first")
    wait_for_records(kafka_bootstrap, sink, 1_500)
    second = procs.sidecar(*args, name="second")  # partitions move to it mid-stream
    second.wait_for_line("partitions assigned", 60)
    wait_for_records(kafka_bootstrap, sink, count_records(kafka_bootstrap, sink) + 1_500)
    first.signal(signal.SIGTERM)  # and move back
    assert first.wait(60) == 0, first.output[-3000:]

    messages = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=180, settle=3, config=COMMITTED)
    assert assert_complete_and_ordered(sent, messages) == 0
    second.signal(signal.SIGTERM)
    assert second.wait(60) == 0, second.output[-3000:]
    assert committed_offsets(kafka_bootstrap, f"eos-{source}", source, 4) == {p: 2000 for p in range(4)}


def test_a_sidecar_frozen_past_its_transaction_timeout_aborts_and_reads_again(kafka_bootstrap, new_topic, procs):
    # A stop of the world longer than the transaction's timeout and the
    # group's session (a VM paused, a host swapping): the broker aborts the
    # open transaction and gives the partitions away; the sidecar, back,
    # must not commit what it held, and must read it again.
    source, sink = new_topic(partitions=2), new_topic(partitions=2)
    sent = produce_alerts(kafka_bootstrap, source, 6_000, partitions=2)
    port = free_port()
    procs.worker("slow.py", port, "--delay-ms", "50")
    args = ["--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
            "--worker", f"127.0.0.1:{port}", "--batch-size", "20", "--exactly-once"]
    sidecar = procs.sidecar(*args)
    wait_for_records(kafka_bootstrap, sink, 1_500)
    sidecar.signal(signal.SIGSTOP)
    time.sleep(15)  # past transaction.timeout.ms (10 s) and session.timeout.ms (10 s)
    sidecar.signal(signal.SIGCONT)
    # Back, it finds its transaction aborted: either librdkafka lets it abort
    # and it reads again from its last commit, or (the broker bumped its
    # producer's epoch) it is fenced and must stop, with one clear line; then
    # a new instance goes on. Either way nothing it held counts.
    deadline = time.monotonic() + 30
    while sidecar.alive and "aborted" not in sidecar.output and time.monotonic() < deadline:
        time.sleep(0.2)
    if not sidecar.alive:
        assert sidecar.wait(5) == 5, sidecar.output[-3000:]
        assert "was fenced" in sidecar.output and "Traceback" not in sidecar.output, sidecar.output[-3000:]
        procs.sidecar(*args, name="after-fencing")
    else:
        assert "aborted" in sidecar.output, sidecar.output[-3000:]

    messages = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=180, settle=3, config=COMMITTED)
    assert assert_complete_and_ordered(sent, messages) == 0


def test_exactly_once_across_clusters_is_refused_with_the_reason(kafka_bootstrap, new_topic, procs):
    source = new_topic(partitions=1)
    sidecar = procs.sidecar("--in", uri(kafka_bootstrap, source), "--out", "kafka://127.0.0.1:1/elsewhere",
                            "--dead-letter", uri(kafka_bootstrap, f"{source}.dead"),
                            "--worker", f"127.0.0.1:{free_port()}", "--exactly-once")
    assert sidecar.wait(30) == 2
    said = sidecar.output
    assert "--exactly-once needs the input, the outputs and the dead-letter buffer on one Kafka cluster" in said
    assert "--out kafka://127.0.0.1:1/elsewhere" in said and "Traceback" not in said
