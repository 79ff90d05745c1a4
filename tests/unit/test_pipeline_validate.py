"""The pipeline file and `alert-pipeline validate`: every kind of mistake, at its line, and never a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from alert_sidecar.exceptions import ConfigError
from alert_sidecar.kafka.buffers import FORMAT_NAMES
from alert_sidecar.pipeline import PipelineError, load, loads, schema
from alert_sidecar.pipeline.load import find_cycles

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pipelines" / "three-stages.yaml"
BROKEN = ROOT / "tests" / "data" / "pipelines" / "broken"


def errors_of(path: Path) -> list[str]:
    with pytest.raises(PipelineError) as caught:
        load(path)
    assert isinstance(caught.value, ConfigError)
    return [str(error) for error in caught.value.errors]


def test_the_example_is_valid_with_its_defaults():
    pipeline, warnings = load(EXAMPLE)
    assert warnings == []
    assert pipeline.summary() == "3 stages, 5 buffers on 2 clusters"
    assert pipeline.clusters["upstream"].is_local and pipeline.clusters["upstream"].local_brokers == 1
    alerts = pipeline.buffers["alerts"]
    assert (alerts.replication, alerts.min_insync_replicas) == (1, 1)  # 3 and 2, capped by one broker
    assert alerts.retention_ms == 7 * 86_400_000 and alerts.retention_bytes == 10 * 1024**3
    assert pipeline.buffers["local-alerts"].topic == "alerts" and pipeline.buffers["bright"].topic == "bright"
    assert pipeline.stages["mirror"].is_mirror
    keep = pipeline.stages["keep"]
    assert keep.group == "three-stages-keep" and keep.worker.protocol == "grpc" and keep.worker.language == "python"
    filter_ = pipeline.stages["filter"]
    assert filter_.writes() == ["bright", "filter-dead"] and filter_.line == 40
    assert [stage.name for stage in pipeline.readers("bright")] == ["keep"]
    assert [stage.name for stage in pipeline.writers("bright")] == ["filter"]


# One file per kind of mistake: the exact FILE:LINE and the words that say what to do.
CASES = {
    "not-yaml.yaml": (4, ["not valid YAML", "expected ',' or '}'"]),
    "empty.yaml": (1, ["file is empty", "version: 1"]),
    "top-level-list.yaml": (1, ["top level is a list", "mapping"]),
    "duplicate-key.yaml": (8, ["duplicate key 'alerts'", "first at line 7"]),
    "unknown-key.yaml": (12, ["stages.filter", "unknown key 'ouput'", "did you mean 'output'"]),
    "missing-input.yaml": (10, ["stages.filter", "no input", "input: BUFFER"]),
    "unknown-buffer.yaml": (12, ["output 'brigth'", "not defined under buffers", "did you mean 'bright'"]),
    "unknown-cluster.yaml": (8, ["cluster 'mian'", "did you mean 'main'"]),
    "loop.yaml": (10, ["loop", "enrich -> enriched -> classify -> classified -> feedback -> alerts -> enrich"]),
    "reads-own-output.yaml": (12, ["reads and writes buffer 'alerts'", "write to another buffer"]),
    "zero-partitions.yaml": (7, ["buffers.alerts.partitions", "at least 1 partition"]),
    "insync-over-replication.yaml": (8, ["min_insync_replicas is 2 but replication is 1", "at most 1"]),
    "replication-over-brokers.yaml": (8, ["replication is 3", "1 broker", "brokers: 3"]),
    "exactly-once-across-clusters.yaml": (14, ["exactly_once", "input 'alerts' on upstream",
                                               "output 'bright' on downstream", "exactly_once: false"]),
    "mirror-with-routes.yaml": (14, ["routes but no worker", "add a worker or remove the routes"]),
    "zero-instances.yaml": (14, ["stages.filter.instances", "at least 1 instance"]),
    "negative-retention.yaml": (10, ["retention.time is -7d", "positive duration"]),
    "literal-secret.yaml": (6, ["secrets.sasl.password", "@env:VAR or @file:PATH"]),
    "secret-in-settings.yaml": (6, ["settings.sasl.password is a secret", "move it to `secrets:"]),
}


def test_every_broken_file_has_a_case():
    assert sorted(CASES) == sorted(path.name for path in BROKEN.glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_broken_file_says_where_and_what(name):
    line, words = CASES[name]
    errors = errors_of(BROKEN / name)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{BROKEN / name}:{line}: "), errors
    for word in words:
        assert word in errors[0]
    assert "hunter2" not in errors[0]


def test_all_errors_are_reported_in_line_order():
    text = (BROKEN / "unknown-cluster.yaml").read_text().replace("output: bright", "output: brigth")
    text = text.replace("partitions: 2", "partitions: 0")
    with pytest.raises(PipelineError) as caught:
        loads(text, "p.yaml")
    assert [error.line for error in caught.value.errors] == [7, 8, 12]
    assert str(caught.value).splitlines()[0].startswith("p.yaml:7: buffers.alerts.partitions")


def test_a_secret_value_is_never_shown():
    text = (BROKEN / "literal-secret.yaml").read_text().replace("hunter2", "12345")
    with pytest.raises(PipelineError) as caught:
        loads(text, "p.yaml")
    assert "12345" not in str(caught.value)


BASE = (BROKEN / "unknown-cluster.yaml").read_text().replace("mian", "main")


def test_warnings_a_lonely_buffer_and_idle_instances():
    text = BASE.replace("  bright: {cluster: main}", "  bright: {cluster: main}\n  spare: {cluster: main}")
    text = text.replace("    worker:", "    instances: 3\n    worker:")
    pipeline, warnings = loads(text, "p.yaml")
    assert [str(warning) for warning in warnings] == [
        "p.yaml:9: buffer 'spare' is neither read nor written by any stage: connect it to a stage, or remove it",
        "p.yaml:14: stage 'filter' has 3 instances but its input 'alerts' has 2 partitions: 1 would sit idle; "
        "raise the buffer's partitions or lower instances",
    ]
    assert warnings[0].format().startswith("p.yaml:9: warning: ")


def test_defaults_and_worker_protocol():
    text = BASE.replace('{address: "localhost:50051"}', '{command: ["Rscript", "examples/r/brightening.R"]}')
    pipeline, _ = loads(text, "p.yaml")
    stage = pipeline.stages["filter"]
    assert (stage.worker.language, stage.worker.protocol) == ("r", "connect")
    assert (stage.instances, stage.processes, stage.ordering, stage.group) == (1, 1, "partition", "broken-filter")
    assert pipeline.buffers["bright"].partitions == 1


def test_a_worker_needs_command_or_address_but_not_both():
    text = BASE.replace('{address: "localhost:50051"}', '{address: "h:1", command: [w]}')
    with pytest.raises(PipelineError, match=r"p.yaml:13: stage 'filter': a worker has a command"):
        loads(text, "p.yaml")


def test_shared_consumer_group():
    text = BASE + "  again:\n    input: alerts\n    output: bright\n    group: broken-filter\n    worker: none\n"
    with pytest.raises(PipelineError, match=r"p.yaml:17: stages 'filter' and 'again' share the consumer group"):
        loads(text, "p.yaml")


def test_a_schema_error_is_not_reported_again_by_references():
    text = BASE.replace("  bright: {cluster: main}", "  bright: {cluster: main, partitions: many}")
    with pytest.raises(PipelineError) as caught:
        loads(text, "p.yaml")
    assert [str(error) for error in caught.value.errors] == [
        "p.yaml:8: buffers.bright.partitions: 'many' is not of type 'integer'"]


def test_an_enum_suggests():
    text = BASE.replace("  bright: {cluster: main}", "  bright: {cluster: main, format: avro-confluen}")
    with pytest.raises(PipelineError, match=r"p.yaml:8: .*'avro-confluen' is not one of .*mean 'avro-confluent'"):
        loads(text, "p.yaml")


@pytest.mark.parametrize("text", ["\x00\x01", "a: [", "- 1\n- 2", "42", "just words", "version: 1\n---\nx: 1",
                                  "a: &x [*x]", "? [a]\n: b", "version: !!int nope", "{}", "stages: 3"])
def test_odd_input_is_an_error_never_a_crash(text):
    with pytest.raises(PipelineError) as caught:
        loads(text, "p.yaml")
    assert all(error.line >= 1 for error in caught.value.errors)


def test_a_missing_file():
    errors = errors_of(ROOT / "no-such.yaml")
    assert errors == [f"{ROOT / 'no-such.yaml'}: cannot read the file: No such file or directory"]


def test_the_schema_is_valid_and_agrees_with_the_sidecar():
    jsonschema.Draft202012Validator.check_schema(schema())
    assert tuple(schema()["$defs"]["buffer"]["properties"]["format"]["enum"]) == FORMAT_NAMES
    shipped = json.loads((ROOT / "runtime/alert_sidecar/pipeline/schema.json").read_text())
    assert shipped == schema()


def test_a_chain_has_no_loop():
    pipeline, _ = loads(BASE, "p.yaml")
    assert find_cycles(pipeline) == []


def _console_script() -> str:
    script = Path(sys.executable).parent / "alert-pipeline"
    return str(script) if script.exists() else shutil.which("alert-pipeline") or "alert-pipeline"


def test_the_console_script(tmp_path):
    good = subprocess.run([_console_script(), "validate", str(EXAMPLE)], capture_output=True, text=True,
                          timeout=60)
    assert good.returncode == 0, good.stderr
    assert good.stdout == f"{EXAMPLE}: 3 stages, 5 buffers on 2 clusters: valid\n"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for path, line in [(BROKEN / "loop.yaml", 10), (binary, 1), (tmp_path / "missing.yaml", None)]:
        bad = subprocess.run([_console_script(), "validate", str(path)], capture_output=True, text=True,
                             timeout=60)
        assert bad.returncode == 2, bad.stderr
        assert "Traceback" not in bad.stderr
        assert bad.stderr.startswith(f"{path}:{line}: error: " if line else f"{path}: error: ")
        assert bad.stderr.splitlines()[-1].startswith(f"{path}: invalid (1 error")


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("  main:", "  main.eu:", "p.yaml:4: clusters: 'main.eu' is not a valid name: a cluster's name is"),
    ('{address: "localhost:50051"}', "python", "p.yaml:13: stages.filter.worker: a worker is a mapping with"),
    ("version: 1", "version: 2", "p.yaml:1: version: version must be 1"),
    ("name: broken", "name: broken\nextra: 1", "p.yaml:3: top level: unknown key 'extra' (known: buffers,"),
])
def test_schema_messages_of_the_file_own(old, new, expected):
    with pytest.raises(PipelineError) as caught:
        loads(BASE.replace(old, new), "p.yaml")
    assert str(caught.value.errors[0]).startswith(expected), caught.value.errors


EXAMPLES = sorted((ROOT / "examples" / "pipelines").glob("*.yaml"))


def test_there_are_example_pipelines():
    assert {p.name for p in EXAMPLES} >= {"three-stages.yaml", "seed-evaluation.yaml"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_pipeline_validates_without_warnings(example):
    result = subprocess.run([str(Path(sys.executable).parent / "alert-pipeline"), "validate", str(example)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout.endswith(": valid\n"), (result.stdout, result.stderr)
    pipeline, _ = load(example)
    for stage in pipeline.stages.values():  # a worker's script, relative to the file's folder, is there
        if stage.worker and stage.worker.command:
            script = [part for part in stage.worker.command if part.endswith((".py", ".R"))]
            assert all((example.parent / part).exists() for part in script), (stage.name, script)
