"""`make demo-stage`: one stage of an alert pipeline on a local Kafka, from start to summary.

1. starts a local Apache Kafka (KRaft) that the project runs itself;
2. writes realistic Rubin alerts (the real schema from lsst-alert-packet,
   Confluent wire format, 30 previous sources and three ~20 KB cutouts each),
   plus a few corrupt ones, into a 4-partition input buffer;
3. runs `alert-sidecar` with the example brightness filter as its worker;
4. waits until every input alert is committed, stops the sidecar with SIGTERM,
   reads the output and dead-letter buffers and checks them against what was
   written: every bright alert in the output and every corrupt one in the
   dead-letter buffer, byte for byte, nothing else in either, and the
   sidecar's own count of filtered alerts (its --stats-file) equal to the
   number of faint alerts written;
5. stops Kafka and ends with the summary line:
   ``alerts in: N, out: M, filtered: F, dead-lettered: D, lost: L``.

N is the alerts written, M and D the distinct alerts found in the output and
dead-letter buffers, F the sidecar's filtered counter. L is the alerts not
where they should be: missing or altered in a buffer, found where they should
not be, or absent from both buffers without the sidecar counting them as
filtered. Any difference is printed, and the demo exits with 1 unless L is 0.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
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


class Fate(enum.Enum):
    """Where an alert written by the demo must end."""

    KEPT = "kept"  # brighter than MAX_MAG: in the output buffer, as it was written
    FILTERED = "filtered"  # fainter, or no positive flux: in neither buffer, and counted filtered
    DEAD_LETTERED = "dead-lettered"  # corrupt: in the dead-letter buffer, as it was written


def digest(value: bytes | None) -> bytes:
    """What an alert's bytes are compared by, so that the demo need not hold 4,000 alerts (250 MB) in memory."""
    return hashlib.blake2b(value or b"", digest_size=16).digest()


def fate_of(record: dict) -> Fate:
    """The brightness filter's rule (examples/python/brightness_filter.py), from the flux the demo wrote."""
    flux = record["diaSource"]["psfFlux"]
    bright = flux is not None and flux > 0 and magnitude(flux) < MAX_MAG
    return Fate.KEPT if bright else Fate.FILTERED


