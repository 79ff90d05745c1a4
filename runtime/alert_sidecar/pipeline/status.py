"""What a pipeline is doing now: ``alert-pipeline status`` and the dashboard read it from here.

Two sources, each for what it knows best:

- Kafka itself, for what holds whoever runs the stages: each buffer's records
  (its partitions' ends less their starts), its retention, and each stage's
  consumer-group lag (the ends less the group's committed offsets);
- each running instance's metrics port (``alert-pipeline up`` records them),
  for rates, dead letters, retries, worker latency and readiness.

``snapshot`` returns plain data (the dashboard serves it as JSON as it is).
Rates and latencies need two readings: give the previous snapshot, and they
are over the time between the two. The rate-limiting stage is the one
furthest behind: the most seconds of its input waiting at its current rate.
"""

from __future__ import annotations

import glob
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec
from prometheus_client.parser import text_string_to_metric_families

from alert_sidecar.exceptions import ConfigError
from alert_sidecar.pipeline.model import Pipeline
from alert_sidecar.pipeline.topics import client_settings

TIMEOUT_S = 5.0
SCRAPE_TIMEOUT_S = 3.0
PREFIX = "alert_sidecar_"
COUNTERS = {"consumed": "alerts_consumed_total", "out": "alerts_out_total", "filtered": "alerts_filtered_total",
            "dead_lettered": "alerts_dead_lettered_total", "retried": "alerts_retried_total",
            "produced": "records_produced_total", "batches": "worker_batches_total"}
LATENCY = "worker_call_duration_seconds"


