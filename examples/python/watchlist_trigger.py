"""A rapid-response trigger: ask for follow-up of Rubin alerts inside the cones of a watch list.

Run it next to a sidecar that reads a Rubin stream:

    python examples/python/watchlist_trigger.py --watchlist targets.csv [--port 50051]

or give the file with WATCHLIST_FILE. The watch list is CSV: a header
``name,ra,dec,radius_arcsec`` (other columns are allowed and ignored), then one
target a line, ra and dec in degrees (J2000), the radius in arcseconds. Lines
starting with ``#`` and blank lines are skipped. A directory may be given
instead of a file: each of its ``*.csv`` files is a watch list, and the
trigger uses them all (adding, editing or removing one is a change).

An alert whose diaSource position lies in one or more cones is answered with
one JSON follow-up request naming every cone it is in, nearest first, and the
nearest target's name in the header ``x-watchlist-match``; other alerts are
dropped. The worker asks the sidecar for the few fields it reads (``fields``),
so what crosses gRPC is about 220 bytes an alert, not the 62 KB of an alert
with its cutouts.

The file may be edited while the worker runs. Before a batch, at most every
``--reload-interval`` seconds (0.5), the worker compares the file's inode, size
and modification time with those of the version it loaded (for a directory,
those of each of its watch lists), and reads it again when they differ.
Editors that write a new file and rename it over the old one change the inode;
editors that write in place change the size or the time. A version that does
not parse is reported once, on one line naming the file, the line and the
problem, and the previous list stays in use until the file is fixed; a file
deleted later leaves the last list in use too. At startup there is no previous
list: a missing or broken file ends the program (status 2).

Matching uses declination zones: each target is filed under the zones its cone
overlaps, sorted by right ascension, so an alert is compared with the few
targets of its zone within the cones' widest reach in right ascension, not
with the whole list. Separations are exact on the sphere (chords of unit
vectors), across RA 0/360 and at the poles.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
import math
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import alert_worker

log = logging.getLogger("watchlist_trigger")

WATCHLIST_ENV = "WATCHLIST_FILE"
DEFAULT_RELOAD_INTERVAL = 0.5
MATCH_HEADER = "x-watchlist-match"
COLUMNS = ("name", "ra", "dec", "radius_arcsec")
# Half the sky: a cone wider than that is the whole sky, and surely a typo.
MAX_RADIUS_ARCSEC = 180.0 * 3600.0

# A file's identity and version as stat() gives it: (st_mtime_ns, st_size, st_ino); for a
# directory, ("dir", ((name, st_mtime_ns, st_size, st_ino), ...)) of its watch lists.
Signature = tuple[Any, ...]


class WatchlistError(Exception):
    """A watch list that cannot be used: missing, unreadable, or a line that does not parse."""


# --- the file ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One line of the watch list."""

    name: str
    ra: float  # degrees, 0 <= ra < 360
    dec: float  # degrees
    radius_arcsec: float
    line: int


def parse_watchlist(text: str, path: str = "<watch list>") -> list[Target]:
    """The targets of a watch list's text; raises ``WatchlistError`` naming the first bad line.

    The message counts the other bad lines too, so that whoever fixes the file
    knows the first one is not the only one.
    """
    header: dict[str, int] | None = None
    targets: list[Target] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [field.strip() for field in next(csv.reader([line]))]
        if header is None:
            header = _header(fields, path, number)
            continue
        try:
            targets.append(_target(fields, header, number))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if header is None:
        raise WatchlistError(f"watch list {path}: no header line; the first line should be {','.join(COLUMNS)}")
    if problems:
        others = len(problems) - 1
        more = f" (and {others} more bad line{'s' if others > 1 else ''})" if others else ""
        raise WatchlistError(f"watch list {path}, {problems[0]}{more}")
    return targets


def _header(fields: list[str], path: str, number: int) -> dict[str, int]:
    repeated = sorted({name for name in fields if fields.count(name) > 1})
    if repeated:
        raise WatchlistError(f"watch list {path}, line {number}: the header repeats {', '.join(repeated)}")
    columns = {name: position for position, name in enumerate(fields)}
    missing = [name for name in COLUMNS if name not in columns]
    if missing:
        raise WatchlistError(
            f"watch list {path}, line {number}: the header {','.join(fields)!r} lacks the column"
            f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} (it needs {','.join(COLUMNS)})")
    return columns


