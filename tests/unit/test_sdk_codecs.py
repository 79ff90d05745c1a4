"""The Python SDK's formats: JSON, Confluent wire format (Rubin), container files (ZTF)."""

from __future__ import annotations

import datetime
import glob
import math
import os
import struct
import sys

import pytest

from alert_worker import AlertDecodeError, MissingDependencyError, UnknownSchemaError, codecs
from alert_worker.testing import make_alert, rubin_alert, rubin_sample, ztf_alert

ZTF_PACKETS = sorted(glob.glob("/work/shared/data/ztf/*.avro"))

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
        "when": "2025-01-02T03:04:05+00:00",
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