def snapshot(pipeline: Pipeline, bootstraps: Mapping[str, str], instances: Mapping[str, list[dict]] | None = None,
             wanted: Mapping[str, int] | None = None, previous: dict | None = None,
             admins: dict[str, AdminClient] | None = None,
             local_data: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """The pipeline now.

    ``bootstraps``: each cluster's servers (a local cluster's as ``up``
    started it; a cluster missing here is reported unreachable).
    ``instances``: stage -> the running instances as ``up`` records them
    (``index``, ``pid``, ``metrics_port``, ``restarts``), None when nothing
    runs the stages here. ``wanted``: stage -> instances asked for.
    ``admins``: admin clients to reuse between snapshots (filled in).
    ``local_data``: cluster -> the folder of a local cluster's brokers, whose
    files give each buffer's bytes on disk (Kafka's admin API does not say).
    """
    now = time.time()
    admins = {} if admins is None else admins
    errors: list[str] = []
    clusters: dict[str, dict] = {}
    for name, spec in pipeline.clusters.items():
        bootstrap = bootstraps.get(name)
        clusters[name] = {"bootstrap": bootstrap, "local": spec.is_local, "reachable": False, "error": None}
        if bootstrap is None:
            clusters[name]["error"] = "not running (a local cluster: `alert-pipeline up` starts it)"
            continue
        if name not in admins:
            try:
                admins[name] = AdminClient({**client_settings(spec, bootstrap),
                                            "socket.connection.setup.timeout.ms": 5000})
            except (ConfigError, KafkaException) as exc:
                clusters[name]["error"] = str(exc)
                continue
    offsets, groups = _read_kafka(pipeline, clusters, admins)
    for name, cluster in clusters.items():
        if cluster["error"]:
            errors.append(f"cluster '{name}': {cluster['error']}")
    scraped = _scrape_all(instances or {})

    buffers = {}
    for name, spec in pipeline.buffers.items():
        found = offsets.get((spec.cluster, spec.topic))
        buffers[name] = {
            "cluster": spec.cluster, "topic": spec.topic, "partitions": found["partitions"] if found else None,
            "exists": found is not None if clusters[spec.cluster]["reachable"] else None,
            "alerts": found["size"] if found else None,
            "retention_ms": found["retention_ms"] if found else None,
            "retention_bytes": found["retention_bytes"] if found else None,
            "bytes_on_disk": (disk_bytes(local_data[spec.cluster], spec.topic)
                              if found and local_data and spec.cluster in local_data else None),
            "readers": [s.name for s in pipeline.readers(name)], "writers": [s.name for s in pipeline.writers(name)]}

    stages = {}
    before = (previous or {}).get("stages", {})
    elapsed = now - previous["time"] if previous else None
    for name, spec in pipeline.stages.items():
        source = pipeline.buffers[spec.input]
        found = offsets.get((source.cluster, source.topic))
        committed = groups.get((source.cluster, spec.group))
        lag_by_partition = None
        if found is not None and committed is not None:
            lag_by_partition = {}
            for partition, (low, high) in found["ends"].items():
                done = committed.get(partition)
                lag_by_partition[str(partition)] = high - (done if done is not None and done >= low else low)
        running = (instances or {}).get(name, [])
        readings = [scraped.get((name, item["index"])) for item in running]
        live = [r for r in readings if r is not None]
        stage: dict[str, Any] = {
            "input": spec.input, "outputs": spec.writes(), "group": spec.group, "cluster": source.cluster,
            "worker": _worker_kind(spec), "ordering": spec.ordering,
            "instances": {"wanted": (wanted or {}).get(name, spec.instances) if instances is not None else None,
                          "running": len(running) if instances is not None else None,
                          "ready": sum(1 for r in live if r["ready"]) if instances is not None else None,
                          "restarts": sum(item.get("restarts", 0) for item in running),
                          "not_ready": [r["why"] for r in live if not r["ready"]]},
            "lag": sum(lag_by_partition.values()) if lag_by_partition is not None else None,
            "lag_by_partition": lag_by_partition,
            **{key: sum(r["counters"].get(key, 0) for r in live) if live else None for key in COUNTERS},
            "latency_buckets": _sum_buckets([r["latency"] for r in live]),
        }
        earlier = before.get(name)
        stage.update(_rates(stage, earlier, elapsed))
        lag = stage["lag"]
        # Seconds of input waiting at the rate alerts are finished: 0 with no lag; None when unknown or stalled.
        stage["lag_s"] = (None if lag is None else 0.0 if lag == 0
                          else round(lag / stage["rate_done"], 1) if stage["rate_done"] else None)
        stages[name] = stage
        if instances is not None and stage["instances"]["running"] < stage["instances"]["wanted"]:
            errors.append(f"stage '{name}': {stage['instances']['running']} of {stage['instances']['wanted']} "
                          "instances running")
    return {"pipeline": pipeline.name, "file": pipeline.path, "time": now, "interval_s": elapsed,
            "up": instances is not None, "clusters": clusters, "buffers": buffers, "stages": stages,
            "rate_limiting": rate_limiting(stages), "errors": errors}


# A stage whose input waits less than this at its rate keeps up: alerts pass
# through it in batches, and a second or two behind is its normal pipelining.
KEEPING_UP_S = 2.0


def rate_limiting(stages: Mapping[str, dict]) -> str | None:
    """The stage furthest behind: most seconds of lag at its rate, a stalled one (lag, no rate) first.

    None when every stage keeps up (less than ``KEEPING_UP_S`` behind).
    """
    def how_far(item) -> tuple[float, int]:
        _name, s = item
        if s.get("lag_s") is not None:
            return (s["lag_s"], s["lag"])
        return (float("inf"), s["lag"])  # lag and no rate: stalled, or a first reading

    behind = [(name, s) for name, s in stages.items() if s.get("lag") and how_far((name, s))[0] >= KEEPING_UP_S]
    if not behind:
        return None
    return max(behind, key=how_far)[0]


def _worker_kind(spec) -> str:
    if spec.worker is None:
        return "mirror"
    return spec.worker.language or ("address" if spec.worker.address else "command")


def _rates(stage: dict, earlier: dict | None, elapsed: float | None) -> dict:
    """Alerts/s in and out, and worker-call latency quantiles, between two snapshots."""
    rates: dict[str, Any] = {"rate_in": None, "rate_out": None, "rate_done": None, "latency_p50_s": None,
                             "latency_p99_s": None}
    if earlier is None or not elapsed or elapsed <= 0 or stage["consumed"] is None or earlier.get("consumed") is None:
        return rates
    for key, counter in (("rate_in", "consumed"), ("rate_out", "out")):
        # A restarted instance starts its counters at 0: a negative difference is no rate.
        rates[key] = round(max(0, stage[counter] - earlier[counter]) / elapsed, 1)
    # Finished alerts (kept, filtered or dead-lettered): what works the lag off. Alerts
    # fetched (rate_in) run ahead of them by what the sidecar holds, and stop while it is full.
    done = [sum(s.get(k) or 0 for k in ("out", "filtered", "dead_lettered")) for s in (stage, earlier)]
    rates["rate_done"] = round(max(0, done[0] - done[1]) / elapsed, 1)
    now_buckets, then_buckets = stage["latency_buckets"], earlier.get("latency_buckets") or {}
    window = {bound: count - then_buckets.get(bound, 0) for bound, count in now_buckets.items()}
    if window and min(window.values()) >= 0:
        rates["latency_p50_s"] = quantile(window, 0.5)
        rates["latency_p99_s"] = quantile(window, 0.99)
    return rates


def quantile(buckets: Mapping[str, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram {upper bound: count}, interpolated in its bucket as Prometheus does."""
    bounds = sorted(((float(b), c) for b, c in buckets.items()), key=lambda item: item[0])
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bucket: its bound is what is known
            inside = count - below
            return round(lower + (bound - lower) * ((rank - below) / inside if inside else 1.0), 6)
        lower, below = bound, count
    return lower


def _sum_buckets(histograms: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for histogram in histograms:
        for bound, count in histogram.items():
            total[bound] = total.get(bound, 0) + count
    return total


def _scrape_all(instances: Mapping[str, list[dict]]) -> dict[tuple[str, int], dict]:
    jobs = [(stage, item) for stage, items in instances.items() for item in items if item.get("metrics_port")]
    if not jobs:
        return {}
    with ThreadPoolExecutor(min(16, len(jobs))) as pool:
        found = pool.map(lambda job: ((job[0], job[1]["index"]), scrape(job[1]["metrics_port"])), jobs)
        return {key: value for key, value in found if value is not None}


def scrape(port: int, host: str = "127.0.0.1") -> dict | None:
    """One instance's counters, latency histogram and readiness; None if its port does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=SCRAPE_TIMEOUT_S) as answer:
            text = answer.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    counters: dict[str, float] = {}
    latency: dict[str, float] = {}
    names = {f"{PREFIX}{series}": key for key, series in COUNTERS.items()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                counters[names[sample.name]] = counters.get(names[sample.name], 0) + int(sample.value)
            elif sample.name == f"{PREFIX}{LATENCY}_bucket":
                latency[sample.labels["le"]] = latency.get(sample.labels["le"], 0) + int(sample.value)
    ready, why = readiness(port, host)
    return {"counters": counters, "latency": latency, "ready": ready, "why": why}


def readiness(port: int, host: str = "127.0.0.1") -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ready", timeout=SCRAPE_TIMEOUT_S) as answer:
            return answer.status == 200, answer.read().decode().strip()
    except urllib.error.HTTPError as err:
        return False, err.read().decode(errors="replace").strip()
    except (OSError, urllib.error.URLError) as exc:
        return False, f"its metrics port does not answer ({exc})"


def _read_kafka(pipeline: Pipeline, clusters: dict[str, dict], admins: dict[str, AdminClient]):
    """(cluster, topic) -> partitions, ends, size, retention; (cluster, group) -> committed offsets by partition."""
    offsets: dict[tuple[str, str], dict] = {}
    groups: dict[tuple[str, str], dict[int, int]] = {}
    for name, admin in admins.items():
        if clusters[name]["error"]:
            continue
        topics = sorted({b.topic for b in pipeline.buffers.values() if b.cluster == name})
        try:
            metadata = admin.list_topics(timeout=TIMEOUT_S)
            present = [t for t in topics if t in metadata.topics and not metadata.topics[t].error]
            partitions = [TopicPartition(t, p) for t in present for p in metadata.topics[t].partitions]
            ends: dict[tuple[str, int], list[int]] = {}
            for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
                if not partitions:
                    break
                answers = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=TIMEOUT_S)
                for tp, future in answers.items():
                    ends.setdefault((tp.topic, tp.partition), []).append(future.result(timeout=TIMEOUT_S).offset)
            configs = {}
            if present:
                resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in present]
                for resource, future in admin.describe_configs(resources, request_timeout=TIMEOUT_S).items():
                    configs[resource.name] = future.result(timeout=TIMEOUT_S)
            for topic in present:
                by_partition = {p: tuple(ends[(topic, p)]) for p in sorted(metadata.topics[topic].partitions)}
                entries = configs.get(topic, {})
                offsets[(name, topic)] = {
                    "partitions": len(by_partition), "ends": by_partition,
                    "size": sum(high - low for low, high in by_partition.values()),
                    "retention_ms": _number(entries.get("retention.ms")),
                    "retention_bytes": _number(entries.get("retention.bytes"))}
            stages = [s for s in pipeline.stages.values() if pipeline.buffers[s.input].cluster == name]
            if stages:
                requests = [ConsumerGroupTopicPartitions(s.group) for s in stages]
                for request in requests:
                    future = admin.list_consumer_group_offsets([request], request_timeout=TIMEOUT_S)[request.group_id]
                    answer = future.result(timeout=TIMEOUT_S)
                    groups[(name, request.group_id)] = {tp.partition: tp.offset for tp in answer.topic_partitions
                                                        if tp.topic in topics}
            clusters[name]["reachable"] = True
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            clusters[name]["error"] = f"unreachable at {clusters[name]['bootstrap']} " \
                                      f"({error.str() if hasattr(error, 'str') else error})"
    return offsets, groups


def disk_bytes(cluster_dir: Path, topic: str) -> int:
    """Bytes of ``topic``'s log files on every broker of a local cluster (all replicas): what its retention bounds."""
    total = 0
    for partition_dir in cluster_dir.glob(f"broker-*/data/{glob.escape(topic)}-*"):
        if not partition_dir.name[len(topic) + 1:].isdigit():
            continue  # another topic whose name starts with this one's
        for item in partition_dir.iterdir():
            try:
                total += item.stat().st_size
            except OSError:
                continue  # a segment deleted by retention meanwhile
    return total


def _number(entry) -> int | None:
    if entry is None or entry.value is None:
        return None
    return int(entry.value)
