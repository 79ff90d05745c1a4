"""How close the sidecar gets to the limit: a no-op stage three ways, on the same alerts.

    python bench/compare.py --quick     # make bench-quick: 60,000 2 KB, 120,000 small (10 KB) and 8,000
                                        # LSST-sized (62 KB) alerts, a 2,000-alert visit
    python bench/compare.py             # make bench: 100,000 2 KB, 200,000 small, 20,000 LSST-sized,
                                        # a 10,000-alert visit, and the sidecar's peak memory on a
                                        # 40,000-alert burst

On one Kafka (a one-broker local cluster started here in a temp folder, or the
one named by BOOTSTRAP_SERVERS), each scenario writes its alerts once into a
4-partition input topic; then each contender copies the whole topic to its own
output topic, reading from the beginning with its own consumer group:

1. raw: one Python process, a confluent-kafka consume -> produce loop that
   commits every 5 s after flushing its producer (at least once): the limit;
2. quix: the same stage in Quix Streams (``sdf.to_topic(out)``, bytes in and
   out, nothing decoded): what a Python user would pick. It runs in the
   interpreter named by --quix-python (QUIX_PYTHON), because quixstreams 3.x
   pins confluent-kafka < 2.13 and the project needs a newer one; if
   quixstreams cannot be imported there, quix is recorded as missing, with why;
3. sidecar: ``alert-sidecar --in ... --out ... -- python examples/python/passthrough.py``;
4. java, r1, r4: the same sidecar with the Java no-op worker
   (examples/java/passthrough), and with one and four R no-op worker
   processes (examples/r/noop.R, over Connect, sent the JSON form of the
   fields the example filter reads), timed on the first 1,500 alerts of a scenario
   (10,000 in the full suite); --sdks chooses them.

A contender is timed from its process start until its output topic holds as
many records as the input (by watermarks): ``wall_s``. ``steady_s`` leaves
start-up out: from the first output record's timestamp to the last. The
sidecar's visit latency comes from ``alert-sidecar bench`` (see
runtime/alert_sidecar/commands/bench.py for what it measures).

Prints a table, writes bench/results/latest.json, and ends with one JSON line:
the LSST-sized scenario's figures, with the others' under "2kb" and "small".
The 2 KB scenario (5 previous sources, no cutouts) has raw, quix and sidecar
only: it is where the sidecar's CPU per alert is set against the raw loop's.
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
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from alert_sidecar.commands.bench import run_bench
from alert_sidecar.kafka.local import LocalKafka
from alert_sidecar.simulate.rubin import RubinAlertFactory

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.json"
PARTITIONS = 4

# (small alerts, LSST-sized alerts, visit alerts, peak-burst alerts or 0 for none).
# Quick: under 4 minutes on a 2-core machine, long enough for steady rates;
# full: Rubin's average and peak visits (DMTN-102).
QUICK = {"2kb": 60_000, "small": 120_000, "lsst": 8_000, "visit": 2_000, "burst": 0}
FULL = {"2kb": 100_000, "small": 200_000, "lsst": 20_000, "visit": 10_000, "burst": 40_000}
# Previous sources per alert: 30 as Rubin sends, or 5 for the 2 KB alerts the
# CPU-per-alert figures are set for (no cutouts, 2,090 bytes).
PRV_SOURCES = {"2kb": 5, "small": 30, "lsst": 30}
# The scenarios the other SDKs' workers are timed on: the 2 KB one is for the
# sidecar's own cost against its peers.
SDK_SCENARIOS = ("small", "lsst")

# Alerts the R contenders are timed on (the first of the scenario's): R moves a
# few hundred to a thousand a second, so the quick suite stays under 4 minutes
# (2 min 54 s on 2026-12-03) and the full one under 15.
R_ALERTS = {"quick": 3_000, "full": 10_000}

# A contender that has not copied the topic in this long is stuck, not slow:
# the slowest expected rate here is a few hundred alerts/s.
CONTENDER_TIMEOUT_S = 600.0

# How often the output topic's watermarks are read while a contender runs.
POLL_S = 0.1
# The R contenders, timed on the first r_limit alerts; the filters, timed by their commits.
R_CONTENDERS = ("r1", "r4", "rfilter")
FILTERS = ("rfilter",)

RAW_STAGE = """
import sys, time
from confluent_kafka import Consumer, Producer
bootstrap, source, sink, group, partitions = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False})
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "enable.idempotence": True})
consumer.subscribe([source])
last_commit = time.monotonic()
try:
    while True:
        for message in consumer.consume(500, timeout=0.5):
            if message.error() is not None:
                continue
            while True:
                try:
                    # The lineage header every sidecar output carries (alert-sidecar bench matches on it).
                    source = f"{message.topic()}/{message.partition()}/{message.offset()}".encode()
                    producer.produce(sink, value=message.value(), key=message.key(),
                                     headers=(message.headers() or []) + [("x-alert-source", source)],
                                     partition=message.partition() % partitions)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
        if time.monotonic() - last_commit > 5:  # at least once: commit only what the producer has flushed
            producer.flush()
            consumer.commit(asynchronous=True)
            last_commit = time.monotonic()
