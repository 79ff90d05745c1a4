"""``export k8s``: the Kubernetes objects of a pipeline (and, through ``HelmValues``, of its chart).

Per stage, a Deployment whose pods run the worker and the sidecar side by
side (a mirror stage: the sidecar alone); a KEDA ScaledObject scaling it on
its consumer group's lag; for a Strimzi-managed cluster, a KafkaUser per stage
and a TriggerAuthentication for KEDA. Per pipeline, a ConfigMap holding the
pipeline file, Secrets with the keys its ``@env:`` and ``@file:`` references
need (never a value), and a PodMonitor. The Kafka side is ``strimzi.py``'s.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from alert_sidecar.exceptions import ConfigError
from alert_sidecar.pipeline import commands
from alert_sidecar.pipeline.export import images, strimzi
from alert_sidecar.pipeline.export.naming import dns_name, labels, selector_labels
from alert_sidecar.pipeline.export.values import Values
from alert_sidecar.pipeline.model import ClusterSpec, Pipeline, StageSpec
from alert_sidecar.secrets import ENV_PREFIX, FILE_PREFIX
from alert_sidecar.stage.config import default_of

METRICS_PORT = 9100
# Where the sidecar finds the pipeline file and its schemas (the ConfigMap);
# relative schema paths in the file are read from here.
CONFIG_DIR = "/etc/alert-pipeline"
# The images' working directory, where they hold the repository's examples/.
WORKDIR = "/app"
# Past the drain timeout, time for the worker to stop after the sidecar (its
# SDK's grace is 10 s) before the kubelet kills what is left.
GRACE_MARGIN_S = 15
# A lag of 1,000 alerts per instance is a fraction of a second of one stage's
# work (docs/performance.md measured about 5,000 alerts/s): KEDA adds an
# instance before a visit's burst has been waiting long.
LAG_THRESHOLD = 1000
# The sidecar holds up to 128 MB of alerts and measured 495 MB of peak RSS on
# a peak visit (stage/config.py); the worker's needs are its own.
SIDECAR_RESOURCES = {"cpu": "500m", "memory": "512Mi", "memoryLimit": "1Gi"}
WORKER_RESOURCES = {"cpu": "500m", "memory": "256Mi"}
# KEDA's names for librdkafka's SASL mechanisms.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


@dataclass
class Options:
    """What a user chooses beyond the pipeline file (the command's options)."""

    namespace: str
    sidecar_image: str
    worker_images: dict[str, str]  # stage -> image, for every stage whose worker runs beside its sidecar
    keda: bool = True
    worker_probe: bool = False
    lag_threshold: int = LAG_THRESHOLD
    # Where the pipeline file's folder is in the images: worker commands run
    # there, as ``alert-pipeline up`` runs them in the file's folder.
    workdir: str = WORKDIR


@dataclass
class Manifest:
    """One object, and the Helm value that turns it off (KEDA's), if any."""

    obj: dict[str, Any]
    toggle: tuple[tuple[str, ...], bool, str] | None = None

    @property
    def kind(self) -> str:
        return self.obj["kind"]

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]


@dataclass
class _Secrets:
    """The Secrets the sidecars read: keys to fill in, and where each stage's containers take them from."""

    env_keys: dict[str, str] = field(default_factory=dict)  # variable -> what it holds
    file_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # @file: path -> (key, what it holds)


def worker_images(pipeline: Pipeline, sidecar_image_tag: str, registry: str,
                  overrides: dict[str, str]) -> dict[str, str]:
    """The image of each stage's worker container: ``alert-worker-LANG``, or the stage's override."""
    result = {}
    for stage in pipeline.stages.values():
        if commands.worker_container_command(stage) is None:
            continue
        if stage.name in overrides:
            result[stage.name] = overrides[stage.name]
            continue
        name = images.worker_image_name(stage.worker.language)
        if name is None:
            language = stage.worker.language or "a language not told"
            raise ConfigError(f"stage {stage.name!r}: no SDK image here for a worker in {language}: "
                              f"give --worker-image {stage.name}=IMAGE")
        result[stage.name] = images.image(name, sidecar_image_tag, registry)
    return result


