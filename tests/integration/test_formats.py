"""Alert formats through a real stage: Rubin (several schema versions in one buffer), ZTF, JSON;
workers that ask for JSON and for raw Avro on the same buffer; dead letters for bad bytes."""

from __future__ import annotations

import base64
import glob
import io
import json
from pathlib import Path

import fastavro
import orjson
import pytest
from confluent_kafka import Producer

from alert_sidecar.formats.decoding import to_json
from alert_sidecar.simulate.rubin import RubinAlertFactory

from tests.data import ZTF_PACKETS, ZTF_SCHEMA_DIR

from .stage_support import free_port, header, read_topic

pytestmark = pytest.mark.kafka


def uri(bootstrap, topic, **options):
    query = "&".join(f"{k.replace('_', '-')}={v}" for k, v in options.items())
    return f"kafka://{bootstrap}/{topic}" + (f"?{query}" if query else "")


def write(bootstrap, topic, values):
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0


def run_stage(procs, bootstrap, source, sink, dead, accepts, *fields, name="stage", extra=()):
    port = free_port()
    procs.worker("echo.py", port, "--accepts", accepts, *(["--fields", *fields] if fields else []), name=f"w-{name}")
    return procs.sidecar("--in", uri(bootstrap, source), "--out", sink, "--dead-letter", uri(bootstrap, dead),
                         "--worker", f"127.0.0.1:{port}", "--group", f"{name}-{source}", *extra, name=name)


def json_of(record) -> dict:
    return orjson.loads(to_json(record))


def test_rubin_versions_in_one_buffer_for_json_and_avro_workers(kafka_bootstrap, new_topic, procs):
    """Schema evolution (7.x and 11.x in one topic), and both forms of worker on the same buffer."""
    source, by_json, by_avro, dead = (new_topic() for _ in range(4))
    truth = {}
    values = []
    for seed, version in ((11, "7.4"), (12, "11.1")):
        factory = RubinAlertFactory(schema_version=version, seed=seed, cutouts=True, prv_sources=5)
        for i in range(30):
            record = factory.make(i)
            truth[record["diaSourceId"] if "diaSourceId" in record else record["alertId"]] = (factory.schema_id, record)
            values.append(factory.encode(record))
    values.sort(key=len)  # interleave the versions in the topic
    write(kafka_bootstrap, source, values)
    run_stage(procs, kafka_bootstrap, source, uri(kafka_bootstrap, by_json), dead, "json", name="json")
    run_stage(procs, kafka_bootstrap, source, uri(kafka_bootstrap, by_avro), dead, "avro", name="avro")
    for sink, how in ((by_json, "json"), (by_avro, "avro")):
        outputs = read_topic(kafka_bootstrap, sink, minimum=60, timeout=90)
        assert len(outputs) == 60, how
        for message in outputs:
            got = orjson.loads(message.value())
            key = got["diaSourceId"] if "diaSourceId" in got else got["alertId"]
            schema_id, record = truth[key]
            assert int(header(message, "schema-id")) == schema_id
            assert got == json_of(record), f"{how}: alert {key} differs"
        if how == "json":
            assert header(outputs[0], "source-content-type") == b"application/vnd.apache.avro+confluent"
    assert read_topic(kafka_bootstrap, dead, settle=0.5) == []


def test_every_lsst_sample_alert_through_a_stage(kafka_bootstrap, new_topic, procs):
    import lsst.alert.packet as packet

    schema_root = Path(packet.__file__).parent / "schema"
    values, expected = [], []
    for sample in sorted(glob.glob(str(schema_root / "*" / "*" / "sample_data" / "fakeAlert.avro"))):
        major, minor = Path(sample).parts[-4:-2]
        schema_id = int(major) * 100 + int(minor)
        with open(sample, "rb") as handle:
            reader = fastavro.reader(handle)
            writer_schema = reader.writer_schema
            for record in reader:
                body = io.BytesIO()
                fastavro.schemaless_writer(body, fastavro.parse_schema(writer_schema), record)
                values.append(b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue())
                expected.append(json_of(record))
    assert len(values) >= 10
    source, sink, dead = new_topic(), new_topic(), new_topic()
    write(kafka_bootstrap, source, values)
    run_stage(procs, kafka_bootstrap, source, uri(kafka_bootstrap, sink), dead, "json")
    outputs = read_topic(kafka_bootstrap, sink, minimum=len(values), timeout=90)
    assert [orjson.loads(m.value()) for m in outputs] == expected  # every field, 64-bit ids included


def ztf_schema():
    """ZTF's published schema (4.02): its named types live in files named after their short names."""
    from alert_sidecar.formats.schemas import inline_named_types, named_types

    named = {}
    for name in ("cutout", "candidate", "prv_candidate", "fp_hist"):
        named.update(named_types(json.loads((ZTF_SCHEMA_DIR / f"{name}.avsc").read_text())))
    # Inline the named types so that the schema embedded in each packet stands alone, as ZTF's do.
    alert = inline_named_types(json.loads((ZTF_SCHEMA_DIR / "alert.avsc").read_text()), named)
    return fastavro.parse_schema(alert)


