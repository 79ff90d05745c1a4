"""An outage is not poison: when every alert fails, the stage holds them and dead-letters nothing."""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration.stage_support import free_port, produce_alerts, read_topic

pytestmark = pytest.mark.kafka


def test_a_worker_failing_everything_opens_the_circuit_and_nothing_is_dead_lettered(
        kafka_bootstrap, new_topic, procs, tmp_path):
    source, sink, dead = new_topic(partitions=2), new_topic(partitions=2), new_topic(partitions=2)
    alerts = produce_alerts(kafka_bootstrap, source, 600, partitions=2)
    down = tmp_path / "catalogue-down"
    down.write_text("")
    port = free_port()
    procs.worker("outage.py", port, "--down-while", str(down))
    # Retries would dead-letter everything within 0.1+0.2+0.4 s without the breaker.
    sidecar = procs.sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out", f"kafka://{kafka_bootstrap}/{sink}",
                            "--dead-letter", f"kafka://{kafka_bootstrap}/{dead}", "--worker", f"127.0.0.1:{port}",
                            "--max-retries", "3", "--retry-backoff", "0.1", "--batch-size", "20")
    sidecar.wait_for_line("circuit open", 60)
    time.sleep(5)  # the outage goes on
    assert "circuit=open" in sidecar.output or "circuit open" in sidecar.output
    down.unlink()  # the catalogue is back
    out = read_topic(kafka_bootstrap, sink, minimum=len(alerts), timeout=90, settle=2)
    assert len({m.value() for m in out}) == len(alerts)
    assert read_topic(kafka_bootstrap, dead, timeout=3, settle=1) == []
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(40) == 0
    assert "circuit closed" in sidecar.output
