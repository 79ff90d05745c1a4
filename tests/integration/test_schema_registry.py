"""The schema registry client against a real Confluent-compatible registry.

The registry is Apicurio Registry (registry_server.py builds and starts it),
or the one named by ``SCHEMA_REGISTRY_URL`` (the root of its Confluent API,
e.g. http://localhost:8081 for Confluent's), as BOOTSTRAP_SERVERS names a
Kafka cluster. The failures a registry cannot be made to produce on demand
(HTTP 500, no answer) are in tests/unit/test_schemas.py.
"""

from __future__ import annotations

import io
import json
import os
import struct
import time
import urllib.request
import uuid

import fastavro
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from lsst.alert.packet import SchemaRegistry

from alert_worker.codecs import encode_confluent
from alert_worker.testing import rubin_sample
from alert_sidecar.formats.decoding import DecoderPool, decode
from alert_sidecar.formats.content import AVRO_CONFLUENT
from alert_sidecar.commands.inspect import inspect_command
from alert_sidecar.formats.schemas import (
    ChainedSchemas,
    RegistrySchemas,
    RubinSchemas,
    SchemaRegistryUnavailable,
    SchemaRejected,
    UnknownSchemaError,
    schema_source,
)

from .registry_server import ApicurioRegistry, RegistryStartError

# Needs Java and Maven (for Apicurio Registry) unless SCHEMA_REGISTRY_URL names a registry.
pytestmark = pytest.mark.registry

RUBIN = SchemaRegistry.all_schemas_from_filesystem()

SMALL = {"type": "record", "name": "Bright", "namespace": "test.sidecar",
         "fields": [{"name": "diaSourceId", "type": "long"}, {"name": "mag", "type": ["null", "float"]},
                    {"name": "stamp", "type": "bytes"}]}


@pytest.fixture(scope="session")
def registry_url(tmp_path_factory: pytest.TempPathFactory):
    """The Confluent API root of a real registry for the session."""
    external = os.environ.get("SCHEMA_REGISTRY_URL")
    if external:
        yield external
        return
    registry = ApicurioRegistry(tmp_path_factory.mktemp("registry"))
    try:
        try:
            url = registry.start()
        except RegistryStartError as exc:
            pytest.fail(f"cannot start Apicurio Registry for the tests: {exc}\n"
                        "(or set SCHEMA_REGISTRY_URL to use a running registry)", pytrace=False)
        yield url
    finally:
        registry.stop()


def subject(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}-value"  # tests sharing a registry never share a subject


def framed(schema_id: int, schema, record) -> bytes:
    return encode_confluent(record, fastavro.parse_schema(schema), schema_id)


def small_schema(tag: str) -> dict:
    # A schema of its own per test: a registry gives one id to one schema whatever the subject.
    return {**SMALL, "doc": f"test {tag} {uuid.uuid4().hex}"}


def test_register_gives_one_id_every_time_and_a_fresh_client_fetches_the_schema(registry_url):
    schema = small_schema("register")
    text = json.dumps(schema)
    name = subject("bright")
    first = RegistrySchemas(registry_url).register(name, text)
    again = RegistrySchemas(registry_url).register(name, text)  # a new client: the registry answers, not a cache
    assert first == again
    assert name in RegistrySchemas(registry_url).subjects()
    fetched = RegistrySchemas(registry_url).schema_text(first)
    assert (fastavro.schema.to_parsing_canonical_form(json.loads(fetched))
            == fastavro.schema.to_parsing_canonical_form(schema))
    record = {"diaSourceId": 2**62 + 11, "mag": 17.25, "stamp": b"\x1f\x8bFITS"}
    assert decode(framed(first, schema, record), AVRO_CONFLUENT, RegistrySchemas(registry_url)) == (record, first)


@pytest.mark.parametrize("version", ["7.1", "11.1"])
def test_rubins_schemas_served_by_the_registry_decode_rubins_sample_alerts(registry_url, version):
    text = RubinSchemas().schema_text(RUBIN.get_by_version(version).get_schema_id())  # about 120 KB for 11.1
    schema_id = RegistrySchemas(registry_url).register(subject(f"rubin-{version}"), text)
    record = rubin_sample(version)
    value = framed(schema_id, json.loads(text), record)
    decoded, got = decode(value, AVRO_CONFLUENT, RegistrySchemas(registry_url))
    assert got == schema_id
    assert decoded == record


def test_an_id_the_registry_does_not_have_is_an_unknown_schema(registry_url):
    with pytest.raises(UnknownSchemaError) as err:
        RegistrySchemas(registry_url).parsed(2_000_000_000)
    assert "schema id 2000000000 is unknown to schema registry" in str(err.value)


