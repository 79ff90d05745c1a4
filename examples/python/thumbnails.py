"""Thumbnails: draw each alert's cutouts as PNG files, and keep a web page of the latest ones.

Run it as a stage of its own, beside the filters, on the same Rubin (or ZTF) stream:

    python examples/python/thumbnails.py --out-dir /srv/alerts [--port 50051] [--gallery-size 60]

or give the directory with THUMBNAILS_DIR. Drawing is slow next to filtering
(about 10 ms a stamp, three stamps an alert, in astropy's ZScale and Pillow),
so this stage may lag behind the stream: in a consumer group of its own it
delays nobody, and catches up when the stream slows down.

For each alert the science, template and difference stamps become

    DIR/<diaObjectId>/<diaSourceId>-science.png   (and -template, -difference)

(for ZTF, ``<objectId>/<candid>-...``), each written to a temporary file in
the same directory and renamed over its name, so a web server never serves
half a picture. The alert's answer is one JSON record naming the files,
relative to DIR, for a later stage to find them:

    {"diaSourceId": 1441..., "diaObjectId": 1441..., "thumbnails": ["1441.../1441...-science.png", ...]}

An alert whose cutout is null or is not a FITS image is dead-lettered with
the reason, and nothing is written for it; the next alert goes on. A schema
that has no field for a stamp at all (Rubin's before 6.1 have no science
stamp) is drawn without it.

DIR/index.html shows the ``--gallery-size`` latest alerts, newest first, with
their ids, position, band, time and flux: one page, its style inline, its
images by relative paths, so DIR can be served as it is or opened from disk.
It is rewritten at most once a second, not once an alert, and on shutdown.
DIR/gallery.json, written with it, keeps the page's list, so a restarted
worker goes on with the same page.

Serve it from one process only (there is no ``--processes``): the page is the
one process's list of alerts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import logging
import math
import os
import re
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import alert_worker
from alert_worker import codecs, cutouts

log = logging.getLogger("thumbnails")

OUT_DIR_ENV = "THUMBNAILS_DIR"
DEFAULT_GALLERY_SIZE = 60
DEFAULT_SIZE = 128
GALLERY_INTERVAL = 1.0  # seconds, at least, between two writes of the page
INDEX_HTML = "index.html"
GALLERY_JSON = "gallery.json"
GALLERY_FORMAT = 1

#: The stamps, as the alert's fields name them and as the files do.
KINDS = {"cutoutScience": "science", "cutoutTemplate": "template", "cutoutDifference": "difference"}

# What may name a directory or a file: Rubin's ids are integers, ZTF's objectIds letters and digits.
_SAFE_ID = re.compile(r"-?[A-Za-z0-9_]{1,64}")
_ZTF_BANDS = {1: "g", 2: "r", 3: "i"}  # ZTF's fid
_MJD_OF_JD = 2400000.5
_TEMPORARY_PREFIX = ".tmp-"


# --- files --------------------------------------------------------------------------------


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part.

    The bytes go to a new file in the same directory (the same file system),
    which is then renamed over ``path``. It is made with os.open's mode 0o666,
    less the umask, as open() would make it: tempfile.mkstemp's files are
    readable by their owner only, and these are for a web server.
    """
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f"{_TEMPORARY_PREFIX}{name}.{secrets.token_hex(6)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


# --- what an alert says -----------------------------------------------------------------


