"""The watch-list trigger example (examples/python/watchlist_trigger.py), run with the SDK's harness.

Matching is checked against a brute-force haversine written here, independent
of the worker's chords of unit vectors and zones; reloading with a clock the
tests move, so no test waits for the reload interval.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alert_sidecar.simulate.rubin import RubinAlertFactory
from alert_worker import Verdict, codecs
from alert_worker.testing import json_form, make_alert, run
from tests.examples import load_example

trigger = load_example("watchlist_trigger")


def haversine_arcsec(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> Any:
    """Great-circle separation by the haversine formula, in arcseconds (numpy arrays or floats)."""
    p1, p2 = np.radians(dec1), np.radians(dec2)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(np.subtract(ra2, ra1)) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.minimum(1.0, np.sqrt(h)))) * 3600.0


def offset(ra: float, dec: float, east_arcsec: float, north_arcsec: float = 0.0) -> tuple[float, float]:
    """A position east and north of (ra, dec), on the tangent plane: exact enough for arcseconds off the poles."""
    return (ra + east_arcsec / 3600.0 / math.cos(math.radians(dec))) % 360.0, dec + north_arcsec / 3600.0


def write_list(path: Path, rows: list[tuple[str, float, float, float]], header: str = "name,ra,dec,radius_arcsec"
               ) -> Path:
    path.write_text("\n".join([header] + [f"{name},{ra!r},{dec!r},{radius!r}" for name, ra, dec, radius in rows])
                    + "\n")
    return path


# --- the file ----------------------------------------------------------------------------


def test_a_good_file_parses(tmp_path: Path) -> None:
    path = tmp_path / "targets.csv"
    path.write_text("# targets for tonight\n\n"
                    "name,ra,dec,radius_arcsec,priority\n"
                    "SN 2025abc, 150.25 , -2.5 , 5 ,high\n"
                    "  # a comment after the header\n"
                    '"NGC 1, the galaxy",359.5,89.0,0.5,low\n'
                    "pole,360,-90,30,\n"
                    "\n")
    watchlist = trigger.load_watchlist(str(path))
    assert [(t.name, t.ra, t.dec, t.radius_arcsec, t.line) for t in watchlist.targets] == [
        ("SN 2025abc", 150.25, -2.5, 5.0, 4),
        ("NGC 1, the galaxy", 359.5, 89.0, 0.5, 6),
        ("pole", 0.0, -90.0, 30.0, 7),  # RA 360 is RA 0
    ]
    description = watchlist.description()
    assert (description["path"], description["entries"]) == (str(path), 3)
    assert description["loaded_at"].endswith("Z")


def test_a_file_of_only_a_header_is_an_empty_list(tmp_path: Path) -> None:
    watchlist = trigger.load_watchlist(str(write_list(tmp_path / "empty.csv", [])))
    assert len(watchlist) == 0 and watchlist.matches(10.0, 10.0) == []


GOOD = "A,10,20,5"


@pytest.mark.parametrize(("line", "problem"), [
    ("B,abc,20,5", "line 3: ra 'abc' is not a number"),
    ("B,10,,5", "line 3: dec is empty"),
    ("B,10,20,five", "line 3: radius_arcsec 'five' is not a number"),
    ("B,nan,20,5", "line 3: ra 'nan' is not a finite number"),
    ("B,10,inf,5", "line 3: dec 'inf' is not a finite number"),
    ("B,10,95,5", "line 3: dec 95 is outside [-90, 90] degrees"),
    ("B,10,-90.001,5", "line 3: dec -90.001 is outside [-90, 90] degrees"),
    ("B,361,20,5", "line 3: ra 361 is outside [0, 360] degrees"),
    ("B,-1,20,5", "line 3: ra -1 is outside [0, 360] degrees"),
    ("B,10,20,0", "line 3: radius_arcsec 0 is not above 0"),
    ("B,10,20,-3", "line 3: radius_arcsec -3 is not above 0"),
    ("B,10,20,700000", "line 3: radius_arcsec 700000 is not above 0 and at most 648000 (180 degrees)"),
    ("B,10,20", "line 3: 3 fields where the header has 4 (name,ra,dec,radius_arcsec)"),
    ("B,10,20,5,6", "line 3: 5 fields where the header has 4"),
    (",10,20,5", "line 3: the name is empty"),
])
def test_each_kind_of_bad_line_is_named(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"name,ra,dec,radius_arcsec\n{GOOD}\n{line}\n{GOOD}\n")
    with pytest.raises(trigger.WatchlistError) as raised:
        trigger.load_watchlist(str(path))
    assert str(raised.value).startswith(f"watch list {path}, {problem}")
    assert "more bad line" not in str(raised.value)


@pytest.mark.parametrize(("text", "problem"), [
    ("", ": no header line; the first line should be name,ra,dec,radius_arcsec"),
    ("# nothing but a comment\n\n", ": no header line"),
    ("name,ra,dec\nA,1,2\n", ", line 1: the header 'name,ra,dec' lacks the column radius_arcsec"),
    ("name,RA,Dec,radius\nA,1,2,3\n", ", line 1: the header 'name,RA,Dec,radius' lacks the columns ra, dec, "
                                      "radius_arcsec"),
    ("name,ra,dec,ra,radius_arcsec\n", ", line 1: the header repeats ra"),
    ("name,ra,dec,radius_arcsec\nA,1,2,x\nB,1,2,3\nC,1,200,3\nD,1,2\n",
     ", line 2: radius_arcsec 'x' is not a number (and 2 more bad lines)"),
])
def test_bad_headers_and_several_bad_lines(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(trigger.WatchlistError) as raised:
        trigger.load_watchlist(str(path))
    assert str(raised.value).startswith(f"watch list {path}{problem}")


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("name,ra,dec,radius_arcsec\nA,1,2,3\nCaf\xe9,1,2,3\n".encode("latin-1"))
    with pytest.raises(trigger.WatchlistError, match=r"line 3: not UTF-8 text"):
        trigger.load_watchlist(str(path))


# --- matching ------------------------------------------------------------------------------


def random_sky(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions uniform on the sphere."""
    return rng.uniform(0.0, 360.0, count), np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, count)))


