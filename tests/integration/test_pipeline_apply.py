"""``alert-pipeline plan`` and ``apply`` on a real Kafka: topics as the file says, twice a no-op, unsafe refused."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

pytestmark = pytest.mark.kafka

PIPELINE = Path(sys.executable).parent / "alert-pipeline"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PIPELINE), *args], capture_output=True, text=True, timeout=120)


def write(path: Path, bootstrap: str, prefix: str, partitions: int = 3, retention: str = "2d",
          replication: int = 1) -> Path:
    path.write_text(f"""\
version: 1
name: applied
clusters:
  main: {{bootstrap: "{bootstrap}"}}
buffers:
  raw: {{cluster: main, topic: {prefix}-raw, partitions: {partitions}, replication: {replication},
         min_insync_replicas: 1, retention: {{time: {retention}, bytes: 1GiB}}}}
  out: {{cluster: main, topic: {prefix}-out, replication: 1, min_insync_replicas: 1}}
stages:
  copy: {{input: raw, output: out, worker: none}}
""")
    return path


def describe(bootstrap: str, topic: str) -> tuple[int, dict[str, str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=10)
    return partitions, {key: entries[key].value for key in ("retention.ms", "retention.bytes", "min.insync.replicas")}


def test_plan_then_apply_then_apply_again_changes_nothing(kafka_bootstrap, tmp_path):
    prefix = f"apply-{uuid.uuid4().hex[:8]}"
    file = write(tmp_path / "p.yaml", kafka_bootstrap, prefix)
    planned = run("plan", str(file))
    assert planned.returncode == 0, planned.stderr
    assert f"+ raw (main/{prefix}-raw): create with 3 partitions, replication 1" in planned.stdout
    assert "plan: 2 changes" in planned.stdout
    assert prefix not in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics.__repr__()

    applied = run("apply", str(file))
    assert applied.returncode == 0, applied.stderr
    assert "apply: 2 changes made" in applied.stdout
    assert describe(kafka_bootstrap, f"{prefix}-raw") == (3, {"retention.ms": str(2 * 86_400_000),
                                                               "retention.bytes": str(2**30),
                                                               "min.insync.replicas": "1"})
    again = run("apply", str(file))
    assert again.returncode == 0 and "apply: nothing to change" in again.stdout, again.stdout
    assert f"= raw (main/{prefix}-raw)" in again.stdout

    # More partitions and another retention: changed in place, shown first.
    write(file, kafka_bootstrap, prefix, partitions=5, retention="12h")
    grown = run("apply", str(file))
    assert grown.returncode == 0, grown.stderr
    assert "partitions 3 -> 5" in grown.stdout and f"retention.ms {2 * 86_400_000} -> {12 * 3_600_000}" in grown.stdout
    assert describe(kafka_bootstrap, f"{prefix}-raw")[0] == 5
    assert describe(kafka_bootstrap, f"{prefix}-raw")[1]["retention.ms"] == str(12 * 3_600_000)


def test_fewer_partitions_or_other_replication_is_refused_and_nothing_changes(kafka_bootstrap, tmp_path):
    prefix = f"refuse-{uuid.uuid4().hex[:8]}"
    file = write(tmp_path / "p.yaml", kafka_bootstrap, prefix, partitions=4)
    assert run("apply", str(file)).returncode == 0
    write(file, kafka_bootstrap, prefix, partitions=2, retention="1d")
    refused = run("apply", str(file))
    assert refused.returncode == 2
    assert f"! raw (main/{prefix}-raw): has 4 partitions and the file asks for 2: Kafka cannot remove partitions" \
        in refused.stdout
    assert "nothing was changed" in refused.stderr and "Traceback" not in refused.stderr
    assert describe(kafka_bootstrap, f"{prefix}-raw") == (4, {"retention.ms": str(2 * 86_400_000),
                                                               "retention.bytes": str(2**30),
                                                               "min.insync.replicas": "1"})
    write(file, kafka_bootstrap, prefix, partitions=4, replication=3)
    refused = run("plan", str(file))
    assert refused.returncode == 2
    assert "has replication 1 and the file asks for 3: apply does not move replicas" in refused.stdout


def test_an_unreachable_cluster_is_one_line(tmp_path):
    file = write(tmp_path / "p.yaml", "127.0.0.1:1", "nowhere")
    result = run("plan", str(file))
    assert result.returncode == 3
    assert "cannot reach cluster 'main' at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr
