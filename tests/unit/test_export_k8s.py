"""``alert-pipeline export k8s``: every object of every example pipeline valid against real schemas, and right."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from alert_sidecar.pipeline.cli import main
from alert_sidecar.pipeline.load import load
from alert_sidecar.stage.config import default_of
from tests.export_validation import problems

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = sorted((ROOT / "examples" / "pipelines").glob("*.yaml")) + [
    ROOT / "tests" / "data" / "pipelines" / "export" / "mixed.yaml"]
MIXED = PIPELINES[-1]


def export(path: Path, tmp_path: Path, *options: str) -> list[dict]:
    out = tmp_path / "k8s.yaml"
    result = CliRunner().invoke(main, ["export", "k8s", str(path.relative_to(ROOT)), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return [obj for obj in yaml.safe_load_all(out.read_text()) if obj]


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # where images are built from: worker commands' folder is told from here


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_every_object_is_valid(path, tmp_path):
    objects = export(path, tmp_path, "--worker-probe")
    assert objects
    assert [p for obj in objects for p in problems(obj)] == []


def test_a_wrong_field_is_caught(tmp_path):
    """The validation can fail: one unknown field in each kind of object is found."""
    objects = export(MIXED, tmp_path)
    kinds = {obj["kind"]: obj for obj in objects}
    assert set(kinds) >= {"Deployment", "ConfigMap", "Secret", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser",
                          "ScaledObject", "TriggerAuthentication", "PodMonitor"}
    for kind, obj in kinds.items():
        obj["spec" if "spec" in obj else "metadata"]["replica"] = 2
        assert problems(obj), f"a wrong field in a {kind} went unseen"


def test_a_stage_is_a_deployment_of_its_instances_with_its_worker_beside_its_sidecar(tmp_path):
    pipeline, _ = load(MIXED)
    deployments = by_kind(export(MIXED, tmp_path, "--worker-probe"), "Deployment")
    assert set(deployments) == {"mixed-export-copy", "mixed-export-brighten", "mixed-export-classify",
                                "mixed-export-score"}
    for stage in pipeline.stages.values():
        deployment = deployments[f"mixed-export-{stage.name}"]
        assert deployment["spec"]["replicas"] == stage.instances
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > math.ceil(default_of("drain_timeout"))
        containers = {c["name"]: c for c in pod["containers"]}
        sidecar = containers["sidecar"]
        assert sidecar["ports"] == [{"name": "metrics", "containerPort": 9100}]
        assert sidecar["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
        assert sidecar["livenessProbe"]["httpGet"] == {"path": "/live", "port": "metrics"}
        assert sidecar["resources"]["requests"]
        assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == stage.name
    copy = {c["name"] for c in deployments["mixed-export-copy"]["spec"]["template"]["spec"]["containers"]}
    assert copy == {"sidecar"}
    assert "--mirror" in deployments["mixed-export-copy"]["spec"]["template"]["spec"]["containers"][0]["args"]
    brighten = {c["name"]: c for c in deployments["mixed-export-brighten"]["spec"]["template"]["spec"]["containers"]}
    assert brighten["worker"]["image"] == "alert-worker-r:0.1.0"
    assert brighten["worker"]["readinessProbe"]["tcpSocket"] == {"port": "worker"}  # R speaks Connect
    assert brighten["sidecar"]["args"][-2:] == ["--worker", "http://localhost:50051"]
    classify = {c["name"]: c for c in deployments["mixed-export-classify"]["spec"]["template"]["spec"]["containers"]}
    assert classify["worker"]["image"] == "alert-worker-java:0.1.0"
    assert classify["worker"]["readinessProbe"]["grpc"] == {"port": 50051}
    assert {"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx512m"} in classify["worker"]["env"]
    assert "$(POD_NAME)" in classify["sidecar"]["args"]  # a stable transactional id per pod
    score = deployments["mixed-export-score"]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in score] == ["sidecar"]
    assert score[0]["args"][-2:] == ["--worker", "scorer.alerts.svc:50051"]


def test_strimzi_topics_users_and_the_password_from_strimzis_secret(tmp_path):
    objects = export(MIXED, tmp_path)
    assert set(by_kind(objects, "Kafka")) == {"mixed-export-broker"}  # the bootstrap cluster is not ours
    pool = by_kind(objects, "KafkaNodePool")["mixed-export-broker-nodes"]
    assert pool["spec"]["replicas"] == 3 and sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    topics = {t["spec"]["topicName"]: t["spec"] for t in by_kind(objects, "KafkaTopic").values()}
    assert set(topics) == {"survey.alerts", "brightening", "faint", "classified", "dead"}  # not 'alerts'
    assert topics["survey.alerts"] == {"topicName": "survey.alerts", "partitions": 8, "replicas": 3, "config": {
        "min.insync.replicas": "2", "retention.ms": str(3 * 86400 * 1000), "retention.bytes": str(50 * 2**30)}}
    assert topics["dead"]["config"]["retention.ms"] == "-1"
    users = by_kind(objects, "KafkaUser")
    copy = users["mixed-export-broker-copy"]["spec"]["authorization"]["acls"]
    assert copy == [{"resource": {"type": "topic", "name": "survey.alerts", "patternType": "literal"},
                     "operations": ["Write", "Describe"]}]
    brighten = {(a["resource"]["type"], a["resource"]["name"]): a["operations"]
                for a in users["mixed-export-broker-brighten"]["spec"]["authorization"]["acls"]}
    assert brighten == {("topic", "survey.alerts"): ["Read", "Describe"],
                        ("group", "mixed_export-brighten"): ["Read", "Describe"],
                        ("topic", "brightening"): ["Write", "Describe"], ("topic", "faint"): ["Write", "Describe"],
                        ("topic", "dead"): ["Write", "Describe"]}
    classify = users["mixed-export-broker-classify"]["spec"]["authorization"]["acls"]
    assert {"resource": {"type": "transactionalId", "name": "mixed-export-classify-", "patternType": "prefix"},
            "operations": ["Write", "Describe"]} in classify
    sidecar = by_kind(objects, "Deployment")["mixed-export-brighten"]["spec"]["template"]["spec"]["containers"][1]
    assert "broker:sasl.password=@env:KAFKA_PASSWORD_BROKER" in sidecar["args"]
    assert {"name": "KAFKA_PASSWORD_BROKER", "valueFrom": {"secretKeyRef": {
        "name": "mixed-export-broker-brighten", "key": "password"}}} in sidecar["env"]


def test_secrets_hold_keys_never_values(tmp_path):
    objects = export(MIXED, tmp_path)
    secrets = by_kind(objects, "Secret")
    assert secrets["mixed-export-secrets"]["stringData"] == {"SURVEY_PASSWORD": ""}
    assert secrets["mixed-export-secret-files"]["stringData"] == {"file-1": ""}
    copy = by_kind(objects, "Deployment")["mixed-export-copy"]["spec"]["template"]["spec"]["containers"][0]
    assert "survey:sasl.password=@env:SURVEY_PASSWORD" in copy["args"]
    assert {"name": "secret-files", "mountPath": "/app/tests/data/pipelines/export/secrets/key-password",
            "subPath": "file-1", "readOnly": True} in copy["volumeMounts"]


def test_keda_scales_on_lag_up_to_the_input_partitions(tmp_path):
    pipeline, _ = load(MIXED)
    scaled = by_kind(export(MIXED, tmp_path, "--namespace", "alerts"), "ScaledObject")
    for stage in pipeline.stages.values():
        spec = scaled[f"mixed-export-{stage.name}"]["spec"]
        buffer = pipeline.buffers[stage.input]
        assert spec["scaleTargetRef"] == {"name": f"mixed-export-{stage.name}"}
        assert spec["maxReplicaCount"] == buffer.partitions
        assert spec["minReplicaCount"] == stage.instances
        trigger = spec["triggers"][0]["metadata"]
        assert (trigger["consumerGroup"], trigger["topic"]) == (stage.group, buffer.topic)
    assert (scaled["mixed-export-brighten"]["spec"]["triggers"][0]["metadata"]["bootstrapServers"]
            == "mixed-export-broker-kafka-bootstrap.alerts.svc:9092")
    assert scaled["mixed-export-copy"]["spec"]["triggers"][0]["metadata"]["bootstrapServers"] == \
        "kafka.survey.example.org:9094"
    assert not by_kind(export(MIXED, tmp_path, "--no-keda"), "ScaledObject")


def test_the_pod_monitor_selects_every_stage_pods_metrics_port(tmp_path):
    objects = export(MIXED, tmp_path)
    monitor = by_kind(objects, "PodMonitor")["mixed-export"]["spec"]
    assert monitor["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics"}]
    for deployment in by_kind(objects, "Deployment").values():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert monitor["selector"]["matchLabels"].items() <= pod_labels.items()


def test_a_folder_gets_one_file_per_object(tmp_path):
    result = CliRunner().invoke(main, ["export", "k8s", str(MIXED.relative_to(ROOT)), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "m").glob("*.yaml"))) == len(export(MIXED, tmp_path))


@pytest.mark.parametrize("command", ["k8s", "helm", "compose"])
def test_an_invalid_file_is_reported_as_validate_reports_it(command, tmp_path):
    broken = "tests/data/pipelines/broken/unknown-buffer.yaml"
    validate = CliRunner().invoke(main, ["validate", broken])
    result = CliRunner().invoke(main, ["export", command, broken, "--out", str(tmp_path / "out")])
    assert result.exit_code == validate.exit_code == 2
    assert result.output == validate.output
    assert f"{broken}:12: error: stage 'filter': output 'brigth'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
