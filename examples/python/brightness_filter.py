"""A filter: keep the Rubin alerts brighter than a magnitude (20.0 unless told).

Run it next to a sidecar that reads a Rubin stream:

    python examples/python/brightness_filter.py [--port 50051] [--max-mag 19.5]

or set the threshold with BRIGHTNESS_FILTER_MAX_MAG.

The brightness is the alert's ``diaSource`` PSF flux, in nJy. That flux is
measured on the difference image, so it is how much the source changed, not
how bright it is in total (``scienceFlux``, in schemas 3.0 to 5.0 and from
8.0). It is called ``psFlux`` in schemas 3.0 and 4.0 and ``psfFlux`` from 5.0
on (where ``decl`` also became ``dec``), and may be null from 6.0 on. The
alert's id is ``alertId`` up to schema 7.x and ``diaSourceId`` from 8.0 on.
Alerts with no flux, or a flux that is not positive (a source that faded
against the template), have no magnitude: they are not bright, and are dropped.
"""

from __future__ import annotations

import argparse
import math
import os

import alert_worker

MAX_MAG_ENV = "BRIGHTNESS_FILTER_MAX_MAG"
# Rubin detects sources to about r = 24.5 in one visit; 20 keeps only bright
# changes, the kind a small telescope can follow up the same night.
DEFAULT_MAX_MAG = 20.0

# AB magnitudes: m = -2.5 log10(f / 3631 Jy). With f in nJy, 3631 Jy is
# 3.631e12 nJy and 2.5 log10(3.631e12) = 31.4, Rubin's nJy zero point.
AB_ZERO_POINT_NJY = 31.4


def ab_magnitude(flux_njy: float) -> float:
    """The AB magnitude of a positive flux in nJy."""
    return -2.5 * math.log10(flux_njy) + AB_ZERO_POINT_NJY


def psf_flux(dia_source: dict) -> float | None:
    """The diaSource PSF flux in nJy, whatever the schema version calls it; None if there is none."""
    flux = dia_source.get("psfFlux", dia_source.get("psFlux"))
    return None if flux is None else float(flux)


class BrightnessFilter(alert_worker.Worker):
    """Keeps alerts whose diaSource PSF flux is brighter than ``max_mag``."""

    name = "brightness-filter"
    version = "1.0.0"
    accepts = ["application/vnd.apache.avro+confluent"]

    def __init__(self, max_mag: float | None = None) -> None:
        self.max_mag = max_mag if max_mag is not None else _max_mag_from_environment()

    def process(self, alert: alert_worker.Alert) -> bool:
        flux = psf_flux(alert.avro()["diaSource"])
        # None, NaN and fluxes at or below zero have no magnitude: dropped.
        if flux is None or not flux > 0:
            return False
        return ab_magnitude(flux) < self.max_mag


def _max_mag_from_environment() -> float:
    text = os.environ.get(MAX_MAG_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_MAG
    try:
        return float(text)
    except ValueError:
        raise SystemExit(f"{MAX_MAG_ENV}={text!r} is not a magnitude; set it to a number such as 19.5") from None


#: The worker with the threshold of the environment (or 20.0), for tests and imports.
worker = BrightnessFilter()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1,
                        help="serve from this many processes, on consecutive ports from --port "
                             "(give the sidecar --worker HOST:FIRST-LAST)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to listen on (default: ${alert_worker.server.PORT_ENV}, else 50051)")
    parser.add_argument("--max-mag", type=float, default=None,
                        help=f"keep alerts brighter than this AB magnitude (default: ${MAX_MAG_ENV}, "
                             f"else {DEFAULT_MAX_MAG})")
    args = parser.parse_args(argv)
    alert_worker.serve(BrightnessFilter(args.max_mag), port=args.port, processes=args.processes)


if __name__ == "__main__":
    main()