def _target(fields: list[str], header: dict[str, int], number: int) -> Target:
    if len(fields) != len(header):
        raise ValueError(f"{len(fields)} field{'s' if len(fields) != 1 else ''} where the header has "
                         f"{len(header)} ({','.join(header)})")
    name = fields[header["name"]]
    if not name:
        raise ValueError("the name is empty")
    ra, dec, radius = (_number(fields[header[column]], column) for column in ("ra", "dec", "radius_arcsec"))
    if not 0.0 <= ra <= 360.0:
        raise ValueError(f"ra {fields[header['ra']]} is outside [0, 360] degrees")
    if not -90.0 <= dec <= 90.0:
        raise ValueError(f"dec {fields[header['dec']]} is outside [-90, 90] degrees")
    if not 0.0 < radius <= MAX_RADIUS_ARCSEC:
        raise ValueError(f"radius_arcsec {fields[header['radius_arcsec']]} is not above 0 and at most "
                         f"{MAX_RADIUS_ARCSEC:.0f} (180 degrees)")
    return Target(name, ra % 360.0, dec, radius, number)


def _number(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a number" if text else f"{column} is empty") from None
    if not math.isfinite(value):
        raise ValueError(f"{column} {text!r} is not a finite number")
    return value


# --- the index ------------------------------------------------------------------------


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Points of the unit sphere, one row (x, y, z) per position."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


class ConeIndex:
    """Cones on the sky, and which of them contain a point.

    The sky is cut into declination zones of equal height. A cone is filed
    under every zone its declination range overlaps (a cone around a pole
    reaches the pole), and each zone keeps its cones sorted by right ascension
    with the widest RA half-width any of them has: asin(sin r / cos dec) for a
    cone of radius r at declination dec, the whole circle for one that holds a
    pole. A point is in a cone only if its zone lists the cone and their RAs
    differ by no more than that half-width, so one binary search (two across
    RA 0/360) gives the candidates, and only they are measured exactly.

    Zones are about twice the median radius high (from 1 arcminute to 1
    degree), so most cones sit in one or two zones.
    """

    # Slack for rounding: a cone may only be found by a wider search, never missed.
    _SLACK_DEG = 1e-9

    def __init__(self, ra_deg: Sequence[float], dec_deg: Sequence[float], radius_arcsec: Sequence[float]) -> None:
        ra = np.asarray(ra_deg, dtype=np.float64)
        dec = np.asarray(dec_deg, dtype=np.float64)
        radius = np.asarray(radius_arcsec, dtype=np.float64) / 3600.0
        self.size = len(ra)
        self.vectors = unit_vectors(ra, dec)
        # A point is in a cone when its chord to the centre is at most 2 sin(r / 2).
        self.max_chord2 = (2.0 * np.sin(np.radians(radius) / 2.0)) ** 2
        median = float(np.median(radius)) if self.size else 1.0
        self.zone_height = min(max(2.0 * median, 1.0 / 60.0), 1.0)
        self.zones = math.ceil(180.0 / self.zone_height)
        first = self._zone_of(dec - radius - self._SLACK_DEG)
        last = self._zone_of(dec + radius + self._SLACK_DEG)
        spans = last - first + 1
        cone = np.repeat(np.arange(self.size), spans)  # each cone once per zone it overlaps
        starts = np.repeat(np.cumsum(spans) - spans, spans)
        zone = first[cone] + (np.arange(len(cone)) - starts)
        order = np.lexsort((ra[cone], zone))
        self._cone = cone[order]
        self._ra = ra[cone][order]
        self._zone_start = np.searchsorted(zone[order], np.arange(self.zones + 1))
        holds_pole = np.abs(dec) + radius >= 90.0
        ratio = np.sin(np.radians(radius)) / np.maximum(np.cos(np.radians(dec)), 1e-300)
        half_width = np.where(holds_pole, 180.0, np.degrees(np.arcsin(np.clip(ratio, 0.0, 1.0))))
        self._zone_reach = np.zeros(self.zones)
        np.maximum.at(self._zone_reach, zone, half_width[cone] + self._SLACK_DEG)
        # Plain Python numbers for the per-alert path: numpy's scalar calls cost more than the work.
        self._zone_start_list = self._zone_start.tolist()
        self._zone_reach_list = self._zone_reach.tolist()

    def _zone_of(self, dec: Any) -> Any:
        return np.clip(np.floor((np.asarray(dec) + 90.0) / self.zone_height).astype(np.int64), 0, self.zones - 1)

    def candidates(self, ra: float, dec: float) -> np.ndarray:
        """Indices of the cones that may hold (ra, dec): every one that does, and a few more."""
        if not self.size:
            return np.empty(0, dtype=np.int64)
        zone = min(max(math.floor((dec + 90.0) / self.zone_height), 0), self.zones - 1)  # as _zone_of
        start, end = self._zone_start_list[zone], self._zone_start_list[zone + 1]
        reach = self._zone_reach_list[zone]
        if start == end or reach >= 180.0:
            return self._cone[start:end]
        ras = self._ra[start:end]
        low, high = ra - reach, ra + reach
        pieces = [(max(low, 0.0), min(high, 360.0))]
        if low < 0.0:
            pieces.append((low + 360.0, 360.0))
        if high > 360.0:
            pieces.append((0.0, high - 360.0))
        found = [self._cone[start + int(np.searchsorted(ras, a, side="left")):
                            start + int(np.searchsorted(ras, b, side="right"))] for a, b in pieces]
        return found[0] if len(found) == 1 else np.concatenate(found)

    def containing(self, ra: float, dec: float) -> tuple[np.ndarray, np.ndarray]:
        """The cones that hold (ra, dec) and its separations from their centres in arcseconds, nearest first."""
        found = self.candidates(ra, dec)
        if not len(found):
            return found, np.empty(0)
        difference = self.vectors[found] - unit_vectors(np.array(ra), np.array(dec))
        chord2 = np.einsum("ij,ij->i", difference, difference)
        inside = chord2 <= self.max_chord2[found]
        found, chord2 = found[inside], chord2[inside]
        separation = np.degrees(2.0 * np.arcsin(np.minimum(np.sqrt(chord2) / 2.0, 1.0))) * 3600.0
        order = np.argsort(separation, kind="stable")
        return found[order], separation[order]


class Watchlist:
    """One version of the watch list, loaded, with its index. Never changed: a reload makes a new one."""

    def __init__(self, targets: list[Target], path: str, signature: Signature | None,
                 loaded_at: dt.datetime | None = None, files: int | None = None) -> None:
        self.targets = targets
        self.path = path
        self.signature = signature
        self.files = files  # how many files, for a directory of watch lists; None for one file
        self.loaded_at = loaded_at or dt.datetime.now(dt.timezone.utc)
        self.index = ConeIndex([t.ra for t in targets], [t.dec for t in targets],
                               [t.radius_arcsec for t in targets])

    def __len__(self) -> int:
        return len(self.targets)

    def matches(self, ra: float, dec: float) -> list[tuple[Target, float]]:
        """The targets whose cone holds (ra, dec), with the separation in arcseconds, nearest first."""
        found, separations = self.index.containing(ra, dec)
        return [(self.targets[i], s) for i, s in zip(found.tolist(), separations.tolist())]

    def description(self) -> dict[str, Any]:
        return {"path": self.path, "entries": len(self.targets),
                "loaded_at": self.loaded_at.isoformat(timespec="seconds").replace("+00:00", "Z")}


def signature_of(status: os.stat_result) -> tuple[int, int, int]:
    return status.st_mtime_ns, status.st_size, status.st_ino


def csv_files(directory: str) -> list[str]:
    """The watch lists of a directory: its ``*.csv`` files, by name, without hidden ones (editors' locks)."""
    with os.scandir(directory) as found:
        return sorted(entry.name for entry in found
                      if entry.name.endswith(".csv") and not entry.name.startswith(".") and entry.is_file())


def current_signature(path: str) -> Signature:
    """The signature of the file, or of the watch lists of the directory, at ``path`` now; raises OSError."""
    status = os.stat(path)
    if not stat.S_ISDIR(status.st_mode):
        return signature_of(status)
    files = []
    for name in csv_files(path):
        try:
            files.append((name, *signature_of(os.stat(os.path.join(path, name)))))
        except FileNotFoundError:
            continue  # removed since the listing: as if it had not been listed
    return ("dir", tuple(files))


def load_watchlist(path: str) -> Watchlist:
    """Read and parse the file, or every watch list of the directory, at ``path``.

    Raises ``WatchlistError`` for a line that does not parse, and OSError
    (FileNotFoundError for a missing path) for one that cannot be read.
    """
    if not os.path.isdir(path):
        targets, signature = _read_one(path)
        return Watchlist(targets, path, signature)
    targets, files = [], []
    for name in csv_files(path):
        try:
            found, signature = _read_one(os.path.join(path, name))
        except FileNotFoundError:
            continue
        targets += found
        files.append((name, *signature))
    return Watchlist(targets, path, ("dir", tuple(files)), files=len(files))


def _read_one(path: str) -> tuple[list[Target], tuple[int, int, int]]:
    with open(path, "rb") as handle:
        # The signature of what is read, taken before reading: a change made
        # while reading shows as a new signature at the next check.
        signature = signature_of(os.fstat(handle.fileno()))
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise WatchlistError(f"watch list {path}, line {line}: not UTF-8 text ({exc.reason})") from None
    return parse_watchlist(text, path), signature


# --- the worker ------------------------------------------------------------------------


class WatchlistTrigger(alert_worker.Worker):
    """Answers alerts inside a watch-list cone with a follow-up request; drops the others."""

    name = "watchlist-trigger"
    version = "1.0.0"
    # The JSON form projected to these fields: the sidecar decodes each alert
    # and sends a few hundred bytes. Older schemas' names are listed too
    # (alertId up to 7.x, decl, midPointTai, filterName and psFlux up to 4.x):
    # a path the alert lacks is left out.
    accepts = ["application/json"]
    fields = ["diaSourceId", "alertId", "diaSource.diaSourceId", "diaSource.diaObjectId", "diaSource.ra",
              "diaSource.dec", "diaSource.decl", "diaSource.midpointMjdTai", "diaSource.midPointTai",
              "diaSource.band", "diaSource.filterName", "diaSource.psfFlux", "diaSource.psFlux"]

    def __init__(self, path: str | None = None, reload_interval: float = DEFAULT_RELOAD_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.reload_interval = reload_interval
        self._clock = clock
        self._watchlist: Watchlist | None = None
        self._reloading = threading.Lock()
        self._checked_at = -math.inf
        self._seen: Signature | None = None  # the last version looked at, loaded or refused
        self._missing = False

    @property
    def watchlist(self) -> Watchlist:
        """The version in use."""
        if self._watchlist is None:
            raise WatchlistError("the watch list is not loaded yet: setup() loads it")
        return self._watchlist

    def setup(self) -> None:
        """Load the watch list, or raise ``WatchlistError``: at startup there is no previous list to keep."""
        if self._watchlist is not None:
            return
        if not self.path:
            self.path = os.environ.get(WATCHLIST_ENV, "").strip() or None
        if not self.path:
            raise WatchlistError(f"no watch list: give --watchlist FILE or set {WATCHLIST_ENV}")
        try:
            watchlist = load_watchlist(self.path)
        except FileNotFoundError:
            raise WatchlistError(f"watch list {self.path}: no such file or directory") from None
        except OSError as exc:
            raise WatchlistError(f"watch list {self.path}: cannot read it: {exc.strerror or exc}") from None
        self._use(watchlist, previous=None)
        self._checked_at = self._clock()

    def process_batch(self, alerts: list[alert_worker.Alert]) -> list[Any]:
        self.reload_if_changed()
        watchlist = self.watchlist  # one version for the whole batch, whatever another thread loads
        return [self._answer(alert, watchlist) for alert in alerts]

    # -- reloading ------------------------------------------------------------------

    def reload_if_changed(self) -> bool:
        """Look at the file if ``reload_interval`` has passed since the last look; True if a new list is in use.

        Only one thread looks at a time; the others go on with the list in use
        rather than wait for a reload.
        """
        now = self._clock()
        if now - self._checked_at < self.reload_interval or not self._reloading.acquire(blocking=False):
            return False
        try:
            if now - self._checked_at < self.reload_interval:  # another thread just looked
                return False
            self._checked_at = now
            return self._check()
        finally:
            self._reloading.release()

    def _check(self) -> bool:
        current = self.watchlist
        try:
            signature = current_signature(self.path)
        except FileNotFoundError:
            if not self._missing:
                log.warning("watch list %s is gone; keeping the %d entries loaded at %s until it is back",
                            self.path, len(current), current.description()["loaded_at"])
                self._missing = True
                self._seen = None  # whatever appears there next is read
            return False
        except OSError as exc:
            if not self._missing:
                log.warning("watch list %s cannot be read (%s); keeping the %d entries loaded at %s",
                            self.path, exc.strerror or exc, len(current), current.description()["loaded_at"])
                self._missing = True
                self._seen = None
            return False
        self._missing = False
        if signature == self._seen:
            return False
        try:
            watchlist = load_watchlist(self.path)
        except (WatchlistError, OSError) as exc:
            # Once per version of the file: the next message comes with the next edit.
            self._seen = signature
            reason = str(exc) if isinstance(exc, WatchlistError) else f"watch list {self.path}: {exc}"
            log.error("%s; keeping the previous %d entries, loaded at %s", reason, len(current),
                      current.description()["loaded_at"])
            return False
        self._use(watchlist, previous=current)
        return True

    def _use(self, watchlist: Watchlist, previous: Watchlist | None) -> None:
        self._watchlist = watchlist
        self._seen = watchlist.signature
        files = "" if watchlist.files is None else f" from {watchlist.files} file{'s' if watchlist.files != 1 else ''}"
        was = "" if previous is None else f" (was {len(previous)})"
        log.info("watch list %s loaded: %d entries%s%s", watchlist.path, len(watchlist), files, was)

    # -- matching -------------------------------------------------------------------

    def _answer(self, alert: alert_worker.Alert, watchlist: Watchlist) -> Any:
        try:
            record = alert.record()
        except alert_worker.AlertDecodeError as exc:
            # A batch worker answers a bad alert alone, so the others of its batch go on.
            return alert_worker.DeadLetter(f"cannot decode the alert: {exc}")
        source = record.get("diaSource")
        if not isinstance(source, dict):
            return alert_worker.DeadLetter("the alert has no diaSource")
        ra, dec = source.get("ra"), source.get("dec", source.get("decl"))
        if not _finite(ra) or not _finite(dec) or not -90.0 <= dec <= 90.0:
            return alert_worker.DeadLetter(f"the alert's diaSource has no usable position (ra {ra!r}, dec {dec!r})")
        matches = watchlist.matches(float(ra) % 360.0, float(dec))
        if not matches:
            return False
        request = {
            "type": "follow-up-request",
            "diaSourceId": _first(record.get("diaSourceId"), record.get("alertId"), source.get("diaSourceId")),
            "diaObjectId": source.get("diaObjectId"),
            "ra": ra,
            "dec": dec,
            "mjd": _first(source.get("midpointMjdTai"), source.get("midPointTai")),
            "band": _first(source.get("band"), source.get("filterName")),
            "psfFlux": _first(source.get("psfFlux"), source.get("psFlux")),  # nJy; NaN is written null
            "matches": [{"name": target.name, "separation_arcsec": separation,
                         "radius_arcsec": target.radius_arcsec} for target, separation in matches],
            "watchlist": watchlist.description(),
        }
        return alert_worker.Output.json(request, headers=[(MATCH_HEADER, matches[0][0].name)])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


#: The worker with the file of $WATCHLIST_FILE, loaded by setup(), for tests and imports.
worker = WatchlistTrigger()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1,
                        help="serve from this many processes, on consecutive ports from --port "
                             "(give the sidecar --worker HOST:FIRST-LAST); each watches the file")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to listen on (default: ${alert_worker.server.PORT_ENV}, else 50051)")
    parser.add_argument("--watchlist", metavar="FILE", default=None,
                        help=f"the watch list, CSV with the header {','.join(COLUMNS)}, or a directory whose "
                             f"*.csv files are all watch lists (default: ${WATCHLIST_ENV})")
    parser.add_argument("--reload-interval", type=float, default=DEFAULT_RELOAD_INTERVAL, metavar="SECONDS",
                        help=f"look at the file for changes at most this often, before a batch "
                             f"(default: {DEFAULT_RELOAD_INTERVAL})")
    args = parser.parse_args(argv)
    if args.reload_interval < 0:
        parser.error("--reload-interval must not be negative")
    # Before serve(), which would otherwise configure it: the first load logs.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    trigger = WatchlistTrigger(args.watchlist, reload_interval=args.reload_interval)
    try:
        trigger.ensure_setup()
    except WatchlistError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    alert_worker.serve(trigger, port=args.port, processes=args.processes)


if __name__ == "__main__":
    main()