def manifests(pipeline: Pipeline, options: Options, values: Values) -> list[Manifest]:
    """Every object of the pipeline, in the order ``kubectl apply`` should meet them."""
    namespace = values.namespace(options.namespace)
    managed_by = values.managed_by()

    def metadata(stage: StageSpec | None = None) -> dict[str, Any]:
        return {"namespace": namespace, "labels": labels(pipeline.name, stage.name if stage else None, managed_by)}

    bootstraps = {name: values.get(("clusters", name, "bootstrap"), _bootstrap(pipeline, cluster),
                                   "where the stages reach this cluster")
                  for name, cluster in pipeline.clusters.items()}
    secrets = _Secrets()
    run = _with_credentials(pipeline)
    out: list[Manifest] = []
    for cluster in pipeline.clusters.values():
        if strimzi.is_ours(cluster):
            out += [Manifest(obj) for obj in strimzi.kafka(pipeline, cluster, values, metadata())]
    for buffer in pipeline.buffers.values():
        if strimzi.is_ours(pipeline.clusters[buffer.cluster]):
            out.append(Manifest(strimzi.topic(pipeline, buffer, metadata())))
    for stage in pipeline.stages.values():
        for cluster in commands.clusters_of(pipeline, stage):
            if strimzi.is_ours(pipeline.clusters[cluster]):
                out.append(Manifest(strimzi.user(pipeline, stage, cluster, _deployment_name(pipeline, stage) + "-",
                                                 metadata(stage))))
    for cluster in pipeline.clusters.values():
        _collect_references(cluster, secrets)
    out.append(Manifest(_config_map(pipeline, run, metadata())))
    out += [Manifest(obj) for obj in _secret_objects(pipeline, secrets, values, metadata())]
    for stage in pipeline.stages.values():
        out.append(Manifest(_deployment(pipeline, run, stage, options, values, bootstraps, secrets, metadata(stage))))
    if options.keda:
        for stage in pipeline.stages.values():
            toggle = (("stages", stage.name, "keda", "enabled"), True,
                      "scale this stage on its consumer group's lag with KEDA")
            auth = _trigger_authentication(pipeline, run, stage, secrets, metadata(stage))
            if auth is not None:
                out.append(Manifest(auth, toggle))
            out.append(Manifest(_scaled_object(pipeline, stage, options, values, auth, metadata(stage)), toggle))
    out.append(Manifest(_pod_monitor(pipeline, metadata())))
    return out


def _bootstrap(pipeline: Pipeline, cluster: ClusterSpec) -> str:
    return strimzi.bootstrap(pipeline, cluster.name) if strimzi.is_ours(cluster) else cluster.bootstrap


def _deployment_name(pipeline: Pipeline, stage: StageSpec) -> str:
    return dns_name(pipeline.name, stage.name)


def _password_variable(cluster: str) -> str:
    return f"KAFKA_PASSWORD_{cluster.upper().replace('-', '_')}"


def _with_credentials(pipeline: Pipeline) -> dict[str, Pipeline]:
    """Per stage, the pipeline as its sidecar sees it: on Strimzi's clusters, as its KafkaUser (SCRAM-SHA-512).

    The password is the ``password`` of the Secret Strimzi makes for the
    user, read from an environment variable the Deployment fills from it.
    """
    result = {}
    for stage in pipeline.stages.values():
        clusters = dict(pipeline.clusters)
        for name in commands.clusters_of(pipeline, stage):
            cluster = clusters[name]
            if strimzi.is_ours(cluster):
                settings = {**cluster.settings, "security.protocol": "SASL_PLAINTEXT",
                            "sasl.mechanism": "SCRAM-SHA-512",
                            "sasl.username": strimzi.user_name(pipeline, stage, name)}
                secret = {**cluster.secrets, "sasl.password": ENV_PREFIX + _password_variable(name)}
                clusters[name] = dataclasses.replace(cluster, settings=settings, secrets=secret)
        result[stage.name] = dataclasses.replace(pipeline, clusters=clusters)
    return result


def _collect_references(cluster: ClusterSpec, secrets: _Secrets) -> None:
    for key, reference in cluster.secrets.items():
        what = f"cluster {cluster.name}'s {key}"
        if reference.startswith(ENV_PREFIX):
            secrets.env_keys.setdefault(reference[len(ENV_PREFIX):], what)
        elif reference.startswith(FILE_PREFIX):
            path = reference[len(FILE_PREFIX):]
            secrets.file_keys.setdefault(path, (f"file-{len(secrets.file_keys) + 1}", what))