def write_alerts(bootstrap: str, topic: str, count: int,
                 corrupt: int) -> tuple[dict[str, tuple[Fate, bytes]], int]:
    """Write alerts; return {"topic/partition/offset": (fate, digest of the bytes)} and the bytes written."""
    factory = RubinAlertFactory(cutouts=True, prv_sources=30, seed=2026)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    truth: dict[str, tuple[Fate, bytes]] = {}
    written = 0

    def delivered(fate: Fate, value_digest: bytes):
        def record(err, message):
            if err is not None:
                raise RuntimeError(f"demo could not write an alert: {err}")
            truth[f"{message.topic()}/{message.partition()}/{message.offset()}"] = (fate, value_digest)
        return record

    corrupt_at = {count * (k + 1) // (corrupt + 1) for k in range(corrupt)}
    for i in range(count + corrupt):
        if i in corrupt_at:
            # A Confluent header for Rubin's schema with a body cut short: a
            # truncated packet, the kind a broken upstream produces.
            value = factory.encode(factory.make(i))[:40]
            fate = Fate.DEAD_LETTERED
        else:
            record = factory.make(i)
            value = factory.encode(record)
            fate = fate_of(record)
        written += len(value)
        producer.produce(topic, value=value, partition=i % PARTITIONS, on_delivery=delivered(fate, digest(value)))
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("demo could not write every alert within 60 s")
    return truth, written


def sources(bootstrap: str, topic: str, header: str) -> list[tuple[str, bytes]]:
    """(the input alert it came from, read from its lineage header; the digest of its value) of each record."""
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
                found.append((dict(message.headers() or [])[header].decode(), digest(message.value())))
                if message.offset() + 1 >= ends[message.partition()]:
                    done.add(message.partition())
        return found
    finally:
        consumer.close()


def check(truth: dict[str, tuple[Fate, bytes]], out_records: list[tuple[str, bytes]],
          dead_records: list[tuple[str, bytes]], filtered_counter: int) -> tuple[int, list[str]]:
    """How many alerts are not where they should be, and a line on each kind of difference.

    A filtered alert leaves no record: that it was filtered, not lost, is known
    only from the sidecar's counter. So the faint alerts found in neither buffer
    may be no more than the counter (the rest vanished), and the counter no more
    than all the alerts found in neither buffer (else it counts alerts that left
    a record, or twice). A bright or corrupt alert found in neither buffer is
    already counted as missing, whether the sidecar filtered or lost it.
    """
    expected = {fate: {key for key, (f, _) in truth.items() if f is fate} for fate in Fate}
    found: dict[Fate, dict[str, set[bytes]]] = {Fate.KEPT: {}, Fate.DEAD_LETTERED: {}}
    for fate, records in ((Fate.KEPT, out_records), (Fate.DEAD_LETTERED, dead_records)):
        for source, value_digest in records:
            found[fate].setdefault(source, set()).add(value_digest)
    wrong: set[str] = set()
    problems = []
    for fate, where in ((Fate.KEPT, "the output"), (Fate.DEAD_LETTERED, "the dead-letter buffer")):
        missing = sorted(expected[fate] - found[fate].keys())
        altered = sorted(k for k in expected[fate] & found[fate].keys() if found[fate][k] != {truth[k][1]})
        strays = sorted(found[fate].keys() - expected[fate])
        for keys, what in ((missing, f"{fate.value} alerts missing from {where}"),
                           (altered, f"{fate.value} alerts whose bytes differ in {where}"),
                           (strays, f"records in {where} of alerts that should not be there")):
            if keys:
                wrong.update(keys)
                problems.append(f"{len(keys)} {what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}")
    placed = found[Fate.KEPT].keys() | found[Fate.DEAD_LETTERED].keys()
    absent_faint = expected[Fate.FILTERED] - placed
    absent = truth.keys() - placed
    uncounted = max(0, len(absent_faint) - filtered_counter)  # absent, and not filtered by the sidecar's count
    overcounted = max(0, filtered_counter - len(absent))  # counted filtered, yet a record of them exists
    if uncounted or overcounted or filtered_counter != len(expected[Fate.FILTERED]):
        problems.append(f"the sidecar counted {filtered_counter} alerts filtered; the demo wrote "
                        f"{len(expected[Fate.FILTERED])} faint ones, {len(absent_faint)} of them in neither buffer")
    return len(wrong) + uncounted + overcounted, problems


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
        fates = {fate: sum(1 for f, _ in truth.values() if f is fate) for fate in Fate}
        say(f"wrote {len(truth)} alerts, {written / 1e6:.1f} MB, in {time.monotonic() - started:.1f} s: "
            f"{fates[Fate.KEPT]} bright, {fates[Fate.FILTERED]} faint, {fates[Fate.DEAD_LETTERED]} corrupt")

        stats = Path(tempfile.mkdtemp(prefix="alert-sidecar-demo-")) / "stats.json"
        command = [sys.executable, "-m", "alert_sidecar.cli", "--in", f"kafka://{bootstrap}/{source}",
                   "--out", f"kafka://{bootstrap}/{sink}", "--dead-letter", f"kafka://{bootstrap}/{dead}",
                   "--group", group, "--stats-file", str(stats), "--progress-interval", "2",
                   "--worker-processes", "2", "--", sys.executable, str(FILTER), "--max-mag", str(MAX_MAG)]
        say("running: alert-sidecar --in ... --out ... --worker-processes 2 -- python brightness_filter.py")
        started = time.monotonic()
        sidecar = subprocess.Popen(command, start_new_session=True)
        ends = {p: 0 for p in range(PARTITIONS)}
        for key in truth:  # the offset after the last alert written to each partition
            partition, offset = (int(x) for x in key.split("/")[1:])
            ends[partition] = max(ends[partition], offset + 1)
        wait_committed(bootstrap, group, source, ends, sidecar, timeout=600)
        elapsed = time.monotonic() - started
        os.killpg(sidecar.pid, signal.SIGTERM)
        if sidecar.wait(60) != 0:
            raise RuntimeError(f"the sidecar exited with code {sidecar.returncode}")
        counters = json.loads(stats.read_text())

        out_records = sources(bootstrap, sink, "x-alert-source")
        dead_records = sources(bootstrap, dead, "x-dead-letter-source")
        n = len(truth)
        m = len({source for source, _ in out_records})
        d = len({source for source, _ in dead_records})
        filtered = counters["filtered"]
        lost, problems = check(truth, out_records, dead_records, filtered)
        say(f"stage finished in {elapsed:.1f} s including start-up: {n / elapsed:.0f} alerts/s "
            f"({written / elapsed / 1e6:.1f} MB/s); duplicates in output: {len(out_records) - m}")
        say(f"sidecar counters: {json.dumps(counters)}")
        for problem in problems:
            say(f"MISMATCH: {problem}")
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
