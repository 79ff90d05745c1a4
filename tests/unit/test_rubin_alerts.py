"""Rubin alerts made by alert_sidecar.simulate.rubin: valid, exact, realistic and reproducible.

Every alert is decoded with fastavro against the schema that lsst-alert-packet's
own registry gives for the id in the alert's header, not the factory's copy.
"""

from __future__ import annotations

import io
import math
import random
import struct

import fastavro
import pytest

packet = pytest.importorskip("lsst.alert.packet")

from alert_sidecar.exceptions import ConfigError  # noqa: E402
from alert_sidecar.simulate.rubin import (  # noqa: E402
    AB_ZERO_POINT_NJY,
    BANDS,
    BRIGHT_SHARE,
    MAX_DEC_DEG,
    RubinAlertFactory,
    flux_njy,
    latest_schema_version,
    magnitude,
    schema_versions,
)

NEWEST = latest_schema_version()
OLDER_MAJOR = "7.4"  # psfFlux and midpointMjdTai, but alertId, no bboxSize, no nDiaSources
ALL_VERSIONS = schema_versions()


@pytest.fixture(scope="module")
def registry():
    return packet.SchemaRegistry.all_schemas_from_filesystem()


def decode(registry, alert: bytes) -> tuple[int, dict]:
    """The schema id in an alert's header, and its body decoded with the registry's schema of that id."""
    magic, schema_id = struct.unpack(">bI", alert[:5])
    assert magic == 0
    schema = registry.get_by_id(schema_id)
    return schema_id, fastavro.schemaless_reader(io.BytesIO(alert[5:]), schema.definition)


def fastavro_body(factory: RubinAlertFactory, record: dict) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, factory.parsed_schema, record)
    return buffer.getvalue()


def all_source_ids(record: dict) -> list[int]:
    return [record["diaSource"]["diaSourceId"]] + [s["diaSourceId"] for s in record["prvDiaSources"]]


# -- validity: every version, both forms --------------------------------------


def test_the_newest_schema_is_11_or_later():
    assert tuple(map(int, NEWEST.split("."))) >= (11, 1)
    assert OLDER_MAJOR in ALL_VERSIONS


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("cutouts", [True, False], ids=["lsst-sized", "small"])
def test_alerts_decode_with_the_registry_schema_to_the_records_made(registry, version, cutouts):
    factory = RubinAlertFactory(version, cutouts=cutouts, seed=11)
    records = [factory.make(i) for i in range(12)]
    for record, alert in zip(records, factory.alerts(12), strict=True):  # 12 alerts, not fewer
        schema_id, decoded = decode(registry, alert)
        assert schema_id == factory.schema_id
        assert decoded == record


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_encoding_is_byte_for_byte_fastavros(version):
    factory = RubinAlertFactory(version, seed=5)
    for i in range(0, 300, 37):
        record = factory.make(i)
        assert factory.encode(record)[5:] == fastavro_body(factory, record)


def test_encoding_is_fastavros_whatever_fields_are_null():
    """Records of many null patterns: each new shape compiles a plan, past 64 the generic plan serves."""
    factory = RubinAlertFactory(NEWEST, cutouts=False, prv_sources=3, seed=2)
    schema_fields = {f["name"]: f["type"] for f in factory.parsed_schema["fields"]}
    source_schema = schema_fields["diaSource"]
    nullable = [f["name"] for f in source_schema["fields"] if isinstance(f["type"], list)]
    object_nullable = [f["name"] for f in schema_fields["diaObject"][1]["fields"] if isinstance(f["type"], list)]
    pick = random.Random(0)
    for i in range(150):
        record = factory.make(i)
        for source in [record["diaSource"], *record["prvDiaSources"]]:
            for name in pick.sample(nullable, 10):
                source[name] = None
        for name in pick.sample(object_nullable, 20):
            record["diaObject"][name] = None
        if i % 3 == 0:
            record["prvDiaSources"] = None
        if i % 5 == 0:
            record["prvDiaSources"] = []
        assert factory.encode(record)[5:] == fastavro_body(factory, record)


@pytest.mark.parametrize(("an_int", "a_long"), [
    (0, 0), (-1, -1), (63, 64), (64, 8191), (-64, 8192), (-65, -8193),
    (2**31 - 1, 2**63 - 1), (-(2**31), -(2**63)), (2**13, -(2**62) - 3),
])
def test_ints_and_longs_at_varint_boundaries_encode_as_fastavro_does(an_int, a_long):
    factory = RubinAlertFactory(NEWEST, cutouts=False, prv_sources=1, seed=3)
    record = factory.make(0)
    record["diaSource"]["detector"] = an_int
    record["diaSource"]["visit"] = a_long
    record["diaSourceId"] = -a_long - 1
    assert factory.encode(record)[5:] == fastavro_body(factory, record)