def test_schema_references_are_written_in_so_the_text_stands_alone(registry_url):
    # ZTF's way: the alert record refers to a candidate type registered under its own subject.
    tag = uuid.uuid4().hex[:8]
    candidate = {"type": "record", "name": "candidate", "namespace": f"ztf{tag}.alert",
                 "fields": [{"name": "jd", "type": "double"}, {"name": "magpsf", "type": "float"}]}
    alert = {"type": "record", "name": "alert", "namespace": f"ztf{tag}",
             "fields": [{"name": "candid", "type": "long"},
                        {"name": "candidate", "type": f"ztf{tag}.alert.candidate"},
                        {"name": "prv", "type": {"type": "array", "items": f"ztf{tag}.alert.candidate"}}]}
    candidate_subject = f"ztf{tag}.alert.candidate"
    RegistrySchemas(registry_url).register(candidate_subject, json.dumps(candidate))
    schema_id = _post(registry_url, f"/subjects/{subject('ztf')}/versions", {
        "schema": json.dumps(alert),
        "references": [{"name": f"ztf{tag}.alert.candidate", "subject": candidate_subject, "version": 1}],
    })["id"]
    text = RegistrySchemas(registry_url).schema_text(schema_id)
    standalone = fastavro.parse_schema(json.loads(text))  # no named type needed from elsewhere
    record = {"candid": 739260766315010006, "candidate": {"jd": 2458493.7603, "magpsf": 18.5},
              "prv": [{"jd": 2458490.1, "magpsf": 19.0}]}
    decoded, _ = decode(framed(schema_id, standalone, record), AVRO_CONFLUENT, RegistrySchemas(registry_url))
    assert decoded == record


def test_a_registry_refusing_a_schema_says_why(registry_url):
    client = RegistrySchemas(registry_url)
    with pytest.raises(SchemaRejected, match="invalid"):
        client.register(subject("broken"), "{not an avro schema")
    name = subject("strict")
    schema = small_schema("strict")
    client.register(name, json.dumps(schema))
    _request(registry_url, "PUT", f"/config/{name}", {"compatibility": "BACKWARD"})
    changed = {**schema, "fields": [{"name": "diaSourceId", "type": "string"}]}  # long -> string: incompatible
    with pytest.raises(SchemaRejected, match="incompatible"):
        client.register(name, json.dumps(changed))


def test_a_chain_takes_the_registrys_ids_and_falls_back_to_rubins(registry_url):
    schema = small_schema("chain")
    schema_id = RegistrySchemas(registry_url).register(subject("chain"), json.dumps(schema))
    chain = schema_source(registry_url, None)
    assert isinstance(chain, ChainedSchemas)
    assert chain.parsed(schema_id)["name"] == "test.sidecar.Bright"
    if schema_id != 1101:
        assert chain.parsed(1101)["name"] == "lsst.v11_1.alert"  # not in the registry: Rubin's
    with pytest.raises(UnknownSchemaError) as err:
        chain.parsed(2_000_000_001)
    assert "schema registry" in str(err.value) and "Rubin's schemas" in str(err.value)


def test_a_registry_source_decodes_in_a_decoder_process(registry_url):
    # The stage pickles its schema source into a pool of processes (decoding.DecoderPool).
    schema = small_schema("pool")
    source = schema_source(registry_url, None)
    schema_id = RegistrySchemas(registry_url).register(subject("pool"), json.dumps(schema))
    source.parsed(schema_id)  # a warm cache is left behind, not pickled
    record = {"diaSourceId": 2**63 - 1, "mag": None, "stamp": b""}
    pool = DecoderPool(1, source)
    try:
        [converted] = pool.submit([framed(schema_id, schema, record)], [AVRO_CONFLUENT], None).result(timeout=60)
    finally:
        pool.close()
    assert converted.error is None
    assert converted.payload == b'{"diaSourceId":9223372036854775807,"mag":null,"stamp":""}'


def test_when_the_registry_stops_fetched_ids_still_decode_and_new_ones_wait(tmp_path):
    registry = ApicurioRegistry(tmp_path)  # one of its own, to stop
    try:
        try:
            url = registry.start()
        except RegistryStartError as exc:
            pytest.fail(f"cannot start Apicurio Registry for the test: {exc}", pytrace=False)
        schema = small_schema("stops")
        client = RegistrySchemas(url, timeout=2)
        schema_id = client.register(subject("stops"), json.dumps(schema))
        client.parsed(schema_id)
        registry.stop()
        record = {"diaSourceId": 1, "mag": 20.5, "stamp": b"x"}
        assert decode(framed(schema_id, schema, record), AVRO_CONFLUENT, client) == (record, schema_id)
        started = time.monotonic()
        with pytest.raises(SchemaRegistryUnavailable) as err:
            RegistrySchemas(url, timeout=2).parsed(schema_id)
        assert time.monotonic() - started < 3
        assert "refused" in str(err.value).lower() and "\n" not in str(err.value)
        # Down is not unknown: the chain does not hand the id to Rubin's schemas.
        with pytest.raises(SchemaRegistryUnavailable):
            schema_source(url, None).parsed(701)
    finally:
        registry.stop()


