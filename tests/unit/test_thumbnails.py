"""The thumbnails example (examples/python/thumbnails.py), run with the SDK's harness on simulated Rubin alerts."""

from __future__ import annotations

import html.parser
import io
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from alert_sidecar.simulate.rubin import RubinAlertFactory
from alert_worker import Verdict, codecs, cutouts
from alert_worker.testing import json_form, make_alert, run, ztf_alert
from tests.data import ZTF_PACKETS
from tests.examples import load_example

KINDS = ("science", "template", "difference")

thumbnails = load_example("thumbnails")


@pytest.fixture
def factory() -> RubinAlertFactory:
    return RubinAlertFactory(seed=17, cutouts=True, prv_sources=1)


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Any]:
    """Thumbnails workers writing into tmp_path/out (or elsewhere), closed at the end of the test."""
    made: list[Any] = []

    def make(out_dir: Path | None = None, **options: Any) -> Any:
        worker = thumbnails.Thumbnails(str(out_dir or tmp_path / "out"), **options)
        worker.ensure_setup()
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


def rubin(factory: RubinAlertFactory, i: int, **changes: Any) -> tuple[Any, dict]:
    """Alert ``i`` of the factory, with top-level fields changed, as (the alert, its record)."""
    record = factory.make(i)
    record.update(changes)
    return make_alert(factory.encode(record), content_type=codecs.AVRO_CONFLUENT, offset=i), record


def answers(results: list[Any]) -> list[dict]:
    decoded = []
    for result in results:
        assert result.verdict is Verdict.OK, result.error
        [output] = result.outputs
        assert output.content_type == "application/json"
        decoded.append(codecs.decode_json(output.value))
    return decoded


