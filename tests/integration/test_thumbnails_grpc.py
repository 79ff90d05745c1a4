"""The thumbnails example served for real: the script on loopback, Rubin alerts with cutouts over gRPC."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from PIL import Image

from alert_sidecar.simulate.rubin import RubinAlertFactory
from alert_worker import codecs
from alert_worker.testing import make_alert
from alertsidecar.v1 import worker_pb2

from .example_support import serving

KINDS = ("science", "template", "difference")


example = serving("thumbnails.py")


def rubin_alerts(factory: RubinAlertFactory, first: int, count: int) -> list[tuple[worker_pb2.Alert, dict]]:
    alerts = []
    for i in range(first, first + count):
        record = factory.make(i)
        alerts.append((make_alert(factory.encode(record), content_type=codecs.AVRO_CONFLUENT,
                                  offset=i).to_proto(), record))
    return alerts


def page_images(out: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', (out / "index.html").read_text())


def test_thumbnails_served_write_pictures_and_a_page_that_outlives_the_process(example: Any,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "www"
    process = example("--size", "96", "--gallery-size", "10", env={"THUMBNAILS_DIR": str(out)})
    description = process.stub.Describe(worker_pb2.DescribeRequest(), timeout=5)
    assert description.name == "thumbnails"
    assert codecs.AVRO_CONFLUENT in description.accepts

    factory = RubinAlertFactory(seed=23, cutouts=True, prv_sources=30)  # LSST-sized: about 62 KB each
    alerts = rubin_alerts(factory, 0, 6)
    broken = factory.make(99)
    broken["cutoutScience"] = broken["cutoutScience"][:100]
    bad = make_alert(factory.encode(broken), content_type=codecs.AVRO_CONFLUENT, offset=99).to_proto()
    batch = worker_pb2.AlertBatch(batch_id=1, alerts=[alert for alert, _ in alerts[:3]] + [bad]
                                  + [alert for alert, _ in alerts[3:]])
    answer = process.stub.ProcessBatch(batch, timeout=60)
    by_id = {result.id: result for result in answer.results}
    assert by_id["test/0/99"].verdict == worker_pb2.VERDICT_DEAD_LETTER
    assert by_id["test/0/99"].error.startswith("cutoutScience cannot be drawn:")
    for alert, record in alerts:
        result = by_id[alert.id]
        assert result.verdict == worker_pb2.VERDICT_OK, result.error
        found = json.loads(result.outputs[0].value)
        object_id, source_id = record["diaSource"]["diaObjectId"], record["diaSourceId"]
        assert found == {"diaSourceId": source_id, "diaObjectId": object_id,
                         "thumbnails": [f"{object_id}/{source_id}-{kind}.png" for kind in KINDS]}
        for relative in found["thumbnails"]:
            with Image.open(io.BytesIO((out / relative).read_bytes())) as image:
                image.verify()
                assert (image.format, image.size) == ("PNG", (96, 96))

    # A stream's batches, answered one by one.
    more = rubin_alerts(factory, 6, 4)
    streamed = list(process.stub.ProcessStream(iter([
        worker_pb2.AlertBatch(batch_id=2, alerts=[a for a, _ in more[:2]]),
        worker_pb2.AlertBatch(batch_id=3, alerts=[a for a, _ in more[2:]]),
    ]), timeout=60))
    assert sorted(a.batch_id for a in streamed) == [2, 3]
    assert all(r.verdict == worker_pb2.VERDICT_OK for a in streamed for r in a.results)

    code, output = process.terminate()
    assert code == 0, output
    assert "received SIGTERM: stopping" in output
    # Written on shutdown: the ten latest of the ten good alerts, newest first.
    newest = [record for _, record in reversed(alerts + more)]
    expected = [f"{r['diaSource']['diaObjectId']}/{r['diaSourceId']}-{kind}.png" for r in newest for kind in KINDS]
    assert sorted(page_images(out)) == sorted(expected)  # in-flight batches may finish in either order
    assert all((out / src).is_file() for src in page_images(out))

    # A new process goes on with the same page.
    again = example("--out-dir", str(out), "--gallery-size", "10")
    last = rubin_alerts(factory, 10, 1)
    assert again.stub.ProcessBatch(worker_pb2.AlertBatch(batch_id=4, alerts=[last[0][0]]),
                                   timeout=60).results[0].verdict == worker_pb2.VERDICT_OK
    code, output = again.terminate()
    assert code == 0, output
    images = page_images(out)
    record = last[0][1]
    assert images[0] == f"{record['diaSource']['diaObjectId']}/{record['diaSourceId']}-science.png"
    assert len(images) == 30 and sorted(images[3:]) == sorted(expected[:27])
