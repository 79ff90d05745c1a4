"""Decoding alerts into the contract's JSON form, projection, and output encoding (pure logic)."""

import base64
import io
import json

import fastavro
import orjson
import pytest

from alert_worker import codecs
from alert_worker.codecs import encode_confluent
from alert_worker.exceptions import AlertDecodeError
from alert_worker.testing import json_form, make_alert, ztf_alert
from alert_sidecar.formats.decoding import (DecodeError, convert_batch, decode, project, projection_tree, schema_id_of,
                                            to_json)
from alert_sidecar.formats.content import AVRO_CONFLUENT, AVRO_OCF, JSON, RAW
from alert_sidecar.formats.avro_outputs import AvroOutput, EncodeError
from alert_sidecar.simulate.rubin import RubinAlertFactory

SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "Alert", "fields": [
        {"name": "diaSourceId", "type": "long"},
        {"name": "flux", "type": ["null", "float"]},
        {"name": "stamp", "type": ["null", "bytes"]},
        {"name": "prv", "type": {"type": "array", "items": {
            "type": "record", "name": "Prv", "fields": [{"name": "mjd", "type": "double"},
                                                      {"name": "flux", "type": "float"}]}}},
    ]})
RECORD = {"diaSourceId": 2**62 + 7, "flux": float("nan"), "stamp": b"\x00\xffFITS",
          "prv": [{"mjd": 60000.5, "flux": 1.0}, {"mjd": 60001.5, "flux": 2.0}]}


class OneSchema:
    """A schema source of one id (``schema`` is what the decoders ask, ``parsed`` what sources implement)."""

    def parsed(self, schema_id):
        if schema_id != 42:
            from alert_sidecar.formats.schemas import UnknownSchemaError
            raise UnknownSchemaError(schema_id, "the test source")
        return SCHEMA

    def schema(self, schema_id):
        return self.parsed(schema_id)


def framed(record, schema_id=42):
    return encode_confluent(record, SCHEMA, schema_id)


def test_confluent_round_trip_into_the_json_form():
    value = framed(RECORD)
    assert schema_id_of(value) == 42
    record, schema_id = decode(value, AVRO_CONFLUENT, OneSchema())
    assert schema_id == 42
    text = to_json(record)
    assert b'"diaSourceId":4611686018427387911' in text  # 64-bit, in full
    parsed = json.loads(text)
    assert parsed["flux"] is None  # NaN has no JSON form
    assert base64.b64decode(parsed["stamp"]) == RECORD["stamp"]


def test_corrupt_and_mislabelled_bytes_say_why():
    value = framed(RECORD)
    with pytest.raises(DecodeError, match="does not decode with schema id 42"):
        decode(value[:12], AVRO_CONFLUENT, OneSchema())
    with pytest.raises(DecodeError, match="leaves 3 bytes"):
        decode(value + b"abc", AVRO_CONFLUENT, OneSchema())
    with pytest.raises(DecodeError, match="not Confluent wire format: its first byte is 0x7b"):
        decode(b'{"a": 1}', AVRO_CONFLUENT, OneSchema())
    with pytest.raises(DecodeError, match="too short for the Confluent wire format"):
        decode(b"{}", AVRO_CONFLUENT, OneSchema())
    with pytest.raises(DecodeError, match="not a JSON document"):
        decode(b"{oops", JSON, OneSchema())
    with pytest.raises(DecodeError, match="no known format"):
        decode(b"abc", RAW, OneSchema())


def container_file(records) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, SCHEMA, records)
    return out.getvalue()


def test_ocf_holds_one_alert():
    record, schema_id = decode(container_file([RECORD]), AVRO_OCF, OneSchema())
    assert record["diaSourceId"] == RECORD["diaSourceId"] and schema_id is None


@pytest.mark.parametrize("count", [0, 2, 3])
def test_a_container_file_of_other_than_one_record_is_refused_by_the_sidecar_and_the_sdk_alike(count):
    """One alert per Kafka message is ZTF's form: the first of several is not taken for the whole."""
    value = container_file([RECORD] * count)
    said = "holds no record" if count == 0 else f"holds {count} records"
    with pytest.raises(DecodeError, match=said) as sidecar:
        decode(value, AVRO_OCF, OneSchema())
    with pytest.raises(AlertDecodeError, match=said) as sdk:
        codecs.decode_ocf(value)
    assert sidecar.value.reason == str(sdk.value)
    [converted] = convert_batch([value], [AVRO_OCF], None, OneSchema())  # what a stage dead-letters
    assert converted.payload is None and said in converted.error and not converted.transient
    alert = make_alert(value)
    with pytest.raises(AlertDecodeError, match=said):
        alert.record()  # a worker that takes the container file itself
    with pytest.raises(AlertDecodeError, match=said):
        json_form(alert)
    with pytest.raises(AlertDecodeError, match=said):
        ztf_alert(value)


