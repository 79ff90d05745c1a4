"""The watch-list trigger served for real: the script on loopback, alerts over gRPC, the list edited as it runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from alert_sidecar.simulate.rubin import RubinAlertFactory
from alert_worker import codecs
from alert_worker.testing import json_form, make_alert
from alertsidecar.v1 import worker_pb2

from .example_support import EXAMPLES, serving

FIELDS = ["diaSourceId", "alertId", "diaSource.diaSourceId", "diaSource.diaObjectId", "diaSource.ra",
          "diaSource.dec", "diaSource.decl", "diaSource.midpointMjdTai", "diaSource.midPointTai",
          "diaSource.band", "diaSource.filterName", "diaSource.psfFlux", "diaSource.psFlux"]


example = serving("watchlist_trigger.py")


def alert_at(factory: RubinAlertFactory, i: int, ra: float, dec: float) -> tuple[worker_pb2.Alert, dict]:
    """Rubin alert i moved to (ra, dec), in the JSON form a sidecar makes for the worker's fields."""
    record = factory.make(i)
    record["diaSource"]["ra"], record["diaSource"]["dec"] = ra, dec
    alert = make_alert(factory.encode(record), content_type=codecs.AVRO_CONFLUENT, offset=i)
    return json_form(alert, fields=FIELDS).to_proto(), record


def names(answer: worker_pb2.BatchResult) -> list[str | None]:
    """The nearest match of each alert's follow-up request, None for a dropped alert."""
    found = []
    for result in answer.results:
        assert result.verdict == worker_pb2.VERDICT_OK, result.error
        if not result.outputs:
            found.append(None)
            continue
        [output] = result.outputs
        request = json.loads(output.value)
        assert {h.key: h.value.decode() for h in output.headers} == {"x-watchlist-match": request["matches"][0]["name"]}
        found.append(request["matches"][0]["name"])
    return found


def test_an_edited_watch_list_triggers_without_a_restart(example: Any, tmp_path: Path) -> None:
    targets = tmp_path / "targets.csv"
    targets.write_text("name,ra,dec,radius_arcsec\nSN-A,150.0,2.0,5.0\n")
    process = example("--watchlist", str(targets), "--reload-interval", "0.2")
    description = process.stub.Describe(worker_pb2.DescribeRequest(), timeout=5)
    assert (description.name, list(description.accepts)) == ("watchlist-trigger", ["application/json"])
    assert list(description.fields) == FIELDS

    factory = RubinAlertFactory(seed=31, cutouts=True, prv_sources=5)
    near_a, record = alert_at(factory, 0, 150.0 + 1.0 / 3600.0, 2.0)
    near_b, _ = alert_at(factory, 1, 30.0, -60.0 + 2.0 / 3600.0)
    nowhere, _ = alert_at(factory, 2, 200.0, -10.0)
    batch = worker_pb2.AlertBatch(batch_id=1, alerts=[near_a, near_b, nowhere])
    answer = process.stub.ProcessBatch(batch, timeout=30)
    assert names(answer) == ["SN-A", None, None]
    request = json.loads(answer.results[0].outputs[0].value)
    assert request["diaSourceId"] == record["diaSourceId"] > 2**53
    assert request["matches"][0]["separation_arcsec"] == pytest.approx(math.cos(math.radians(2.0)), abs=1e-6)
    assert request["watchlist"]["entries"] == 1

    # An editor's save: a new file renamed over the old one.
    replacement = tmp_path / "targets.csv.new"
    replacement.write_text("name,ra,dec,radius_arcsec\nSN-A,150.0,2.0,5.0\nGRB-B,30.0,-60.0,3.0\n")
    os.replace(replacement, targets)
    time.sleep(0.3)  # past the reload interval: the next batch looks at the file first
    streamed = list(process.stub.ProcessStream(iter([worker_pb2.AlertBatch(batch_id=2, alerts=batch.alerts)]),
                                               timeout=30))
    assert names(streamed[0]) == ["SN-A", "GRB-B", None]
    process.wait_for_output(f"watch list {targets} loaded: 2 entries (was 1)")

    # A broken save is refused and the list in use stays; the fix is taken.
    targets.write_text("name,ra,dec,radius_arcsec\nSN-A,150.0,2.0,5.0\nGRB-B,30.0,-60.0,-3.0\n")
    time.sleep(0.3)
    assert names(process.stub.ProcessBatch(batch, timeout=30)) == ["SN-A", "GRB-B", None]
    process.wait_for_output(f"watch list {targets}, line 3: radius_arcsec -3.0 is not above 0")
    targets.write_text("name,ra,dec,radius_arcsec\nGRB-B,30.0,-60.0,3.0\n")
    time.sleep(0.3)
    assert names(process.stub.ProcessBatch(batch, timeout=30)) == [None, "GRB-B", None]

    code, output = process.terminate()
    assert code == 0, output
    assert f"serving worker watchlist-trigger 1.0.0 on 127.0.0.1:{process.port}" in output
    assert "received SIGTERM: stopping" in output
    assert output.count("loaded:") == 3  # at startup and the two good edits


def test_a_missing_watch_list_at_startup_exits_with_status_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    finished = subprocess.run([sys.executable, str(EXAMPLES / "watchlist_trigger.py"), "--port", "0"],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "WATCHLIST_FILE": str(missing)})
    assert finished.returncode == 2
    assert f"watch list {missing}: no such file" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_a_watch_list_added_to_a_directory_triggers_without_a_restart(example: Any, tmp_path: Path) -> None:
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "standing.csv").write_text("name,ra,dec,radius_arcsec\nSN-A,150.0,2.0,5.0\n")
    process = example("--watchlist", str(folder), "--reload-interval", "0.2")
    factory = RubinAlertFactory(seed=32, cutouts=False, prv_sources=1)
    batch = worker_pb2.AlertBatch(batch_id=1, alerts=[alert_at(factory, 0, 150.0, 2.0)[0],
                                                      alert_at(factory, 1, 45.0, 45.0)[0]])
    assert names(process.stub.ProcessBatch(batch, timeout=30)) == ["SN-A", None]
    (folder / "tonight.csv").write_text("name,ra,dec,radius_arcsec\nAT-C,45.0,45.0,2.0\n")
    time.sleep(0.3)
    assert names(process.stub.ProcessBatch(batch, timeout=30)) == ["SN-A", "AT-C"]
    process.wait_for_output(f"watch list {folder} loaded: 2 entries from 2 files (was 1)")
    code, output = process.terminate()
    assert code == 0, output