def made_ztf_packets(count):
    """ZTF packets written with ZTF's published schema (4.02), one container file each, as ZTF sends them."""
    schema = ztf_schema()
    [packet] = [path for path in ZTF_PACKETS if path.name == "472263571115115000.avro"]
    with open(packet, "rb") as handle:
        template = next(fastavro.reader(handle))
    packets = []
    for i in range(count):
        record = dict(template)
        record["candid"] = 2**61 + 1000 + i
        record["candidate"] = dict(template["candidate"], candid=2**61 + 1000 + i, magpsf=18.0 + i / 10)
        record["objectId"] = f"ZTF26aa{i:05d}"
        record["schemavsn"] = "4.02"
        out = io.BytesIO()
        fastavro.writer(out, schema, [_fit(record, schema)])
        packets.append(out.getvalue())
    return packets


def _fit(record, schema):
    names = {f["name"] for f in schema["fields"]}
    return {k: v for k, v in record.items() if k in names}


def test_ztf_packets_real_and_made(kafka_bootstrap, new_topic, procs):
    real = [p.read_bytes() for p in ZTF_PACKETS]
    assert len(real) == 2
    made = made_ztf_packets(5)
    source, sink, dead = new_topic(), new_topic(), new_topic()
    write(kafka_bootstrap, source, real + made)
    run_stage(procs, kafka_bootstrap, source, uri(kafka_bootstrap, sink), dead, "json")
    outputs = read_topic(kafka_bootstrap, sink, minimum=7, timeout=90)
    assert len(outputs) == 7
    for packet, message in zip(real + made, outputs):
        record = next(fastavro.reader(io.BytesIO(packet)))
        got = orjson.loads(message.value())
        assert got == json_of(record)
        assert str(record["candid"]).encode() in message.value()  # written in full, not as a double
        stamp = got["cutoutScience"]["stampData"]
        assert base64.b64decode(stamp) == record["cutoutScience"]["stampData"]  # gzipped FITS, byte for byte


def test_bad_bytes_and_unknown_schema_are_dead_lettered(kafka_bootstrap, new_topic, procs):
    factory = RubinAlertFactory(seed=3, cutouts=False, prv_sources=1)
    good = factory.encode(factory.make(0))
    corrupt = good[:30]
    unknown = b"\x00" + (987654).to_bytes(4, "big") + good[5:]
    source, sink, dead = new_topic(), new_topic(), new_topic()
    write(kafka_bootstrap, source, [good, corrupt, unknown, good])
    run_stage(procs, kafka_bootstrap, source, uri(kafka_bootstrap, sink), dead, "json",
              "diaSourceId", "diaSource.psfFlux")
    assert len(read_topic(kafka_bootstrap, sink, minimum=2, timeout=60)) == 2
    letters = read_topic(kafka_bootstrap, dead, minimum=2, timeout=60)
    reasons = [header(m, "x-dead-letter-reason").decode() for m in letters]
    assert "does not decode with schema id" in reasons[0]
    assert "987654" in reasons[1]
    assert [m.value() for m in letters] == [corrupt, unknown]  # the original bytes
    outputs = read_topic(kafka_bootstrap, sink)
    assert set(orjson.loads(outputs[0].value())) == {"diaSourceId", "diaSource"}  # projected


def test_outputs_encoded_to_an_avro_buffer(kafka_bootstrap, new_topic, procs, tmp_path):
    schema_path = tmp_path / "summary.avsc"
    schema_path.write_text(json.dumps({"type": "record", "name": "Summary", "fields": [
        {"name": "diaSourceId", "type": "long"},
        {"name": "diaSource", "type": {"type": "record", "name": "S", "fields": [
            {"name": "psfFlux", "type": ["null", "float"]}]}}]}))
    factory = RubinAlertFactory(seed=4, cutouts=False, prv_sources=1)
    records = [factory.make(i) for i in range(5)]
    source, sink, dead = new_topic(), new_topic(), new_topic()
    write(kafka_bootstrap, source, [factory.encode(r) for r in records])
    run_stage(procs, kafka_bootstrap, source,
              uri(kafka_bootstrap, sink, format="avro-confluent", schema=str(schema_path), schema_id=77),
              dead, "json", "diaSourceId", "diaSource.psfFlux")
    outputs = read_topic(kafka_bootstrap, sink, minimum=5, timeout=60)
    assert len(outputs) == 5  # read_topic returns what came within its timeout, perhaps nothing
    schema = fastavro.schema.load_schema(str(schema_path))
    for record, message in zip(records, outputs):
        assert message.value()[:5] == b"\x00" + (77).to_bytes(4, "big")
        got = fastavro.schemaless_reader(io.BytesIO(message.value()[5:]), schema, None)
        assert got["diaSourceId"] == record["diaSourceId"]
        assert got["diaSource"]["psfFlux"] == pytest.approx(record["diaSource"]["psfFlux"], rel=1e-6)


def test_output_that_does_not_fit_its_schema_is_dead_lettered(kafka_bootstrap, new_topic, procs, tmp_path):
    schema_path = tmp_path / "strict.avsc"
    schema_path.write_text(json.dumps({"type": "record", "name": "Strict", "fields": [
        {"name": "classification", "type": "string"}]}))
    factory = RubinAlertFactory(seed=4, cutouts=False, prv_sources=1)
    source, sink, dead = new_topic(), new_topic(), new_topic()
    write(kafka_bootstrap, source, [factory.encode(factory.make(0))])
    run_stage(procs, kafka_bootstrap, source,
              uri(kafka_bootstrap, sink, format="avro-confluent", schema=str(schema_path), schema_id=78),
              dead, "json", "diaSourceId")
    letters = read_topic(kafka_bootstrap, dead, minimum=1, timeout=60)
    assert "does not fit schema" in header(letters[0], "x-dead-letter-reason").decode()
    assert read_topic(kafka_bootstrap, sink, settle=0.5) == []