def _secret_file_path(path: str, workdir: str) -> str:
    """Where an @file: reference is read in the sidecar container (relative: from its working directory)."""
    return path if path.startswith("/") else str(PurePosixPath(workdir) / path)


def _config_map(pipeline: Pipeline, run: dict[str, Pipeline], metadata: dict[str, Any]) -> dict[str, Any]:
    """The pipeline file and the schemas it names, mounted at CONFIG_DIR; and the Kafka user names KEDA needs."""
    data = {"pipeline.yaml": Path(pipeline.path).read_text(encoding="utf-8")}
    for key, (_, source) in _schema_files(pipeline).items():
        data[key] = source.read_text(encoding="utf-8")
    for stage in pipeline.stages.values():
        cluster = run[stage.name].clusters[pipeline.buffers[stage.input].cluster]
        mechanism = cluster.settings.get("sasl.mechanism")
        if mechanism in KEDA_SASL:
            data[f"{dns_name(stage.name)}.sasl"] = KEDA_SASL[mechanism]
            data[f"{dns_name(stage.name)}.username"] = cluster.settings.get("sasl.username", "")
            data[f"{dns_name(stage.name)}.tls"] = "enable" if cluster.settings.get(
                "security.protocol", "").upper().endswith("SSL") else "disable"
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {**metadata, "name": dns_name(pipeline.name, "pipeline")}, "data": data}


def _schema_files(pipeline: Pipeline) -> dict[str, tuple[str, Path]]:
    """ConfigMap key -> (path under CONFIG_DIR, the file here) for every schema the buffers name."""
    base = Path(pipeline.path).parent
    result: dict[str, tuple[str, Path]] = {}
    for buffer in pipeline.buffers.values():
        if not buffer.schema:
            continue
        relative = PurePosixPath(buffer.schema)
        if relative.is_absolute() or ".." in relative.parts:
            raise ConfigError(f"{pipeline.path}:{buffer.line}: buffer {buffer.name!r}: an exported pipeline needs "
                              f"its schema beside the file or below it, not {buffer.schema!r}")
        source = base / relative
        if not source.is_file():
            raise ConfigError(f"{pipeline.path}:{buffer.line}: buffer {buffer.name!r}: no schema file {source}")
        key = re.sub(r"[^-._a-zA-Z0-9]", "-", "schema." + ".".join(relative.parts))
        result[key] = (relative.as_posix(), source)
    return result


def _secret_objects(pipeline: Pipeline, secrets: _Secrets, values: Values,
                    metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """Secrets with the keys the file's references need, each empty: fill them in, or make them yourself."""
    result = []
    note = ("Empty on purpose: fill in each key before the stages start (kubectl edit, or a Secret of your own "
            "by this name); the export never holds a secret's value.")
    if secrets.env_keys:
        data = {key: values.get(("secrets", "env", key), "", f"{what} (@env:{key})")
                for key, what in secrets.env_keys.items()}
        result.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                       "metadata": {**metadata, "name": dns_name(pipeline.name, "secrets"),
                                    "annotations": {"alert-pipeline/note": note}},
                       "stringData": data})
    if secrets.file_keys:
        data = {key: values.get(("secrets", "files", key), "", f"{what} (@file:{path})")
                for path, (key, what) in secrets.file_keys.items()}
        result.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                       "metadata": {**metadata, "name": dns_name(pipeline.name, "secret-files"),
                                    "annotations": {"alert-pipeline/note": note}},
                       "stringData": data})
    return result