def hard_places(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions where matching goes wrong if it is not done on the sphere: RA 0/360 and the poles."""
    kind = rng.integers(0, 3, count)
    ra = np.where(kind == 0, rng.normal(0.0, 0.01, count) % 360.0, rng.uniform(0.0, 360.0, count))
    dec = np.where(kind == 0, rng.uniform(-89.0, 89.0, count),
                   np.where(kind == 1, 90.0 - np.abs(rng.normal(0.0, 0.01, count)),
                            -90.0 + np.abs(rng.normal(0.0, 0.01, count))))
    return ra, dec


def near(rng: np.random.Generator, ra: np.ndarray, dec: np.ndarray, scale_arcsec: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    """Points a few radii from the given centres, in a random direction (over the pole when it is near)."""
    distance = np.radians(np.abs(rng.normal(0.0, 1.0, len(ra))) * scale_arcsec / 3600.0)
    bearing = rng.uniform(0.0, 2 * math.pi, len(ra))
    lat, lon = np.radians(dec), np.radians(ra)
    new_lat = np.arcsin(np.clip(np.sin(lat) * np.cos(distance)
                                + np.cos(lat) * np.sin(distance) * np.cos(bearing), -1.0, 1.0))
    new_lon = lon + np.arctan2(np.sin(bearing) * np.sin(distance) * np.cos(lat),
                               np.cos(distance) - np.sin(lat) * np.sin(new_lat))
    return np.degrees(new_lon) % 360.0, np.degrees(new_lat)


def assert_matches_brute_force(index: Any, ra: np.ndarray, dec: np.ndarray, radius: np.ndarray,
                               points: tuple[np.ndarray, np.ndarray]) -> int:
    """Every point's cones are those the haversine finds, with its separations, nearest first."""
    found_total = 0
    for pra, pdec in zip(*points):
        separation = haversine_arcsec(pra, pdec, ra, dec)
        expected = set(np.flatnonzero(separation <= radius).tolist())
        # A point within a micro-arcsecond of a rim may fall either side: the two formulas round differently.
        rim = set(np.flatnonzero(np.abs(separation - radius) < 1e-6).tolist())
        found, separations = index.containing(float(pra), float(pdec))
        assert set(found.tolist()) - rim == expected - rim, (pra, pdec)
        assert np.all(np.diff(separations) >= 0), "nearest first"
        np.testing.assert_allclose(separations, separation[found], rtol=0, atol=1e-6)
        found_total += len(found) > 0
    return found_total


def test_matching_equals_a_brute_force_haversine() -> None:
    rng = np.random.default_rng(20251121)
    count = 3000
    sky_ra, sky_dec = random_sky(rng, count // 2)
    hard_ra, hard_dec = hard_places(rng, count - count // 2)
    ra, dec = np.concatenate([sky_ra, hard_ra]), np.concatenate([sky_dec, hard_dec])
    radius = rng.uniform(0.5, 60.0, count)
    radius[::100] = rng.uniform(600.0, 7200.0, len(radius[::100]))  # a few cones of minutes to degrees
    index = trigger.ConeIndex(ra, dec, radius)
    picked = rng.integers(0, count, 4000)
    near_points = near(rng, ra[picked], dec[picked], 1.5 * radius[picked])
    points = tuple(np.concatenate(parts) for parts in zip(near_points, random_sky(rng, 500),
                                                          hard_places(rng, 1500)))
    points[0][:4] = [0.0, 359.9999999, 123.0, 0.0]  # the poles themselves
    points[1][:4] = [90.0, -90.0, 90.0, -90.0]
    inside = assert_matches_brute_force(index, ra, dec, radius, points)
    assert inside > 2000  # the test looks at many points in cones, not only at empty sky


@pytest.mark.parametrize(("centre", "point", "separation"), [
    ((359.9999, -10.0), (0.0001, -10.0), 0.709),  # across RA 0/360, both ways
    ((0.0001, -10.0), (359.9999, -10.0), 0.709),
    ((45.0, 89.9999), (225.0, 89.9999), 0.72),  # over the north pole
    ((45.0, 89.9999), (0.0, 90.0), 0.36),  # the pole itself
    ((10.0, -89.9999), (190.0, -89.9999), 0.72),  # over the south pole
    ((10.0, -90.0), (300.0, -89.9999), 0.36),
])
def test_cones_across_ra_zero_and_over_the_poles(centre: tuple[float, float], point: tuple[float, float],
                                                 separation: float) -> None:
    index = trigger.ConeIndex([centre[0]], [centre[1]], [1.0])
    found, separations = index.containing(*point)
    assert found.tolist() == [0]
    assert separations[0] == pytest.approx(separation, abs=0.005)
    assert trigger.ConeIndex([centre[0]], [centre[1]], [separation - 0.01]).containing(*point)[0].tolist() == []


def test_a_hundred_thousand_targets_cost_little_per_alert() -> None:
    rng = np.random.default_rng(7)
    count = 100_000
    ra, dec = random_sky(rng, count)
    radius = rng.uniform(1.0, 30.0, count)
    began = time.perf_counter()
    index = trigger.ConeIndex(ra, dec, radius)
    assert time.perf_counter() - began < 5.0
    points = tuple(np.concatenate(parts) for parts in zip(random_sky(rng, 2000),
                                                          near(rng, ra[:2000], dec[:2000], radius[:2000])))
    candidates = sum(len(index.candidates(float(a), float(d))) for a, d in zip(*points))
    # Of 100,000 targets, an alert is compared with about one: those of its zone it could be in.
    assert candidates / len(points[0]) < 5
    began = time.perf_counter()
    for a, d in zip(*points):
        index.containing(float(a), float(d))
    per_alert = (time.perf_counter() - began) / len(points[0])
    assert per_alert < 1e-3, f"{per_alert * 1e6:.0f} us per alert"
    assert_matches_brute_force(index, ra, dec, radius, (points[0][::40], points[1][::40]))


# --- Rubin alerts --------------------------------------------------------------------------

TARGETS = [
    ("SN-A", 150.0, 2.0, 5.0),
    ("GAL-B", 150.001, 2.0, 4.0),  # 3.6" east of SN-A: an alert can be in both cones
    ("WRAP-C", 359.9995, -30.0, 4.0),
    ("POLE-D", 80.0, -89.9995, 3.0),
    ("FAR-E", 20.0, 25.0, 2.0),
]


def planted(factory: RubinAlertFactory, positions: list[tuple[float, float]]) -> list[tuple[Any, dict]]:
    """Rubin alerts of the factory moved to the positions: (the alert, its record)."""
    alerts = []
    for i, (ra, dec) in enumerate(positions):
        record = factory.make(i)
        source = record["diaSource"]
        source["ra"] = ra
        source["decl" if "decl" in source else "dec"] = dec
        alerts.append((make_alert(factory.encode(record), content_type=codecs.AVRO_CONFLUENT, offset=i), record))
    return alerts


@pytest.fixture
def targets_file(tmp_path: Path) -> Path:
    return write_list(tmp_path / "targets.csv", TARGETS)


def requests(results: list[Any]) -> list[dict | None]:
    """The follow-up request of each result, None for a dropped alert."""
    answers: list[dict | None] = []
    for result in results:
        assert result.verdict is Verdict.OK, result.error
        if not result.outputs:
            answers.append(None)
            continue
        [output] = result.outputs
        assert output.content_type == "application/json"
        request = codecs.decode_json(output.value)
        assert dict(output.headers) == {"x-watchlist-match": request["matches"][0]["name"].encode()}
        answers.append(request)
    return answers


def test_alerts_in_cones_ask_for_follow_up_and_the_others_are_dropped(targets_file: Path) -> None:
    factory = RubinAlertFactory(seed=41, cutouts=True, prv_sources=3)
    positions = [
        offset(150.0, 2.0, -2.0, 1.0),  # in SN-A's cone only: 2.2" from it, 5.7" from GAL-B
        offset(150.0, 2.0, 1.0),  # 1" from SN-A, 2.6" from GAL-B: both, SN-A first
        offset(150.001, 2.0, 3.0),  # GAL-B only: 3" from it, 6.6" from SN-A
        offset(150.0, 2.0, 0.0, 12.0),  # outside both
        (0.0002, -30.0),  # WRAP-C across RA 0: 2.2" away
        (260.0, -89.9996),  # POLE-D over the south pole: 3.24" ... outside its 3" cone
        (260.0, -89.99975),  # ... and 2.7" inside it
        offset(20.0, 25.0, 2.5),  # FAR-E missed by 0.5"
        (200.0, -45.0),  # nowhere near anything
    ]
    alerts = planted(factory, positions)
    worker = trigger.WatchlistTrigger(str(targets_file))
    # As a sidecar sends them (the JSON form, projected to the worker's fields) and as raw Avro.
    sent = [json_form(alert, fields=worker.fields) for alert, _ in alerts]
    assert all(len(alert.value) < 1000 for alert in sent)  # not the 60 KB of the alert with cutouts
    answers = requests(run(worker, sent))
    assert answers == requests(run(worker, [alert for alert, _ in alerts]))
    names = [None if a is None else [m["name"] for m in a["matches"]] for a in answers]
    assert names == [["SN-A"], ["SN-A", "GAL-B"], ["GAL-B"], None, ["WRAP-C"], None, ["POLE-D"], None, None]
    for answer, (_, record), (ra, dec) in zip(answers, alerts, positions):
        if answer is None:
            continue
        source = record["diaSource"]
        assert answer["type"] == "follow-up-request"
        assert answer["diaSourceId"] == record["diaSourceId"] > 2**53  # exact: a double would break it
        assert answer["diaObjectId"] == source["diaObjectId"]
        assert (answer["ra"], answer["dec"]) == (ra, dec)
        assert (answer["mjd"], answer["band"]) == (source["midpointMjdTai"], source["band"])
        assert answer["psfFlux"] == source["psfFlux"]
        for match in answer["matches"]:
            _, tra, tdec, tradius = next(t for t in TARGETS if t[0] == match["name"])
            assert match["radius_arcsec"] == tradius
            assert match["separation_arcsec"] == pytest.approx(haversine_arcsec(ra, dec, tra, tdec), abs=1e-6)
        assert answer["watchlist"]["path"] == str(targets_file)
        assert answer["watchlist"]["entries"] == len(TARGETS)


def test_old_schemas_are_matched_by_their_own_field_names(targets_file: Path) -> None:
    # Schema 4.0: alertId, decl, midPointTai, filterName, psFlux.
    factory = RubinAlertFactory(schema_version="4.0", seed=3, cutouts=False, prv_sources=1)
    [(alert, record)] = planted(factory, [offset(150.0, 2.0, -1.0)])
    worker = trigger.WatchlistTrigger(str(targets_file))
    [answer] = requests(run(worker, [json_form(alert, fields=worker.fields)]))
    source = record["diaSource"]
    assert answer["diaSourceId"] == record["alertId"]
    assert (answer["dec"], answer["mjd"]) == (source["decl"], source["midPointTai"])
    assert (answer["band"], answer["psfFlux"]) == (source["filterName"], source["psFlux"])


def test_a_bad_alert_is_dead_lettered_alone(targets_file: Path) -> None:
    factory = RubinAlertFactory(seed=5, cutouts=False, prv_sources=0)
    [(good, _)] = planted(factory, [offset(150.0, 2.0, 1.0)])
    broken = make_alert(b"\x00\x00\x00\x04\x4d\x01\x02", content_type=codecs.AVRO_CONFLUENT, offset=7)
    no_position = make_alert({"diaSourceId": 1, "diaSource": {"ra": None, "dec": 2.0}}, offset=8)
    no_source = make_alert({"diaSourceId": 2}, offset=9)
    results = run(trigger.WatchlistTrigger(str(targets_file)), [good, broken, no_position, no_source])
    assert [r.verdict for r in results] == [Verdict.OK, Verdict.DEAD_LETTER, Verdict.DEAD_LETTER,
                                            Verdict.DEAD_LETTER]
    assert results[1].error.startswith("cannot decode the alert:")
    assert results[2].error == "the alert's diaSource has no usable position (ra None, dec 2.0)"
    assert results[3].error == "the alert has no diaSource"


def test_the_module_worker_reads_the_environment(monkeypatch: pytest.MonkeyPatch, targets_file: Path) -> None:
    assert isinstance(trigger.worker, trigger.WatchlistTrigger)
    monkeypatch.setenv(trigger.WATCHLIST_ENV, str(targets_file))
    worker = trigger.WatchlistTrigger()
    worker.setup()
    assert (worker.path, len(worker.watchlist)) == (str(targets_file), len(TARGETS))


# --- hot reload ----------------------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def reloading(tmp_path: Path) -> Any:
    """A trigger on a file of SN-A alone, with its clock, and alerts at SN-A and at FAR-E."""
    path = write_list(tmp_path / "targets.csv", TARGETS[:1])
    clock = Clock()
    worker = trigger.WatchlistTrigger(str(path), reload_interval=0.5, clock=clock)
    worker.ensure_setup()  # loads the first version, as serve() would
    factory = RubinAlertFactory(seed=9, cutouts=False, prv_sources=0)
    alerts = [json_form(alert, fields=worker.fields)
              for alert, _ in planted(factory, [offset(150.0, 2.0, 1.0), offset(20.0, 25.0, 1.0)])]

    def triggered() -> list[str | None]:
        return [None if a is None else a["matches"][0]["name"] for a in requests(run(worker, alerts))]

    return path, clock, worker, triggered


def replace(path: Path, text: str) -> None:
    """Write a new file and rename it over the old one, as vim, emacs and most tools do."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    os.replace(new, path)


def listing(rows: list[tuple[str, float, float, float]]) -> str:
    return "name,ra,dec,radius_arcsec\n" + "".join(f"{n},{ra!r},{dec!r},{r!r}\n" for n, ra, dec, r in rows)


def records_of(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "watchlist_trigger" and r.levelno == level]


def test_an_edit_in_place_is_used_after_the_interval(reloading: Any, caplog: pytest.LogCaptureFixture) -> None:
    path, clock, worker, triggered = reloading
    caplog.set_level(logging.INFO, logger="watchlist_trigger")
    assert triggered() == ["SN-A", None]
    with open(path, "a") as handle:  # the same inode, a new size
        handle.write("FAR-E,20.0,25.0,2.0\n")
    clock.advance(0.3)
    assert triggered() == ["SN-A", None]  # not looked at yet: the interval has not passed
    clock.advance(0.3)
    assert triggered() == ["SN-A", "FAR-E"]
    assert records_of(caplog, logging.INFO)[-1] == f"watch list {path} loaded: 2 entries (was 1)"
    clock.advance(0.6)
    assert triggered() == ["SN-A", "FAR-E"]  # the same file: not read again
    assert len([m for m in records_of(caplog, logging.INFO) if "loaded" in m]) == 1


def test_a_file_replaced_by_rename_is_used(reloading: Any) -> None:
    path, clock, worker, triggered = reloading
    inode = path.stat().st_ino
    replace(path, listing(TARGETS[4:]))
    assert path.stat().st_ino != inode
    clock.advance(0.5)
    assert triggered() == [None, "FAR-E"]
    assert worker.watchlist.description()["entries"] == 1


def test_a_broken_file_keeps_the_previous_list_until_it_is_fixed(reloading: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    path, clock, worker, triggered = reloading
    replace(path, listing(TARGETS[4:]) + "BAD,20.0,95.0,2.0\n")
    clock.advance(0.5)
    assert triggered() == ["SN-A", None]  # the previous list
    [error] = records_of(caplog, logging.ERROR)
    assert error.startswith(f"watch list {path}, line 3: dec 95.0 is outside [-90, 90] degrees; "
                            f"keeping the previous 1 entries, loaded at ")
    clock.advance(0.5)
    assert triggered() == ["SN-A", None]
    assert len(records_of(caplog, logging.ERROR)) == 1  # once per version of the file, not once a look
    replace(path, listing(TARGETS[4:]) + "GOOD,20.0,85.0,2.0\n")
    clock.advance(0.5)
    assert triggered() == [None, "FAR-E"]
    assert len(worker.watchlist) == 2


def test_a_deleted_file_keeps_the_last_list(reloading: Any, caplog: pytest.LogCaptureFixture) -> None:
    path, clock, worker, triggered = reloading
    path.unlink()
    for _ in range(3):
        clock.advance(0.5)
        assert triggered() == ["SN-A", None]
    [warning] = records_of(caplog, logging.WARNING)
    assert warning.startswith(f"watch list {path} is gone; keeping the 1 entries loaded at ")
    write_list(path, TARGETS[4:])
    clock.advance(0.5)
    assert triggered() == [None, "FAR-E"]


def test_a_missing_or_broken_file_at_startup_exits_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(SystemExit) as exited:
        trigger.main(["--watchlist", str(missing), "--port", "0"])
    assert exited.value.code == 2
    assert f"watch list {missing}: no such file" in capsys.readouterr().err

    broken = tmp_path / "broken.csv"
    broken.write_text("name,ra,dec,radius_arcsec\nA,1,2,0\n")
    with pytest.raises(SystemExit) as exited:
        trigger.main(["--watchlist", str(broken), "--port", "0"])
    assert exited.value.code == 2
    assert f"watch list {broken}, line 2: radius_arcsec 0 is not above 0" in capsys.readouterr().err

    monkeypatch.delenv(trigger.WATCHLIST_ENV, raising=False)
    with pytest.raises(SystemExit) as exited:
        trigger.main(["--port", "0"])
    assert exited.value.code == 2
    assert "no watch list: give --watchlist FILE or set WATCHLIST_FILE" in capsys.readouterr().err


def test_a_directory_of_watch_lists(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "watchlists"
    folder.mkdir()
    write_list(folder / "supernovae.csv", TARGETS[:1])
    (folder / "notes.txt").write_text("not a watch list")
    (folder / ".#supernovae.csv").symlink_to("an editor's lock, dangling")
    clock = Clock()
    worker = trigger.WatchlistTrigger(str(folder), reload_interval=0.5, clock=clock)
    caplog.set_level(logging.INFO, logger="watchlist_trigger")
    worker.ensure_setup()
    assert records_of(caplog, logging.INFO) == [f"watch list {folder} loaded: 1 entries from 1 file"]
    factory = RubinAlertFactory(seed=10, cutouts=False, prv_sources=0)
    alerts = [json_form(alert, fields=worker.fields)
              for alert, _ in planted(factory, [offset(150.0, 2.0, 1.0), offset(20.0, 25.0, 1.0)])]

    def triggered() -> list[str | None]:
        clock.advance(0.5)
        return [None if a is None else a["matches"][0]["name"] for a in requests(run(worker, alerts))]

    assert triggered() == ["SN-A", None]
    write_list(folder / "added.csv", TARGETS[4:])  # a new file, written in place
    assert triggered() == ["SN-A", "FAR-E"]
    assert records_of(caplog, logging.INFO)[-1] == f"watch list {folder} loaded: 2 entries from 2 files (was 1)"
    assert worker.watchlist.description()["path"] == str(folder)
    (folder / "added.csv").write_text(listing(TARGETS[4:]) + "BAD,1,2,x\n")
    assert triggered() == ["SN-A", "FAR-E"]
    [error] = records_of(caplog, logging.ERROR)
    assert error.startswith(f"watch list {folder / 'added.csv'}, line 3: radius_arcsec 'x' is not a number; "
                            f"keeping the previous 2 entries")
    (folder / "supernovae.csv").unlink()  # removing a file of a directory is an edit: its targets go
    write_list(folder / "added.csv", TARGETS[4:])
    assert triggered() == [None, "FAR-E"]
    for name in os.listdir(folder):
        if name.endswith(".csv"):
            (folder / name).unlink()
    assert triggered() == [None, None]
    assert len(worker.watchlist) == 0
