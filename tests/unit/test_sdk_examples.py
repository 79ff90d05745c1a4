"""The Python examples' workers, run with the SDK's harness on alerts of known content."""

from __future__ import annotations

import math
from typing import Any

import pytest

from alert_worker import Output, Verdict, codecs
from alert_worker.testing import make_alert, rubin_alert, rubin_sample, run, ztf_alert
from tests.data import ZTF_PACKETS
from tests.examples import load_example

brightness = load_example("brightness_filter")
passthrough = load_example("passthrough")

# One version per shape of diaSource: psFlux (3.0, 4.0), psfFlux not nullable
# (5.0), nullable (6.0 on), alertId (up to 7.x) or diaSourceId (8.0 on).
VERSIONS = ["3.0", "4.0", "5.0", "6.0", "7.1", "8.0", "11.1"]


def flux_of(mag: float) -> float:
    return 10 ** ((31.4 - mag) / 2.5)


def alert_with_flux(version: str, flux: float | None, offset: int = 0) -> Any:
    record = rubin_sample(version)
    source = record["diaSource"]
    source["psFlux" if "psFlux" in source else "psfFlux"] = flux
    return rubin_alert(record, version=version, offset=offset)


def kept(results: list[Any]) -> list[bool]:
    assert all(result.verdict is Verdict.OK for result in results), [r.error for r in results]
    return [result.outputs == (Output.forward(),) for result in results]


def test_magnitude_zero_point() -> None:
    assert brightness.ab_magnitude(3.631e12) == pytest.approx(0.0, abs=1e-3)  # 3631 Jy is AB 0
    assert brightness.ab_magnitude(flux_of(20.0)) == pytest.approx(20.0)


@pytest.mark.parametrize("version", VERSIONS)
def test_brightness_filter_keeps_only_bright_alerts(version: str) -> None:
    alerts = [alert_with_flux(version, flux_of(mag), offset=n) for n, mag in enumerate([15.0, 19.9, 20.1, 24.0])]
    assert kept(run(brightness.BrightnessFilter(max_mag=20.0), alerts)) == [True, True, False, False]
    # The threshold is the worker's own.
    assert kept(run(brightness.BrightnessFilter(max_mag=22.0), alerts)) == [True, True, True, False]


@pytest.mark.parametrize("version", VERSIONS)
def test_brightness_filter_drops_alerts_without_a_positive_flux(version: str) -> None:
    fluxes: list[float | None] = [0.0, -flux_of(15.0), math.nan]
    if version not in ("3.0", "4.0", "5.0"):  # psfFlux is nullable from schema 6.0 on
        fluxes.append(None)
    alerts = [alert_with_flux(version, flux, offset=n) for n, flux in enumerate(fluxes)]
    assert kept(run(brightness.BrightnessFilter(max_mag=30.0), alerts)) == [False] * len(fluxes)


def test_brightness_threshold_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(brightness.MAX_MAG_ENV, "22.5")
    assert brightness.BrightnessFilter().max_mag == 22.5
    monkeypatch.delenv(brightness.MAX_MAG_ENV)
    assert brightness.BrightnessFilter().max_mag == 20.0


def test_brightness_filter_dead_letters_what_is_not_rubin_avro() -> None:
    [result] = run(brightness.worker, [make_alert(b"\x00\x00\x00\x00\x01\x02", content_type=codecs.AVRO_CONFLUENT)])
    assert result.verdict is Verdict.DEAD_LETTER
    assert "schema id 1 is not a Rubin schema" in result.error


def test_passthrough_keeps_everything() -> None:
    alerts = [make_alert({"n": 1}), make_alert(b"\x01"), rubin_alert(), ztf_alert(ZTF_PACKETS[0])]
    assert kept(run(passthrough.passthrough, alerts)) == [True] * 4
