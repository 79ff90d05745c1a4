"""What ``alert_worker.testing`` gives a worker is byte for byte what a real sidecar sends it.

Rubin alerts (Confluent-framed: every schema version's sample alert, and alerts
with cutouts and timestamps made as Rubin's pipeline writes them) and both ZTF
packets (container files) go through a real sidecar on the session's Kafka to
three workers that record every Alert message they receive: one accepting
``*/*`` (the alerts as they are), one ``application/json`` (the JSON form), one
``application/json`` with ``fields`` (the projected JSON form). Each message
is compared, field by field, with what ``make_alert``, ``rubin_alert``,
``ztf_alert`` and ``json_form`` build for the same record.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from alert_worker import Alert, codecs
from alert_worker.testing import json_form, make_alert, rubin_alert, rubin_sample, ztf_alert
from alertsidecar.v1 import worker_pb2
from alert_sidecar.simulate.rubin import RubinAlertFactory
from tests.data import ZTF_PACKETS

from .stage_support import free_port

pytestmark = pytest.mark.kafka

FIELDS = ["diaSourceId", "alertId", "diaSource.psfFlux", "diaSource.midpointMjdTai", "prvDiaSources.band",
          "candid", "candidate.magpsf", "prv_candidates.jd", "cutoutDifference"]
COMPARED = ["id", "topic", "partition", "offset", "timestamp_ms", "key", "value", "content_type", "headers",
            "attempt", "source_content_type", "schema_id"]
FIRST_TIMESTAMP_MS = 1_762_052_645_000  # 2025-11-02T03:04:05Z; each record one second later


def rubin_sample_versions() -> list[str]:
    import glob
    import os

    import lsst.alert.packet as packet

    found = glob.glob(os.path.join(str(packet.get_schema_root()), "*", "*", "sample_data", "fakeAlert.avro"))
    return sorted({"{}.{}".format(*p.split(os.sep)[-4:-2]) for p in found}, key=lambda v: tuple(map(int, v.split("."))))


def inputs(topic: str) -> list[Alert]:
    """The input records, as alert_worker.testing builds them for a worker that takes them as they are."""
    made = []

    def kafka(i: int) -> dict:
        headers = [("trace", f"t{i}".encode()), ("survey", b"lsst" if i % 2 else b"ztf"), ("trace", b"again")]
        return {"topic": topic, "partition": 0, "offset": i, "timestamp_ms": FIRST_TIMESTAMP_MS + 1000 * i,
                "key": None if i == 1 else f"object-{i}".encode(), "headers": headers if i != 2 else ()}

    for version in rubin_sample_versions():
        made.append(rubin_alert(rubin_sample(version), version=version, **kafka(len(made))))
    for version in ("8.0", "11.1"):  # 8.0 has timestamp fields; both with cutouts and 30 previous sources
        factory = RubinAlertFactory(schema_version=version, seed=31, cutouts=True, prv_sources=30)
        for i in range(2):
            made.append(make_alert(factory.encode(factory.make(i)), content_type=codecs.AVRO_CONFLUENT,
                                   **kafka(len(made))))
    for packet in ZTF_PACKETS:
        made.append(ztf_alert(packet, **kafka(len(made))))
    return made


def produce(bootstrap: str, alerts: list[Alert]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for alert in alerts:
        producer.produce(alert.topic, value=alert.value, key=alert.key, headers=alert.headers or None,
                         partition=alert.partition, timestamp=alert.timestamp_ms)
        producer.flush(30)  # one at a time: the offsets are the order given
    assert producer.flush(30) == 0


def received(path: Path, count: int, sidecar, timeout: float = 120.0) -> list[worker_pb2.Alert]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            messages = [worker_pb2.Alert.FromString(base64.b64decode(line)) for line in lines]
            return sorted(messages, key=lambda m: m.offset)
        assert sidecar.alive, f"the sidecar ended:\n{sidecar.output[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"{path.name}: {len(lines)} of {count} alerts within {timeout:g} s:\n"
                         f"{sidecar.output[-3000:]}")


def differences(got: list[worker_pb2.Alert], expected: list[Alert]) -> list[str]:
    """What differs between the messages a worker received and those alert_worker.testing builds."""
    if len(got) != len(expected):
        return [f"{len(got)} alerts received, {len(expected)} expected"]
    found = []
    for message, alert in zip(got, expected):
        built = alert.to_proto()
        for name in COMPARED:
            mine, theirs = getattr(message, name), getattr(built, name)
            if name == "headers":
                mine, theirs = [(h.key, h.value) for h in mine], [(h.key, h.value) for h in theirs]
            elif name == "key":
                mine = message.key if message.HasField("key") else None
                theirs = built.key if built.HasField("key") else None
            if mine != theirs:
                where = ""
                if isinstance(mine, bytes) and isinstance(theirs, bytes):
                    at = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
                    where = f" (first difference at byte {at}: {mine[max(0, at - 30):at + 30]!r} against " \
                            f"{theirs[max(0, at - 30):at + 30]!r})"
                found.append(f"alert {built.id}: {name} differs{where}")
        if message.SerializeToString(deterministic=True) != built.SerializeToString(deterministic=True) and not found:
            found.append(f"alert {built.id}: the messages differ outside the fields compared")
    return found


def test_testing_builds_what_the_sidecar_sends(kafka_bootstrap, new_topic, procs, tmp_path):
    topic, sink, dead = new_topic(), new_topic(), new_topic()
    alerts = inputs(topic)
    assert {codecs.media_type(a.content_type) for a in alerts} == {codecs.AVRO_CONFLUENT, codecs.AVRO_OCF}
    produce(kafka_bootstrap, alerts)

    workers = {"raw": (["*/*"], []), "json": (["application/json"], []), "fields": (["application/json"], FIELDS)}
    started = {}
    for name, (accepts, fields) in workers.items():
        port = free_port()
        record = tmp_path / f"{name}.records"
        procs.worker("recorder.py", port, "--record", str(record), "--accepts", *accepts,
                     *(["--fields", *fields] if fields else []), name=f"recorder-{name}")
        sidecar = procs.sidecar("--in", f"kafka://{kafka_bootstrap}/{topic}", "--out", f"kafka://{kafka_bootstrap}/{sink}",
                                "--dead-letter", f"kafka://{kafka_bootstrap}/{dead}", "--worker", f"127.0.0.1:{port}",
                                "--group", f"matches-{name}-{topic}", "--decoders", "1", name=f"sidecar-{name}")
        started[name] = (record, sidecar)

    expected = {
        "raw": alerts,
        "json": [json_form(alert) for alert in alerts],
        "fields": [json_form(alert, fields=FIELDS) for alert in alerts],
    }
    got = {name: received(record, len(alerts), sidecar) for name, (record, sidecar) in started.items()}
    for name in workers:
        assert differences(got[name], expected[name]) == [], f"the {name} worker"

    # What the comparison covers: timestamps in UTC, projection, both Avro forms, keys and headers.
    as_json = [codecs.decode_json(m.value) for m in got["json"]]
    assert any(isinstance(v, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", v)
               for r in as_json for v in r.get("diaSource", {}).values())
    assert all(set(codecs.decode_json(m.value)) <= set(f.split(".")[0] for f in FIELDS) for m in got["fields"])
    assert {m.source_content_type for m in got["json"]} == {codecs.AVRO_CONFLUENT, codecs.AVRO_OCF}
    assert {m.schema_id for m in got["raw"]} >= {701, 800, 1101, 0}

    # ... and it fails when one byte, or one field, is not what the sidecar sent.
    flipped = got["json"][3].value[:100] + bytes([got["json"][3].value[100] ^ 1]) + got["json"][3].value[101:]
    tampered = expected["json"][:3] + [make_alert(flipped, **_kafka_fields(expected["json"][3]))] + expected["json"][4:]
    assert differences(got["json"], tampered)[0].startswith(
        f"alert {topic}/0/3: value differs (first difference at byte 100")
    mislabelled = make_alert(alerts[-1].value, **{**_kafka_fields(alerts[-1]), "content_type": codecs.OCTET_STREAM})
    assert differences(got["raw"], expected["raw"][:-1] + [mislabelled]) == [
        f"alert {topic}/0/{len(alerts) - 1}: content_type differs"]


def _kafka_fields(alert: Alert) -> dict:
    return {"topic": alert.topic, "partition": alert.partition, "offset": alert.offset,
            "timestamp_ms": alert.timestamp_ms, "key": alert.key, "headers": alert.headers,
            "content_type": alert.content_type, "source_content_type": alert.source_content_type,
            "schema_id": alert.schema_id}
