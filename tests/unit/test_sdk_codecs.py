"""The Python SDK's formats: JSON, Confluent wire format (Rubin), container files (ZTF), the JSON form."""

from __future__ import annotations

import base64
import datetime
import glob
import json
import math
import os
import struct
import sys
from typing import Any

import pytest

import alert_worker
from alert_worker import (Alert, AlertDecodeError, MissingDependencyError, UnknownSchemaError, Verdict, codecs,
                          processing)
from alert_worker.testing import json_form, make_alert, rubin_alert, rubin_sample, run, ztf_alert
from tests.data import ZTF_PACKETS

SMALL_SCHEMA = {
    "type": "record",
    "name": "toy",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "flux", "type": ["null", "float"]},
        {"name": "stamp", "type": ["null", "bytes"]},
    ],
}


def rubin_versions() -> list[str]:
    """Every schema version lsst-alert-packet ships a sample alert for."""
    import lsst.alert.packet as packet

    root = str(packet.get_schema_root())
    versions = []
    for path in glob.glob(os.path.join(root, "*", "*", "sample_data", "fakeAlert.avro")):
        major, minor = path.split(os.sep)[-4:-2]
        versions.append(f"{major}.{minor}")
    return sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


# --- JSON ---------------------------------------------------------------------


def test_json_keeps_64_bit_integers_exact() -> None:
    ids = [2**63 - 1, -(2**63), 739260766315010006, 2**53 + 1]
    decoded = codecs.decode_json(codecs.encode_json({"ids": ids}))
    assert decoded["ids"] == ids
    assert all(type(i) is int for i in decoded["ids"])


def test_json_writes_what_decoded_avro_holds() -> None:
    value = {
        "stamp": b"\x00\x01FITS",
        "when": datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "bad": [math.nan, math.inf, 1.5],
    }
    assert codecs.decode_json(codecs.encode_json(value)) == {
        "stamp": "AAFGSVRT",
        "when": "2025-01-02T03:04:05Z",  # UTC as the sidecar writes it, with Z
        "bad": [None, None, 1.5],
    }


def test_json_refuses_what_it_cannot_write() -> None:
    with pytest.raises(TypeError, match="object cannot be written as JSON"):
        codecs.encode_json({"x": object()})


def test_bad_json_is_a_decode_error() -> None:
    with pytest.raises(AlertDecodeError, match="not a JSON document"):
        codecs.decode_json(b"{not json")


# --- Confluent wire format ------------------------------------------------------


def test_confluent_round_trip() -> None:
    record = {"id": 739260766315010006, "flux": 12.5, "stamp": b"\x00\xff"}
    data = codecs.encode_confluent(record, SMALL_SCHEMA, 701)
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5]) == (701,)
    resolver = codecs.MappingSchemaResolver({701: SMALL_SCHEMA})
    assert codecs.decode_confluent(data, resolver) == record


def test_confluent_refuses_bytes_that_are_not_in_it() -> None:
    resolver = codecs.MappingSchemaResolver({1: SMALL_SCHEMA})
    with pytest.raises(AlertDecodeError, match="first byte is 0x7b"):
        codecs.decode_confluent(b'{"id": 1}', resolver)
    with pytest.raises(AlertDecodeError, match="too short"):
        codecs.decode_confluent(b"\x00\x00", resolver)


def test_confluent_unknown_schema_id() -> None:
    data = codecs.encode_confluent({"id": 1, "flux": None, "stamp": None}, SMALL_SCHEMA, 7)
    with pytest.raises(UnknownSchemaError, match="schema id 7 is not one of this resolver's ids"):
        codecs.decode_confluent(data, codecs.MappingSchemaResolver({1: SMALL_SCHEMA}))


def test_confluent_body_of_another_schema_is_an_error() -> None:
    other = {"type": "record", "name": "other", "fields": [{"name": "id", "type": "long"}]}
    data = codecs.encode_confluent({"id": 1, "flux": 2.0, "stamp": b"abc"}, SMALL_SCHEMA, 1)
    with pytest.raises(AlertDecodeError, match="not written with that schema"):
        codecs.decode_confluent(data, codecs.MappingSchemaResolver({1: other}))


# --- ZTF: Avro container files --------------------------------------------------


def test_the_ztf_packets_are_there() -> None:
    assert len(ZTF_PACKETS) == 2