def test_a_record_the_fast_encoder_cannot_take_goes_to_fastavro():
    factory = RubinAlertFactory(NEWEST, cutouts=False, prv_sources=2, seed=2)
    record = factory.make(0)
    del record["observation_reason"]  # fastavro writes a missing nullable field as null
    assert factory.encode(record)[5:] == fastavro_body(factory, record)
    record["diaSource"]["ra"] = "not a number"
    with pytest.raises((ValueError, TypeError)):
        factory.encode(record)


def test_alerts_in_batches_are_the_alerts_made_one_by_one():
    factory = RubinAlertFactory(NEWEST, seed=8)
    batched = list(factory.alerts(70, start=9_990))  # over a batch and over a visit boundary
    assert batched == [factory.encode(factory.make(i)) for i in range(9_990, 10_060)]


# -- the wire format and the sizes ---------------------------------------------


@pytest.mark.parametrize("version", [NEWEST, OLDER_MAJOR, "3.0"])
def test_wire_header_is_magic_zero_and_the_big_endian_registry_id_of_the_version(version):
    factory = RubinAlertFactory(version, seed=1)
    major, minor = map(int, version.split("."))
    alert = next(factory.alerts(1))
    assert alert[0] == 0
    assert int.from_bytes(alert[1:5], "big") == factory.schema_id == major * 100 + minor


@pytest.mark.parametrize("version", [NEWEST, OLDER_MAJOR])
def test_lsst_sized_alerts_are_60_to_100_kb_and_small_ones_a_few_kb(version):
    big = [len(a) for a in RubinAlertFactory(version, seed=3).alerts(50)]
    small = [len(a) for a in RubinAlertFactory(version, cutouts=False, seed=3).alerts(50)]
    assert 60_000 <= min(big) and max(big) <= 100_000
    assert 4_000 <= min(small) and max(small) <= 16_000


def test_fewer_previous_sources_make_smaller_alerts():
    factory = RubinAlertFactory(NEWEST, cutouts=False, prv_sources=0, seed=3)
    record = factory.make(0)
    assert record["prvDiaSources"] == [] and record["prvDiaForcedSources"] == []
    assert len(factory.encode(record)) < 1_500
    assert record["diaObject"]["diaObjectId"] == record["diaSource"]["diaSourceId"]


# -- ids -------------------------------------------------------------------------


def test_dia_source_ids_are_unique_and_beyond_what_a_double_holds(registry):
    factory = RubinAlertFactory(NEWEST, cutouts=False, seed=4)
    source_ids, forced_ids = [], []
    for alert in factory.alerts(300):
        _, record = decode(registry, alert)
        source_ids += all_source_ids(record)
        forced_ids += [f["diaForcedSourceId"] for f in record["prvDiaForcedSources"]]
    ids = source_ids + forced_ids
    assert len(source_ids) == 300 * 31 and forced_ids
    assert len(set(ids)) == len(ids)
    assert min(ids) > 2**53 and max(ids) < 2**63
    # The point of ids this large: a reader that goes through doubles breaks them.
    assert sum(int(float(x)) != x for x in ids) > len(ids) // 2


def test_ids_of_factories_with_different_seeds_do_not_collide():
    def ids_of(seed: int) -> set[int]:
        factory = RubinAlertFactory(NEWEST, cutouts=False, seed=seed)
        return {i for n in range(20) for i in all_source_ids(factory.make(n))}

    first, second = ids_of(1), ids_of(2)
    assert len(first) == len(second) == 20 * 31  # 20 alerts of 31 sources each, all distinct
    assert not first & second


def test_the_dia_object_is_the_same_object_throughout_the_alert():
    factory = RubinAlertFactory(NEWEST, cutouts=False, seed=6)
    for i in range(0, 500, 50):
        record = factory.make(i)
        object_id = record["diaObject"]["diaObjectId"]
        assert object_id == record["prvDiaSources"][0]["diaSourceId"]  # Rubin's: its first diaSource's id
        assert record["diaSource"]["diaObjectId"] == object_id
        assert {s["diaObjectId"] for s in record["prvDiaSources"]} == {object_id}
        assert {f["diaObjectId"] for f in record["prvDiaForcedSources"]} <= {object_id}
        assert record["diaObject"]["nDiaSources"] == len(record["prvDiaSources"]) + 1