@pytest.mark.kafka
def test_inspect_reads_alerts_whose_schema_is_in_the_registry(registry_url, kafka_bootstrap, new_topic):
    schema = small_schema("inspect")
    schema_id = RegistrySchemas(registry_url).register(subject("inspect"), json.dumps(schema))
    topic = new_topic()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    records = [{"diaSourceId": 2**62 + i, "mag": 18.0 + i, "stamp": bytes([i]) * 3} for i in range(3)]
    for record in records:
        producer.produce(topic, framed(schema_id, schema, record))
    rubin = rubin_sample("11.1")
    producer.produce(topic, framed(1101, RubinSchemas().parsed(1101), rubin))
    assert producer.flush(30) == 0
    result = CliRunner().invoke(inspect_command, [f"kafka://{kafka_bootstrap}/{topic}", "--meta",
                                                  "--schema-registry", registry_url])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["schema_id"] for line in lines] == [schema_id] * 3 + [1101]
    assert [line["alert"]["diaSourceId"] for line in lines[:3]] == [r["diaSourceId"] for r in records]
    assert lines[3]["alert"]["diaSourceId"] == rubin["diaSourceId"]


def _request(url: str, method: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, path: str, body: dict) -> dict:
    return _request(url, "POST", path, body)


# -- a stage with a registry ---------------------------------------------------

def _stage_uri(bootstrap, topic, query=""):
    return f"kafka://{bootstrap}/{topic}{query}"


@pytest.mark.kafka
def test_a_stage_decodes_registry_ids_and_registers_its_output_schema(registry_url, kafka_bootstrap, new_topic,
                                                                      procs, tmp_path):
    from .stage_support import free_port, read_topic

    schema = small_schema("stage-in")
    schema_id = RegistrySchemas(registry_url).register(subject("stage-in"), json.dumps(schema))
    records = [{"diaSourceId": 2**62 + i, "mag": 15.0 + i, "stamp": b"FITS" * i} for i in range(5)]
    source, sink, dead = new_topic(), new_topic(), new_topic()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for record in records:
        producer.produce(source, value=framed(schema_id, schema, record))
    producer.flush(10)
    out_schema = tmp_path / "out.avsc"
    out_schema.write_text(json.dumps(small_schema("stage-out")))
    port = free_port()
    procs.worker("echo.py", port, "--accepts", "json")
    procs.sidecar("--in", _stage_uri(kafka_bootstrap, source),
                  "--out", _stage_uri(kafka_bootstrap, sink, f"?format=avro-confluent&schema={out_schema}"),
                  "--dead-letter", _stage_uri(kafka_bootstrap, dead), "--worker", f"127.0.0.1:{port}",
                  "--schema-registry", registry_url)
    outputs = read_topic(kafka_bootstrap, sink, minimum=5, timeout=90)
    assert len(outputs) == 5
    out_id = struct.unpack(">I", outputs[0].value()[1:5])[0]
    registered = RegistrySchemas(registry_url)  # the id the sidecar framed with is the registry's
    writer = fastavro.parse_schema(json.loads(registered.schema_text(out_id)))
    for record, message in zip(records, outputs):
        assert fastavro.schemaless_reader(io.BytesIO(message.value()[5:]), writer, None) == record


@pytest.mark.kafka
def test_a_stage_whose_registry_is_down_holds_its_alerts(kafka_bootstrap, new_topic, procs):
    import signal

    from .stage_support import free_port, read_topic

    source, sink, dead = new_topic(), new_topic(), new_topic()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(source, value=framed(9999, SMALL, {"diaSourceId": 1, "mag": None, "stamp": b""}))
    producer.flush(10)
    port = free_port()
    procs.worker("echo.py", port, "--accepts", "json")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sidecar = procs.sidecar("--in", _stage_uri(kafka_bootstrap, source), "--out", _stage_uri(kafka_bootstrap, sink),
                            "--dead-letter", _stage_uri(kafka_bootstrap, dead), "--worker", f"127.0.0.1:{port}",
                            "--schema-registry", down, "--drain-timeout", "2")
    sidecar.wait_for_line("holding alerts=1", 60)
    time.sleep(3)
    assert sidecar.alive
    assert read_topic(kafka_bootstrap, dead, settle=0.5) == []  # not the alert's fault: no dead letter
    assert read_topic(kafka_bootstrap, sink, settle=0.5) == []
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(30) == 0
