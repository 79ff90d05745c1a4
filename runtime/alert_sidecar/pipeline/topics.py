"""``alert-pipeline plan`` and ``apply``: the buffers of a pipeline as topics on their clusters.

The plan compares each buffer with its topic as the cluster has it now:

- ``+ create``: a missing topic, with its partitions, replication and config;
- ``~ partitions`` / ``~ config``: more partitions, another retention or
  ``min.insync.replicas``: changes Kafka makes in place without losing a record;
- ``! refused``: what cannot be done safely in place: fewer partitions (Kafka
  cannot remove one, and a record's partition would change) and another
  replication factor (a reassignment, which moves data between brokers);
- ``= unchanged``.

``apply`` shows the plan, refuses the whole of it if any change is refused
(nothing is half done), then makes the changes and waits until every topic has
them; a second ``apply`` finds nothing to change. A setting the file leaves
out (retention by default) is left as the cluster has it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic)

from alert_sidecar.exceptions import ConfigError, KafkaUnreachable
from alert_sidecar.pipeline.model import BufferSpec, ClusterSpec, Pipeline, plural
from alert_sidecar.secrets import resolve

ADMIN_TIMEOUT_S = 30.0
# The first contact with a cluster: a reachable one answers in milliseconds.
CONNECT_TIMEOUT_S = 10.0
# How long a new topic or partition may take to have a leader everywhere.
SETTLE_TIMEOUT_S = 60.0

CREATE, PARTITIONS, CONFIG, REFUSED, UNCHANGED = "create", "partitions", "config", "refused", "unchanged"
_MARK = {CREATE: "+", PARTITIONS: "~", CONFIG: "~", REFUSED: "!", UNCHANGED: "="}


@dataclass
class Change:
    """One thing to do (or refuse, or leave) for one buffer."""

    kind: str
    buffer: BufferSpec
    detail: str
    partitions: int | None = None  # the new count, for CREATE and PARTITIONS
    configs: dict[str, str] = field(default_factory=dict)  # topic config to set, for CREATE and CONFIG

    def format(self) -> str:
        where = f"{self.buffer.cluster}/{self.buffer.topic}"
        return f"{_MARK[self.kind]} {self.buffer.name} ({where}): {self.detail}"


# librdkafka's own lines (one per failed connection attempt) would bury the one
# line a command says about a cluster it cannot reach: they are not shown.
_QUIET = logging.getLogger("alert_pipeline.kafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def client_settings(cluster: ClusterSpec, bootstrap: str) -> dict[str, object]:
    """librdkafka settings of an admin client of ``cluster``, its secrets read, its own log lines not shown."""
    settings: dict[str, object] = {"bootstrap.servers": bootstrap, "logger": _QUIET, **cluster.settings}
    for key, reference in cluster.secrets.items():
        settings[key] = resolve(reference, f"cluster {cluster.name}'s {key}")
    return settings


def topic_configs(buffer: BufferSpec) -> dict[str, str]:
    """The topic config the file asks for; what it leaves out is not here."""
    configs = {"min.insync.replicas": str(buffer.min_insync_replicas)}
    if buffer.retention_ms is not None:
        configs["retention.ms"] = str(buffer.retention_ms)
    if buffer.retention_bytes is not None:
        configs["retention.bytes"] = str(buffer.retention_bytes)
    return configs


class Topics:
    """The pipeline's clusters as admin clients, one per cluster."""

    def __init__(self, pipeline: Pipeline, bootstraps: Mapping[str, str],
                 admin: Callable[[dict], AdminClient] = AdminClient) -> None:
        self.pipeline = pipeline
        self._admins: dict[str, AdminClient] = {}
        for name in {b.cluster for b in pipeline.buffers.values()}:
            if name not in bootstraps:
                raise ConfigError(f"cluster '{name}' is local and not running: start it with `alert-pipeline up`")
            settings = client_settings(pipeline.clusters[name], bootstraps[name])
            self._admins[name] = admin({**settings, "socket.connection.setup.timeout.ms": 10_000})
        self._bootstraps = dict(bootstraps)

    def plan(self) -> list[Change]:
        changes = []
        by_cluster: dict[str, list[BufferSpec]] = {}
        for buffer in self.pipeline.buffers.values():
            by_cluster.setdefault(buffer.cluster, []).append(buffer)
        for cluster, buffers in sorted(by_cluster.items()):
            existing = self._describe(cluster, [b.topic for b in buffers])
            for buffer in buffers:
                changes.append(_compare(buffer, existing.get(buffer.topic)))
        return changes

    def apply(self, changes: list[Change]) -> None:
        """Make ``changes`` (none refused: the caller checked) and wait until the topics have them."""
        for cluster in sorted({c.buffer.cluster for c in changes}):
            admin = self._admins[cluster]
            mine = [c for c in changes if c.buffer.cluster == cluster]
            creates = [NewTopic(c.buffer.topic, c.partitions, c.buffer.replication, config=c.configs)
                       for c in mine if c.kind == CREATE]
            grows = [NewPartitions(c.buffer.topic, c.partitions) for c in mine if c.kind == PARTITIONS]
            alters = [ConfigResource(ConfigResource.Type.TOPIC, c.buffer.topic, incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in c.configs.items()]) for c in mine if c.kind != CREATE and c.configs]
            what = f"cluster '{cluster}' ({self._bootstraps[cluster]})"
            if creates:
                _wait_all(admin.create_topics(creates, operation_timeout=ADMIN_TIMEOUT_S), what, "create topic")
            if grows:
                _wait_all(admin.create_partitions(grows, operation_timeout=ADMIN_TIMEOUT_S), what, "add partitions to")
            if alters:
                _wait_all(admin.incremental_alter_configs(alters), what, "change the config of")
            self._settle(cluster, {c.buffer.topic: c.partitions for c in mine if c.partitions})

    def _describe(self, cluster: str, topics: list[str]) -> dict[str, tuple[int, int, dict[str, str]]]:
        """topic -> (partitions, replication, config) for the ``topics`` that exist on ``cluster``."""
        admin = self._admins[cluster]
        try:
            metadata = admin.list_topics(timeout=CONNECT_TIMEOUT_S)
        except KafkaException as exc:
            reason = exc.args[0].str() if exc.args else exc
            raise KafkaUnreachable(f"cannot reach cluster '{cluster}' at {self._bootstraps[cluster]}: {reason} "
                                   f"after {CONNECT_TIMEOUT_S:g} s; is it running?") from None
        found = {}
        present = [t for t in topics if t in metadata.topics and not metadata.topics[t].error]
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in present]
        configs = {}
        if resources:
            for resource, future in admin.describe_configs(resources, request_timeout=ADMIN_TIMEOUT_S).items():
                entries = future.result(timeout=ADMIN_TIMEOUT_S)
                configs[resource.name] = {key: entry.value for key, entry in entries.items()}
        for topic in present:
            partitions = metadata.topics[topic].partitions
            replication = min((len(p.replicas) for p in partitions.values()), default=0)
            found[topic] = (len(partitions), replication, configs.get(topic, {}))
        return found

    def _settle(self, cluster: str, partitions: dict[str, int]) -> None:
        """Wait until each topic has its partitions, each with a leader."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        admin = self._admins[cluster]
        waiting = dict(partitions)
        while waiting:
            metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
            for topic, count in list(waiting.items()):
                found = metadata.topics.get(topic)
                if found and not found.error and len(found.partitions) >= count and all(
                        p.leader >= 0 for p in found.partitions.values()):
                    del waiting[topic]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise KafkaUnreachable(f"cluster '{cluster}': topics {', '.join(sorted(waiting))} have no leader "
                                       f"for every partition after {SETTLE_TIMEOUT_S:g} s")
            time.sleep(0.2)


def _compare(buffer: BufferSpec, existing: tuple[int, int, dict[str, str]] | None) -> Change:
    wanted = topic_configs(buffer)
    if existing is None:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(wanted.items()))
        return Change(CREATE, buffer, f"create with {plural(buffer.partitions, 'partition')}, replication "
                                      f"{buffer.replication}, {shown}", buffer.partitions, wanted)
    partitions, replication, configs = existing
    if buffer.partitions < partitions:
        return Change(REFUSED, buffer, f"has {partitions} partitions and the file asks for {buffer.partitions}: "
                                       "Kafka cannot remove partitions (and a key's partition would change); "
                                       f"keep {partitions}, or make a new buffer and move the stages to it")
    if replication != buffer.replication:
        return Change(REFUSED, buffer, f"has replication {replication} and the file asks for "
                                       f"{buffer.replication}: apply does not move replicas between brokers; "
                                       f"set replication: {replication}, or reassign the partitions "
                                       "(kafka-reassign-partitions) and then change the file")
    differ = {key: value for key, value in wanted.items() if configs.get(key) != value}
    shown = [f"{key} {configs.get(key, '?')} -> {value}" for key, value in sorted(differ.items())]
    if buffer.partitions > partitions:
        return Change(PARTITIONS, buffer, ", ".join([
            f"partitions {partitions} -> {buffer.partitions} (records stay where they are; new records of a key "
            "may go to another partition than its earlier ones)", *shown]), buffer.partitions, differ)
    if differ:
        return Change(CONFIG, buffer, ", ".join(shown), configs=differ)
    return Change(UNCHANGED, buffer, f"{plural(partitions, 'partition')}, replication {replication}: as the file says")


def _wait_all(futures: dict, where: str, doing: str) -> None:
    problems = []
    for name, future in futures.items():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            problems.append(f"{name}: {error.str() if hasattr(error, 'str') else error}")
    if problems:
        raise KafkaUnreachable(f"{where}: cannot {doing} " + "; ".join(problems))