# -- realism -------------------------------------------------------------------


def test_a_fifth_of_the_triggering_sources_are_brighter_than_mag_20(registry):
    # The triggering source's brightness does not depend on the history: leave it out, decode faster.
    factory = RubinAlertFactory(NEWEST, cutouts=False, prv_sources=0, seed=2026)
    mags = [magnitude(decode(registry, a)[1]["diaSource"]["psfFlux"]) for a in factory.alerts(2000)]
    share = sum(m < 20.0 for m in mags) / len(mags)
    assert BRIGHT_SHARE - 0.04 <= share <= BRIGHT_SHARE + 0.04  # binomial sigma for 2000 is 0.009
    assert 15.9 < min(mags) and max(mags) < 25.0


def test_fluxes_errors_and_snr_agree_and_sources_are_detections():
    factory = RubinAlertFactory(NEWEST, cutouts=False, seed=12)
    for i in range(0, 1000, 100):
        record = factory.make(i)
        for source in [record["diaSource"], *record["prvDiaSources"]]:
            assert source["psfFlux"] > 0 and source["psfFluxErr"] > 0
            assert source["snr"] == pytest.approx(source["psfFlux"] / source["psfFluxErr"], rel=1e-6)
            assert source["snr"] >= 5.0 * (1 - 1e-6)
            assert source["band"] in BANDS


def test_the_history_is_a_light_curve_of_the_past_year_on_the_southern_sky():
    factory = RubinAlertFactory(NEWEST, cutouts=False, seed=13)
    for i in range(0, 3000, 300):
        record = factory.make(i)
        trigger, history = record["diaSource"], record["prvDiaSources"]
        times = [s["midpointMjdTai"] for s in history]
        assert times == sorted(times)
        assert trigger["midpointMjdTai"] - 366 < times[0] and times[-1] < trigger["midpointMjdTai"]
        assert 60_900 < trigger["midpointMjdTai"] < 61_100  # nights of late 2025
        assert len({s["band"] for s in history}) > 1
        assert -90.0 <= trigger["dec"] < MAX_DEC_DEG and 0.0 <= trigger["ra"] < 360.0
        for source in history:  # the same object: within an arcsecond of the triggering source
            assert abs(source["dec"] - trigger["dec"]) * 3600 < 1.0


def test_alerts_of_one_visit_share_its_id_band_and_time():
    factory = RubinAlertFactory(NEWEST, cutouts=False, prv_sources=1, seed=14)
    visit_of = {}
    for i in (0, 1, 5_000, 9_999, 10_000, 10_001):
        source = factory.make(i)["diaSource"]
        visit_of[i] = (source["visit"], source["band"], source["midpointMjdTai"])
    assert visit_of[0] == visit_of[1] == visit_of[5_000] == visit_of[9_999]
    assert visit_of[10_000] == visit_of[10_001] != visit_of[0]
    assert visit_of[10_000][2] > visit_of[0][2]
    assert str(visit_of[0][0]).startswith("20251121")  # YYYYMMDD of the night, then the sequence number


def test_cutouts_are_fits_stamps_centred_on_the_source():
    fits = pytest.importorskip("astropy.io.fits")
    wcs = pytest.importorskip("astropy.wcs")
    nddata = pytest.importorskip("astropy.nddata")
    factory = RubinAlertFactory(NEWEST, seed=15)
    for i in range(3):
        record = factory.make(i)
        source = record["diaSource"]
        for name in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
            stamp = record[name]
            assert 17_000 <= len(stamp) <= 30_000
            with fits.open(io.BytesIO(stamp)) as hdus:
                hdus.verify("exception")
                image = hdus[0].data
                assert image.shape[0] == image.shape[1] >= 30
                assert hdus["UNCERT"].data.shape == image.shape
                centre = (image.shape[1] - 1) / 2.0, (image.shape[0] - 1) / 2.0
                ra, dec = wcs.WCS(hdus[0].header).pixel_to_world_values(*centre)
                assert (float(ra), float(dec)) == pytest.approx((source["ra"], source["dec"]), abs=1e-9)
        difference = nddata.CCDData.read(io.BytesIO(record["cutoutDifference"]), format="fits")
        assert str(difference.unit) == "nJy"
        assert type(difference.uncertainty).__name__ == "VarianceUncertainty"


