"""``alert-sidecar inspect`` on real alerts: ZTF's packets, every Rubin schema version, a Kafka topic.

What it prints is compared with what fastavro reads from the same bytes,
written in the contract's JSON form (64-bit integers in full, bytes as
base64, NaN as null, timestamps ISO 8601 in UTC).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from lsst.alert.packet import SchemaRegistry

from alert_worker.codecs import encode_confluent
from alert_sidecar.commands.inspect import inspect_command
from alert_sidecar.simulate.rubin import RubinAlertFactory
from alert_sidecar.formats.schemas import RubinSchemas
from tests.data import ZTF_PACKETS

RUBIN = SchemaRegistry.all_schemas_from_filesystem()
SAMPLES = Path(__import__("lsst.alert.packet", fromlist=["x"]).__file__).parent / "schema"
SCHEMAS = RubinSchemas()  # one for the module: it reads every schema version once
VERSIONS = sorted(RUBIN.known_versions, key=lambda v: tuple(map(int, v.split("."))))


def inspect(*args: str):
    return CliRunner().invoke(inspect_command, [str(a) for a in args])


def json_form(value):
    """A record as the contract writes it in JSON, built independently of the code under test."""
    if isinstance(value, dict):
        return {k: json_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_form(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def framed(schema_id: int, record: dict) -> bytes:
    return encode_confluent(record, SCHEMAS.parsed(schema_id), schema_id)


def sample_file(version: str) -> Path:
    major, minor = version.split(".")
    return SAMPLES / major / minor / "sample_data" / "fakeAlert.avro"


def read_first(path: Path) -> dict:
    with open(path, "rb") as handle:
        return next(fastavro.reader(handle))


# --- Files ---------------------------------------------------------------------------


def test_ztf_packets_come_back_whole_with_exact_ids_and_their_cutouts():
    assert len(ZTF_PACKETS) == 2
    result = inspect(*ZTF_PACKETS)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout_bytes.splitlines()
    assert len(lines) == 2
    for packet, line in zip(ZTF_PACKETS, lines):
        record = read_first(packet)
        assert json.loads(line) == json_form(record)  # every field
        assert b'"candid":%d' % record["candid"] in line  # 64-bit, in full in the text
        assert str(record["candid"]) in packet.name
        printed = json.loads(line)
        for cutout in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            stamp = base64.b64decode(printed[cutout]["stampData"])
            assert stamp == record[cutout]["stampData"]
            assert stamp[:2] == b"\x1f\x8b"  # gzipped FITS, as ZTF sends it


def test_every_rubin_version_framed_as_rubin_does_comes_back_field_for_field(tmp_path):
    files, expected = [], []
    for k, version in enumerate(VERSIONS):
        major, minor = map(int, version.split("."))
        schema_id = major * 100 + minor
        record = read_first(sample_file(version))
        # Ids that a double cannot hold (the samples' own are multiples of 2**5).
        id_field = "diaSourceId" if "diaSourceId" in record else "alertId"
        record[id_field] = 2**62 + 2 * k + 1
        record["diaSource"]["diaSourceId"] = 2**61 + 2 * k + 1
        file = tmp_path / f"rubin-{version}.bin"
        file.write_bytes(framed(schema_id, record))
        files.append(file)
        expected.append((schema_id, id_field, record))
    result = inspect("--meta", *files)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout_bytes.splitlines()
    assert len(lines) == len(VERSIONS) == 15
    for line, file, (schema_id, id_field, record) in zip(lines, files, expected):
        envelope = json.loads(line)
        assert envelope["schema_id"] == schema_id
        assert envelope["file"] == str(file)
        assert envelope["content_type"] == "application/vnd.apache.avro+confluent"
        assert envelope["alert"] == json_form(record)
        assert b'"%s":%d' % (id_field.encode(), record[id_field]) in line


def test_rubins_sample_files_unframed_read_as_container_files():
    result = inspect(*(sample_file(v) for v in VERSIONS))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [json.loads(line) for line in lines] == [json_form(read_first(sample_file(v))) for v in VERSIONS]


def test_undecodable_files_are_named_on_stderr_and_the_rest_still_print(tmp_path):
    good = framed(1101, read_first(sample_file("11.1")))
    (tmp_path / "good.bin").write_bytes(good)
    (tmp_path / "corrupt.bin").write_bytes(good[:len(good) // 2])  # cut in the middle of the body
    (tmp_path / "unknown-id.bin").write_bytes(b"\x00" + struct.pack(">I", 4242) + good[5:])
    (tmp_path / "text.txt").write_bytes(b"hello, not an alert")
    names = ["good.bin", "corrupt.bin", "unknown-id.bin", "text.txt", "missing.bin"]
    result = inspect(*(tmp_path / n for n in names), ZTF_PACKETS[0])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2  # good.bin and the ZTF packet
    assert json.loads(lines[1])["candid"] == read_first(ZTF_PACKETS[0])["candid"]
    errors = result.stderr.splitlines()
    assert len(errors) == 5
    corrupt, unknown, text, missing, summary = errors
    assert str(tmp_path / "corrupt.bin") in corrupt and "does not decode with schema id 1101" in corrupt
    assert str(tmp_path / "unknown-id.bin") in unknown and "schema id 4242 is unknown" in unknown
    assert "lsst-alert-packet" in unknown
    assert "cannot be told from its bytes" in text and "--format" in text
    assert "missing.bin" in missing and "cannot be read" in missing
    assert summary == "alert-sidecar inspect: 4 of 6 alerts could not be decoded"


def test_a_format_given_is_used_and_a_mismatch_said(tmp_path):
    result = inspect("--format", "avro-confluent", ZTF_PACKETS[0])
    assert result.exit_code == 1
    assert "not Confluent wire format" in result.stderr and "format avro-confluent, given" in result.stderr
    result = inspect("--format", "raw", ZTF_PACKETS[0])
    assert result.exit_code == 0
    assert base64.b64decode(json.loads(result.stdout)) == ZTF_PACKETS[0].read_bytes()


def test_fields_project_the_alert_as_a_worker_asking_for_them_gets_it():
    result = inspect("--field", "candid", "--field", "candidate.magpsf", "--field", "prv_candidates.jd",
                     ZTF_PACKETS[1])
    assert result.exit_code == 0, result.stderr
    record = read_first(ZTF_PACKETS[1])
    assert json.loads(result.stdout) == {
        "candid": record["candid"], "candidate": {"magpsf": record["candidate"]["magpsf"]},
        "prv_candidates": [{"jd": p["jd"]} for p in record["prv_candidates"]]}


def test_as_a_process_output_to_a_closed_pipe_ends_quietly():
    # `inspect ... | head -1`: the reader leaves after one line.
    command = [sys.executable, "-m", "alert_sidecar.cli", "inspect", *map(str, ZTF_PACKETS * 20)]
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = reader.stdout.readline()
    reader.stdout.close()
    _, stderr = reader.communicate(timeout=60)
    assert json.loads(first)["candid"] == read_first(ZTF_PACKETS[0])["candid"]
    assert reader.returncode == 0
    assert b"Traceback" not in stderr


# --- Kafka -------------------------------------------------------------------------------


def _produce(bootstrap: str, topic: str, messages: list[dict]) -> list[dict]:
    """Produce messages (value, key, headers, partition); return them with the offsets Kafka gave."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    delivered = []
    for message in messages:
        def record(err, msg, message=message):
            assert err is None, err
            delivered.append({**message, "offset": msg.offset(), "timestamp_ms": msg.timestamp()[1]})
        producer.produce(topic, message["value"], key=message.get("key"), headers=message.get("headers"),
                         partition=message["partition"], on_delivery=record)
    assert producer.flush(30) == 0
    assert len(delivered) == len(messages)
    return sorted(delivered, key=lambda m: (m["partition"], m["offset"]))


