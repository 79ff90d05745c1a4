"""The stage's Prometheus endpoint (``--metrics-port``): its counters, latencies and state, by Prometheus' conventions.

Series are named ``alert_sidecar_<what>[_<unit>][_total]`` and labelled with
the stage's consumer group (``stage``), so that the instances of one stage
add up and a dashboard (``docs/grafana/alert-sidecar.json``) can show each
stage of a pipeline:

- counters: alerts consumed, kept (out), filtered, dead-lettered, retried and
  sent again; records produced; worker batches answered; rebalances; fetch
  pauses; circuit openings; transactions committed and aborted;
- histograms: worker call latency (seconds, from a batch's send to its
  answer) and batch sizes (alerts);
- gauges: alerts in flight and held, consumer lag per input partition,
  partitions assigned, fetching paused, the circuit breaker's state, healthy
  workers.

Counters are read from the stage's own ``Counters`` at scrape time, so the
figures are the ones its progress line and ``--stats-file`` show. The stage's
loop refreshes a snapshot of the gauges at each commit tick (every second);
the HTTP thread only reads it.

The same port answers an orchestrator's probes:

- ``/ready``: 200 once the stage runs its loop, a worker answers its health
  check (asked at each probe) and the circuit is not open, else 503 and why (Kubernetes takes the pod out of
  service; ``alert-pipeline`` counts the instance as unhealthy);
- ``/live``: 200 while the loop turns (its last tick within ``LIVE_WITHIN_S``)
  or is still starting or stopping, else 503: a loop stuck for that long is
  better restarted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from alert_sidecar.exceptions import ConfigError
from alert_sidecar.stage.metrics import Counters

log = logging.getLogger("alert_sidecar.metrics")

PREFIX = "alert_sidecar"

# Worker calls of a healthy batch take milliseconds; the slowest buckets reach
# the default --worker-timeout (30 s) and Rubin's 60 s latency budget.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)

# Counters -> (series, help). Names follow Prometheus: a _total suffix, no unit for counts.
COUNTER_SERIES = {
    "consumed": ("alerts_consumed", "Alerts read from the input buffer."),
    "kept": ("alerts_out", "Alerts that produced at least one output."),
    "filtered": ("alerts_filtered", "Alerts the worker answered OK with no output."),
    "dead_lettered": ("alerts_dead_lettered", "Alerts written to the dead-letter buffer."),
    "retried": ("alerts_retried", "Alert retries (RETRY answers and failed calls)."),
    "resent": ("alerts_resent", "Alerts sent again without counting a try (worker away, circuit open)."),
    "abandoned": ("alerts_abandoned", "Alerts given up at a revocation or abort, to be read again."),
    "produced": ("records_produced", "Output and dead-letter records acknowledged by their cluster."),
    "batches": ("worker_batches", "Batches the workers answered."),
    "aborted": ("transactions_aborted", "Kafka transactions aborted (--exactly-once)."),
}

BREAKER_STATES = ("closed", "half-open", "open")

# The loop ticks every second (its commit interval); a minute without a tick is a
# loop stuck, far beyond any pause a healthy stage has (a worker call times out in 30 s).
LIVE_WITHIN_S = 60.0


@dataclass
class Snapshot:
    """What the loop last saw, for the gauges (replaced whole, never changed in place)."""

    in_flight: int = 0
    held: int = 0
    held_bytes: int = 0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    paused: bool = False
    breaker: str = "closed"
    workers_healthy: int = 0
    workers: int = 0
    taken_at: float = field(default_factory=time.monotonic)


class StageMetrics:
    """The metrics of one stage, and the HTTP server that serves them."""

    def __init__(self, stage: str, counters: Counters) -> None:
        self.stage = stage
        self.counters = counters
        self.snapshot = Snapshot()
        self.rebalances = 0
        self.pauses = 0
        self.circuit_opened = 0
        self.transactions_committed = 0
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["stage"]
        self.call_latency = Histogram(f"{PREFIX}_worker_call_duration_seconds",
                                      "Time from sending a batch to a worker to its answer.", labels,
                                      registry=self.registry, buckets=LATENCY_BUCKETS_S).labels(stage)
        self.batch_size = Histogram(f"{PREFIX}_batch_size_alerts", "Alerts per batch sent to a worker.", labels,
                                    registry=self.registry, buckets=BATCH_BUCKETS).labels(stage)
        self.registry.register(_Collector(self))
        self.port: int | None = None
        self.phase = "starting"  # starting | running | stopping: set by the loop
        # Asks the workers' health services now: (how many serve, why not); set by the loop.
        self.probe_workers: Callable[[], tuple[int, str]] | None = None

    def readiness(self) -> tuple[bool, str]:
        """Whether the stage is ready to work, and why not."""
        snap = self.snapshot
        if self.phase != "running":
            return False, f"the stage is {self.phase}"
        if self.probe_workers is not None:
            serving, problem = self.probe_workers()
            if serving == 0:
                return False, f"no worker is healthy ({problem})"
        elif snap.workers_healthy == 0:
            return False, "no worker is healthy"
        if snap.breaker == "open":
            return False, "the circuit breaker is open: every worker call fails"
        return True, "ready"

    def liveness(self) -> tuple[bool, str]:
        """Whether the loop still turns."""
        if self.phase != "running":
            return True, f"the stage is {self.phase}"
        age = time.monotonic() - self.snapshot.taken_at
        if age > LIVE_WITHIN_S:
            return False, f"the stage's loop has not turned for {age:.0f} s"
        return True, "alive"

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Serve /metrics on ``port`` (0: a free one, whose number is logged)."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path in ("/ready", "/live"):
                    ok, why = metrics.readiness() if path == "/ready" else metrics.liveness()
                    self._answer(200 if ok else 503, "text/plain; charset=utf-8", f"{why}\n".encode())
                elif path in ("/", "/metrics"):
                    self._answer(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
                else:
                    self._answer(404, "text/plain; charset=utf-8", b"not found: /metrics, /ready or /live\n")

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes and probes are not events worth a line
                pass

        try:
            server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port}: cannot listen on it ({exc.strerror or exc}); "
                              "give another port") from None
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        self.port = server.server_address[1]
        log.info("metrics served url=http://%s:%d/metrics", host, self.port)

    def answered(self, sent_at: float, now: float, alerts: int) -> None:
        self.call_latency.observe(max(0.0, now - sent_at))
        self.batch_size.observe(alerts)


class _Collector:
    def __init__(self, metrics: StageMetrics) -> None:
        self._metrics = metrics

    def describe(self):
        return []

    def collect(self):
        metrics = self._metrics
        stage = metrics.stage
        values = metrics.counters.as_dict()
        for key, (name, text) in COUNTER_SERIES.items():
            family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["stage"])
            family.add_metric([stage], values.get(key, 0))
            yield family
        for name, text, value in (
                ("rebalances", "Partitions assigned, revoked or lost.", metrics.rebalances),
                ("fetch_pauses", "Times fetching was paused because too much was held.", metrics.pauses),
                ("circuit_opened", "Times the circuit breaker opened (every call failed).", metrics.circuit_opened),
                ("transactions_committed", "Kafka transactions committed (--exactly-once).",
                 metrics.transactions_committed)):
            family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["stage"])
            family.add_metric([stage], value)
            yield family
        snap = metrics.snapshot
        for name, text, value in (
                ("alerts_in_flight", "Alerts sent to workers and not yet answered.", snap.in_flight),
                ("alerts_held", "Alerts fetched and not yet emitted.", snap.held),
                ("held_bytes", "Bytes of alerts fetched and not yet finished.", snap.held_bytes),
                ("fetch_paused", "1 while fetching is paused by backpressure.", int(snap.paused)),
                ("partitions_assigned", "Input partitions this instance owns.", len(snap.lag)),
                ("workers_healthy", "Workers answering their health check.", snap.workers_healthy),
                ("workers", "Workers this sidecar calls.", snap.workers)):
            family = GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=["stage"])
            family.add_metric([stage], value)
            yield family
        lag = GaugeMetricFamily(f"{PREFIX}_consumer_lag_alerts",
                                "Alerts in an input partition not yet fetched (its end less the position).",
                                labels=["stage", "topic", "partition"])
        for (topic, partition), value in sorted(snap.lag.items()):
            lag.add_metric([stage, topic, str(partition)], value)
        yield lag
        # A state set: one series per state, 1 for the current one.
        breaker = GaugeMetricFamily(f"{PREFIX}_circuit_state", "The circuit breaker's state (1 for the current one).",
                                    labels=["stage", "state"])
        for state in BREAKER_STATES:
            breaker.add_metric([stage, state], int(snap.breaker == state))
        yield breaker