finally:
    producer.flush(10)
    consumer.close()
"""

QUIX_STAGE = """
import sys
from quixstreams import Application
bootstrap, source, sink, group = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest")
sdf = app.dataframe(app.topic(source, key_deserializer="bytes", value_deserializer="bytes"))
sdf.to_topic(app.topic(sink, key_serializer="bytes", value_serializer="bytes"))
app.run()
"""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Cluster:
    """The Kafka the suite runs on, and what it needs of it."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.watermarks = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-counter-{uuid.uuid4()}"})

    def create(self, topic: str) -> str:
        self.admin.create_topics([NewTopic(topic, PARTITIONS)])[topic].result(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = self.admin.list_topics(topic, timeout=10).topics.get(topic)
            if found and found.error is None and all(p.leader >= 0 for p in found.partitions.values()):
                return topic
            time.sleep(0.1)
        raise RuntimeError(f"topic {topic} has no leaders after 30 s")

    def delete(self, topics: list[str]) -> None:
        for future in self.admin.delete_topics(topics).values():
            try:
                future.result(30)
            except Exception:  # noqa: BLE001 - already gone is fine for a cleanup
                pass

    def count(self, topic: str) -> int:
        """Records in ``topic`` now; 0 while the client's metadata of a new topic is stale."""
        try:
            return sum(high - low for low, high in self._marks(topic))
        except KafkaException as exc:
            if exc.args and exc.args[0].code() in (KafkaError.NOT_LEADER_FOR_PARTITION,
                                                   KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART):
                return 0
            raise

    def _marks(self, topic: str) -> list[tuple[int, int]]:
        return [self.watermarks.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(PARTITIONS)]

    def first_and_last_ms(self, topic: str) -> tuple[int, int]:
        """The earliest and latest record timestamps of a topic (each partition's first and last record)."""
        reader = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"bench-ends-{uuid.uuid4()}"})
        try:
            stamps = []
            for partition, (low, high) in enumerate(self._marks(topic)):
                for offset in {low, high - 1} if high > low else ():
                    reader.assign([TopicPartition(topic, partition, offset)])
                    message = reader.consume(1, timeout=10)
                    if message and message[0].error() is None:
                        stamps.append(message[0].timestamp()[1])
            return min(stamps), max(stamps)
        finally:
            reader.close()

    def committed(self, group: str, topic: str) -> int:
        """Records of ``topic`` that ``group`` has committed (for a stage whose output is not one per input)."""
        offsets = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            found = offsets.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        except KafkaException:
            return 0
        finally:
            offsets.close()
        return sum(max(tp.offset, 0) for tp in found)

    def close(self) -> None:
        self.watermarks.close()


def write_alerts(bootstrap: str, topic: str, size: str, count: int) -> int:
    """Write ``count`` alerts round-robin over the partitions; return their mean size in bytes."""
    factory = RubinAlertFactory(cutouts=size == "lsst", prv_sources=PRV_SOURCES[size], seed=7)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all",
                         "queue.buffering.max.kbytes": 1024 * 1024})
    total = 0
    for i, value in enumerate(factory.alerts(count)):
        total += len(value)
        while True:
            try:
                producer.produce(topic, value=value, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"could not write every alert to {topic}")
    return total // count