def test_the_difference_stamp_holds_the_reported_flux_with_the_reported_error():
    """A PSF fit on the stamp (PSF width from ixxPSF) gives psfFlux within a few psfFluxErr."""
    fits = pytest.importorskip("astropy.io.fits")
    np = pytest.importorskip("numpy")
    factory = RubinAlertFactory(NEWEST, seed=16)
    pulls = []
    for i in range(40):
        record = factory.make(i)
        source = record["diaSource"]
        with fits.open(io.BytesIO(record["cutoutDifference"])) as hdus:
            image = hdus[0].data.astype(np.float64)
        sigma = math.sqrt(source["ixxPSF"]) / 0.2  # arcsec**2 to pixels of 0.2 arcsec
        axis = np.arange(image.shape[0]) - (image.shape[0] - 1) / 2.0
        psf = np.outer(np.exp(-0.5 * (axis / sigma) ** 2), np.exp(-0.5 * (axis / sigma) ** 2))
        psf /= psf.sum()
        fitted = (psf * image).sum() / (psf * psf).sum()
        pulls.append((fitted - source["psfFlux"]) / source["psfFluxErr"])
    assert max(map(abs, pulls)) < 5.0
    assert 0.5 < float(np.std(pulls)) < 1.6  # the noise is what psfFluxErr says


def test_the_small_form_has_no_cutouts():
    record = RubinAlertFactory(NEWEST, cutouts=False, seed=1).make(0)
    assert record["cutoutDifference"] is record["cutoutScience"] is record["cutoutTemplate"] is None


# -- older schemas: the names they used -----------------------------------------


def test_version_3_gets_the_same_quantities_under_its_own_names():
    old = RubinAlertFactory("3.0", cutouts=False, seed=21).make(4)
    new = RubinAlertFactory(NEWEST, cutouts=False, seed=21).make(4)
    assert old["alertId"] == old["diaSource"]["diaSourceId"] == new["diaSourceId"]
    assert old["diaSource"]["psFlux"] == new["diaSource"]["psfFlux"]
    assert old["diaSource"]["midPointTai"] == new["diaSource"]["midpointMjdTai"]
    assert old["diaSource"]["filterName"] == new["diaSource"]["band"]
    assert old["diaSource"]["decl"] == new["diaSource"]["dec"]
    band = new["diaSource"]["band"]
    assert old["diaObject"][f"{band}PSFluxNdata"] == new["diaObject"][f"{band}_psfFluxNdata"] > 0


def test_version_8_gets_its_processing_time_as_a_timestamp(registry):
    factory = RubinAlertFactory("8.0", cutouts=False, seed=22)
    _, record = decode(registry, next(factory.alerts(1)))
    processed = record["diaSource"]["time_processed"]
    assert processed.year == 2025 and processed.tzinfo is not None


# -- determinism -----------------------------------------------------------------


def test_a_seed_gives_the_same_alerts_in_any_order_and_another_seed_others():
    first = list(RubinAlertFactory(NEWEST, seed=99).alerts(20))
    again = RubinAlertFactory(NEWEST, seed=99)
    assert [again.encode(again.make(i)) for i in reversed(range(20))] == first[::-1]
    assert list(RubinAlertFactory(NEWEST, seed=100).alerts(20)) != first


def test_without_a_seed_the_factory_draws_one_that_reproduces_its_stream():
    factory = RubinAlertFactory(NEWEST, cutouts=False)
    assert list(RubinAlertFactory(NEWEST, cutouts=False, seed=factory.seed).alerts(5)) == list(factory.alerts(5))


# -- user errors and helpers ----------------------------------------------------


def test_an_unknown_schema_version_says_which_ones_exist():
    with pytest.raises(ConfigError, match=r"'12\.7' is unknown: use one .*11\.1"):
        RubinAlertFactory("12.7")


def test_impossible_parameters_are_refused():
    with pytest.raises(ConfigError, match="prv_sources"):
        RubinAlertFactory(NEWEST, prv_sources=-1)
    with pytest.raises(ConfigError, match="alert index"):
        RubinAlertFactory(NEWEST, seed=1).make(2**28)


def test_magnitude_and_flux_are_each_others_inverse_on_the_ab_scale():
    assert magnitude(3631e9) == pytest.approx(0.0, abs=1e-3)  # 3631 Jy is AB magnitude 0
    assert magnitude(1.0) == AB_ZERO_POINT_NJY
    assert magnitude(flux_njy(20.0)) == pytest.approx(20.0)
    assert math.isnan(magnitude(0.0)) and math.isnan(magnitude(-5.0))
