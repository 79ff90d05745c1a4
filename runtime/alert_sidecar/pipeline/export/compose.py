"""``export compose``: the pipeline on one machine with Docker Compose (the compose-spec format).

Each ``local:`` cluster is Kafka in containers (the ``apache/kafka`` image of
the version ``alert-pipeline up`` runs, KRaft, each broker also a
controller), and a one-shot service makes its buffers' topics with their
partitions, replication and retention before any stage starts. Each stage is
one service of ``instances`` replicas whose container runs the sidecar, which
starts and supervises the worker as ``alert-pipeline up`` does. A
``bootstrap:`` cluster is used as it is: its topics are not ours to create.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
from pathlib import Path
from typing import Any

from alert_sidecar.kafka.local import DEFAULT_VERSION
from alert_sidecar.pipeline import commands
from alert_sidecar.pipeline.export import strimzi
from alert_sidecar.pipeline.export.documents import to_yaml
from alert_sidecar.pipeline.export.kubernetes import CONFIG_DIR, METRICS_PORT
from alert_sidecar.pipeline.export.naming import dns_name
from alert_sidecar.pipeline.model import ClusterSpec, Pipeline
from alert_sidecar.pipeline.topics import topic_configs
from alert_sidecar.secrets import ENV_PREFIX, FILE_PREFIX

KAFKA_IMAGE = f"apache/kafka:{DEFAULT_VERSION}"
KAFKA_BIN = "/opt/kafka/bin"
KAFKA_PORT = 9092
CONTROLLER_PORT = 9093
# /ready answers 200 once the loop runs and the worker is healthy; a stage
# starts a JVM or R worker in seconds, hence the start period.
READY_TEST = ("import sys, urllib.request; "
              f"sys.exit(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/ready', timeout=4).status != 200)")


def broker_names(cluster: ClusterSpec) -> list[str]:
    """One service per broker: ``kafka-NAME`` for one, ``kafka-NAME-1``... for more."""
    count = cluster.local_brokers or 1
    base = dns_name("kafka", cluster.name)
    return [base] if count == 1 else [f"{base}-{i}" for i in range(1, count + 1)]


def bootstrap(cluster: ClusterSpec) -> str:
    if not cluster.is_local:
        return cluster.bootstrap
    return ",".join(f"{name}:{KAFKA_PORT}" for name in broker_names(cluster))


def document(pipeline: Pipeline, images: dict[str, str], sidecar_image: str, workdir: str,
             out_dir: Path) -> dict[str, Any]:
    """The compose file as data. ``images``: each stage's image (sidecar and SDK) by stage name."""
    services: dict[str, Any] = {}
    for cluster in pipeline.clusters.values():
        if cluster.is_local:
            services.update(_kafka_services(pipeline, cluster))
            services[dns_name("topics", cluster.name)] = _topics_service(pipeline, cluster)
    bootstraps = {name: bootstrap(cluster) for name, cluster in pipeline.clusters.items()}
    schemas = any(buffer.schema for buffer in pipeline.buffers.values())
    for stage in pipeline.stages.values():
        args = commands.sidecar_args(pipeline, stage, bootstraps, metrics_port=METRICS_PORT,
                                     base=Path(CONFIG_DIR) if schemas else None)
        service: dict[str, Any] = {
            "image": images.get(stage.name, sidecar_image),
            "command": args,
            "working_dir": workdir,
            "deploy": {"replicas": stage.instances},
            "healthcheck": {"test": ["CMD", "python", "-c", READY_TEST], "interval": "10s", "timeout": "5s",
                            "retries": 3, "start_period": "30s"},
            "restart": "unless-stopped",
        }
        environment = dict(commands.worker_environment(stage))
        volumes = []
        for name in commands.clusters_of(pipeline, stage):
            for key, reference in pipeline.clusters[name].secrets.items():
                if reference.startswith(ENV_PREFIX):
                    variable = reference[len(ENV_PREFIX):]
                    # Taken from the environment `docker compose up` runs in; it refuses to start without it.
                    environment[variable] = f"${{{variable}:?set {variable}: cluster {name}'s {key}}}"
                elif reference.startswith(FILE_PREFIX):
                    path = os.path.expanduser(reference[len(FILE_PREFIX):])
                    target = path if path.startswith("/") else f"{workdir}/{path}"
                    source = path if path.startswith("/") else _relative(Path(pipeline.path).parent / path, out_dir)
                    volumes.append({"type": "bind", "source": source, "target": target, "read_only": True})
        if schemas:
            volumes.append({"type": "bind", "source": _relative(Path(pipeline.path).parent, out_dir),
                            "target": CONFIG_DIR, "read_only": True})
        if environment:
            service["environment"] = environment
        if volumes:
            service["volumes"] = volumes
        local = [name for name in commands.clusters_of(pipeline, stage) if pipeline.clusters[name].is_local]
        if local:
            service["depends_on"] = {dns_name("topics", name): {"condition": "service_completed_successfully"}
                                     for name in local}
        services[dns_name(stage.name)] = service
    return {"name": dns_name(pipeline.name), "services": services}


