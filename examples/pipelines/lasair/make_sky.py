"""Writes the demo sky of examples/pipelines/lasair.yaml: catalog.csv and watchlists/rapid-response.csv.

    python examples/pipelines/lasair/make_sky.py

The files are committed; this is how they were made (the same seed gives the
same files). Both are fictional, over the sky the alert simulator covers
(alert_sidecar.simulate.rubin: declinations below +30 degrees):

- catalog.csv, the cross-match's catalogue (examples/java/crossmatch reads it):
  3,000 sources with a name, a type (galaxy, star, variable-star, agn, qso)
  and, for galaxies, a radius in arcseconds;
- watchlists/rapid-response.csv, the trigger's watch list
  (examples/python/watchlist_trigger.py reads it): 40 positions to follow up
  (counterpart searches, known transients' hosts), each with a radius.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 2026
CATALOG_SOURCES = 3000
WATCHLIST_TARGETS = 40
MAX_DEC = 30.0
TYPES = (("galaxy", 0.6), ("star", 0.2), ("variable-star", 0.08), ("agn", 0.06), ("qso", 0.06))


def position(rng: random.Random) -> tuple[float, float]:
    """Uniform on the sphere below MAX_DEC."""
    top = math.sin(math.radians(MAX_DEC))
    return rng.uniform(0.0, 360.0), math.degrees(math.asin(rng.uniform(-1.0, top)))


def iau_name(prefix: str, ra: float, dec: float) -> str:
    """An IAU-style name, "PREFIX Jhhmmss.ss+ddmmss.s"."""
    hours = ra / 15.0
    h, m = int(hours), int(hours * 60) % 60
    s = (hours * 3600) % 60
    sign = "+" if dec >= 0 else "-"
    d = abs(dec)
    dd, dm = int(d), int(d * 60) % 60
    ds = (d * 3600) % 60
    return f"{prefix} J{h:02d}{m:02d}{s:05.2f}{sign}{dd:02d}{dm:02d}{ds:04.1f}"


def main() -> None:
    rng = random.Random(SEED)
    names, weights = zip(*TYPES)
    with open(HERE / "catalog.csv", "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["ra", "dec", "name", "type", "radius_arcsec"])
        for _ in range(CATALOG_SOURCES):
            ra, dec = position(rng)
            kind = rng.choices(names, weights)[0]
            radius = round(rng.uniform(2.0, 12.0), 1) if kind == "galaxy" else 0
            writer.writerow([f"{ra:.6f}", f"{dec:.6f}", iau_name("LSC", ra, dec), kind, radius])
    kinds = ("GW counterpart search", "GRB afterglow", "known SN host", "TDE candidate", "FRB host")
    with open(HERE / "watchlists" / "rapid-response.csv", "w", newline="") as out:
        out.write("# The trigger's rapid-response targets: a follow-up request for any alert within radius_arcsec.\n")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["name", "ra", "dec", "radius_arcsec"])
        for i in range(WATCHLIST_TARGETS):
            ra, dec = position(rng)
            label = f"{kinds[i % len(kinds)]} {i + 1:02d}"
            writer.writerow([label, f"{ra:.6f}", f"{dec:.6f}", rng.choice((3, 5, 10, 30, 60))])


if __name__ == "__main__":
    main()