def describe(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ids, position, band, time and brightness of a Rubin or ZTF alert, for the page and the answer.

    Raises ``DeadLetter`` for an alert that has neither form's ids.
    """
    source = record.get("diaSource")
    if isinstance(source, Mapping):  # Rubin
        source_id = _first(record.get("diaSourceId"), record.get("alertId"), source.get("diaSourceId"))
        return {
            "survey": "rubin", "id_names": ["diaSourceId", "diaObjectId"],
            "source": source_id, "object": source.get("diaObjectId"),
            "ra": source.get("ra"), "dec": _first(source.get("dec"), source.get("decl")),
            "band": _first(source.get("band"), source.get("filterName")),
            "mjd": _first(source.get("midpointMjdTai"), source.get("midPointTai")),
            "flux_njy": _first(source.get("psfFlux"), source.get("psFlux")), "mag": None,
        }
    candidate = record.get("candidate")
    if isinstance(candidate, Mapping):  # ZTF
        jd = candidate.get("jd")
        return {
            "survey": "ztf", "id_names": ["candid", "objectId"],
            "source": _first(record.get("candid"), candidate.get("candid")), "object": record.get("objectId"),
            "ra": candidate.get("ra"), "dec": candidate.get("dec"),
            "band": _ZTF_BANDS.get(candidate.get("fid"), candidate.get("fid")),
            "mjd": jd - _MJD_OF_JD if isinstance(jd, (int, float)) else None,
            "flux_njy": None, "mag": candidate.get("magpsf"),
        }
    raise alert_worker.DeadLetter("the alert is neither Rubin's (no diaSource) nor ZTF's (no candidate)")


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _path_part(value: Any, what: str) -> str:
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not _SAFE_ID.fullmatch(text):
        raise alert_worker.DeadLetter(f"the alert's {what} {value!r} cannot name a file (letters, digits and _ only)")
    return text


def _number(value: Any) -> float | None:
    """A float for JSON and the page; None for what is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


# --- the page -------------------------------------------------------------------------------


class Gallery:
    """The list of the latest alerts, and the page and JSON index that show it.

    ``add`` only changes the list; a thread of its own writes the files when
    the list has changed, at most once every ``interval`` seconds. ``close``
    stops that thread and writes what is left.
    """

    def __init__(self, directory: str, size: int = DEFAULT_GALLERY_SIZE, interval: float = GALLERY_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.size = size
        self.interval = interval
        self._clock = clock
        self._entries: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._dirty = False
        self._stopping = False
        self._last_write = -math.inf
        self._writing = threading.Lock()
        self._thread: threading.Thread | None = None
        #: When each write of the page began (the clock's time), for tests and curious readers.
        self.writes: list[float] = []

    @property
    def entries(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._entries)

    def load(self) -> None:
        """Take the list of the page a previous run left, keeping the alerts whose files are still there."""
        path = os.path.join(self.directory, GALLERY_JSON)
        try:
            with open(path, "rb") as handle:
                saved = json.loads(handle.read())
            entries = saved["entries"]
            if not isinstance(entries, list):
                raise ValueError("its entries are not a list")
        except FileNotFoundError:
            entries = []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("gallery index %s is unreadable (%s): starting an empty page; the pictures stay", path, exc)
            entries = []
        kept = [e for e in entries if self._usable(e)][:self.size]
        with self._changed:
            self._entries = kept
            # A page to rewrite: it lists files that are gone, or is not there at all.
            self._dirty = len(kept) != len(entries[:self.size]) or not os.path.exists(
                os.path.join(self.directory, INDEX_HTML))
        if entries:
            log.info("gallery: %d alerts from the previous run's %s", len(kept), path)

    def _usable(self, entry: Any) -> bool:
        """Whether a saved entry is one this code wrote and its pictures are all still there."""
        if not isinstance(entry, dict) or not {"survey", "source", "object"} <= entry.keys():
            return False
        files = entry.get("thumbnails")
        return (isinstance(files, list) and all(isinstance(f, str) for f in files)
                and all(os.path.isfile(os.path.join(self.directory, f)) for f in files))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="thumbnails-gallery", daemon=True)
        self._thread.start()

    def add(self, entry: dict[str, Any]) -> None:
        """Put an alert at the top of the page (once: an alert sent again moves up)."""
        with self._changed:
            same = [e for e in self._entries if e["survey"] == entry["survey"] and e["source"] == entry["source"]
                    and e["object"] == entry["object"]]
            for old in same:
                self._entries.remove(old)
            self._entries.insert(0, entry)
            del self._entries[self.size:]
            self._dirty = True
            self._changed.notify()

    def flush(self) -> None:
        """Write the page now if the list changed since the last write (whatever the interval)."""
        # The list is read with the writing lock held, so that two writes
        # cannot end in the opposite order and leave the older list on disk.
        with self._writing:
            with self._changed:
                if not self._dirty:
                    return
                entries, self._dirty = list(self._entries), False
                self._last_write = self._clock()
            try:
                self._write(entries)
            except BaseException:
                with self._changed:
                    self._dirty = True
                raise

    def close(self) -> None:
        """Stop the writing thread and write what it had not written yet."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.flush()
        except OSError as exc:
            log.error("cannot write the gallery in %s: %s", self.directory, exc)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopping and not self._dirty:
                    self._changed.wait()
                if self._stopping:
                    return
                wait = self._last_write + self.interval - self._clock()
                if wait > 0:
                    self._changed.wait(wait)  # or until close()
                    continue
            try:
                self.flush()
            except Exception as exc:  # the thread must live on: the next alert may be writable
                log.error("cannot write the gallery in %s: %s; trying again in %g s", self.directory, exc,
                          self.interval, exc_info=not isinstance(exc, OSError))

    def _write(self, entries: list[dict[str, Any]]) -> None:
        self.writes.append(self._clock())
        now = dt.datetime.now(dt.timezone.utc)
        index = {"format": GALLERY_FORMAT, "updated": _iso(now), "entries": entries}
        # The JSON first: a page never lists alerts the index would forget on a restart.
        write_atomically(os.path.join(self.directory, GALLERY_JSON), codecs.encode_json(index))
        write_atomically(os.path.join(self.directory, INDEX_HTML), render_page(entries, now).encode("utf-8"))


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


_STYLE = """
body { font-family: system-ui, sans-serif; background: #111; color: #ddd; margin: 1em; }
h1 { font-size: 1.2em; font-weight: normal; }
.alert { display: inline-block; vertical-align: top; margin: 0 1em 1em 0; padding: 0.5em;
         background: #1c1c1c; border: 1px solid #333; }
.stamps { display: flex; gap: 4px; }
figure { margin: 0; text-align: center; }
figcaption { font-size: 0.75em; color: #999; }
img { display: block; width: 128px; height: 128px; image-rendering: pixelated; background: #000; }
.missing { width: 128px; height: 128px; display: flex; align-items: center; justify-content: center;
           font-size: 0.75em; color: #666; border: 1px dashed #444; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0 0.8em; margin: 0.5em 0 0; font-size: 0.8em; }
dt { color: #999; }
dd { margin: 0; font-family: ui-monospace, monospace; }
""".strip()


def render_page(entries: list[dict[str, Any]], now: dt.datetime) -> str:
    """The gallery page: self-contained HTML, every text escaped, images by paths relative to the page."""
    cards = "\n".join(_card(entry) for entry in entries) or "<p>No alerts yet.</p>"
    count = f"{len(entries)} latest alert{'s' if len(entries) != 1 else ''}, newest first"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="30">
<title>Alert thumbnails</title>
<style>
{_STYLE}
</style>
</head>
<body>
<h1>Alert thumbnails: {count}; updated {html.escape(_iso(now))}</h1>
{cards}
</body>
</html>
"""


def _card(entry: dict[str, Any]) -> str:
    by_kind = {os.path.basename(path).rsplit("-", 1)[-1].removesuffix(".png"): path
               for path in entry.get("thumbnails", ())}
    figures = []
    for kind in KINDS.values():
        path = by_kind.get(kind)
        picture = (f'<img src="{html.escape(urllib.parse.quote(path))}" alt="{kind}">' if path
                   else f'<div class="missing">no {kind}</div>')
        figures.append(f"<figure>{picture}<figcaption>{kind}</figcaption></figure>")
    source_name, object_name = entry.get("id_names", ["source", "object"])
    rows = [(source_name, entry.get("source")), (object_name, entry.get("object")),
            ("ra, dec", _position(entry.get("ra"), entry.get("dec"))), ("band", entry.get("band")),
            ("MJD", _fixed(entry.get("mjd"), 5))]
    if entry.get("flux_njy") is not None or entry.get("mag") is None:
        rows.append(("psfFlux", f"{_fixed(entry.get('flux_njy'), 1)} nJy"))
    else:
        rows.append(("magpsf", _fixed(entry.get("mag"), 3)))
    details = "".join(f"<dt>{html.escape(str(name))}</dt><dd>{html.escape(_text(value))}</dd>" for name, value in rows)
    return f'<div class="alert">\n<div class="stamps">{"".join(figures)}</div>\n<dl>{details}</dl>\n</div>'


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _fixed(value: Any, places: int) -> str:
    return f"{value:.{places}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _position(ra: Any, dec: Any) -> str:
    return f"{_fixed(ra, 6)}, {_fixed(dec, 6)}" if ra is not None or dec is not None else "-"


# --- the worker ------------------------------------------------------------------------------


class Thumbnails(alert_worker.Worker):
    """Draws each alert's cutouts into PNG files and answers with their paths; keeps the gallery."""

    name = "thumbnails"
    version = "1.0.0"
    # The Avro as it is (the cutouts are most of an alert: decoding them to
    # base64 JSON would cost the sidecar for nothing), or JSON if that is
    # what the stream carries.
    accepts = [codecs.AVRO_CONFLUENT, codecs.AVRO_OCF, codecs.JSON]

    def __init__(self, out_dir: str | None = None, gallery_size: int = DEFAULT_GALLERY_SIZE,
                 size: int | None = DEFAULT_SIZE, stretch: str = "asinh",
                 gallery_interval: float = GALLERY_INTERVAL) -> None:
        self.out_dir = out_dir
        self.gallery_size = gallery_size
        self.size = size
        self.stretch = stretch
        self.gallery_interval = gallery_interval
        self.gallery: Gallery | None = None

    def setup(self) -> None:
        if not self.out_dir:
            self.out_dir = os.environ.get(OUT_DIR_ENV, "").strip() or None
        if not self.out_dir:
            raise alert_worker.WorkerDefinitionError(f"no directory for thumbnails: give --out-dir DIR or set "
                                                     f"{OUT_DIR_ENV}")
        os.makedirs(self.out_dir, exist_ok=True)
        _remove_temporary_files(self.out_dir)
        self.gallery = Gallery(self.out_dir, self.gallery_size, self.gallery_interval)
        self.gallery.load()
        self.gallery.flush()  # a page from the start, if there was none
        self.gallery.start()

    def close(self) -> None:
        """Write the gallery as it stands: call it once the server has stopped."""
        if self.gallery is not None:
            self.gallery.close()

    def process(self, alert: alert_worker.Alert) -> Any:
        assert self.out_dir is not None and self.gallery is not None  # setup() ran
        record = alert.record()  # AlertDecodeError escapes: the alert is dead-lettered
        about = describe(record)
        object_part = _path_part(about["object"], about["id_names"][1])
        source_part = _path_part(about["source"], about["id_names"][0])
        pictures = self._draw(record, about)
        # Every picture is drawn before any is written: a bad stamp leaves no files behind.
        directory = os.path.join(self.out_dir, object_part)
        os.makedirs(directory, exist_ok=True)
        written = []
        for kind, png in pictures:
            relative = f"{object_part}/{source_part}-{kind}.png"
            write_atomically(os.path.join(self.out_dir, relative), png)
            written.append(relative)
        self.gallery.add({
            "survey": about["survey"], "id_names": about["id_names"], "source": about["source"],
            "object": about["object"], "ra": _number(about["ra"]), "dec": _number(about["dec"]),
            "band": about["band"] if isinstance(about["band"], str) else None, "mjd": _number(about["mjd"]),
            "flux_njy": _number(about["flux_njy"]), "mag": _number(about["mag"]), "thumbnails": written,
            "processed": _iso(dt.datetime.now(dt.timezone.utc)),
        })
        source_name, object_name = about["id_names"]
        return {source_name: about["source"], object_name: about["object"], "thumbnails": written}

    def _draw(self, record: Mapping[str, Any], about: Mapping[str, Any]) -> list[tuple[str, bytes]]:
        pictures = []
        for field, kind in KINDS.items():
            if field not in record:
                continue  # the schema has no such stamp (Rubin's before 6.1 have no science stamp)
            try:
                stamp = cutouts.stamp_bytes(record[field])
                if not stamp:
                    raise alert_worker.DeadLetter(f"{field} is null or empty: there is no stamp to draw")
                pictures.append((kind, cutouts.cutout_png(stamp, size=self.size, stretch=self.stretch)))
            except alert_worker.CutoutError as exc:
                raise alert_worker.DeadLetter(f"{field} cannot be drawn: {exc}") from exc
        if not pictures:
            raise alert_worker.DeadLetter("the alert carries no cutouts")
        return pictures


def _remove_temporary_files(directory: str) -> None:
    """Remove the temporary files a killed run left beside the page (those beside pictures stay)."""
    for name in os.listdir(directory):
        if name.startswith(_TEMPORARY_PREFIX):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


#: The worker with the directory of $THUMBNAILS_DIR (set up on first use), for tests and imports.
worker = Thumbnails()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to listen on (default: ${alert_worker.server.PORT_ENV}, else 50051)")
    parser.add_argument("--out-dir", metavar="DIR", default=None,
                        help=f"where the pictures and the page go (default: ${OUT_DIR_ENV})")
    parser.add_argument("--gallery-size", type=int, default=DEFAULT_GALLERY_SIZE, metavar="N",
                        help=f"alerts on the page (default: {DEFAULT_GALLERY_SIZE})")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, metavar="PIXELS",
                        help=f"pictures are PIXELS x PIXELS, 0 for the stamp's own size (default: {DEFAULT_SIZE})")
    parser.add_argument("--stretch", choices=cutouts.STRETCHES, default="asinh",
                        help="after the ZScale interval (default: asinh)")
    args = parser.parse_args(argv)
    out_dir = args.out_dir or os.environ.get(OUT_DIR_ENV, "").strip()
    if not out_dir:
        parser.error(f"give --out-dir DIR or set {OUT_DIR_ENV}")
    if args.gallery_size < 1:
        parser.error("--gallery-size must be 1 or more")
    if args.size < 0:
        parser.error("--size must be 0 (the stamp's own size) or more")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    thumbnails = Thumbnails(out_dir, gallery_size=args.gallery_size, size=args.size or None, stretch=args.stretch)
    try:
        thumbnails.ensure_setup()
    except OSError as exc:
        print(f"{parser.prog}: cannot use {out_dir}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        alert_worker.serve(thumbnails, port=args.port)
    finally:
        thumbnails.close()


if __name__ == "__main__":
    main()