def render(pipeline: Pipeline, images: dict[str, str], sidecar_image: str, workdir: str, out_dir: Path) -> str:
    header = (f"# The pipeline {pipeline.name} ({pipeline.summary()}) on one machine, exported from "
              f"{pipeline.path} by alert-pipeline export compose.\n# docker compose -f FILE up\n")
    return header + to_yaml(document(pipeline, images, sidecar_image, workdir, out_dir))


def _relative(path: Path, out_dir: Path) -> str:
    """A bind mount's source, relative to the compose file's folder (where compose reads it from)."""
    relative = os.path.relpath(path.resolve(), out_dir.resolve())
    return relative if relative.startswith(".") else f"./{relative}"


def _cluster_id(pipeline: Pipeline, cluster: ClusterSpec) -> str:
    """KRaft's cluster id: 16 bytes in URL-safe base64, the same at every export of the file."""
    digest = hashlib.sha256(f"{pipeline.name}/{cluster.name}".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _kafka_services(pipeline: Pipeline, cluster: ClusterSpec) -> dict[str, Any]:
    names = broker_names(cluster)
    count = len(names)
    voters = ",".join(f"{i}@{name}:{CONTROLLER_PORT}" for i, name in enumerate(names, start=1))
    internal_replicas = min(strimzi.INTERNAL_REPLICAS, count)
    internal_min_insync = min(strimzi.INTERNAL_MIN_INSYNC, count)
    services = {}
    for node, name in enumerate(names, start=1):
        services[name] = {
            "image": KAFKA_IMAGE,
            "hostname": name,
            "environment": {
                "KAFKA_NODE_ID": str(node),
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": f"PLAINTEXT://:{KAFKA_PORT},CONTROLLER://:{CONTROLLER_PORT}",
                "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{name}:{KAFKA_PORT}",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": voters,
                "CLUSTER_ID": _cluster_id(pipeline, cluster),
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": str(internal_replicas),
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": str(internal_replicas),
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": str(internal_min_insync),
                # A new group's first member need not wait 3 s for others on a dev cluster.
                "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            },
            "healthcheck": {"test": ["CMD", f"{KAFKA_BIN}/kafka-broker-api-versions.sh", "--bootstrap-server",
                                     f"localhost:{KAFKA_PORT}"],
                            "interval": "10s", "timeout": "10s", "retries": 12, "start_period": "20s"},
            "restart": "unless-stopped",
        }
    return services


def _topics_service(pipeline: Pipeline, cluster: ClusterSpec) -> dict[str, Any]:
    """A one-shot service that makes the cluster's topics (``--if-not-exists``: a second ``up`` changes nothing)."""
    server = bootstrap(cluster)
    lines = []
    for buffer in pipeline.buffers.values():
        if buffer.cluster != cluster.name:
            continue
        configs = " ".join(f"--config {key}={value}" for key, value in topic_configs(buffer).items())
        lines.append(f"{KAFKA_BIN}/kafka-topics.sh --bootstrap-server {server} --create --if-not-exists "
                     f"--topic {shlex.quote(buffer.topic)} --partitions {buffer.partitions} "
                     f"--replication-factor {buffer.replication} {configs}")
    return {
        "image": KAFKA_IMAGE,
        "command": ["bash", "-ec", "\n".join(lines) or "true"],
        "depends_on": {name: {"condition": "service_healthy"} for name in broker_names(cluster)},
        "restart": "no",
    }
