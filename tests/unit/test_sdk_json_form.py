"""The contract's JSON form is written byte for byte alike with orjson (the sidecar) and without it (a worker).

``alert_worker.codecs.encode_json`` uses orjson when it can be imported and
the standard library otherwise; a worker installed without orjson must see,
and write, the bytes its sidecar writes. Held here on real alerts (every Rubin
schema version's sample alert, alerts made as Rubin's pipeline writes them,
both ZTF packets) and on the values where the two writers could part: floats,
64-bit integers, timestamps, strings.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import glob
import json
import math
import os
import random
import struct
import uuid

import orjson  # the sidecar's writer: a dependency of the project, so never skipped here
import pytest

from alert_worker import codecs
from alert_worker.codecs import json_form
from alert_worker.testing import rubin_alert, rubin_sample, ztf_alert
from alert_sidecar.simulate.rubin import RubinAlertFactory, schema_versions
from tests.data import ZTF_PACKETS

UTC = dt.timezone.utc


def both(value) -> bytes:
    """The one spelling of ``value``: orjson's and the standard library's, asserted equal."""
    with_orjson = json_form._encode_with_orjson(value)
    without = json_form._encode_with_stdlib(value)
    assert with_orjson == without, first_difference(with_orjson, without)
    return with_orjson


def first_difference(a: bytes, b: bytes) -> str:
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"orjson and the standard library differ at byte {at}: {a[max(0, at - 40):at + 40]!r} " \
           f"against {b[max(0, at - 40):at + 40]!r}"


def sample_versions() -> list[str]:
    import lsst.alert.packet as packet

    found = glob.glob(os.path.join(str(packet.get_schema_root()), "*", "*", "sample_data", "fakeAlert.avro"))
    return sorted({"{}.{}".format(*path.split(os.sep)[-4:-2]) for path in found},
                  key=lambda v: tuple(map(int, v.split("."))))


# --- Real alerts -------------------------------------------------------------------------


def test_every_rubin_version_has_a_sample_alert_here():
    assert len(sample_versions()) >= 15 and {"7.1", "8.0", "11.1"} <= set(sample_versions())


@pytest.mark.parametrize("version", sample_versions())
def test_rubin_sample_alerts_of_every_schema_version(version):
    record = rubin_alert(rubin_sample(version), version=version).avro()  # as decoded from the stream
    written = both(record)
    assert json.loads(written) == json.loads(both(rubin_sample(version)))


@pytest.mark.parametrize("version", schema_versions())
def test_alerts_as_rubins_pipeline_writes_them(version):
    """Cutouts, 30 previous sources, 64-bit ids above 2**53, float32 fluxes, timestamps (8.x)."""
    factory = RubinAlertFactory(schema_version=version, seed=7, cutouts=True, prv_sources=30)
    resolver = codecs.MappingSchemaResolver({factory.schema_id: factory.parsed_schema})
    for i in range(3):
        both(codecs.decode_confluent(factory.encode(factory.make(i)), resolver))


def test_a_rubin_alert_with_timestamps_writes_them_in_utc_with_z():
    factory = RubinAlertFactory(schema_version="8.0", seed=7, cutouts=False, prv_sources=1)
    resolver = codecs.MappingSchemaResolver({factory.schema_id: factory.parsed_schema})
    record = codecs.decode_confluent(factory.encode(factory.make(0)), resolver)
    stamps = [v for v in record["diaSource"].values() if isinstance(v, dt.datetime)]
    assert stamps, "schema 8.0 has timestamp fields"
    text = both(record).decode()
    for stamp in stamps:
        assert f'"{stamp.replace(tzinfo=None).isoformat()}Z"' in text


@pytest.mark.parametrize("path", ZTF_PACKETS, ids=lambda p: p.name)
def test_ztf_packets(path):
    record = ztf_alert(path).avro()
    written = both(record)
    assert str(record["candid"]).encode() in written  # in full, not as a double


# --- Edge values ------------------------------------------------------------------------


FLOATS = [1e16, 1e15, 1e-7, 1e-5, 2.5e-5, 1e-4, 0.1, -0.0, 0.0, 1.0, -1.5, 100.0, 123456789012345678.0,
          9007199254740993.0, 1e21, 1e22, 1e23, 1.5e300, 5e-324, 2.2250738585072014e-308,
          1.7976931348623157e308, 3.4028234663852886e38, 1.401298464324817e-45, 999999999999999.9,
          9999999999999998.0, -9.999999999999999e-05, 1.2345678901234567e-05]


@pytest.mark.parametrize("value", FLOATS, ids=repr)
def test_floats_at_the_edges_of_their_spellings(value):
    written = both([value, -value])
    assert [float(v) for v in json.loads(written)] == [value, -value]  # the same double back


def test_float_spellings_are_orjsons():
    assert both([1e16, 1e-7, 1e-5, 1.5e-05, 0.1, -0.0, 1e-4, 1.5e300]) == \
        b"[1e+16,1e-7,0.00001,0.000015,0.1,-0.0,0.0001,1.5e+300]"


def test_random_doubles_and_float32_values():
    rng = random.Random(20260412)
    values = []
    for _ in range(100_000):
        values.append(struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0])
        values.append(struct.unpack("<f", rng.getrandbits(32).to_bytes(4, "little"))[0])  # Avro floats
        values.append(rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30))
    both(values)


def test_non_finite_floats_are_null():
    assert both({"a": math.nan, "b": [math.inf, -math.inf], "c": {"d": math.nan}}) == \
        b'{"a":null,"b":[null,null],"c":{"d":null}}'


def test_64_bit_ids_in_full():
    ids = [2**63 - 1, -(2**63), 2**53 + 1, -(2**53 + 1), 2**64 - 1, 0, -1]
    assert both(ids) == ("[" + ",".join(map(str, ids)) + "]").encode()


def test_integers_orjson_refuses_are_still_written_in_full():
    huge = [2**64, -(2**63) - 1, 10**30]
    with pytest.raises(orjson.JSONEncodeError):
        json_form._encode_with_orjson(huge)
    assert codecs.encode_json(huge) == json_form._encode_with_stdlib(huge) == b"[18446744073709551616," \
        b"-9223372036854775809,1000000000000000000000000000000]"


def test_bytes_are_base64():
    stamp = bytes(range(256)) * 3
    assert both({"s": stamp, "b": bytearray(b"\x00\xff"), "m": memoryview(b"FITS")}) == (
        b'{"s":"' + __import__("base64").b64encode(stamp) + b'","b":"AP8=","m":"RklUUw=="}')


def test_timestamps():
    values = [
        dt.datetime(2025, 11, 2, 3, 4, 5, 123456, tzinfo=UTC),
        dt.datetime(2025, 11, 2, 3, 4, 5, tzinfo=UTC),
        dt.datetime(2025, 11, 2, 3, 4, 5, 6),  # naive: UTC, as the contract's timestamps are
        dt.datetime(1, 1, 1, tzinfo=UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30, seconds=10))),
        dt.date(2025, 1, 2),
        dt.time(3, 4, 5, 6),
    ]
    assert json.loads(both(values)) == [
        "2025-11-02T03:04:05.123456Z", "2025-11-02T03:04:05Z", "2025-11-02T03:04:05.000006Z",
        "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "2025-01-02T03:04:05-03:00",
        "2025-01-02T03:04:05+05:30:10", "2025-01-02", "03:04:05.000006"]
    for text in json.loads(both(values[:5])):
        assert codecs.as_datetime(text).tzinfo is not None


def test_every_unicode_code_point():
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(points)
    assert json.loads(both([text[i:i + 4096] for i in range(0, len(text), 4096)])) == \
        [text[i:i + 4096] for i in range(0, len(text), 4096)]
    assert both(["\x00\x1f\x7f\u2028\u2029", 'quote " back \\ slash', "é🌌", ""]) == \
        '["\\u0000\\u001f\x7f\u2028\u2029","quote \\" back \\\\ slash","é🌌",""]'.encode()


class Band(enum.Enum):
    R = "r"


class Flag(enum.IntEnum):
    ON = 1


def test_nested_nulls_empties_and_the_other_types():
    value = {
        "diaObject": None, "ssSource": {"a": None, "b": [None, {"c": None}]}, "prv": [], "e": {}, "t": True,
        "f": False, "tuple": (1, 2.5), "decimal": decimal.Decimal("1.10"), "uuid": uuid.UUID(int=2**100),
        "enum": Band.R, "intenum": Flag.ON, "é": "key in unicode",
    }
    assert both(value) == (
        b'{"diaObject":null,"ssSource":{"a":null,"b":[null,{"c":null}]},"prv":[],"e":{},"t":true,'
        b'"f":false,"tuple":[1,2.5],"decimal":"1.10","uuid":"00000010-0000-0000-0000-000000000000",'
        b'"enum":"r","intenum":1,"\xc3\xa9":"key in unicode"}')


def test_numpy_values():
    numpy = pytest.importorskip("numpy")
    value = {"f32": numpy.float32(0.1), "f64": numpy.float64(1e-7), "i": numpy.int64(2**62),
             "a": numpy.array([[1.5, numpy.nan], [1e16, -0.0]]), "b": numpy.bool_(True)}
    assert both(value) == b'{"f32":0.10000000149011612,"f64":1e-7,"i":4611686018427387904,' \
                          b'"a":[[1.5,null],[1e+16,-0.0]],"b":true}'


def test_keys_that_are_not_strings_as_json_writes_them():
    value = {1: "a", 2.5: "b", None: "d"}
    value[True] = "c"  # the same key as 1, as in JSON written from Python
    assert codecs.encode_json(value) == json_form._encode_with_stdlib(value) == \
        b'{"1":"c","2.5":"b","null":"d"}'  # 1 and True are one key


def test_what_has_no_json_form_is_refused_by_both():
    for writer in (codecs.encode_json, json_form._encode_with_stdlib):
        with pytest.raises(TypeError, match="a object cannot be written as JSON"):
            writer({"x": object()})


def test_without_orjson_a_worker_writes_the_sidecars_bytes(monkeypatch):
    record = rubin_alert(rubin_sample("11.1"), version="11.1").avro()
    with_orjson = codecs.encode_json_form(record, ["diaSourceId", "diaSource.psfFlux"])
    whole = codecs.encode_json(record)
    monkeypatch.setattr(json_form, "orjson", None)
    assert codecs.encode_json_form(record, ["diaSourceId", "diaSource.psfFlux"]) == with_orjson
    assert codecs.encode_json(record) == whole


def test_a_difference_is_caught(monkeypatch):
    """The comparison fails on a real alert when one writer spells one class of values otherwise."""
    factory = RubinAlertFactory(seed=7, cutouts=False, prv_sources=5)
    record = codecs.decode_confluent(factory.encode(factory.make(0)),
                                     codecs.MappingSchemaResolver({factory.schema_id: factory.parsed_schema}))
    monkeypatch.setattr(json_form, "_float", lambda value: "null" if not math.isfinite(value) else repr(value))
    with pytest.raises(AssertionError, match=r"differ at byte \d+: .*e-0"):
        both(record)  # Python's own spelling of exponents (1e-07) is not orjson's (1e-7)
    stamp = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    other = json_form._encode_with_orjson({"t": stamp}).replace(b"Z", b"+00:00")
    assert "differ at byte 25" in first_difference(json_form._encode_with_stdlib({"t": stamp}), other)