@pytest.mark.kafka
def test_a_topic_of_rubin_7_and_11_alerts_reads_back_with_meta(kafka_bootstrap, new_topic):
    # Schema evolution: one topic holding alerts of schemas 7.1 and 11.1 side by side.
    topic = new_topic(partitions=2)
    old = RubinAlertFactory(schema_version="7.1", seed=5, cutouts=True, prv_sources=3)
    new = RubinAlertFactory(schema_version="11.1", seed=6, cutouts=True, prv_sources=3)
    messages = []
    for i in range(8):
        factory = old if i % 2 else new
        messages.append({"value": factory.encode(factory.make(i)), "key": f"visit-{i // 4}".encode(),
                         "headers": [("survey", b"rubin")], "partition": i % 2, "schema_id": factory.schema_id})
    delivered = _produce(kafka_bootstrap, topic, messages)

    result = inspect(f"kafka://{kafka_bootstrap}/{topic}", "--meta")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout_bytes.splitlines()
    assert len(lines) == 8
    printed = sorted((json.loads(line) for line in lines), key=lambda e: (e["partition"], e["offset"]))
    for envelope, message in zip(printed, delivered):
        assert envelope["topic"] == topic and envelope["file"] is None
        assert (envelope["partition"], envelope["offset"]) == (message["partition"], message["offset"])
        assert envelope["timestamp_ms"] == message["timestamp_ms"] > 0
        assert envelope["key"] == message["key"].decode()
        assert envelope["headers"] == {"survey": "rubin"}
        assert envelope["schema_id"] == message["schema_id"] in (701, 1101)
        assert envelope["content_type"] == "application/vnd.apache.avro+confluent"
        body = io.BytesIO(message["value"][5:])
        record = fastavro.schemaless_reader(body, SCHEMAS.parsed(message["schema_id"]), None)
        assert envelope["alert"] == json_form(record)
        source_id = record["diaSource"]["diaSourceId"]  # 7.1 names the alert's id alertId, 11.1 diaSourceId
        assert source_id > 2**53  # beyond the integers a double holds exactly...
    # ... exact in the text.
    assert all(b'"diaSourceId":%d' % json.loads(line)["alert"]["diaSource"]["diaSourceId"] in line
               for line in lines)
    assert {e["schema_id"] for e in printed} == {701, 1101}