def _deployment(pipeline: Pipeline, run: dict[str, Pipeline], stage: StageSpec, options: Options, values: Values,
                bootstraps: dict[str, str], secrets: _Secrets, metadata: dict[str, Any]) -> dict[str, Any]:
    """The stage's pods: the worker and the sidecar side by side, or the sidecar alone."""
    stage_values = ("stages", stage.name)
    worker_command = commands.worker_container_command(stage)
    address = f"localhost:{commands.WORKER_PORT}" if worker_command is not None else None
    args = commands.sidecar_args(run[stage.name], stage, bootstraps, worker_address=address,
                                 metrics_port=METRICS_PORT, transactional_id="$(POD_NAME)",
                                 base=Path(CONFIG_DIR), create_topics=False)
    env: list[dict[str, Any]] = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    mounts: list[dict[str, Any]] = [{"name": "pipeline", "mountPath": CONFIG_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "pipeline", "configMap": {
        "name": dns_name(pipeline.name, "pipeline"),
        "items": [{"key": key, "path": path} for key, (path, _) in _schema_files(pipeline).items()]
        + [{"key": "pipeline.yaml", "path": "pipeline.yaml"}]}}]
    for name in commands.clusters_of(pipeline, stage):
        cluster = pipeline.clusters[name]
        if strimzi.is_ours(cluster):
            env.append({"name": _password_variable(name), "valueFrom": {"secretKeyRef": {
                "name": strimzi.user_name(pipeline, stage, name), "key": "password"}}})
        for reference in cluster.secrets.values():
            if reference.startswith(ENV_PREFIX):
                variable = reference[len(ENV_PREFIX):]
                env.append({"name": variable, "valueFrom": {"secretKeyRef": {
                    "name": dns_name(pipeline.name, "secrets"), "key": variable}}})
            else:
                path = reference[len(FILE_PREFIX):]
                key = secrets.file_keys[path][0]
                if all(volume["name"] != "secret-files" for volume in volumes):
                    volumes.append({"name": "secret-files",
                                    "secret": {"secretName": dns_name(pipeline.name, "secret-files")}})
                mounts.append({"name": "secret-files", "mountPath": _secret_file_path(path, options.workdir),
                               "subPath": key, "readOnly": True})
    sidecar = {
        "name": "sidecar",
        "image": values.get(("images", "sidecar"), options.sidecar_image, "the sidecar's image"),
        "args": args,
        "workingDir": options.workdir,
        "env": _unique(env),
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        # /ready: the loop runs, its worker answers its health check and the circuit is closed.
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "metrics"}, "periodSeconds": 5,
                           "failureThreshold": 3},
        # /live fails only when the loop has not turned for a minute: three misses 20 s apart.
        "livenessProbe": {"httpGet": {"path": "/live", "port": "metrics"}, "periodSeconds": 20,
                          "failureThreshold": 3, "timeoutSeconds": 5},
        "resources": _resources(values, (*stage_values, "sidecar"), SIDECAR_RESOURCES),
        "volumeMounts": mounts,
    }
    containers = [sidecar]
    drain = float(default_of("drain_timeout"))
    if worker_command is not None:
        worker = {
            "name": "worker",
            "image": values.get((*stage_values, "workerImage"), options.worker_images[stage.name],
                                "the worker's image: its SDK's, with your code"),
            "command": worker_command,
            "workingDir": options.workdir,
            "env": [{"name": "ALERT_WORKER_PORT", "value": str(commands.WORKER_PORT)},
                    *({"name": key, "value": value} for key, value in commands.worker_environment(stage).items())],
            "ports": [{"name": "worker", "containerPort": commands.WORKER_PORT}],
            "resources": _resources(values, (*stage_values, "worker"), WORKER_RESOURCES),
            # Both containers get SIGTERM at once; the worker waits out the
            # sidecar's drain so that the batches in flight are still answered.
            "lifecycle": {"preStop": {"sleep": {"seconds": math.ceil(drain)}}},
        }
        if options.worker_probe:
            # The kubelet probes the pod's IP: the worker must listen on it, not only on 127.0.0.1.
            worker["readinessProbe"] = ({"tcpSocket": {"port": "worker"}, "periodSeconds": 10}
                                        if stage.worker.protocol == "connect" else
                                        {"grpc": {"port": commands.WORKER_PORT}, "periodSeconds": 10})
        containers = [worker, sidecar]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {**metadata, "name": _deployment_name(pipeline, stage)},
        "spec": {
            "replicas": values.get((*stage_values, "replicas"), stage.instances,
                                   "instances when KEDA is off (its minimum when on); the file's instances"),
            "selector": {"matchLabels": selector_labels(pipeline.name, stage.name)},
            "template": {
                "metadata": {"labels": metadata["labels"]},
                "spec": {
                    "terminationGracePeriodSeconds": math.ceil(drain) + GRACE_MARGIN_S,
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    }


def _resources(values: Values, path: tuple[str, ...], defaults: dict[str, str]) -> dict[str, Any]:
    requests = {"cpu": values.get((*path, "cpu"), defaults["cpu"], "CPU requested"),
                "memory": values.get((*path, "memory"), defaults["memory"], "memory requested")}
    if "memoryLimit" not in defaults:
        return {"requests": requests}
    return {"requests": requests,
            "limits": {"memory": values.get((*path, "memoryLimit"), defaults["memoryLimit"], "memory limit")}}


def _unique(env: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({item["name"]: item for item in env}.values())


def _trigger_authentication(pipeline: Pipeline, run: dict[str, Pipeline], stage: StageSpec, secrets: _Secrets,
                            metadata: dict[str, Any]) -> dict[str, Any] | None:
    """How KEDA logs in to the input's cluster, as the stage does; None for a cluster without SASL."""
    cluster = run[stage.name].clusters[pipeline.buffers[stage.input].cluster]
    if cluster.settings.get("sasl.mechanism") not in KEDA_SASL:
        return None
    config_map = dns_name(pipeline.name, "pipeline")
    stage_key = dns_name(stage.name)
    refs = [{"parameter": parameter, "name": config_map, "key": f"{stage_key}.{parameter}"}
            for parameter in ("sasl", "username", "tls")]
    password = cluster.secrets.get("sasl.password", "")
    if strimzi.is_ours(pipeline.clusters[cluster.name]):
        secret = {"parameter": "password", "name": strimzi.user_name(pipeline, stage, cluster.name), "key": "password"}
    elif password.startswith(ENV_PREFIX):
        secret = {"parameter": "password", "name": dns_name(pipeline.name, "secrets"),
                  "key": password[len(ENV_PREFIX):]}
    else:
        secret = {"parameter": "password", "name": dns_name(pipeline.name, "secret-files"),
                  "key": secrets.file_keys[password[len(FILE_PREFIX):]][0]}
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
            "metadata": {**metadata, "name": _deployment_name(pipeline, stage)},
            "spec": {"configMapTargetRef": refs, "secretTargetRef": [secret]}}


def _scaled_object(pipeline: Pipeline, stage: StageSpec, options: Options, values: Values,
                   auth: dict[str, Any] | None, metadata: dict[str, Any]) -> dict[str, Any]:
    """KEDA scales the Deployment on its group's lag, never past the input's partitions (idle consumers)."""
    buffer = pipeline.buffers[stage.input]
    cluster = pipeline.clusters[buffer.cluster]
    partitions = buffer.partitions
    bootstrap = (strimzi.bootstrap(pipeline, cluster.name, values.namespace(options.namespace))
                 if strimzi.is_ours(cluster) else cluster.bootstrap)
    stage_values = ("stages", stage.name, "keda")
    trigger: dict[str, Any] = {
        "type": "kafka",
        "metadata": {"bootstrapServers": bootstrap, "consumerGroup": stage.group, "topic": buffer.topic,
                     "lagThreshold": values.get((*stage_values, "lagThreshold"), str(options.lag_threshold),
                                                "alerts of lag per instance before KEDA adds one"),
                     # The sidecar starts a new group at the earliest offset: its lag counts from there.
                     "offsetResetPolicy": "earliest"},
    }
    if auth is not None:
        trigger["authenticationRef"] = {"name": auth["metadata"]["name"]}
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {**metadata, "name": _deployment_name(pipeline, stage)},
        "spec": {
            "scaleTargetRef": {"name": _deployment_name(pipeline, stage)},
            "minReplicaCount": values.get((*stage_values, "minReplicas"), min(stage.instances, partitions),
                                          "the fewest instances: the file's instances"),
            "maxReplicaCount": values.get((*stage_values, "maxReplicas"), partitions,
                                          "the most instances: the input's partitions (more would idle)"),
            "triggers": [trigger],
        },
    }


def _pod_monitor(pipeline: Pipeline, metadata: dict[str, Any]) -> dict[str, Any]:
    """Prometheus (the operator's) scrapes every stage pod's ``metrics`` port."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "metadata": {**metadata, "name": dns_name(pipeline.name)},
            "spec": {"selector": {"matchLabels": selector_labels(pipeline.name)},
                     "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics"}]}}


def file_name(index: int, obj: dict[str, Any]) -> str:
    """``03-kafkatopic-three-stages-upstream-alerts.yaml``: numbered so that a folder applies in order."""
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