def peak_rss_mb(pid: int) -> float | None:
    """The process's resident-memory high-water mark (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system, by the kernel's accounting in /proc) of ``pid`` and of all its descendants.

    Descendants are the workers a sidecar starts; they are found by walking
    /proc's parent links, since they are not reaped (and so not in the
    parent's children's time) while they run.
    """
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        child = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(child)
        times[child] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    below, todo = 0.0, list(children.get(pid, []))
    while todo:
        current = todo.pop()
        below += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return times.get(pid, 0.0), below


def stop(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue


def run_contender(cluster: Cluster, name: str, argv: list[str], source: str, sink: str, expected: int,
                  logs: Path, group: str | None = None) -> dict:
    """Start ``argv``, wait until ``sink`` holds ``expected`` records, stop it; its figures.

    With ``group`` (a filter, whose output holds only what it keeps), until
    ``group`` has committed ``expected`` records of ``source`` instead; its
    steady rate then runs from its first commit to its last.
    """
    log_path = logs / f"{name}-{sink}.log"
    with open(log_path, "wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            done = 0
            at_first = None  # (outputs, CPU of the stage, CPU of its workers) when output first appeared
            first_at = None
            while time.monotonic() - started < CONTENDER_TIMEOUT_S and process.poll() is None:
                done = cluster.committed(group, source) if group else cluster.count(sink)
                if done >= expected:
                    break
                if done and at_first is None:
                    at_first, first_at = (done, *cpu_seconds(process.pid)), time.monotonic()
                time.sleep(POLL_S)
            wall_s = time.monotonic() - started
            progress_s = time.monotonic() - first_at if first_at is not None else None
            rss = peak_rss_mb(process.pid)
            at_end = cpu_seconds(process.pid)
        finally:
            stop(process)
    if done < expected:
        tail = log_path.read_text(errors="replace")[-2000:]
        return {"ok": False, "out": done, "error": f"{done} of {expected} out; log tail:\n{tail}"}
    steady_s: float | None
    if group:
        steady_s = progress_s * expected / (expected - at_first[0]) if progress_s and at_first else None
    else:
        first_ms, last_ms = cluster.first_and_last_ms(sink)
        steady_s = max((last_ms - first_ms) / 1000, 0.001)
    if steady_s is not None and steady_s > wall_s:
        # The output's timestamps are not when it was produced: Quix Streams copies the input record's
        # timestamp to its output, so they span the time the input was written.
        steady_s = None
    # CPU per alert while alerts flowed (start-up left out): the stage's own
    # process, and its workers; a change's effect shows here where two shared
    # cores blur throughput.
    cpu = {}
    if at_first is not None and expected > at_first[0]:
        alerts = expected - at_first[0]
        cpu = {"cpu_us_per_alert": round((at_end[0] - at_first[1]) / alerts * 1e6, 1),
               "worker_cpu_us_per_alert": round((at_end[1] - at_first[2]) / alerts * 1e6, 1)
               if at_end[1] or at_first[2] else None,
               "cpu_alerts": alerts}
    return {"ok": True, "out": done, "wall_s": round(wall_s, 2), "alerts_per_s": round(expected / wall_s, 1),
            "steady_s": round(steady_s, 2) if steady_s else None,
            "steady_alerts_per_s": round(expected / steady_s, 1) if steady_s else None,
            "peak_rss_mb": rss, **cpu}


def quix_available(python: str) -> str | None:
    """None if quixstreams imports in ``python``, else why not."""
    try:
        done = subprocess.run([python, "-c", "import quixstreams"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        return f"cannot run {python}: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return (f"quixstreams does not import in {python} ({last}); quixstreams 3.x pins confluent-kafka < 2.13, "
                f"so give it its own venv and pass --quix-python")
    return None


def sidecar_argv(bootstrap: str, source: str, sink: str, group: str, log_level: str = "warning",
                 worker: list[str] | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    # Warnings only while timed: a progress line costs little, but the others contenders print nothing.
    worker = worker or [sys.executable, str(ROOT / "examples" / "python" / "passthrough.py")]
    return [sys.executable, "-m", "alert_sidecar.cli", "--in", f"kafka://{bootstrap}/{source}",
            "--out", f"kafka://{bootstrap}/{sink}", "--group", group, "--log-level", log_level, *extra,
            "--", *worker]


def sdk_workers(wanted: list[str]) -> dict[str, tuple[list[str], tuple[str, ...]] | str]:
    """The no-op worker of each SDK asked for: contender name -> (worker command, sidecar options), or why missing.

    Java and R are built by their make targets (``make java``, ``make r-install``)
    through the same helpers the tests use; a toolchain that is missing is
    reported, not fatal, so the Python figures still come out.
    """
    sys.path.insert(0, str(ROOT))
    workers: dict[str, tuple[list[str], tuple[str, ...]] | str] = {}
    if "java" in wanted:
        try:
            from tests.java_support import PASSTHROUGH_WORKER, java_worker_command

            workers["java"] = (java_worker_command(PASSTHROUGH_WORKER), ())
        except Exception as exc:  # noqa: BLE001 - reported as the contender's result
            workers["java"] = f"the Java no-op worker cannot be built: {exc}"
    if "r" in wanted:
        try:
            from tests.r_support import r_worker_command

            noop = r_worker_command(str(ROOT / "examples" / "r" / "noop.R"))
            # R is single-threaded: one process, then four behind the same sidecar.
            workers["r1"] = (noop, ("--worker-protocol", "connect"))
            workers["r4"] = (noop, ("--worker-protocol", "connect", "--worker-processes", "4"))
            # The README's filter, four processes: a real R stage, sent the fields it declares.
            brightening = r_worker_command(str(ROOT / "examples" / "r" / "brightening.R"))
            workers["rfilter"] = (brightening, ("--worker-protocol", "connect", "--worker-processes", "4"))
        except Exception as exc:  # noqa: BLE001
            workers["r1"] = workers["r4"] = workers["rfilter"] = f"the R workers cannot be installed: {exc}"
    return workers


def scenario(cluster: Cluster, size: str, count: int, quix_python: str, quix_missing: str | None,
             logs: Path, sdks: dict, r_limit: int = 0) -> dict:
    run_id = uuid.uuid4().hex[:6]
    source = cluster.create(f"bench-{size}-{run_id}")
    say(f"[{size}] writing {count} alerts to {source}")
    alert_bytes = write_alerts(cluster.bootstrap, source, size, count)
    bootstrap = cluster.bootstrap
    contenders = {
        "raw": lambda sink, group: [sys.executable, "-c", RAW_STAGE, bootstrap, source, sink, group, str(PARTITIONS)],
        "quix": lambda sink, group: [quix_python, "-c", QUIX_STAGE, bootstrap, source, sink, group],
        "sidecar": lambda sink, group: sidecar_argv(bootstrap, source, sink, group),
    }
    missing = {"quix": quix_missing} if quix_missing else {}
    for name, worker in sdks.items():
        if isinstance(worker, str):
            missing[name] = worker
        else:
            contenders[name] = lambda sink, group, w=worker: sidecar_argv(bootstrap, source, sink, group,
                                                                         worker=w[0], extra=w[1])
    results, topics = {}, [source]
    for name in [*contenders, *(m for m in missing if m not in contenders)]:
        if name in missing:
            results[name] = {"ok": False, "missing": missing[name]}
            say(f"[{size}] {name}: missing: {missing[name]}")
            continue
        argv = contenders[name]
        sink = cluster.create(f"{source}-{name}")
        topics.append(sink)
        say(f"[{size}] {name}: copying {count} alerts")
        # R moves a few hundred alerts a second (the sidecar decodes each to JSON for it).
        expected = min(count, r_limit) if name in R_CONTENDERS and r_limit else count
        group = f"bench-{name}-{run_id}"
        results[name] = run_contender(cluster, name, argv(sink, group), source, sink, expected, logs,
                                      group=group if name in FILTERS else None)
        say(f"[{size}] {name}: {results[name]}")
    cluster.delete(topics)
    rate = {name: r.get("alerts_per_s") if r.get("ok") else None for name, r in results.items()}

    def ratio(a: str, b: str) -> float | None:
        return round(rate[a] / rate[b], 3) if rate.get(a) and rate.get(b) else None

    return {
        "scenario": size,
        "alerts": count,
        "alert_bytes": alert_bytes,
        "sidecar_alerts_per_s": rate["sidecar"],
        "raw_alerts_per_s": rate["raw"],
        "quix_alerts_per_s": rate["quix"],
        # The sidecar's rate as a share of each peer's: 1.0 is as fast, above 1 faster.
        "ratio_raw": round(rate["sidecar"] / rate["raw"], 3) if rate["sidecar"] and rate["raw"] else None,
        "ratio_quix": round(rate["sidecar"] / rate["quix"], 3) if rate["sidecar"] and rate["quix"] else None,
        # The other SDKs' no-op workers behind the same sidecar (R's are sent the
        # JSON form, decoded by the sidecar, which the others are not).
        "java_alerts_per_s": rate.get("java"),
        "r1_alerts_per_s": rate.get("r1"),
        "r4_alerts_per_s": rate.get("r4"),
        "ratio_java_python": ratio("java", "sidecar"),
        "ratio_r4_r1": ratio("r4", "r1"),
        "ratio_r4_python": ratio("r4", "sidecar"),
        "rfilter_alerts_per_s": rate.get("rfilter"),
        "rfilter_steady_alerts_per_s": (results.get("rfilter") or {}).get("steady_alerts_per_s"),
        # CPU per alert while alerts flowed (kernel accounting, /proc): each contender's
        # own process, and the workers behind the sidecars.
        "cpu_us_per_alert": {name: r.get("cpu_us_per_alert") for name, r in results.items() if r.get("ok")},
        "worker_cpu_us_per_alert": {name: r.get("worker_cpu_us_per_alert") for name, r in results.items()
                                    if r.get("ok") and r.get("worker_cpu_us_per_alert") is not None},
        "contenders": results,
    }


def visit_latency(cluster: Cluster, size: str, count: int, logs: Path) -> dict:
    """One visit of ``count`` alerts through a passthrough sidecar, measured by ``alert-sidecar bench``."""
    run_id = uuid.uuid4().hex[:6]
    source, sink = cluster.create(f"bench-visit-{run_id}"), cluster.create(f"bench-visit-{run_id}-out")
    log_path = logs / f"visit-sidecar-{run_id}.log"
    say(f"[visit] {count} {size} alerts through the sidecar")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(sidecar_argv(cluster.bootstrap, source, sink, f"bench-visit-{run_id}", "info"),
                                   stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            # The stage is ready when it has joined its group; its first committed offset is not needed.
            deadline = time.monotonic() + 60
            while "partitions assigned" not in log_path.read_text(errors="replace"):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the sidecar did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
            result = run_bench(f"kafka://{cluster.bootstrap}/{source}", f"kafka://{cluster.bootstrap}/{sink}",
                               alerts=count, visit_size=count, size=size, timeout=60)
        finally:
            stop(process)
    cluster.delete([source, sink])
    result.pop("per_visit", None)
    say(f"[visit] {result}")
    return result


def burst_memory(cluster: Cluster, count: int, logs: Path) -> dict:
    """The sidecar's peak RSS while it copies a peak visit of LSST-sized alerts."""
    run_id = uuid.uuid4().hex[:6]
    source = cluster.create(f"bench-burst-{run_id}")
    say(f"[burst] writing {count} lsst alerts")
    write_alerts(cluster.bootstrap, source, "lsst", count)
    sink = cluster.create(f"{source}-out")
    result = run_contender(cluster, "sidecar", sidecar_argv(cluster.bootstrap, source, sink, f"bench-burst-{run_id}"),
                           source, sink, count, logs)
    cluster.delete([source, sink])
    say(f"[burst] {result}")
    return result


def table(summaries: list[dict]) -> str:
    lines = [f"{'scenario':<8} {'alerts':>7} {'bytes':>6}  {'contender':<8} {'wall_s':>7} {'alerts/s':>9} "
             f"{'steady_s':>8} {'steady/s':>9} {'rss_mb':>7} {'cpu_us':>7} {'worker_us':>9}"]
    for summary in summaries:
        for name, r in summary["contenders"].items():
            head = f"{summary['scenario']:<8} {summary['alerts']:>7} {summary['alert_bytes']:>6}  {name:<8}"
            if not r.get("ok"):
                lines.append(f"{head} {'missing' if 'missing' in r else 'FAILED'}: "
                             f"{r.get('missing') or r.get('error', '').splitlines()[0]}")
            else:
                lines.append(f"{head} {r['wall_s']:>7} {r['alerts_per_s']:>9} {r['steady_s'] or '-':>8} "
                             f"{r['steady_alerts_per_s'] or '-':>9} {r['peak_rss_mb'] or '-':>7} "
                             f"{r.get('cpu_us_per_alert') or '-':>7} {r.get('worker_cpu_us_per_alert') or '-':>9}")
        lines.append(f"{'':<8} sidecar/raw {summary['ratio_raw']}, sidecar/quix {summary['ratio_quix']}, "
                     f"java/python {summary['ratio_java_python']}, r4/r1 {summary['ratio_r4_r1']}, "
                     f"r4/python {summary['ratio_r4_python']}, R filter {summary.get('rfilter_alerts_per_s')} "
                     f"alerts/s ({summary.get('rfilter_steady_alerts_per_s')} steady)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small suite (make bench-quick)")
    parser.add_argument("--2kb", dest="2kb", type=int, help="2 KB alerts per contender (overrides the suite's)")
    parser.add_argument("--small", type=int, help="small alerts per contender (overrides the suite's)")
    parser.add_argument("--lsst", type=int, help="LSST-sized alerts per contender (overrides the suite's)")
    parser.add_argument("--visit", type=int, help="alerts in the latency visit; 0 to skip")
    parser.add_argument("--burst", type=int, help="alerts in the peak-memory burst; 0 to skip")
    parser.add_argument("--quix-python", default=os.environ.get("QUIX_PYTHON", sys.executable),
                        help="interpreter with quixstreams installed [default: $QUIX_PYTHON, else this one]")
    parser.add_argument("--sdks", default="java,r",
                        help="other SDKs whose no-op worker runs behind the sidecar too, comma-separated "
                             "(java, r; empty for none) [default: java,r]")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON figures")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)

    quix_missing = quix_available(args.quix_python)
    sdks = sdk_workers([name for name in args.sdks.split(",") if name])
    with tempfile.TemporaryDirectory(prefix="alert-sidecar-bench-") as tmp:
        logs = Path(tmp)
        local = None
        bootstrap = os.environ.get("BOOTSTRAP_SERVERS")
        if not bootstrap:
            say("starting a local Kafka (1 broker)")
            local = LocalKafka(Path(tmp) / "kafka", brokers=1)
            bootstrap = local.up()
        cluster = Cluster(bootstrap)
        try:
            summaries = [scenario(cluster, size, sizes[size], args.quix_python, quix_missing, logs,
                                  sdks if size in SDK_SCENARIOS else {},
                                  r_limit=R_ALERTS["quick" if args.quick else "full"])
                         for size in ("2kb", "small", "lsst") if sizes[size]]
            visit = visit_latency(cluster, "lsst", sizes["visit"], logs) if sizes["visit"] else None
            burst = burst_memory(cluster, sizes["burst"], logs) if sizes["burst"] else None
        finally:
            cluster.close()
            if local is not None:
                local.down()

    # The stage's decoding for workers that ask for JSON, on the same machine with Kafka stopped.
    sys.path.insert(0, str(ROOT / "bench"))
    from decoding import stage_rates

    decoding = stage_rates(500 if args.quick else 2000)
    if summaries:
        print(table(summaries))
    print(f"decoding: LSST-sized alerts for JSON workers, {decoding['fields']} fields "
          f"{decoding['fields_compiled_per_s']} alerts/s (fastavro {decoding['fields_fastavro_per_s']}), "
          f"all fields {decoding['all_compiled_per_s']} alerts/s (fastavro {decoding['all_fastavro_per_s']})")
    if visit:
        print(f"visit: {visit['alerts']} lsst alerts through the sidecar, {visit['out_alerts']} out, "
              f"p50 {visit['p50_ms']} ms, p99 {visit['p99_ms']} ms, max {visit['max_ms']} ms, "
              f"{visit['alerts_per_s']} alerts/s")
    if burst:
        print(f"burst: {sizes['burst']} lsst alerts through the sidecar in {burst.get('wall_s')} s, "
              f"peak RSS {burst.get('peak_rss_mb')} MB")
    summary = dict(summaries[-1]) if summaries else {"scenario": None}
    for nested in summaries[:-1]:
        summary[nested["scenario"]] = nested
    summary["suite"] = "quick" if args.quick else "full"
    summary["visit_alerts"] = visit["alerts"] if visit else None
    summary["visit_p99_ms"] = visit["p99_ms"] if visit else None
    summary["visit"] = visit
    summary["burst_alerts"] = sizes["burst"] or None
    summary["burst_peak_rss_mb"] = burst.get("peak_rss_mb") if burst else None
    summary["decoding"] = decoding
    summary["quix_python"] = args.quix_python
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
