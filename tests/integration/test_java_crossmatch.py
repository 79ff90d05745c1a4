"""Java workers end to end: a real sidecar, a real local Kafka, Rubin Avro alerts, the Java SDK.

The cross-match example (examples/java/crossmatch) annotates planted alerts
with exactly the catalogue sources around them; the pass-through example
(examples/java/passthrough) forwards every alert, in order.
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
from confluent_kafka import Producer

from alert_sidecar.simulate.rubin import RubinAlertFactory
from tests.java_support import CROSSMATCH_WORKER, PASSTHROUGH_WORKER, java_worker_command

from .stage_support import count_records, header, produce_alerts, read_topic

pytestmark = pytest.mark.kafka

RADIUS_ARCSEC = 2.0  # the worker's --radius-arcsec in these tests

# The catalogue: name, ra, dec, type, radius (arcsec). Placed to exercise every rule of the classifier,
# right ascension 0/360 and the pole.
CATALOG = [
    ("STAR-A", 150.0, 2.0, "star", 0.0),
    ("VAR-B", 150.5, 2.0, "variable-star", 0.0),
    ("GAL-C", 200.0, -30.0, "galaxy", 6.0),
    ("AGN-D", 210.0, -45.0, "agn", 0.0),
    ("QSO-E", 220.0, -50.0, "qso", 0.0),
    ("GAL-F", 359.99995, -10.0, "galaxy", 3.0),  # 0.18" west of RA 0 at this declination
    ("STAR-G", 0.0002, -10.0, "star", 0.0),  # 0.71" east of RA 0: 0.89" from GAL-F across the wrap
    ("STAR-H", 45.0, 89.9999, "star", 0.0),  # 0.36" from the north pole
    ("STAR-I", 225.0, 89.9999, "star", 0.0),  # the other side of the pole, 0.72" from STAR-H
    ("GAL-J", 300.0, 10.0, "galaxy", 1.0),  # small: a transient 1.5" off is outside it
    ("STAR-K", 300.0, 10.0004, "star", 0.0),  # 1.44" north of GAL-J
    ("GAL-M", 100.0, 20.0, "galaxy", 8.0),
    ("STAR-N", 100.0, 20.0003, "star", 0.0),  # 1.08" north of GAL-M's centre
]


def offset(ra: float, dec: float, east_arcsec: float, north_arcsec: float) -> tuple[float, float]:
    """The position ``east`` and ``north`` arcseconds from (ra, dec), on the tangent plane (exact enough
    for arcseconds away from the pole)."""
    new_dec = dec + north_arcsec / 3600.0
    return (ra + east_arcsec / 3600.0 / math.cos(math.radians(dec))) % 360.0, new_dec


def separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Haversine: an implementation independent of the worker's (which uses chords of unit vectors)."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(ra2 - ra1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 3600.0


# Planted alerts: a position and the class each must get, by the README's rules.
STAR_A, VAR_B, GAL_C, AGN_D, QSO_E, GAL_F, _, STAR_H, _, GAL_J, _, GAL_M, _ = CATALOG
PLANTED = [
    (offset(STAR_A[1], STAR_A[2], 0.4, 0.3), "variable-star"),  # 0.5" from a star
    (offset(VAR_B[1], VAR_B[2], -0.6, 0.0), "variable-star"),
    (offset(VAR_B[1], VAR_B[2], 1.5, 0.0), "unclear"),  # a star 1.5" away: too far to be it
    (offset(GAL_C[1], GAL_C[2], 0.2, -0.2), "nuclear-transient"),
    (offset(GAL_C[1], GAL_C[2], 1.2, 1.0), "supernova-candidate"),  # 1.56" off, inside its 6" radius
    (offset(AGN_D[1], AGN_D[2], 0.0, 0.7), "agn"),
    (offset(QSO_E[1], QSO_E[2], -0.5, -0.5), "agn"),
    ((0.0, -10.0), "nuclear-transient"),  # at RA 0: GAL-F 0.18" west, STAR-G 0.71" east
    ((359.9999, -10.0), "nuclear-transient"),  # GAL-F 0.18" east; STAR-G across the wrap, 1.06"
    ((0.0, 90.0), "variable-star"),  # the pole itself: STAR-H and STAR-I 0.36" away
    ((135.0, 89.99985), "variable-star"),  # near the pole, between the two stars' meridians
    (offset(GAL_J[1], GAL_J[2], 1.5, 0.0), "unclear"),  # outside the small galaxy; STAR-K 2.08" away
    (offset(GAL_M[1], GAL_M[2], 0.8, 0.0), "supernova-candidate"),  # a star in the cone, but the galaxy nearer
    (offset(GAL_M[1], GAL_M[2], 0.0, 1.3), "variable-star"),  # STAR-N 0.22" away, nearest
    ((80.0, -60.0), "orphan"),
    ((359.0, 40.0), "orphan"),
]


def expected_matches(ra: float, dec: float) -> list[tuple[str, float]]:
    """The catalogue sources within the radius, nearest first, by brute force."""
    found = [(name, separation_arcsec(ra, dec, cra, cdec)) for name, cra, cdec, _, _ in CATALOG]
    return sorted((m for m in found if m[1] <= RADIUS_ARCSEC), key=lambda m: m[1])


def write_catalog(path: Path) -> None:
    lines = ["ra,dec,name,type,radius_arcsec"]
    lines += [f"{ra!r},{dec!r},{name},{kind},{radius}" for name, ra, dec, kind, radius in CATALOG]
    path.write_text("\n".join(lines) + "\n")


def planted_alerts(factory: RubinAlertFactory, count: int) -> list[tuple[bytes, dict, str]]:
    """Rubin alerts at the planted positions, in turn: (value, its record, the class it must get)."""
    alerts = []
    for i in range(count):
        (ra, dec), classification = PLANTED[i % len(PLANTED)]
        record = factory.make(i)
        record["diaSource"]["ra"] = ra
        record["diaSource"]["dec"] = dec
        alerts.append((factory.encode(record), record, classification))
    return alerts


def uri(bootstrap: str, topic: str) -> str:
    return f"kafka://{bootstrap}/{topic}"


def stop(sidecar) -> None:
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(60) == 0, sidecar.output[-3000:]


def test_rules_of_the_planted_positions_hold():
    """The planted classes follow from the brute-force matches, so the Kafka test checks the worker, not
    hand-made answers that could be wrong together with it."""
    types = {name: (kind, radius) for name, _, _, kind, radius in CATALOG}
    for (ra, dec), classification in PLANTED:
        matches = expected_matches(ra, dec)
        if not matches:
            assert classification == "orphan"
            continue
        (nearest, sep), kinds = matches[0], [(types[name], s) for name, s in matches]
        if types[nearest][0] in ("star", "variable-star") and sep <= 1.0:
            rule = "variable-star"
        elif any(kind in ("agn", "qso") and s <= 1.0 for (kind, _), s in kinds):
            rule = "agn"
        elif any(kind == "galaxy" and s <= 0.5 for (kind, _), s in kinds):
            rule = "nuclear-transient"
        elif any(kind == "galaxy" and s <= radius for (kind, radius), s in kinds):
            rule = "supernova-candidate"
        else:
            rule = "unclear"
        assert rule == classification, (ra, dec, matches)


def test_crossmatch_annotates_every_alert_with_its_catalogue_sources(kafka_bootstrap, new_topic, procs, tmp_path):
    source, sink = new_topic(partitions=2), new_topic(partitions=2)
    catalog = tmp_path / "catalog.csv"
    write_catalog(catalog)
    # LSST-sized alerts (30 previous sources, three cutouts): the worker decodes them in Java with the
    # writer schema the sidecar sends with each batch.
    factory = RubinAlertFactory(seed=21)
    alerts = planted_alerts(factory, 3 * len(PLANTED))
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    for i, (value, _, _) in enumerate(alerts):
        producer.produce(source, value=value, partition=i % 2)
    assert producer.flush(30) == 0

    worker = java_worker_command(CROSSMATCH_WORKER, "--catalog", str(catalog),
                                 "--radius-arcsec", str(RADIUS_ARCSEC), "--max-matches", "10")
    sidecar = procs.sidecar("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
                            "--worker-wait", "120", "--", *worker)
    outputs = read_topic(kafka_bootstrap, sink, minimum=len(alerts), timeout=180, settle=3)
    stop(sidecar)

    assert len(outputs) == len(alerts)
    by_id = {}
    for message in outputs:
        annotation = json.loads(message.value())  # Python ints: 64-bit ids stay exact
        assert header(message, "x-crossmatch-class").decode() == annotation["classification"]
        assert header(message, "content-type") in (None, b"application/json")
        by_id[annotation["diaSourceId"]] = annotation
    for _value, record, classification in alerts:
        annotation = by_id.pop(record["diaSourceId"])
        source_record = record["diaSource"]
        assert annotation["diaObjectId"] == source_record["diaObjectId"]
        assert annotation["diaSourceId"] > 2**53  # a double would have broken it
        assert (annotation["ra"], annotation["dec"]) == (source_record["ra"], source_record["dec"])
        assert annotation["classification"] == classification, annotation
        expected = expected_matches(source_record["ra"], source_record["dec"])
        assert [m["name"] for m in annotation["matches"]] == [name for name, _ in expected], annotation
        for got, (name, sep) in zip(annotation["matches"], expected):
            assert got["separation_arcsec"] == pytest.approx(sep, abs=1e-6)
            catalogued = next(c for c in CATALOG if c[0] == name)
            assert (got["type"], got["ra"], got["dec"]) == (catalogued[3], catalogued[1], catalogued[2])
    assert not by_id, f"outputs for alerts never sent: {sorted(by_id)}"
    assert count_records(kafka_bootstrap, f"{source}.dead-letter") == 0
    assert "dead_lettered=0" in sidecar.output


def test_java_passthrough_forwards_every_alert_in_order(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=2), new_topic(partitions=2)
    sent = produce_alerts(kafka_bootstrap, source, 4_000, partitions=2)
    sidecar = procs.sidecar("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
                            "--worker-wait", "120", "--", *java_worker_command(PASSTHROUGH_WORKER))
    outputs = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=120, settle=3)
    stop(sidecar)
    # Un-keyed outputs of input partition p go to output partition p: each in input order, bytes untouched.
    for partition in (0, 1):
        got = [json.loads(m.value()) for m in outputs if m.partition() == partition]
        assert got == [alert for alert in sent if alert["partition"] == partition]