@pytest.mark.parametrize("path", ZTF_PACKETS, ids=os.path.basename)
def test_ztf_packet_decodes_with_its_64_bit_candid_exact(path: str) -> None:
    # The packets are named after their candid.
    candid = int(os.path.basename(path).removesuffix(".avro").rsplit("_", 1)[-1])
    assert candid > 2**53  # beyond what a double holds exactly
    alert = ztf_alert(path)
    assert alert.content_type == codecs.AVRO_OCF
    record = alert.avro()
    assert record["candid"] == candid
    assert record["objectId"].startswith("ZTF")
    assert alert.decode()["candid"] == candid
    # ... and stays exact through JSON, as an output would carry it.
    assert codecs.decode_json(codecs.encode_json(record))["candid"] == candid


def test_ocf_garbage_is_a_decode_error() -> None:
    with pytest.raises(AlertDecodeError, match="not a readable Avro container file"):
        codecs.decode_ocf(b"Obj\x01garbage")


# --- Rubin: Confluent wire format with the registry of lsst-alert-packet --------


def test_every_rubin_version_is_covered() -> None:
    versions = rubin_versions()
    assert "7.1" in versions and "11.1" in versions
    assert len(versions) >= 15


@pytest.mark.parametrize("version", rubin_versions())
def test_rubin_sample_alert_decodes(version: str) -> None:
    record = rubin_sample(version)
    alert = rubin_alert(record, version=version)
    major, minor = (int(part) for part in version.split("."))
    assert alert.content_type == codecs.AVRO_CONFLUENT
    assert struct.unpack(">BI", alert.value[:5]) == (0, major * 100 + minor)
    assert alert.avro() == record
    assert alert.decode() == record
    # With no resolver given, the Rubin registry is the default.
    assert codecs.decode_confluent(alert.value) == record


def test_rubin_schema_ids_encode_versions() -> None:
    resolver = codecs.rubin_resolver()
    assert resolver.schema_id("7.1") == 701
    assert resolver.schema_id("11.1") == 1101
    with pytest.raises(UnknownSchemaError, match=r"'99\.0' is not a Rubin schema version"):
        resolver.schema_id("99.0")


def test_rubin_unknown_schema_id_says_what_to_do() -> None:
    value = codecs.encode_confluent({"id": 1, "flux": None, "stamp": None}, SMALL_SCHEMA, 4242)
    with pytest.raises(UnknownSchemaError, match=r"schema id 4242 is not a Rubin schema.*upgrade lsst-alert-packet"):
        codecs.decode_confluent(value)


def test_missing_lsst_alert_packet_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lsst.alert.packet", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match="pip install lsst-alert-packet"):
        codecs.RubinSchemaResolver().schema(701)


# --- Alert's decoding methods ----------------------------------------------------


def test_alert_decodes_by_content_type() -> None:
    assert make_alert({"a": 1}).decode() == {"a": 1}
    assert make_alert(b'{"a": 2}', content_type="application/json; charset=utf-8").decode() == {"a": 2}
    # json() reads the bytes whatever the label says.
    assert make_alert(b'{"a": 3}').json() == {"a": 3}


def test_alert_refuses_to_guess_a_format() -> None:
    raw = make_alert(b"\x01\x02")
    with pytest.raises(AlertDecodeError, match="content type 'application/octet-stream'"):
        raw.decode()
    with pytest.raises(AlertDecodeError, match=r"use decode\(\) or json\(\)"):
        make_alert({"a": 1}).avro()


def test_alert_record_is_a_dict_in_every_form() -> None:
    record = rubin_sample("7.1")
    assert rubin_alert(record, version="7.1").record() == record
    assert make_alert({"candid": 1}).record() == {"candid": 1}
    with pytest.raises(AlertDecodeError, match="holds list data, not a record"):
        make_alert([1, 2]).record()
    with pytest.raises(AlertDecodeError, match="content type 'application/octet-stream'"):
        make_alert(b"\x01").record()


def test_schema_id_of_an_alert() -> None:
    assert rubin_alert(version="7.1").schema_id == 701
    assert make_alert(rubin_alert(version="11.1").value, content_type=codecs.AVRO_CONFLUENT,
                      schema_id=0).schema_id == 1101  # unlabelled: read from the bytes
    assert make_alert({"a": 1}).schema_id == 0
    assert make_alert({"a": 1}, schema_id=1101, source_content_type=codecs.AVRO_CONFLUENT).schema_id == 1101


# --- Fields whose decoded forms differ -------------------------------------------------