def test_projection_keeps_asked_fields_through_arrays():
    tree = projection_tree(("diaSourceId", "prv.flux", "missing.field"))
    assert project(RECORD, tree) == {"diaSourceId": RECORD["diaSourceId"], "prv": [{"flux": 1.0}, {"flux": 2.0}]}
    assert projection_tree(("prv.flux", "prv")) == {"prv": None}  # the shorter path wins
    assert json.loads(to_json(RECORD, ["diaSourceId"])) == {"diaSourceId": RECORD["diaSourceId"]}


def test_convert_batch_separates_permanent_from_transient_failures():
    from alert_sidecar.formats.schemas import SchemaRegistryUnavailable

    class Down(OneSchema):
        def parsed(self, schema_id):
            if schema_id == 7:
                raise SchemaRegistryUnavailable("http://registry", "connection refused")
            return super().parsed(schema_id)

    results = convert_batch([framed(RECORD), b"\x00\x00\x00\x00\x09xx", framed(RECORD, 7), framed(RECORD)[:9]],
                            [AVRO_CONFLUENT] * 4, ("diaSourceId",), Down())
    assert json.loads(results[0].payload) == {"diaSourceId": RECORD["diaSourceId"]}
    assert results[1].error and not results[1].transient and "9" in results[1].error
    assert results[2].transient
    assert results[3].error and "cannot decode" in results[3].error


def test_every_rubin_version_decodes_to_json_with_exact_ids():
    from alert_sidecar.simulate.rubin import schema_versions
    from alert_sidecar.formats.schemas import RubinSchemas

    source = RubinSchemas()
    for version in schema_versions():
        factory = RubinAlertFactory(schema_version=version, seed=5, cutouts=False, prv_sources=2)
        record = factory.make(0)
        decoded, schema_id = decode(factory.encode(record), AVRO_CONFLUENT, source)
        assert schema_id == factory.schema_id
        assert orjson.loads(to_json(decoded)) == orjson.loads(to_json(record))


def test_output_encoding_to_avro(tmp_path):
    path = tmp_path / "out.avsc"
    path.write_text(json.dumps({"type": "record", "name": "Out", "fields": [
        {"name": "diaSourceId", "type": "long"}, {"name": "stamp", "type": ["null", "bytes"]}]}))
    encoder = AvroOutput(str(path), 9)
    value = encoder.encode(orjson.dumps({"diaSourceId": 2**62, "stamp": base64.b64encode(b"FITS").decode()}), JSON)
    assert value[:5] == b"\x00\x00\x00\x00\x09"
    record = fastavro.schemaless_reader(io.BytesIO(value[5:]), fastavro.schema.load_schema(str(path)), None)
    assert record == {"diaSourceId": 2**62, "stamp": b"FITS"}
    with pytest.raises(EncodeError, match="does not fit schema"):
        encoder.encode(b'{"diaSourceId": "not a number"}', JSON)
    with pytest.raises(EncodeError, match="neither JSON nor Avro"):
        encoder.encode(b"\x01\x02", "application/octet-stream")


def test_decoders_end_with_a_sidecar_killed_without_warning(tmp_path):
    """SIGKILL leaves no time to stop the pool; the decoders (which ignore SIGTERM) must still go."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "sidecar.py"
    script.write_text(
        "import time\n"
        "from alert_sidecar.formats.decoding import DecoderPool\n"
        "from alert_sidecar.formats.schemas import schema_source\n"
        "if __name__ == '__main__':\n"
        "    pool = DecoderPool(2, schema_source(None, None))\n"
        "    pool.submit([b'{}'], ['application/json'], None).result(60)\n"
        "    print(' '.join(str(p) for p in pool._pool._processes), flush=True)\n"
        "    time.sleep(600)\n")
    sidecar = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        decoders = [int(p) for p in sidecar.stdout.readline().split()]
        assert decoders and all(_alive(p) for p in decoders)
    finally:
        sidecar.send_signal(signal.SIGKILL)
        sidecar.wait(10)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in decoders) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in decoders if _alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"decoder processes {left} outlived their sidecar"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
