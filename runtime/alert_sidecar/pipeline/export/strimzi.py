"""The Kafka side in Kubernetes: Strimzi's custom resources (kafka.strimzi.io/v1beta2).

Which clusters are ours:

- a ``local:`` cluster (``alert-pipeline up`` starts it on one machine)
  becomes a Strimzi ``Kafka`` in KRaft mode with one ``KafkaNodePool`` of
  the file's broker count, each node both controller and broker; its buffers
  become ``KafkaTopic``s and each stage that uses it a ``KafkaUser`` (SCRAM-
  SHA-512, with ACLs for what the stage reads and writes). Stages reach it on
  its internal listener, in the same namespace.
- a ``bootstrap:`` cluster exists already and is someone else's: its topics
  and users are not ours to create (its operators make them, or ``alert-
  pipeline apply`` where we may), and the stages use the file's settings.
"""

from __future__ import annotations

from typing import Any

from alert_sidecar.pipeline.model import BufferSpec, ClusterSpec, Pipeline, StageSpec
from alert_sidecar.pipeline.topics import topic_configs
from alert_sidecar.pipeline.export.naming import dns_name
from alert_sidecar.pipeline.export.values import Values

API_VERSION = "kafka.strimzi.io/v1beta2"
# The internal listener the stages use: SCRAM-SHA-512 over plain TCP inside the
# cluster's network (SCRAM never sends the password itself).
LISTENER = "scram"
LISTENER_PORT = 9092
# Each broker's volume when the file says nothing of size: a starting point,
# to be set from the buffers' retention (values.yaml says how).
DEFAULT_STORAGE = "100Gi"
# Kafka's own defaults for its internal topics are 3 replicas and 2 in sync;
# a cluster of fewer brokers must ask for fewer, or the first consumer group
# or transaction never starts.
INTERNAL_REPLICAS = 3
INTERNAL_MIN_INSYNC = 2


def is_ours(cluster: ClusterSpec) -> bool:
    """Whether the export makes the cluster and its topics and users (a ``local:`` one)."""
    return cluster.is_local


def kafka_name(pipeline: Pipeline, cluster: str) -> str:
    return dns_name(pipeline.name, cluster)


def bootstrap(pipeline: Pipeline, cluster: str, namespace: str | None = None) -> str:
    """The bootstrap service Strimzi makes for the listener (fully qualified when ``namespace`` is given).

    The stages run in the cluster's namespace and use the short name; KEDA's
    operator runs in a namespace of its own and needs the whole one.
    """
    service = f"{kafka_name(pipeline, cluster)}-kafka-bootstrap"
    return f"{service}.{namespace}.svc:{LISTENER_PORT}" if namespace else f"{service}:{LISTENER_PORT}"


def user_name(pipeline: Pipeline, stage: StageSpec, cluster: str) -> str:
    """The KafkaUser of ``stage`` on ``cluster``: Strimzi names its Secret (key ``password``) the same."""
    return dns_name(pipeline.name, cluster, stage.name)


def kafka(pipeline: Pipeline, cluster: ClusterSpec, values: Values, metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``Kafka`` and its ``KafkaNodePool``: KRaft, ``local_brokers`` nodes that are controllers and brokers."""
    name = kafka_name(pipeline, cluster.name)
    brokers = cluster.local_brokers or 1
    internal = {"replicas": min(INTERNAL_REPLICAS, brokers), "min_insync": min(INTERNAL_MIN_INSYNC, brokers)}
    resource = {
        "apiVersion": API_VERSION, "kind": "Kafka",
        "metadata": {**metadata, "name": name,
                     "annotations": {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}},
        "spec": {
            "kafka": {
                # No version: the operator's default, so that an upgrade of Strimzi brings Kafka's.
                "listeners": [{"name": LISTENER, "port": LISTENER_PORT, "type": "internal", "tls": False,
                               "authentication": {"type": "scram-sha-512"}}],
                "authorization": {"type": "simple"},
                "config": {
                    "offsets.topic.replication.factor": internal["replicas"],
                    "transaction.state.log.replication.factor": internal["replicas"],
                    "transaction.state.log.min.isr": internal["min_insync"],
                    "default.replication.factor": internal["replicas"],
                    "min.insync.replicas": internal["min_insync"],
                },
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    }
    pool = {
        "apiVersion": API_VERSION, "kind": "KafkaNodePool",
        "metadata": {**metadata, "name": dns_name(name, "nodes"),
                     "labels": {**metadata["labels"], "strimzi.io/cluster": name}},
        "spec": {
            "replicas": values.get(("clusters", cluster.name, "brokers"), brokers,
                                   "Kafka nodes (each controller and broker); the file's local.brokers"),
            "roles": ["controller", "broker"],
            "storage": {"type": "persistent-claim", "deleteClaim": False,
                        "size": values.get(("clusters", cluster.name, "storage"), DEFAULT_STORAGE,
                                           "each node's volume: at least the sum over this cluster's buffers of "
                                           "retention bytes x partitions x replication / brokers")},
        },
    }
    return [resource, pool]


def topic(pipeline: Pipeline, buffer: BufferSpec, metadata: dict[str, Any]) -> dict[str, Any]:
    """A ``KafkaTopic``: its object name is the buffer's; ``topicName`` keeps the topic's own spelling."""
    name = kafka_name(pipeline, buffer.cluster)
    return {
        "apiVersion": API_VERSION, "kind": "KafkaTopic",
        "metadata": {**metadata, "name": dns_name(name, buffer.name),
                     "labels": {**metadata["labels"], "strimzi.io/cluster": name}},
        "spec": {"topicName": buffer.topic, "partitions": buffer.partitions, "replicas": buffer.replication,
                 "config": topic_configs(buffer)},
    }


def user(pipeline: Pipeline, stage: StageSpec, cluster: str, transactional_prefix: str,
         metadata: dict[str, Any]) -> dict[str, Any]:
    """A ``KafkaUser`` for ``stage`` on ``cluster``: read its input and commit its group, write its outputs.

    With exactly-once, also the transactional ids its instances use (the pod
    names, which start with ``transactional_prefix``). Kafka 3 and later allow
    an idempotent producer to anyone who may write a topic, so no cluster ACL.
    """
    buffers = pipeline.buffers
    acls: list[dict[str, Any]] = []
    if buffers[stage.input].cluster == cluster:
        acls.append(_acl("topic", buffers[stage.input].topic, ["Read", "Describe"]))
        acls.append(_acl("group", stage.group, ["Read", "Describe"]))
    for name in stage.writes():
        if buffers[name].cluster == cluster:
            acls.append(_acl("topic", buffers[name].topic, ["Write", "Describe"]))
    if stage.exactly_once:
        acls.append(_acl("transactionalId", transactional_prefix, ["Write", "Describe"], pattern="prefix"))
    name = kafka_name(pipeline, cluster)
    return {
        "apiVersion": API_VERSION, "kind": "KafkaUser",
        "metadata": {**metadata, "name": user_name(pipeline, stage, cluster),
                     "labels": {**metadata["labels"], "strimzi.io/cluster": name}},
        "spec": {"authentication": {"type": "scram-sha-512"},
                 "authorization": {"type": "simple", "acls": acls}},
    }


def _acl(kind: str, name: str, operations: list[str], pattern: str = "literal") -> dict[str, Any]:
    return {"resource": {"type": kind, "name": name, "patternType": pattern}, "operations": operations}