def png_of(path: Path) -> Image.Image:
    """The picture at ``path``, checked by Pillow to be a whole, valid PNG."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        image.verify()  # the structure and every chunk's CRC
    image = Image.open(io.BytesIO(data))
    image.load()  # and the pixels decode
    assert image.format == "PNG"
    return image


def leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.startswith(thumbnails._TEMPORARY_PREFIX)]


# --- the pictures --------------------------------------------------------------------------


def test_each_cutout_becomes_a_png_named_by_its_ids(factory: RubinAlertFactory, make_worker: Any,
                                                    tmp_path: Path) -> None:
    worker = make_worker(size=64)
    alerts = [rubin(factory, i) for i in range(3)]
    out = tmp_path / "out"
    for answer, (_, record) in zip(answers(run(worker, [alert for alert, _ in alerts])), alerts):
        source_id, object_id = record["diaSourceId"], record["diaSource"]["diaObjectId"]
        expected = [f"{object_id}/{source_id}-{kind}.png" for kind in KINDS]
        assert answer == {"diaSourceId": source_id, "diaObjectId": object_id, "thumbnails": expected}
        assert source_id > 2**53  # exact in the JSON
        for relative, field in zip(expected, ("cutoutScience", "cutoutTemplate", "cutoutDifference")):
            image = png_of(out / relative)
            assert (image.size, image.mode) == ((64, 64), "L")
            assert (out / relative).read_bytes() == cutouts.cutout_png(record[field], size=64)
    assert leftovers(out) == []
    mask = os.umask(0)
    os.umask(mask)
    # Readable by a web server as open() would make it, not mkstemp's owner-only 0600.
    assert stat.S_IMODE((out / expected[0]).stat().st_mode) == 0o666 & ~mask


def test_pictures_keep_the_stamps_size_without_a_size(factory: RubinAlertFactory, make_worker: Any,
                                                      tmp_path: Path) -> None:
    alert, record = rubin(factory, 0)
    [answer] = answers(run(make_worker(size=None), [alert]))
    height, width = cutouts.cutout_array(record["cutoutScience"]).shape
    assert png_of(tmp_path / "out" / answer["thumbnails"][0]).size == (width, height)


def test_ztf_alerts_and_the_json_form(factory: RubinAlertFactory, make_worker: Any, tmp_path: Path) -> None:
    worker = make_worker(size=48)
    [ztf] = answers(run(worker, [ztf_alert(ZTF_PACKETS[0])]))
    assert ztf == {"candid": 739260766315010006, "objectId": "ZTF17aaacxxf",
                   "thumbnails": [f"ZTF17aaacxxf/739260766315010006-{kind}.png" for kind in KINDS]}
    assert all(png_of(tmp_path / "out" / p).size == (48, 48) for p in ztf["thumbnails"])
    # Base64 cutouts in JSON make the same files as the Avro bytes.
    alert, _ = rubin(factory, 4)
    [from_avro] = answers(run(worker, [alert]))
    pictures = [(tmp_path / "out" / p).read_bytes() for p in from_avro["thumbnails"]]
    assert answers(run(worker, [json_form(alert)])) == [from_avro]
    assert [(tmp_path / "out" / p).read_bytes() for p in from_avro["thumbnails"]] == pictures


# astropy warns as it reads the truncated stamp, before it fails on it.
@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_a_bad_cutout_dead_letters_that_alert_alone(factory: RubinAlertFactory, make_worker: Any,
                                                    tmp_path: Path) -> None:
    worker = make_worker()
    good_record = factory.make(10)
    truncated = good_record["cutoutDifference"][:4000]  # a whole header, the image cut short
    batch = [
        rubin(factory, 11, cutoutTemplate=b"this is no FITS file"),
        rubin(factory, 12, cutoutDifference=truncated),
        rubin(factory, 13, cutoutScience=None),
        rubin(factory, 14),
    ]
    results = run(worker, [alert for alert, _ in batch])
    assert [r.verdict for r in results] == [Verdict.DEAD_LETTER] * 3 + [Verdict.OK]
    assert results[0].error.startswith("cutoutTemplate cannot be drawn: the cutout is not a FITS file")
    assert results[1].error.startswith("cutoutDifference cannot be drawn: the cutout (4000 bytes")
    assert "truncated or corrupt" in results[1].error
    assert results[2].error == "cutoutScience is null or empty: there is no stamp to draw"
    # Nothing is written for a dead-lettered alert, not even its good stamps.
    for _, record in batch[:3]:
        assert not (tmp_path / "out" / str(record["diaSource"]["diaObjectId"])).exists()
    assert answers(results[3:])[0]["diaSourceId"] == batch[3][1]["diaSourceId"]
    worker.close()
    assert [e["source"] for e in worker.gallery.entries] == [batch[3][1]["diaSourceId"]]

    [no_cutouts] = run(worker, [make_alert({"diaSourceId": 5, "diaSource": {"diaObjectId": 6}})])
    assert (no_cutouts.verdict, no_cutouts.error) == (Verdict.DEAD_LETTER, "the alert carries no cutouts")
    [not_an_alert] = run(worker, [make_alert({"n": 1})])
    assert not_an_alert.verdict is Verdict.DEAD_LETTER and "neither Rubin's" in not_an_alert.error


# --- the gallery -------------------------------------------------------------------------


class PageReader(html.parser.HTMLParser):
    """The image paths of a page and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        assert tag != "script", "the page needs no scripts"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_page(out: Path) -> PageReader:
    reader = PageReader()
    reader.feed((out / "index.html").read_text())
    reader.close()
    return reader


def test_the_page_shows_the_latest_alerts_newest_first(factory: RubinAlertFactory, make_worker: Any,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    worker = make_worker(gallery_size=3)
    alerts = [rubin(factory, i) for i in range(5)]
    run(worker, [alert for alert, _ in alerts])
    worker.close()
    page = read_page(out)
    newest = [record for _, record in reversed(alerts)][:3]
    assert page.images == [f"{r['diaSource']['diaObjectId']}/{r['diaSourceId']}-{kind}.png"
                           for r in newest for kind in KINDS]
    assert all((out / src).is_file() for src in page.images)  # relative to the page, and there
    text = " ".join(page.text)
    for record in newest:
        source = record["diaSource"]
        for shown in (record["diaSourceId"], source["diaObjectId"], f"{source['ra']:.6f}", f"{source['dec']:.6f}",
                      source["band"], f"{source['midpointMjdTai']:.5f}", f"{source['psfFlux']:.1f} nJy"):
            assert str(shown) in text
    assert str(alerts[0][1]["diaSourceId"]) not in text  # pushed off the page
    saved = json.loads((out / "gallery.json").read_text())
    assert [e["source"] for e in saved["entries"]] == [r["diaSourceId"] for r in newest]


def test_the_page_escapes_text(factory: RubinAlertFactory, make_worker: Any, tmp_path: Path) -> None:
    worker = make_worker()
    record = factory.make(0)
    record["diaSource"]["band"] = '<script>alert("r")</script>&amp;'
    run(worker, [make_alert(factory.encode(record), content_type=codecs.AVRO_CONFLUENT)])
    worker.close()
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;r&quot;)&lt;/script&gt;&amp;amp;" in page
    assert '<script>alert("r")</script>&amp;' in " ".join(read_page(tmp_path / "out").text)


