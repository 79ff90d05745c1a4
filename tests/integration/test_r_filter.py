"""R workers end to end: a real sidecar, a real local Kafka, Rubin Avro alerts, R filters over Connect."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from confluent_kafka import Producer

from alert_sidecar.workers.connect import ConnectChannel, health_check
from alert_sidecar.simulate.rubin import RubinAlertFactory

from tests.r_support import r_worker_command
from .stage_support import free_consecutive_ports, read_topic

pytestmark = pytest.mark.kafka

# Planted light curves, in nJy (about AB 21.4 for 10,000): 30 previous r-band
# detections at BASELINE with errors ERROR, so the weighted baseline is known
# to within ERROR / sqrt(30).
BASELINE = 10_000.0
ERROR = 100.0


def _uri(bootstrap: str, topic: str) -> str:
    return f"kafka://{bootstrap}/{topic}"


def _planted(factory: RubinAlertFactory, i: int, kind: str) -> bytes:
    """Alert i with a planted light curve: "bright" (latest r flux 20 sigma above the r baseline),
    "flat" (latest within 0.5 sigma), or "other-band" (bright only against the g band, flat in r)."""
    record = factory.make(i)
    previous = record["prvDiaSources"]
    for k, source in enumerate(previous):
        source["band"] = "r"
        source["psfFlux"] = BASELINE
        source["psfFluxErr"] = ERROR
        if kind == "other-band" and k % 2:
            source["band"] = "g"
            source["psfFlux"] = BASELINE / 2  # brightening against g, which the filter must ignore
    latest = record["diaSource"]
    latest["band"] = "r"
    latest["psfFluxErr"] = ERROR
    latest["psfFlux"] = BASELINE + (20 if kind == "bright" else 0.5) * ERROR * (1 + 1 / len(previous)) ** 0.5
    return factory.encode(record)


def _produce(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, partition=i % partitions)
    assert producer.flush(30) == 0


def _stop(sidecar) -> None:
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(60) == 0, sidecar.output[-3000:]


def test_brightening_filter_keeps_exactly_the_planted_brightenings(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=2), new_topic(partitions=2)
    factory = RubinAlertFactory(cutouts=False, prv_sources=30, seed=11)
    kinds = ["bright" if i % 5 == 0 else "other-band" if i % 5 == 1 else "flat" for i in range(200)]
    values = [_planted(factory, i, kind) for i, kind in enumerate(kinds)]
    _produce(kafka_bootstrap, source, values, partitions=2)
    expected = Counter(value for value, kind in zip(values, kinds) if kind == "bright")

    sidecar = procs.sidecar("--in", _uri(kafka_bootstrap, source), "--out", _uri(kafka_bootstrap, sink),
                            "--worker-protocol", "connect", "--worker-wait", "120",
                            "--", *r_worker_command("examples/r/brightening.R"))
    kept = read_topic(kafka_bootstrap, sink, minimum=sum(expected.values()), timeout=180, settle=3)
    # Forwarded alerts are the input records, byte for byte: exactly the bright ones, once each.
    assert Counter(m.value() for m in kept) == expected
    _stop(sidecar)
    assert "dead_lettered=0" in sidecar.output


def test_two_r_processes_share_the_batches_and_every_alert_arrives_once(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=4), new_topic(partitions=4)
    factory = RubinAlertFactory(cutouts=False, prv_sources=5, seed=12)
    values = list(factory.alerts(1_000))
    _produce(kafka_bootstrap, source, values, partitions=4)

    port = free_consecutive_ports(2)
    worker = procs.start(r_worker_command("examples/r/noop.R", "2"), "r-worker", env={"ALERT_WORKER_PORT": str(port)})
    for p in (port, port + 1):  # serve(processes = 2): one R process on each port
        _wait_serving(p, worker)
    sidecar = procs.sidecar("--in", _uri(kafka_bootstrap, source), "--out", _uri(kafka_bootstrap, sink),
                            "--worker", f"http://127.0.0.1:{port}-{port + 1}", "--batch-size", "50")
    kept = read_topic(kafka_bootstrap, sink, minimum=len(values), timeout=180, settle=3)
    assert Counter(m.value() for m in kept) == Counter(values)
    _stop(sidecar)
    served = worker.output.count("serving worker noop")
    assert served == 2, worker.output


def _wait_serving(port: int, worker, timeout: float = 60.0) -> None:
    channel = ConnectChannel(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                if health_check(channel, timeout=1) == 1:
                    return
            except Exception:  # not listening yet
                time.sleep(0.2)
            assert worker.alive, worker.output[-3000:]
        raise AssertionError(f"no R worker serving on port {port} within {timeout} s:\n{worker.output[-3000:]}")
    finally:
        channel.close()
