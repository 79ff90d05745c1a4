"""The stage's Prometheus endpoint, scraped from a real sidecar on a real Kafka.

The figures served must be the stage's own: after N alerts, N consumed and N
out, a latency histogram of the batches answered whose sizes add up to N, a
lag series per input partition that falls to 0, the circuit closed.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .stage_support import free_port, produce_alerts, read_topic
from .test_stage import uri

pytestmark = pytest.mark.kafka


def scrape(port: int) -> dict[str, list]:
    """Every sample served, by sample name (e.g. alert_sidecar_alerts_consumed_total)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples, name: str, **labels) -> float:
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples in {sorted(samples)}"
    return found[0]


def test_the_metrics_endpoint_serves_the_stages_own_figures(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=3), new_topic(partitions=3)
    sent = produce_alerts(kafka_bootstrap, source, 3_000, partitions=3)
    port = free_port()
    procs.worker("passthrough.py", port)
    group = f"metrics-{source}"
    sidecar = procs.sidecar("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
                            "--worker", f"127.0.0.1:{port}", "--group", group, "--metrics-port", "0")
    sidecar.wait_for_line("metrics served", 60)
    metrics_port = int(re.search(r"metrics served url=http://[^:]+:(\d+)/metrics", sidecar.output).group(1))
    assert len(read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=120, settle=2)) == len(sent)
    time.sleep(2.5)  # the gauges are refreshed every second

    samples = scrape(metrics_port)
    assert value(samples, "alert_sidecar_alerts_consumed_total", stage=group) == len(sent)
    assert value(samples, "alert_sidecar_alerts_out_total", stage=group) == len(sent)
    assert value(samples, "alert_sidecar_alerts_dead_lettered_total", stage=group) == 0
    assert value(samples, "alert_sidecar_records_produced_total", stage=group) == len(sent)
    batches = value(samples, "alert_sidecar_worker_call_duration_seconds_count", stage=group)
    assert batches == value(samples, "alert_sidecar_worker_batches_total", stage=group) > 0
    assert value(samples, "alert_sidecar_batch_size_alerts_sum", stage=group) == len(sent)
    assert value(samples, "alert_sidecar_worker_call_duration_seconds_sum", stage=group) > 0
    lags = {s.labels["partition"]: s.value for s in samples["alert_sidecar_consumer_lag_alerts"]}
    assert lags == {"0": 0, "1": 0, "2": 0}
    assert value(samples, "alert_sidecar_partitions_assigned", stage=group) == 3
    assert value(samples, "alert_sidecar_circuit_state", stage=group, state="closed") == 1
    assert value(samples, "alert_sidecar_circuit_state", stage=group, state="open") == 0
    assert value(samples, "alert_sidecar_rebalances_total", stage=group) >= 1
    assert value(samples, "alert_sidecar_workers_healthy", stage=group) == 1
    assert value(samples, "alert_sidecar_alerts_in_flight", stage=group) == 0


def test_a_metrics_port_in_use_is_one_clear_line(kafka_bootstrap, new_topic, procs):
    import socket

    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    try:
        source = new_topic(partitions=1)
        sidecar = procs.sidecar("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, f"{source}.out"),
                                "--worker", f"127.0.0.1:{free_port()}", "--metrics-port", str(taken.getsockname()[1]))
        assert sidecar.wait(30) == 2
        assert "cannot listen on it" in sidecar.output and "Traceback" not in sidecar.output
    finally:
        taken.close()


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode().strip()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode().strip()


def wait_for(port: int, path: str, status: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = probe(port, path)
        if seen[0] == status:
            return seen[1]
        time.sleep(0.2)
    raise AssertionError(f"{path} is {seen}, not {status}, after {timeout} s")


def test_ready_follows_the_worker_and_live_the_loop(kafka_bootstrap, new_topic, procs):
    source = new_topic(partitions=1)
    worker_port, metrics_port = free_port(), free_port()
    sidecar = procs.sidecar("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, f"{source}.out"),
                            "--worker", f"127.0.0.1:{worker_port}", "--metrics-port", str(metrics_port),
                            "--worker-wait", "120")
    sidecar.wait_for_line("metrics served", 60)
    # No worker yet: alive (starting), not ready, and the probe says why.
    assert wait_for(metrics_port, "/ready", 503) == "the stage is starting"
    assert probe(metrics_port, "/live") == (200, "the stage is starting")
    worker = procs.worker("passthrough.py", worker_port)
    assert wait_for(metrics_port, "/ready", 200, timeout=60) == "ready"
    assert probe(metrics_port, "/live") == (200, "alive")
    worker.kill()
    why = wait_for(metrics_port, "/ready", 503)
    assert why.startswith(f"no worker is healthy (worker at 127.0.0.1:{worker_port}: "), why
    assert probe(metrics_port, "/live")[0] == 200  # the loop still turns: waiting for a worker is not stuck
    assert probe(metrics_port, "/nothing")[0] == 404
