"""``alert-pipeline export helm``: the chart lints, and renders with its defaults what ``export k8s`` writes.

Rendered by the real helm (``make helm`` builds it from the Go module proxy
into a cache; ``$HELM`` names another).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from alert_sidecar.pipeline.cli import main
from tests.export_validation import problems
from tests.unit.test_export_k8s import MIXED, PIPELINES, ROOT, export

HELM_VERSION = "v4.3.2"  # the Makefile's HELM_VERSION
HELM = os.environ.get("HELM") or str(Path.home() / ".cache" / "alert-sidecar" / "tools" / f"helm-{HELM_VERSION}"
                                     / "helm")
NAMESPACE = "alerts"

needs_helm = pytest.mark.skipif(not shutil.which(HELM), reason=f"no helm at {HELM}: make helm builds it")


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def chart(path: Path, tmp_path: Path, *options: str) -> Path:
    out = tmp_path / "chart"
    result = CliRunner().invoke(main, ["export", "helm", str(path.relative_to(ROOT)), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return out


def helm(*args: str) -> str:
    done = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def render(directory: Path, *args: str) -> list[dict]:
    text = helm("template", "release", str(directory), "--namespace", NAMESPACE, *args)
    return [obj for obj in yaml.safe_load_all(text) if obj]


def without_managed_by(objects: list[dict]) -> list[dict]:
    """The one label that differs by design: Helm's objects say Helm manages them."""
    for obj in objects:
        for labels in (obj["metadata"].get("labels", {}),
                       obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})):
            labels.pop("app.kubernetes.io/managed-by", None)
    return sorted(objects, key=lambda obj: (obj["kind"], obj["metadata"]["name"]))


@needs_helm
@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_the_chart_lints_and_renders_what_export_k8s_writes(path, tmp_path):
    directory = chart(path, tmp_path, "--namespace", NAMESPACE)
    helm("lint", "--strict", str(directory), "--namespace", NAMESPACE)
    rendered = render(directory)
    assert [p for obj in rendered for p in problems(obj)] == []
    assert {obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] for obj in rendered} == {"Helm"}
    assert without_managed_by(rendered) == without_managed_by(export(path, tmp_path, "--namespace", NAMESPACE))


@needs_helm
def test_values_change_what_renders(tmp_path):
    directory = chart(MIXED, tmp_path)
    rendered = render(directory, "--set", "stages.brighten.keda.enabled=false", "--set", "stages.brighten.replicas=5",
                      "--set", "images.sidecar=registry.example.org/alert-sidecar:9.9",
                      "--set", "clusters.survey.bootstrap=other.example.org:9094",
                      "--namespace", "elsewhere")
    kinds = {(obj["kind"], obj["metadata"]["name"]): obj for obj in rendered}
    assert ("ScaledObject", "mixed-export-brighten") not in kinds
    assert ("ScaledObject", "mixed-export-classify") in kinds
    brighten = kinds[("Deployment", "mixed-export-brighten")]
    assert brighten["spec"]["replicas"] == 5
    assert brighten["metadata"]["namespace"] == "elsewhere"
    assert {c["image"] for c in brighten["spec"]["template"]["spec"]["containers"]} == {
        "registry.example.org/alert-sidecar:9.9", "alert-worker-r:0.1.0"}
    copy = kinds[("Deployment", "mixed-export-copy")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "survey=other.example.org:9094" in copy
    scaled = kinds[("ScaledObject", "mixed-export-classify")]["spec"]["triggers"][0]["metadata"]
    assert scaled["bootstrapServers"] == "mixed-export-broker-kafka-bootstrap.elsewhere.svc:9092"


@needs_helm
def test_a_template_left_wrong_is_caught(tmp_path):
    """The comparison can fail: a template that renders another replica count is seen."""
    directory = chart(MIXED, tmp_path)
    template = next((directory / "templates").glob("*-deployment-mixed-export-brighten.yaml"))
    template.write_text(template.read_text().replace('"stages" "brighten" "replicas"', '"stages" "classify" '
                                                                                         '"replicas"'))
    assert without_managed_by(render(directory)) != without_managed_by(export(MIXED, tmp_path))


def test_every_value_is_documented(tmp_path):
    directory = chart(MIXED, tmp_path)
    lines = (directory / "values.yaml").read_text().splitlines()
    for previous, line in zip(lines, lines[1:]):
        if line.strip() and not line.strip().startswith("#") and not line.rstrip().endswith(":"):
            assert previous.strip().startswith("#"), f"values.yaml: {line.strip()} has no comment"
    assert yaml.safe_load((directory / "Chart.yaml").read_text())["apiVersion"] == "v2"
    assert (directory / "templates" / "_helpers.tpl").is_file() and (directory / "templates" / "NOTES.txt").is_file()


def test_the_helm_version_is_the_makefiles():
    assert f"HELM_VERSION := {HELM_VERSION}\n" in (ROOT / "Makefile").read_text()
