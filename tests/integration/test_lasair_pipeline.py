"""The Lasair pipeline (examples/pipelines/lasair.yaml) run as `make demo` runs it, on fewer alerts.

Two real local Kafka clusters, the mirror, the R filter, the Java cross-match,
the Python trigger and thumbnails, all started by `alert-pipeline up`; the
alerts are Rubin's schema with cutouts, some planted on watch-list targets
and catalogue sources, three corrupt. What the demo reports is held here
against what it planted, and the thumbnails are opened as images.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.examples import load_script

from .chromium import Chromium, chromium_binary

ROOT = Path(__file__).resolve().parents[2]
R_LIB = ROOT / ".rlib"
CROSSMATCH_JAR = ROOT / "examples" / "java" / "crossmatch" / "target" / "crossmatch.jar"

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not (R_LIB / "alertworker").is_dir() or shutil.which("Rscript") is None,
                       reason="the R SDK is not installed (make r-install)"),
    pytest.mark.skipif(not CROSSMATCH_JAR.is_file(), reason="the Java examples are not built (make java)"),
]


def load_demo():
    return load_script(ROOT / "examples" / "lasair_demo.py", "lasair_demo")


class Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    demo = load_demo()
    run_dir = tmp_path_factory.mktemp("lasair")
    args = argparse.Namespace(visits=4, visit_size=60, interval=1.0, plant_watch=3, plant_match=2,
                              run_dir=str(run_dir), dashboard_port=0, timeout=300, keep=False)
    report = demo.run(args)
    return report, run_dir


def test_every_stage_accounts_for_every_alert(run) -> None:
    report, run_dir = run
    assert report["problems"] == []
    stages = report["stages"]
    assert set(stages) == {"mirror", "trigger", "thumbnails", "filter", "crossmatch"}
    written = report["alerts_written"]
    assert stages["mirror"]["in"] == written and stages["mirror"]["out"] == written
    for name in ("trigger", "thumbnails", "filter"):  # each reads the mirrored buffer, in its own group
        assert stages[name]["in"] == written, name
        assert stages[name]["dead_lettered"] == report["planted"]["corrupt"] == 3, name
    assert stages["crossmatch"]["in"] == stages["filter"]["out"]
    for name, stage in stages.items():
        assert stage["lost"] == 0, name
        assert stage["out"] + stage["filtered"] + stage["dead_lettered"] == stage["in"], name
    assert json.loads((run_dir / "report.json").read_text())["stages"] == stages


def test_planted_watch_list_alerts_trigger_and_others_do_not(run) -> None:
    report, _ = run
    plan, followups = report["plan"], report["outputs"]["followups"]
    assert plan["watch"], "the demo planted no alert on a target"
    for alert_id, target in plan["watch"].items():
        assert target in followups.get(alert_id, []), (alert_id, target)
    assert not set(plan["watch_misses"]) & set(followups)
    # A target added while the pipeline ran: before, nothing; after, a request, without a restart.
    assert plan["added_before"] not in followups
    assert followups[plan["added_after"]] == ["added while running"]
    assert report["trigger_latency_s"]["count"] == len(followups)


def test_planted_catalogue_matches_are_annotated_with_their_class(run) -> None:
    report, _ = run
    annotations = report["outputs"]["annotations"]
    assert report["plan"]["matches"]
    for alert_id, (source, expected) in report["plan"]["matches"].items():
        classification, names = annotations[alert_id]
        assert classification == expected and source in names, (alert_id, source, expected, annotations[alert_id])


def test_thumbnails_are_pngs_and_the_gallery_shows_them(run) -> None:
    report, run_dir = run
    thumbnails = run_dir / "thumbnails"
    pngs = sorted(thumbnails.rglob("*.png"))
    assert len(pngs) == 3 * (report["alerts_written"] - report["planted"]["corrupt"])
    for path in pngs:
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG"
    page = Images()
    page.feed((thumbnails / "index.html").read_text())
    assert page.sources, "the gallery shows no thumbnail"
    for source in page.sources:
        assert (thumbnails / source).is_file(), source


def test_the_gallery_shows_every_picture_in_a_browser(run, tmp_path) -> None:
    if chromium_binary() is None:
        pytest.skip("chromium is not installed: `make chromium-setup` installs it")
    _, run_dir = run
    with Chromium(tmp_path / "chromium") as browser:
        browser.navigate((run_dir / "thumbnails" / "index.html").as_uri())
        browser.wait_for("Array.from(document.images).every(i => i.complete)", 30)
        images = browser.evaluate(
            "Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight])")
    assert len(images) >= 3
    for source, width, height in images:
        assert width > 0 and height > 0, f"{source} did not decode in the browser"
