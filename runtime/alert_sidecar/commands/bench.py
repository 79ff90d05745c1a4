"""``alert-sidecar bench``: drive any stage with Rubin-like visits and measure it.

The command writes realistic Rubin alerts (``rubin.RubinAlertFactory``) into a
stage's input buffer in visit bursts, reads the stage's output buffer at the
same time, and matches every output to the alert it came from by the lineage
header the sidecar puts on every output, ``x-alert-source: topic/partition/offset``.
An alert the stage drops is simply never seen; the run ends when every alert
has an output or when ``--timeout`` seconds pass with nothing new.

What is measured, and from where to where:

- **sent**: ``time.time_ns()`` just before the alert is handed to the bench's
  producer (also stamped on the record as header ``x-bench-sent-ns``, so a
  worker or another tool can read it). It is taken on this machine's clock, in
  ns, not from the record's CreateTime, which has ms resolution only.
- **out**: the output record's Kafka timestamp (CreateTime, ms), which the
  sidecar's producer sets when it produces the output. It measures the stage
  (plus the bench's own producer batching and the broker's append) and not
  how fast the bench happens to fetch the output. The bench and the stage
  must share a clock: run them on one machine, or on hosts kept in sync by NTP
  (then the figures carry its error, typically under a millisecond).
- **latency** of an alert: out - sent of its first output.
- **throughput**: alerts out / (last output's time - first alert's sent time).

Alerts are made before the clock starts (the time it took is reported as
``generate_s``); beyond ``POOL_LIMIT`` alerts the pool is sent again, so
later alerts repeat earlier ones byte for byte (but each is its own record).
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from alert_sidecar.kafka.buffers import parse_buffer
from alert_sidecar.config import ENV_PREFIX, parse_pairs
from alert_sidecar.exceptions import ConfigError, KafkaUnreachable, SidecarError
from alert_sidecar.stage.verdicts import OUTPUT_SOURCE_HEADER

SENT_HEADER = "x-bench-sent-ns"

# A Rubin peak visit (DMTN-102): about 2.5 GB of LSST-sized alerts in memory,
# made in about 20 s; more distinct alerts buy no realism for a pass-through
# measurement and only cost memory and waiting.
POOL_LIMIT = 40_000

# Seconds to wait for Kafka to answer a metadata or watermark request.
KAFKA_TIMEOUT_S = 10.0

# How often the progress line is printed on stderr.
PROGRESS_INTERVAL_S = 1.0

# The seed of the alerts: the same alerts every run, so runs compare.
SEED = 20_240_901


@dataclass
class Visit:
    """One burst of alerts and what became of them."""

    first: int  # index of its first alert
    count: int
    started_ns: int = 0
    written_ns: int = 0  # when the last alert of the burst was handed to the producer


@dataclass
class Tally:
    """What the output reader has seen; shared between the reader thread and the main thread."""

    outputs: list[tuple[str, int]] = field(default_factory=list)  # (x-alert-source, out time ms)
    last_seen: float = 0.0  # time.monotonic() of the last output
    lock: threading.Lock = field(default_factory=threading.Lock)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank percentile: a value that was measured, never an interpolation."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(latencies_ms: list[float]) -> dict:
    values = sorted(latencies_ms)
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "p50_ms": ms(percentile(values, 50)),
        "p95_ms": ms(percentile(values, 95)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(values[-1] if values else None),
    }


def make_alerts(size: str, count: int) -> list[bytes]:
    from alert_sidecar.simulate.rubin import RubinAlertFactory

    if size == "lsst":
        factory = RubinAlertFactory(cutouts=True, prv_sources=30, seed=SEED)
    else:
        factory = RubinAlertFactory(cutouts=False, seed=SEED)
    return list(factory.alerts(min(count, POOL_LIMIT)))


def _client_config(bootstrap: str, extra: dict) -> dict:
    return {"bootstrap.servers": bootstrap, **extra}


def _input_partitions(bootstrap: str, topic: str, partitions: int, extra: dict) -> int:
    """The input topic's partition count, creating the topic with ``partitions`` if it is missing."""
    admin = AdminClient(_client_config(bootstrap, extra))
    try:
        metadata = admin.list_topics(timeout=KAFKA_TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaUnreachable(f"cannot reach Kafka at {bootstrap}: {exc.args[0].str() if exc.args else exc}; "
                               f"is the broker running?") from None
    found = metadata.topics.get(topic)
    if found is not None and found.error is None:
        return len(found.partitions)
    future = admin.create_topics([NewTopic(topic, partitions)], operation_timeout=KAFKA_TIMEOUT_S)[topic]
    try:
        future.result(timeout=KAFKA_TIMEOUT_S)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise KafkaUnreachable(f"cannot create input topic {topic} on {bootstrap}: {exc}") from None
    deadline = time.monotonic() + KAFKA_TIMEOUT_S
    while time.monotonic() < deadline:
        found = admin.list_topics(topic, timeout=KAFKA_TIMEOUT_S).topics.get(topic)
        if found is not None and found.error is None and all(p.leader >= 0 for p in found.partitions.values()):
            return len(found.partitions)
        time.sleep(0.1)
    raise KafkaUnreachable(f"input topic {topic} on {bootstrap} has no leader for every partition "
                           f"after {KAFKA_TIMEOUT_S:g} s")


class OutputReader(threading.Thread):
    """Reads the output buffer from where it ended before the run, until told to stop.

    If the output topic does not exist yet (a sidecar creates it when it
    starts), it is read from its beginning once it appears.
    """

    def __init__(self, bootstrap: str, topic: str, extra: dict, tally: Tally):
        super().__init__(name="bench-output-reader", daemon=True)
        self.topic = topic
        self.tally = tally
        self.stopping = threading.Event()
        self.consumer = Consumer({
            **_client_config(bootstrap, extra),
            "group.id": f"alert-sidecar-bench-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        })
        self.assignment = self._end_offsets()

    def _end_offsets(self) -> list[TopicPartition] | None:
        metadata = self.consumer.list_topics(self.topic, timeout=KAFKA_TIMEOUT_S).topics.get(self.topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return None
        ends = []
        for partition in sorted(metadata.partitions):
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                             timeout=KAFKA_TIMEOUT_S)
            ends.append(TopicPartition(self.topic, partition, high))
        return ends

    def _from_beginning_once_it_exists(self) -> list[TopicPartition] | None:
        metadata = self.consumer.list_topics(self.topic, timeout=KAFKA_TIMEOUT_S).topics.get(self.topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return None
        return [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(metadata.partitions)]

    def run(self) -> None:
        try:
            while self.assignment is None and not self.stopping.is_set():
                self.assignment = self._from_beginning_once_it_exists()
                if self.assignment is None:
                    self.stopping.wait(0.2)
            if self.assignment is None:
                return
            self.consumer.assign(self.assignment)
            while not self.stopping.is_set():
                batch = self.consumer.consume(1000, timeout=0.1)
                seen = []
                for message in batch:
                    if message.error() is not None:
                        continue
                    source = None
                    for key, value in message.headers() or []:
                        if key == OUTPUT_SOURCE_HEADER:
                            source = value.decode(errors="replace") if value else None
                    if source is not None:
                        seen.append((source, message.timestamp()[1]))
                if seen:
                    with self.tally.lock:
                        self.tally.outputs.extend(seen)
                        self.tally.last_seen = time.monotonic()
        finally:
            self.consumer.close()


def run_bench(input_uri: str, output_uri: str, *, alerts: int | None = None, visits: int | None = None,
              visit_size: int = 10_000, visit_interval: float = 39.0, size: str = "lsst", partitions: int = 4,
              timeout: float = 60.0, kafka_config: dict | None = None, progress=None) -> dict:
    """Run the bench and return its figures (the JSON ``--json`` prints)."""
    extra = dict(kafka_config or {})
    in_buffer = parse_buffer(input_uri, what="--in")
    out_buffer = parse_buffer(output_uri, what="--out")
    total = alerts if alerts is not None else (visits or 1) * visit_size
    plan = [Visit(first, min(visit_size, total - first)) for first in range(0, total, visit_size)]

    started = time.monotonic()
    pool = make_alerts(size, total)
    generate_s = time.monotonic() - started
    alert_bytes = sum(len(a) for a in pool) // len(pool)

    in_partitions = _input_partitions(in_buffer.bootstrap, in_buffer.topic, partitions, extra)
    tally = Tally()
    reader = OutputReader(out_buffer.bootstrap, out_buffer.topic, extra, tally)
    producer = Producer({
        **_client_config(in_buffer.bootstrap, extra),
        # As a telescope's alert producer would: batches of a few ms, acks from every replica.
        "linger.ms": 5,
        "acks": "all",
        # A burst of LSST-sized alerts is hundreds of MB; let librdkafka queue a whole one.
        "queue.buffering.max.kbytes": 2 * 1024 * 1024,
        "queue.buffering.max.messages": 1_000_000,
    })

    # Fetch the input's metadata now, so the first alerts do not wait for it on the clock.
    producer.list_topics(in_buffer.topic, timeout=KAFKA_TIMEOUT_S)
    sent_ns = [0] * total
    source_of: dict[str, int] = {}  # "topic/partition/offset" -> alert index, from delivery reports
    failed: list[str] = []

    def delivered_as(index: int):
        def on_delivery(err, message):
            if err is not None:
                failed.append(str(err))
            else:
                source_of[f"{message.topic()}/{message.partition()}/{message.offset()}"] = index
        return on_delivery

    reader.start()
    last_progress = time.monotonic()

    def report_progress(final: bool = False) -> None:
        nonlocal last_progress
        now = time.monotonic()
        if progress is None or (not final and now - last_progress < PROGRESS_INTERVAL_S):
            return
        last_progress = now
        with tally.lock:
            seen = len(tally.outputs)
        sent = sum(1 for t in sent_ns if t)
        progress(f"bench sent={sent}/{total} out={seen} elapsed={now - started - generate_s:.1f}s")

    try:
        for visit in plan:
            visit.started_ns = time.time_ns()
            for index in range(visit.first, visit.first + visit.count):
                value = pool[index % len(pool)]
                while True:
                    now_ns = time.time_ns()
                    try:
                        producer.produce(in_buffer.topic, value=value, partition=index % in_partitions,
                                         headers=[(SENT_HEADER, str(now_ns).encode())],
                                         on_delivery=delivered_as(index))
                        break
                    except BufferError:
                        producer.poll(0.05)
                sent_ns[index] = now_ns
                if index % 500 == 0:
                    producer.poll(0)
                    report_progress()
            visit.written_ns = time.time_ns()
            if visit is not plan[-1]:
                next_at = visit.started_ns / 1e9 + visit_interval
                while time.time() < next_at:
                    producer.poll(min(0.1, max(0.0, next_at - time.time())))
                    report_progress()
        # Wait while the cluster still acknowledges: a loaded cluster may take long to take a visit,
        # and only one that acknowledges nothing for --timeout (at least 30 s) has failed to.
        remaining = len(producer)
        still_since = time.monotonic()
        while remaining:
            producer.flush(1.0)
            now_remaining = len(producer)
            if now_remaining < remaining:
                still_since = time.monotonic()
            elif time.monotonic() - still_since > max(KAFKA_TIMEOUT_S * 3, timeout):
                break
            remaining = now_remaining
            report_progress()
        if remaining or failed:
            raise KafkaUnreachable(f"{remaining + len(failed)} alerts could not be written to {in_buffer}: "
                                   f"{failed[0] if failed else 'not acknowledged in time'}")

        # Wait for every alert to come out, or for the stage to go quiet.
        produced_done = time.monotonic()
        matched: set[str] = set()
        unmatched: list[str] = []  # outputs read before their alert's delivery report was served
        looked_at = 0
        while True:
            with tally.lock:
                fresh = [source for source, _ in tally.outputs[looked_at:]]
                last_seen = tally.last_seen
            looked_at += len(fresh)
            unmatched += fresh
            matched.update(source for source in unmatched if source in source_of)
            unmatched = [source for source in unmatched if source not in source_of]
            if len(matched) >= total:
                break
            if time.monotonic() - max(last_seen, produced_done) > timeout:
                break
            report_progress()
            time.sleep(0.05)
    finally:
        reader.stopping.set()
        reader.join(KAFKA_TIMEOUT_S)
    report_progress(final=True)

    # Match: the first output of each alert counts; others (several outputs, redeliveries) are extra.
    first_out_ms: dict[int, int] = {}
    extra_outputs = 0
    with tally.lock:
        outputs = list(tally.outputs)
    for source, out_ms in outputs:
        index = source_of.get(source)
        if index is None:
            continue
        if index in first_out_ms:
            extra_outputs += 1
            first_out_ms[index] = min(first_out_ms[index], out_ms)
        else:
            first_out_ms[index] = out_ms

    latencies = {i: (out_ms * 1_000_000 - sent_ns[i]) / 1e6 for i, out_ms in first_out_ms.items()}
    per_visit = []
    for number, visit in enumerate(plan):
        mine = [latencies[i] for i in range(visit.first, visit.first + visit.count) if i in latencies]
        outs = [first_out_ms[i] for i in range(visit.first, visit.first + visit.count) if i in first_out_ms]
        per_visit.append({
            "visit": number,
            "alerts": visit.count,
            "out": len(mine),
            "write_s": round((visit.written_ns - visit.started_ns) / 1e9, 3),
            # From the first alert written to the last output of the visit: how long the stage took to drain it.
            "drain_s": round((max(outs) * 1e6 - visit.started_ns) / 1e9, 3) if outs else None,
            **latency_summary(mine),
        })
    out_count = len(first_out_ms)
    elapsed_s = (max(first_out_ms.values()) * 1e6 - sent_ns[0]) / 1e9 if first_out_ms else None
    return {
        "in": in_buffer.uri,
        "out": out_buffer.uri,
        "size": size,
        "alert_bytes": alert_bytes,
        "alerts": total,
        "out_alerts": out_count,
        "missing": total - out_count,
        "extra_outputs": extra_outputs,
        "visits": len(plan),
        "visit_size": visit_size,
        "visit_interval_s": visit_interval,
        "generate_s": round(generate_s, 3),
        "elapsed_s": round(elapsed_s, 3) if elapsed_s is not None else None,
        "alerts_per_s": round(out_count / elapsed_s, 1) if elapsed_s else 0.0,
        "timed_out": out_count < total,
        **latency_summary(list(latencies.values())),
        "per_visit": per_visit,
    }


def _format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_report(result: dict) -> str:
    lines = [
        f"alerts: {result['alerts']} ({result['size']}, {result['alert_bytes']} bytes each) in {result['visits']} "
        f"visit(s); out: {result['out_alerts']}, missing: {result['missing']}"
        + (f" (stopped after {result['timeout_s']:g} s without progress)" if result["timed_out"] else ""),
        f"throughput: {result['alerts_per_s']} alerts/s over {result['elapsed_s']} s "
        f"(alerts made beforehand in {result['generate_s']} s)",
        f"latency ms: p50 {_format_ms(result['p50_ms'])}  p95 {_format_ms(result['p95_ms'])}  "
        f"p99 {_format_ms(result['p99_ms'])}  max {_format_ms(result['max_ms'])}",
    ]
    if len(result["per_visit"]) > 1:
        lines.append("visit  alerts     out  write_s  drain_s   p50_ms   p99_ms   max_ms")
        for visit in result["per_visit"]:
            lines.append(f"{visit['visit']:>5}  {visit['alerts']:>6}  {visit['out']:>6}  {visit['write_s']:>7}  "
                         f"{visit['drain_s'] if visit['drain_s'] is not None else '-':>7}  "
                         f"{_format_ms(visit['p50_ms']):>7}  {_format_ms(visit['p99_ms']):>7}  "
                         f"{_format_ms(visit['max_ms']):>7}")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog="Exit codes: 0 every alert came out; 1 some did not (a filter that drops alerts ends so "
                      "too); 2 bad option; 3 Kafka unreachable.")
@click.option("--in", "input_", required=True, metavar="BUFFER",
              help="The stage's input buffer, kafka://HOST:PORT/TOPIC (created with --partitions if missing).")
@click.option("--out", "output", required=True, metavar="BUFFER", help="The stage's output buffer.")
@click.option("--alerts", type=click.IntRange(1), default=None, metavar="N",
              help="Alerts to send in all, in visits of --visit-size.")
@click.option("--visits", type=click.IntRange(1), default=None, metavar="V",
              help="Visits to send (V x --visit-size alerts). [default: 1]")
@click.option("--visit-size", type=click.IntRange(1), default=10_000, show_default=True,
              help="Alerts per visit; Rubin's average (DMTN-102), 40000 at peak.")
@click.option("--visit-interval", type=click.FloatRange(0), default=39.0, show_default=True, metavar="S",
              help="Seconds from the start of one visit to the start of the next; Rubin's average.")
@click.option("--size", type=click.Choice(["lsst", "small"]), default="lsst", show_default=True,
              help="lsst: 3 cutouts and 30 previous sources (about 62 KB); small: no cutouts (about 10 KB).")
@click.option("--partitions", type=click.IntRange(1), default=4, show_default=True,
              help="Partitions of the input topic if the bench creates it.")
@click.option("--timeout", type=click.FloatRange(0.1), default=60.0, show_default=True, metavar="S",
              help="Stop when this many seconds pass with no new output; Rubin's whole latency budget.")
@click.option("--kafka-config", "kafka_config", multiple=True, envvar=f"{ENV_PREFIX}_KAFKA_CONFIG",
              metavar="KEY=VALUE", help="librdkafka setting for both clients; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of a report.")
def bench_command(input_, output, alerts, visits, visit_size, visit_interval, size, partitions, timeout,
                  kafka_config, as_json) -> None:
    """Send Rubin-like visits into a stage's input buffer and measure what comes out.

    Start the stage first (any alert-sidecar stage: its outputs carry the
    x-alert-source header the bench matches on), then, for two average visits:

    \b
      alert-sidecar bench --in kafka://localhost:9092/alerts --out kafka://localhost:9092/bright --visits 2

    Latency runs from the moment an alert is handed to the bench's producer to
    the output record's timestamp (set by the sidecar when it produces it).
    """
    if alerts is not None and visits is not None:
        raise click.UsageError("give --alerts or --visits, not both")
    try:
        result = run_bench(
            input_, output, alerts=alerts, visits=visits, visit_size=visit_size, visit_interval=visit_interval,
            size=size, partitions=partitions, timeout=timeout, kafka_config=parse_pairs(kafka_config, "--kafka-config"),
            progress=lambda line: click.echo(line, err=True),
        )
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    except SidecarError as err:
        click.echo(f"alert-sidecar bench: error: {err}", err=True)
        sys.exit(err.exit_code)
    result["timeout_s"] = timeout
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(format_report(result))
    sys.exit(0 if not result["timed_out"] else 1)


if __name__ == "__main__":
    bench_command.main(prog_name="alert-sidecar bench")