def test_b64bytes_reads_bytes_in_either_form() -> None:
    stamp = b"\x1f\x8b\x00SIMPLE\xff"
    assert codecs.b64bytes(stamp) is stamp
    assert codecs.b64bytes(bytearray(stamp)) == stamp
    assert codecs.b64bytes("H4sAU0lNUExF/w==") == stamp
    assert codecs.b64bytes(None) is None
    with pytest.raises(AlertDecodeError, match="is a base64 string, and this one is not"):
        codecs.b64bytes("not base64!")
    with pytest.raises(TypeError, match="not int"):
        codecs.b64bytes(3)  # type: ignore[call-overload]


def test_as_datetime_reads_timestamps_in_either_form() -> None:
    utc = datetime.timezone.utc
    when = datetime.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=utc)
    assert codecs.as_datetime(when) is when
    assert codecs.as_datetime("2025-01-02T03:04:05.678901Z") == when
    assert codecs.as_datetime("2025-01-02T03:04:05.678901+00:00") == when
    assert codecs.as_datetime("2025-01-02T03:04:05.678901").tzinfo is utc  # naive means UTC
    assert codecs.as_datetime(None) is None
    with pytest.raises(AlertDecodeError, match="is not an ISO 8601"):
        codecs.as_datetime("yesterday")


# --- The JSON form of Avro alerts (decoded by the sidecar) --------------------------------


def test_json_form_alert_as_a_sidecar_writes_it() -> None:
    # Written by hand as the contract describes it, not by this SDK's encoder.
    stamp = b"SIMPLE  =                    T"
    value = (b'{"diaSourceId":9223372036854775807,"diaObjectId":281474976710657,'
             b'"psfFlux":null,"timeProcessed":"2025-11-02T03:04:05.123456Z",'
             b'"cutoutDifference":"' + base64.b64encode(stamp) + b'","prvDiaSources":[{"psfFlux":12.5}]}')
    alert = make_alert(value, content_type=codecs.JSON, source_content_type=codecs.AVRO_CONFLUENT,
                       schema_id=1101)
    assert (alert.source_content_type, alert.schema_id) == (codecs.AVRO_CONFLUENT, 1101)
    record = alert.record()
    assert record == alert.decode() == alert.json()
    assert record["diaSourceId"] == 2**63 - 1 and type(record["diaSourceId"]) is int
    assert record["diaObjectId"] == 281474976710657
    assert codecs.b64bytes(record["cutoutDifference"]) == stamp
    assert codecs.as_datetime(record["timeProcessed"]).microsecond == 123456
    assert record["psfFlux"] is None and record["prvDiaSources"] == [{"psfFlux": 12.5}]
    with pytest.raises(AlertDecodeError, match=r"the sidecar decoded it into application/json.*record\(\)"):
        alert.avro()


def test_worker_code_is_the_same_for_raw_avro_and_the_json_form() -> None:
    from alert_sidecar.simulate.rubin import RubinAlertFactory

    factory = RubinAlertFactory(seed=1)
    source = factory.make(0)
    assert source["diaSourceId"] > 2**53  # beyond what a double holds exactly
    raw = make_alert(factory.encode(source), content_type=codecs.AVRO_CONFLUENT, offset=7)
    as_json = json_form(raw)
    assert (as_json.id, as_json.content_type, as_json.source_content_type, as_json.schema_id) == (
        "test/0/7", codecs.JSON, codecs.AVRO_CONFLUENT, factory.schema_id)

    def summary(alert: Alert) -> tuple[Any, ...]:
        record = alert.record()
        return (record["diaSourceId"], record["diaSource"]["psfFlux"],
                [s["diaSourceId"] for s in record["prvDiaSources"]],
                codecs.b64bytes(record["cutoutDifference"]))

    assert summary(raw) == summary(as_json)
    assert summary(raw)[0] == source["diaSourceId"]
    assert summary(raw)[3] == source["cutoutDifference"]


def test_json_form_projection_keeps_the_fields_asked_for() -> None:
    alert = ztf_alert(ZTF_PACKETS[0])
    full = alert.record()
    projected = json_form(alert, fields=["candid", "candidate.magpsf", "prv_candidates.jd", "nosuchfield"])
    record = projected.record()
    assert record == {
        "candid": full["candid"],
        "candidate": {"magpsf": full["candidate"]["magpsf"]},
        "prv_candidates": [{"jd": previous["jd"]} for previous in full["prv_candidates"]],
    }
    assert projected.source_content_type == codecs.AVRO_OCF
    assert len(projected.value) < len(json_form(alert).value) / 10


# --- Writer schemas sent with the batch (AlertBatch.schemas) ---------------------------------