def test_the_page_is_written_at_most_once_a_second_and_whole_on_close(factory: RubinAlertFactory,
                                                                      make_worker: Any, tmp_path: Path) -> None:
    worker = make_worker(size=16, gallery_size=1000)
    began = time.monotonic()
    sent = 0
    while time.monotonic() - began < 2.3 or sent < 5:
        run(worker, [rubin(factory, sent)[0]])  # one alert a call, as a trickling stream would send them
        sent += 1
        time.sleep(0.02)
    writes = list(worker.gallery.writes)
    assert 2 <= len(writes) <= 4, writes  # the empty page at setup, then a write a second at most
    assert all(later - earlier >= 0.99 for earlier, later in zip(writes, writes[1:])), writes
    assert len(writes) < sent
    worker.close()
    assert len(read_page(tmp_path / "out").images) == 3 * sent  # everything, once closed
    assert len(worker.gallery.writes) == len(writes) + 1


def test_a_quiet_stream_still_gets_its_page_within_a_second(factory: RubinAlertFactory, make_worker: Any,
                                                            tmp_path: Path) -> None:
    worker = make_worker(gallery_interval=0.2)
    run(worker, [rubin(factory, 0)[0]])
    deadline = time.monotonic() + 5
    while len(read_page(tmp_path / "out").images) < 3:
        assert time.monotonic() < deadline, "the page never showed the alert"
        time.sleep(0.05)


def test_the_page_survives_a_restart(factory: RubinAlertFactory, make_worker: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = make_worker()
    alerts = [rubin(factory, i) for i in range(4)]
    run(first, [alert for alert, _ in alerts[:3]])
    first.close()
    # Someone cleaned up the oldest alert's pictures while the worker was down.
    oldest = alerts[0][1]
    for path in (out / str(oldest["diaSource"]["diaObjectId"])).iterdir():
        path.unlink()
    second = make_worker()
    assert [e["source"] for e in second.gallery.entries] == [alerts[2][1]["diaSourceId"], alerts[1][1]["diaSourceId"]]
    assert all((out / src).is_file() for src in read_page(out).images)  # rewritten at once without them
    run(second, [alerts[3][0], alerts[1][0]])  # alert 1 again: it moves up, once
    second.close()
    expected = [alerts[1][1], alerts[3][1], alerts[2][1]]
    assert read_page(out).images == [f"{r['diaSource']['diaObjectId']}/{r['diaSourceId']}-{kind}.png"
                                     for r in expected for kind in KINDS]


def test_an_unreadable_index_starts_an_empty_page(factory: RubinAlertFactory, make_worker: Any, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "gallery.json").write_text('{"entries": [')
    (out / f"{thumbnails._TEMPORARY_PREFIX}index.html.abc").write_text("a killed run's")
    worker = make_worker()
    assert worker.gallery.entries == []
    assert any("gallery index" in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)
    assert leftovers(out) == []
    run(worker, [rubin(factory, 0)[0]])
    worker.close()
    assert len(read_page(out).images) == 3


def test_the_directory_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    assert isinstance(thumbnails.worker, thumbnails.Thumbnails)
    monkeypatch.setenv(thumbnails.OUT_DIR_ENV, str(tmp_path / "from-env"))
    worker = thumbnails.Thumbnails()
    worker.setup()
    worker.close()
    assert (tmp_path / "from-env" / "index.html").is_file()
    monkeypatch.delenv(thumbnails.OUT_DIR_ENV)
    with pytest.raises(SystemExit) as exited:
        thumbnails.main(["--port", "0"])
    assert exited.value.code == 2
    assert "give --out-dir DIR or set THUMBNAILS_DIR" in capsys.readouterr().err
