"""``alert-pipeline export compose``: valid against the compose-spec schema, and the stages as the file says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from alert_sidecar.kafka.local import DEFAULT_VERSION
from alert_sidecar.pipeline.cli import main
from alert_sidecar.pipeline.load import load
from tests.export_validation import compose_problems
from tests.unit.test_export_k8s import MIXED, PIPELINES, ROOT


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def export(path: Path, tmp_path: Path) -> dict:
    out = tmp_path / "compose.yaml"
    result = CliRunner().invoke(main, ["export", "compose", str(path.relative_to(ROOT)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(out.read_text())


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_the_file_is_valid_compose(path, tmp_path):
    assert compose_problems(export(path, tmp_path)) == []


def test_a_wrong_field_is_caught(tmp_path):
    document = export(MIXED, tmp_path)
    document["services"]["brighten"]["deploy"]["replica"] = 3
    assert compose_problems(document)


def test_stages_and_clusters(tmp_path):
    pipeline, _ = load(MIXED)
    services = export(MIXED, tmp_path)["services"]
    brokers = ["kafka-broker-1", "kafka-broker-2", "kafka-broker-3"]
    for name in brokers:
        assert services[name]["image"] == f"apache/kafka:{DEFAULT_VERSION}"
        assert services[name]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert services[name]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
            "1@kafka-broker-1:9093,2@kafka-broker-2:9093,3@kafka-broker-3:9093")
    assert "kafka-survey" not in services  # a bootstrap cluster is used as it is
    topics = services["topics-broker"]["command"][2]
    assert ("--topic survey.alerts --partitions 8 --replication-factor 3 --config min.insync.replicas=2 "
            f"--config retention.ms={3 * 86400 * 1000} --config retention.bytes={50 * 2**30}") in topics
    for stage in pipeline.stages.values():
        service = services[stage.name]
        assert service["deploy"]["replicas"] == stage.instances
        assert "/ready" in service["healthcheck"]["test"][-1]
        assert service["depends_on"] == {"topics-broker": {"condition": "service_completed_successfully"}}
    brighten = services["brighten"]
    assert brighten["image"] == "alert-worker-r:0.1.0"
    assert brighten["command"][-3:] == ["--", "Rscript", "../../../../examples/r/brightening.R"]
    assert "broker=kafka-broker-1:9092,kafka-broker-2:9092,kafka-broker-3:9092" in brighten["command"]
    assert services["copy"]["image"] == "alert-sidecar:0.1.0" and services["copy"]["command"][-1] == "--mirror"
    assert services["copy"]["environment"]["SURVEY_PASSWORD"].startswith("${SURVEY_PASSWORD:?")
    assert services["score"]["command"][-2:] == ["--worker", "scorer.alerts.svc:50051"]
    # The schemas' folder, relative to the compose file as compose reads a bind mount's source.
    schemas = os.path.relpath(MIXED.parent, tmp_path.resolve())
    assert {"type": "bind", "source": schemas, "target": "/etc/alert-pipeline", "read_only": True} in \
        services["classify"]["volumes"]