def rubin_schema_text(version: str) -> str:
    """Rubin's schema of a version as Avro schema JSON, as a sidecar sends it with a batch."""
    import lsst.alert.packet as packet

    registry = packet.SchemaRegistry.all_schemas_from_filesystem()
    return json.dumps(registry.get_by_version(version).definition)


def id_worker(**worker_args: Any) -> Any:
    @alert_worker.worker(name="ids", **worker_args)
    def ids(alert: Alert) -> Any:
        return {"diaSourceId": alert.avro()["diaSource"]["diaSourceId"]}

    return ids


def answer_of(result: Any) -> Any:
    assert result.verdict is Verdict.OK, result.error
    return codecs.decode_json(result.outputs[0].value)


def test_batch_schemas_decode_an_id_no_registry_knows() -> None:
    record = rubin_sample("11.1")
    record["diaSource"]["diaSourceId"] = 2**62 + 1
    value = codecs.encode_confluent(record, json.loads(rubin_schema_text("11.1")), 424242)
    alert = make_alert(value, content_type=codecs.AVRO_CONFLUENT)
    assert alert.schema_id == 424242

    [result] = run(id_worker(), [alert], schemas={424242: rubin_schema_text("11.1")})
    assert answer_of(result) == {"diaSourceId": 2**62 + 1}

    [without] = run(id_worker(), [alert])
    assert without.verdict is Verdict.DEAD_LETTER
    assert ("the batch carries no writer schema for id 424242 (it carries: none), and schema id 424242 "
            "is not a Rubin schema known to lsst-alert-packet") in without.error

    # ProcessAlert has no batch: the worker's resolver chain alone, Rubin's registry by default.
    [answered] = processing.process(id_worker(), [alert.to_proto()])
    assert answered.verdict == Verdict.DEAD_LETTER
    assert answered.error.startswith("cannot decode the alert: schema id 424242 is not a Rubin schema")


def test_batch_schemas_come_before_the_workers_resolver_which_comes_instead_of_rubins() -> None:
    mine = {"type": "record", "name": "mine", "fields": [
        {"name": "diaSource", "type": {"type": "record", "name": "src", "fields": [
            {"name": "diaSourceId", "type": "long"}]}}]}
    resolver = codecs.MappingSchemaResolver({424242: mine, 9: mine})
    ours = make_alert(codecs.encode_confluent({"diaSource": {"diaSourceId": 5}}, mine, 9),
                      content_type=codecs.AVRO_CONFLUENT, offset=0)
    rubin = rubin_alert(version="11.1", offset=1)
    record = rubin_sample("11.1")
    sent = make_alert(codecs.encode_confluent(record, json.loads(rubin_schema_text("11.1")), 424242),
                      content_type=codecs.AVRO_CONFLUENT, offset=2)
    results = run(id_worker(schema_resolver=resolver), [ours, rubin, sent],
                  schemas={424242: rubin_schema_text("11.1")})
    assert answer_of(results[0]) == {"diaSourceId": 5}  # the worker's own resolver
    # Rubin's registry is not consulted behind a resolver of the worker's own.
    assert results[1].verdict is Verdict.DEAD_LETTER
    assert "it carries: 424242" in results[1].error and "schema id 1101 is not one of this resolver's ids" \
        in results[1].error
    # The batch's writer schema wins over the worker's schema of the same id.
    assert answer_of(results[2]) == {"diaSourceId": record["diaSource"]["diaSourceId"]}


def test_writer_schemas_are_parsed_once_per_process() -> None:
    text = json.dumps(SMALL_SCHEMA)
    first = codecs.BatchSchemaResolver({77: text}).schema(77)
    again = codecs.BatchSchemaResolver({77: text.encode().decode()}).schema(77)  # a later batch, the same text
    assert again is first
    changed = json.dumps({**SMALL_SCHEMA, "name": "toy2"})
    assert codecs.BatchSchemaResolver({77: changed}).schema(77) is not first


def test_a_broken_writer_schema_is_a_decode_error() -> None:
    data = codecs.encode_confluent({"id": 1, "flux": None, "stamp": None}, SMALL_SCHEMA, 5)
    for text in ("{not json", '{"type": "record", "name": "x", "fields": [{"name": "a", "type": "nosuch"}]}'):
        with pytest.raises(AlertDecodeError, match="the writer schema sent for schema id 5 is not a valid Avro"):
            codecs.decode_confluent(data, codecs.BatchSchemaResolver({5: text}))