@pytest.mark.kafka
def test_a_topic_with_corrupt_and_unknown_alerts_says_which_and_prints_the_rest(kafka_bootstrap, new_topic):
    topic = new_topic()
    factory = RubinAlertFactory(schema_version="11.1", seed=9, cutouts=False, prv_sources=1)
    good = [factory.encode(factory.make(i)) for i in range(3)]
    unknown = b"\x00" + struct.pack(">I", 1299) + good[0][5:]
    _produce(kafka_bootstrap, topic, [{"value": v, "partition": 0}
                                      for v in (good[0], good[1][:40], unknown, good[2], None)])
    result = inspect(f"kafka://{kafka_bootstrap}/{topic}")
    assert result.exit_code == 1
    ids = [json.loads(line)["diaSourceId"] for line in result.stdout.splitlines()]
    assert ids == [factory.dia_source_id(0), factory.dia_source_id(2)]
    errors = result.stderr.splitlines()
    where = f"kafka://{kafka_bootstrap}/{topic} partition 0 offset"
    assert errors[0].startswith(f"alert-sidecar inspect: {where} 1: cannot decode:")
    assert "schema id 1101" in errors[0]
    assert errors[1].startswith(f"alert-sidecar inspect: {where} 2: cannot decode: schema id 1299 is unknown")
    assert errors[2].startswith(f"alert-sidecar inspect: {where} 4: cannot decode: it has no value")
    assert errors[3] == "alert-sidecar inspect: 3 of 5 alerts could not be decoded"


@pytest.mark.kafka
def test_limit_stops_early_and_an_empty_topic_prints_nothing(kafka_bootstrap, new_topic):
    topic = new_topic()
    factory = RubinAlertFactory(seed=12, cutouts=False, prv_sources=0)
    _produce(kafka_bootstrap, topic, [{"value": v, "partition": 0} for v in factory.alerts(20)])
    result = inspect(f"kafka://{kafka_bootstrap}/{topic}", "--limit", "3", "--field", "diaSourceId")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["diaSourceId"] for line in result.stdout.splitlines()] == \
        [factory.dia_source_id(i) for i in range(3)]
    result = inspect(f"kafka://{kafka_bootstrap}/{new_topic()}")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.kafka
def test_from_end_prints_only_alerts_that_arrive(kafka_bootstrap, new_topic):
    topic = new_topic()
    factory = RubinAlertFactory(seed=13, cutouts=False, prv_sources=0)
    _produce(kafka_bootstrap, topic, [{"value": factory.encode(factory.make(0)), "partition": 0}])
    process = subprocess.Popen(
        [sys.executable, "-m", "alert_sidecar.cli", "inspect", f"kafka://{kafka_bootstrap}/{topic}",
         "--from-end", "--limit", "1", "--timeout", "30", "--field", "diaSourceId"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Its assignment at the end takes effect a moment after it starts:
        # produce until it has seen one, then it stops (--limit 1).
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        deadline = time.monotonic() + 30
        i = 1
        while process.poll() is None and time.monotonic() < deadline:
            producer.produce(topic, factory.encode(factory.make(i)))
            producer.flush(10)
            i += 1
            time.sleep(0.5)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    [line] = out.splitlines()
    assert json.loads(line)["diaSourceId"] in {factory.dia_source_id(k) for k in range(1, i)}


@pytest.mark.kafka
def test_a_missing_topic_and_a_missing_broker_are_said_with_exit_code_3(kafka_bootstrap):
    result = inspect(f"kafka://{kafka_bootstrap}/no-such-topic-here", "--timeout", "5")
    assert result.exit_code == 3
    assert "no-such-topic-here does not exist" in result.stderr and "Traceback" not in result.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = inspect(f"kafka://127.0.0.1:{port}/alerts", "--timeout", "1")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"alert-sidecar: error: cannot reach Kafka at 127.0.0.1:{port}")


def test_a_bad_source_uri_is_a_config_error():
    result = inspect("kafka://localhost/alerts")
    assert result.exit_code == 2
    assert "is not host:port" in result.stderr


def test_a_registry_that_is_down_stops_inspect_with_its_reason(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = inspect("--schema-registry", f"http://127.0.0.1:{port}", ZTF_PACKETS[0],
                     *(sample_file(v) for v in VERSIONS))
    # ZTF's and Rubin's sample files carry their schemas: no registry needed.
    assert result.exit_code == 0, result.stderr
    framed_alert = framed(701, read_first(sample_file("7.1")))
    (tmp_path / "a.bin").write_bytes(framed_alert)
    (tmp_path / "b.bin").write_bytes(framed_alert)
    result = inspect("--schema-registry", f"http://127.0.0.1:{port}", tmp_path / "a.bin", tmp_path / "b.bin")
    assert result.exit_code == 1
    [error] = result.stderr.splitlines()  # one line, and it stops: every later alert would wait for it too
    assert error.startswith(f"alert-sidecar: error: schema registry http://127.0.0.1:{port} is unavailable")
    assert result.stdout == ""
