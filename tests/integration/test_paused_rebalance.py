"""A partition revoked while fetching is paused comes back fetching.

librdkafka keeps a partition's pause flag across a revocation: a stage that
did not resume what it gave up would get the partition back paused and never
read it again. Real sidecars of one group on the session's real Kafka.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration.stage_support import free_port, produce_alerts, read_topic

pytestmark = pytest.mark.kafka


def test_partitions_revoked_while_paused_are_read_when_they_come_back(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=4), new_topic(partitions=4)
    alerts = produce_alerts(kafka_bootstrap, source, 400, partitions=4)
    slow = free_port()
    # A slow worker and a small hold: the first instance pauses fetching at once.
    procs.worker("slow.py", slow, "--delay-ms", "20")
    common = ["--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink), "--group", f"g-{source}",
              "--worker", f"127.0.0.1:{slow}", "--max-buffered", "50", "--batch-size", "10"]
    first = procs.sidecar(*common, name="first")
    first.wait_for_line("pausing fetch", 60)
    # A second instance takes half of the partitions while the first is paused;
    # the first drains what it holds and resumes; then the second leaves and
    # its partitions go back to the first.
    second = procs.sidecar(*common, name="second")
    second.wait_for_line("partitions assigned", 60)
    time.sleep(8)
    second.signal(signal.SIGTERM)
    assert second.wait(40) == 0
    time.sleep(8)
    alerts += produce_alerts(kafka_bootstrap, source, 400, partitions=4, start=400)
    out = read_topic(kafka_bootstrap, sink, minimum=len(alerts), timeout=90, settle=5)
    seen = {int(m.value().split(b'"seq": ')[1].split(b",")[0]) for m in out}
    missing = {a["seq"] % 4 for a in alerts if a["seq"] not in seen}
    assert not missing, f"{len(alerts) - len(seen)} alerts never came out, of partitions {sorted(missing)}"
    first.signal(signal.SIGTERM)
    assert first.wait(40) == 0


def uri(bootstrap: str, topic: str) -> str:
    return f"kafka://{bootstrap}/{topic}"
