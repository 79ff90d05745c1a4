"""`make demo`: one stage of an alert pipeline on a local Kafka, from start to summary.

1. starts a local Apache Kafka (KRaft) that the project runs itself;
2. writes realistic Rubin alerts (the real schema from lsst-alert-packet,
   Confluent wire format, 30 previous sources and three ~20 KB cutouts each),
   plus a few corrupt ones, into a 4-partition input buffer;
3. runs `alert-sidecar` with the example brightness filter as its worker;
4. waits until every input alert is committed, stops the sidecar with SIGTERM,
   reads the output and dead-letter buffers and checks them against what was
   written;
5. stops Kafka and ends with the summary line:
   ``alerts in: N, out: M, filtered: F, dead-lettered: D, lost: L``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from alert_sidecar.kafka.local import LocalKafka, default_cache_dir
from alert_sidecar.simulate.rubin import RubinAlertFactory, magnitude

ROOT = Path(__file__).resolve().parents[1]
FILTER = ROOT / "examples" / "python" / "brightness_filter.py"
PARTITIONS = 4
MAX_MAG = 20.0


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def write_alerts(bootstrap: str, topic: str, count: int, corrupt: int) -> tuple[dict[str, bool | None], int]:
    """Write alerts; return {"topic/partition/offset": is_bright (None for corrupt)} and the bytes written."""
    factory = RubinAlertFactory(cutouts=True, prv_sources=30, seed=2026)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    truth: dict[str, bool | None] = {}
    written = 0

    def delivered(bright):
        def record(err, message):
            if err is not None:
                raise RuntimeError(f"demo could not write an alert: {err}")
            truth[f"{message.topic()}/{message.partition()}/{message.offset()}"] = bright
        return record

    corrupt_at = {count * (k + 1) // (corrupt + 1) for k in range(corrupt)}
    for i in range(count + corrupt):
        if i in corrupt_at:
            # A Confluent header for Rubin's schema with a body cut short: a
            # truncated packet, the kind a broken upstream produces.
            value = factory.encode(factory.make(i))[:40]
            bright = None
        else:
            record = factory.make(i)
            value = factory.encode(record)
            flux = record["diaSource"]["psfFlux"]
            bright = flux is not None and flux > 0 and magnitude(flux) < MAX_MAG
        written += len(value)
        producer.produce(topic, value=value, partition=i % PARTITIONS, on_delivery=delivered(bright))
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("demo could not write every alert within 60 s")
    return truth, written


def sources(bootstrap: str, topic: str, header: str) -> list[str]:
    """The input alert each record of ``topic`` came from, read from its lineage header."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "demo-reader", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or not metadata.partitions:
            return []
        parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in metadata.partitions}
        consumer.assign(parts)
        found, done = [], {p for p, end in ends.items() if end == 0}
        while len(done) < len(ends):
            for message in consumer.consume(1000, timeout=1):
                if message.error():
                    continue
                found.append(dict(message.headers() or [])[header].decode())
                if message.offset() + 1 >= ends[message.partition()]:
                    done.add(message.partition())
        return found
    finally:
        consumer.close()


def wait_committed(bootstrap: str, group: str, topic: str, ends: dict[int, int], sidecar, timeout: float) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sidecar.poll() is not None:
                raise RuntimeError(f"the sidecar exited early with code {sidecar.returncode}")
            committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
            if all(tp.offset >= ends[tp.partition] for tp in committed):
                return
            time.sleep(0.2)
        raise RuntimeError(f"not every alert was committed within {timeout} s")
    finally:
        consumer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=4000, help="alerts to write (default 4000)")
    parser.add_argument("--corrupt", type=int, default=5, help="corrupt alerts mixed in (default 5)")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting a local one")
    args = parser.parse_args()

    kafka = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        say("starting a local Kafka (the first run fetches Apache Kafka from Maven Central, once)")
        kafka = LocalKafka(state_dir=default_cache_dir() / "demo-cluster", brokers=1)
        bootstrap = kafka.up()
        say(f"Kafka ready at {bootstrap}")
    sidecar = None
    try:
        run_id = int(time.time())
        source, sink, dead = f"rubin-alerts-{run_id}", f"rubin-bright-{run_id}", f"rubin-dead-letter-{run_id}"
        group = f"demo-brightness-{run_id}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(source, PARTITIONS, 1)]).values():
            future.result(30)
        del admin  # its connections would outlive the local Kafka and complain
        say(f"writing {args.alerts} Rubin alerts (+{args.corrupt} corrupt) into {source} ({PARTITIONS} partitions)")
        started = time.monotonic()
        truth, written = write_alerts(bootstrap, source, args.alerts, args.corrupt)
        say(f"wrote {len(truth)} alerts, {written / 1e6:.1f} MB, in {time.monotonic() - started:.1f} s")

        stats = Path(tempfile.mkdtemp(prefix="alert-sidecar-demo-")) / "stats.json"
        command = [sys.executable, "-m", "alert_sidecar.cli", "--in", f"kafka://{bootstrap}/{source}",
                   "--out", f"kafka://{bootstrap}/{sink}", "--dead-letter", f"kafka://{bootstrap}/{dead}",
                   "--group", group, "--stats-file", str(stats), "--progress-interval", "2",
                   "--worker-processes", "2", "--", sys.executable, str(FILTER), "--max-mag", str(MAX_MAG)]
        say("running: alert-sidecar --in ... --out ... --worker-processes 2 -- python brightness_filter.py")
        started = time.monotonic()
        sidecar = subprocess.Popen(command, start_new_session=True)
        ends = {p: 0 for p in range(PARTITIONS)}
        for key in truth:
            partition, offset = (int(x) for x in key.split("/")[1:])
            ends[partition] = max(ends[partition], offset + 1)
        wait_committed(bootstrap, group, source, ends, sidecar, timeout=600)
        elapsed = time.monotonic() - started
        os.killpg(sidecar.pid, signal.SIGTERM)
        if sidecar.wait(60) != 0:
            raise RuntimeError(f"the sidecar exited with code {sidecar.returncode}")
        counters = json.loads(stats.read_text())

        out_sources = sources(bootstrap, sink, "x-alert-source")
        dead_sources = sources(bootstrap, dead, "x-dead-letter-source")
        out, dead_lettered = set(out_sources), set(dead_sources)
        bright = {k for k, v in truth.items() if v}
        n = len(truth)
        m, d = len(out), len(dead_lettered)
        filtered = n - len(out | dead_lettered)
        lost = len(bright - out - dead_lettered) + len(
            {k for k, v in truth.items() if v is None} - dead_lettered)
        wrong = len(out - bright)
        say(f"stage finished in {elapsed:.1f} s including start-up: {n / elapsed:.0f} alerts/s "
            f"({written / elapsed / 1e6:.1f} MB/s); duplicates in output: {len(out_sources) - m}")
        say(f"sidecar counters: {json.dumps(counters)}")
        if counters["filtered"] != filtered or wrong:
            say(f"MISMATCH: sidecar filtered {counters['filtered']}, expected {filtered}; {wrong} kept wrongly")
            lost += wrong
        print(f"alerts in: {n}, out: {m}, filtered: {filtered}, dead-lettered: {d}, lost: {lost}", flush=True)
        return 0 if lost == 0 else 1
    finally:
        if sidecar is not None and sidecar.poll() is None:
            os.killpg(sidecar.pid, signal.SIGKILL)
        if kafka is not None:
            kafka.down()
            say("local Kafka stopped")


if __name__ == "__main__":
    sys.exit(main())
