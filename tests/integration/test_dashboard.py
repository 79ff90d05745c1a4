"""``alert-pipeline dashboard``, seen as an operator sees it: in a real browser, on a running pipeline.

A small pipeline on two local clusters is brought up with ``alert-pipeline up
--detach``; alerts are written upstream; the dashboard serves it; Debian's
headless Chromium (chromium.py, over the DevTools protocol) loads the page,
and the test reads what the page shows, several times, as the alerts flow:
the graph as the file says it, each figure as ``/api/status`` says it, the
stage that is behind marked as the rate-limiting one, the plots filling, and
the page saying so when its server has gone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Producer

from alert_sidecar.pipeline.load import load
from alert_sidecar.simulate.rubin import RubinAlertFactory

from .chromium import Chromium, chromium_binary
from .stage_support import EXAMPLES, WORKERS

PIPELINE_COMMAND = str(Path(sys.executable).parent / "alert-pipeline")
WIDTH, HEIGHT = 1280, 1200
# Written at ALERTS_PER_S, twice what the slow stage can take (batches of 5,
# 20 ms each, one partition: at most 250 alerts/s): it falls behind while the
# other two keep up, and is still behind when the test is done looking.
ALERTS, ALERTS_PER_S = 6000, 500

PIPELINE = """\
version: 1
name: watched
clusters:
  survey: {{local: {{brokers: 1}}}}
  broker: {{local: {{brokers: 1}}}}
buffers:
  alerts: {{cluster: survey, partitions: 2, format: avro-confluent}}
  copied: {{cluster: broker, topic: alerts, partitions: 2, format: avro-confluent}}
  kept: {{cluster: broker}}
  slowed: {{cluster: broker}}
stages:
  mirror: {{input: alerts, output: copied, worker: none}}
  keep:
    input: copied
    output: kept
    worker: {{command: [{python}, {passthrough}], language: python}}
  slow:
    input: kept
    output: slowed
    worker: {{command: [{python}, {slow}, "--delay-ms", "20"], language: python}}
    batch: {{size: 5, linger_ms: 5}}
"""

# What the page shows, read from its DOM in one go (so all of it is of one reading).
SHOWN = """(() => {
  const fields = node => Object.fromEntries([...node.querySelectorAll('[data-field]')]
      .map(f => [f.dataset.field, {text: f.textContent, value: f.dataset.value}]));
  const box = node => { const r = node.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const clusterOf = node => node.parentElement.closest('.cluster');
  return {
    time: document.getElementById('updated').dataset.time,
    connection: document.getElementById('connection').dataset.state,
    rateLimiting: document.getElementById('rate-limiting').dataset.stageName || null,
    rateLimitingText: document.getElementById('rate-limiting').textContent,
    problems: [...document.querySelectorAll('#problems li:not(.none)')].map(li => li.textContent),
    clusters: Object.fromEntries([...document.querySelectorAll('.cluster[data-cluster]')].map(n =>
        [n.dataset.cluster, {box: box(n.querySelector('.cluster-box')), reachable: n.dataset.reachable}])),
    stages: Object.fromEntries([...document.querySelectorAll('#graph [data-stage]')].map(n =>
        [n.dataset.stage, {fields: fields(n), marked: n.dataset.rateLimiting === 'true',
                           outline: getComputedStyle(n.querySelector('.stage-box')).strokeWidth,
                           badge: getComputedStyle(n.querySelector('.badge')).display,
                           consumed: n.dataset.consumed}])),
    buffers: Object.fromEntries([...document.querySelectorAll('#graph [data-buffer]')].map(n =>
        [n.dataset.buffer, {fields: fields(n), box: box(n.querySelector('.buffer-box')),
                            inCluster: clusterOf(n) && clusterOf(n).dataset.cluster}])),
    edges: [...document.querySelectorAll('[data-edge]')].map(e => e.dataset.edge),
    plot: Object.fromEntries([...document.querySelectorAll('#latency-plot [data-series], #rate-plot [data-series]')]
        .map(p => [p.closest('svg').id + ':' + p.dataset.series, Number(p.dataset.points)])),
  };
})()"""


def run_pipeline(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([PIPELINE_COMMAND, *args], capture_output=True, text=True, timeout=timeout)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def start_dashboard(file: Path, state_dir: Path, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """``alert-pipeline dashboard FILE --port 0`` and the URL it printed."""
    log = open(tmp_path / "dashboard.err", "wb")
    process = subprocess.Popen([PIPELINE_COMMAND, "dashboard", str(file), "--port", "0", "--state-dir",
                                str(state_dir)], stdout=subprocess.PIPE, stderr=log, text=True,
                               start_new_session=True)
    line = process.stdout.readline()
    match = re.fullmatch(r"dashboard: (http://127\.0\.0\.1:\d+/)\n", line)
    assert match, f"not the URL line: {line!r}; stderr: {(tmp_path / 'dashboard.err').read_text()}"
    return process, match.group(1)


def stop_dashboard(process: subprocess.Popen) -> tuple[int, str]:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
    return process.returncode, out


def write_alerts(bootstrap: str, stop: threading.Event) -> None:
    """ALERTS Rubin alerts to the survey's ``alerts``, ALERTS_PER_S a second, in tenths of a second."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    factory = RubinAlertFactory(cutouts=False, prv_sources=5)
    chunk = ALERTS_PER_S // 10
    try:
        for start in range(0, ALERTS, chunk):
            if stop.wait(0.1):
                break
            for i, alert in enumerate(factory.alerts(chunk, start), start):
                producer.produce("alerts", alert, key=str(i).encode())
            producer.poll(0)
    finally:
        producer.flush(10)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header, after checking it is one."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR", "a PNG starts with its IHDR chunk"
    return struct.unpack(">II", data[16:24])


def expected_edges(file: Path) -> set[str]:
    pipeline, _ = load(file)
    edges = set()
    for stage in pipeline.stages.values():
        edges.add(f"buffer:{stage.input}->stage:{stage.name}")
        edges.update(f"stage:{stage.name}->buffer:{b}" for b in stage.writes())
    return edges


def shown_matching_status(browser: Chromium, url: str, tries: int = 20) -> tuple[dict, dict]:
    """What the page shows and /api/status's reply, of the same snapshot (both move on every second)."""
    for _ in range(tries):
        shown = browser.evaluate(SHOWN)
        status = get_json(url + "api/status")
        if shown["time"] and float(shown["time"]) == status["time"]:
            return shown, status
        time.sleep(0.3)
    raise AssertionError(f"the page never showed /api/status's latest snapshot (page at {shown['time']}, "
                         f"server at {status['time']})")


def assert_figures_match(shown: dict, status: dict) -> None:
    for name, stage in status["stages"].items():
        fields = shown["stages"][name]["fields"]
        for key in ("rate_in", "rate_out", "lag", "lag_s"):
            value = stage[key]
            assert fields[key]["value"] == ("" if value is None else _js_number(value)), (name, key, fields, stage)
        assert fields["ready"]["value"] == str(stage["instances"]["ready"])
        assert fields["wanted"]["value"] == str(stage["instances"]["wanted"])
        if stage["lag"] is not None:
            assert fields["lag"]["text"] == f"{stage['lag']:,}"  # thousands separated, as an operator reads them
        assert shown["stages"][name]["consumed"] == _js_number(stage["consumed"])
    for name, buffer in status["buffers"].items():
        fields = shown["buffers"][name]["fields"]
        assert fields["alerts"]["value"] == _js_number(buffer["alerts"])
        assert fields["alerts"]["text"] == f"{buffer['alerts']:,}"
        assert fields["partitions"]["value"] == str(buffer["partitions"])
    assert shown["problems"] == status["errors"]
    assert shown["rateLimiting"] == status["rate_limiting"]


def _js_number(value: float | int) -> str:
    """A number as JavaScript's String() writes it (1.0 is "1")."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def test_a_bad_file_gets_its_diagnostics_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nclusters:\n  c: {local: {brokers: 1}}\nbuffers:\n"
                   "  a: {cluster: c}\nstages:\n  s: {input: nowhere, output: a}\n")
    done = run_pipeline("dashboard", str(bad), "--port", "0", timeout=30)
    assert done.returncode == 2
    assert f"{bad}:8: error: stage 's': input 'nowhere' is not defined under buffers" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_pipeline_that_is_not_up_is_served_and_the_server_stops_on_sigterm(tmp_path):
    """No Kafka here: the graph is the file's, the snapshot says the clusters are not running."""
    file = tmp_path / "idle.yaml"
    file.write_text(PIPELINE.format(python=json.dumps(sys.executable), passthrough="passthrough.py",
                                    slow="slow.py"))
    process, url = start_dashboard(file, tmp_path / "state", tmp_path)
    try:
        graph = get_json(url + "api/pipeline")
        assert {k: v["column"] for k, v in graph["stages"].items()} == {"mirror": 1, "keep": 3, "slow": 5}
        assert {k: v["column"] for k, v in graph["buffers"].items()} == {"alerts": 0, "copied": 2, "kept": 4,
                                                                          "slowed": 6}
        assert {f"{e['from']}->{e['to']}" for e in graph["edges"]} == expected_edges(file)
        deadline = time.monotonic() + 20
        while True:
            try:
                status = get_json(url + "api/status")
                break
            except urllib.error.HTTPError as err:
                assert err.code == 503 and time.monotonic() < deadline
                time.sleep(0.2)
        assert status["up"] is False
        assert "latency_buckets" not in status["stages"]["slow"]
        assert not any(c["reachable"] for c in status["clusters"].values())
        assert "cluster 'survey': not running" in " ".join(status["errors"])
        with urllib.request.urlopen(url, timeout=10) as answer:
            page = answer.read().decode()
        assert answer.headers["Content-Type"].startswith("text/html")
        # Air-gapped users: the page asks for nothing but its own server's API.
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
        assert not re.search(r"""fetch\(\s*["'`]https?:""", page)
    finally:
        code, out = stop_dashboard(process)
    assert code == 0, (tmp_path / "dashboard.err").read_text()
    assert out.strip() == "dashboard: stopped"


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_the_page_shows_the_running_pipeline_and_follows_it_live(tmp_path):
    if chromium_binary() is None:
        pytest.skip("chromium is not installed: `make chromium-setup` installs it")
    file = tmp_path / "watched.yaml"
    file.write_text(PIPELINE.format(python=json.dumps(sys.executable),
                                    passthrough=json.dumps(str(EXAMPLES / "passthrough.py")),
                                    slow=json.dumps(str(WORKERS / "slow.py"))))
    state_dir = tmp_path / "state"
    started = time.monotonic()
    dashboard = browser = writer = None
    stop_writing = threading.Event()
    try:
        up = run_pipeline("up", str(file), "--detach", "--wait", "180", "--state-dir", str(state_dir))
        assert up.returncode == 0, up.stdout + up.stderr
        took_up = time.monotonic() - started
        dashboard, url = start_dashboard(file, state_dir, tmp_path)
        browser = Chromium(tmp_path / "chromium", WIDTH, HEIGHT).start()
        browser.navigate(url)
        browser.wait_for("document.getElementById('connection').dataset.state === 'live'", 30)

        # The graph is the file's: every stage and buffer, each buffer drawn inside its cluster's box.
        pipeline, _ = load(file)
        shown = browser.evaluate(SHOWN)
        assert set(shown["stages"]) == set(pipeline.stages)
        assert set(shown["buffers"]) == set(pipeline.buffers)
        assert set(shown["clusters"]) == set(pipeline.clusters)
        assert set(shown["edges"]) == expected_edges(file)
        for name, buffer in pipeline.buffers.items():
            assert shown["buffers"][name]["inCluster"] == buffer.cluster
            left, top, right, bottom = shown["buffers"][name]["box"]
            c_left, c_top, c_right, c_bottom = shown["clusters"][buffer.cluster]["box"]
            assert c_left <= left and right <= c_right and c_top <= top and bottom <= c_bottom, name
        assert {n: s["fields"]["worker"]["text"] for n, s in shown["stages"].items()} == {
            "mirror": "mirror", "keep": "python", "slow": "python"}
        assert all(c["reachable"] == "true" for c in shown["clusters"].values())

        bootstrap = json.loads((state_dir / "supervisor.json").read_text())["clusters"]["survey"]
        writer = threading.Thread(target=write_alerts, args=(bootstrap, stop_writing), daemon=True)
        writer.start()

        # The slow stage falls behind: the page marks it, and only it, and says why in words.
        browser.wait_for("document.getElementById('rate-limiting').dataset.stageName === 'slow' && "
                         "Number(document.querySelector('#stage-slow [data-field=lag]').dataset.value) >= 500", 40)
        shown, status = shown_matching_status(browser, url)
        assert status["rate_limiting"] == "slow", status
        assert_figures_match(shown, status)
        assert [n for n, s in shown["stages"].items() if s["marked"]] == ["slow"]
        assert shown["stages"]["slow"]["badge"] != "none" and shown["stages"]["keep"]["badge"] == "none"
        assert float(shown["stages"]["slow"]["outline"].rstrip("px")) > float(
            shown["stages"]["keep"]["outline"].rstrip("px"))
        slow = status["stages"]["slow"]
        assert shown["rateLimitingText"].startswith("Rate-limiting stage: slow, ")
        assert f"{slow['lag']:,} alerts behind its input kept" in shown["rateLimitingText"]
        # lag_s is None once the stage takes no new alerts (all written, all fetched); minutes are worded otherwise.
        if slow["lag_s"] is not None and slow["lag_s"] < 60:
            assert f"{slow['lag_s']:.1f} s behind at" in shown["rateLimitingText"]
        browser.screenshot(tmp_path / "dashboard.png")

        # Live: a few seconds later the page shows later figures, as /api/status has them.
        first = shown
        time.sleep(3)
        later, status = shown_matching_status(browser, url)
        assert_figures_match(later, status)
        assert float(later["time"]) > float(first["time"])
        assert int(later["buffers"]["slowed"]["fields"]["alerts"]["value"]) > int(
            first["buffers"]["slowed"]["fields"]["alerts"]["value"])
        assert later["plot"]["latency-plot:slow:p99"] >= 2 and later["plot"]["rate-plot:slow:in"] >= 2

        png = browser.screenshot(tmp_path / "dashboard.png")
        assert png_size(png) == (WIDTH, HEIGHT)
        assert len(png) > 20_000, "a page of text and lines, not a blank one"

        # Its server gone, the page says so, and keeps what it last showed.
        code, out = stop_dashboard(dashboard)
        assert code == 0 and out.strip() == "dashboard: stopped"
        browser.wait_for("document.getElementById('connection').dataset.state === 'unreachable'", 10)
        assert browser.evaluate(SHOWN)["stages"]["slow"]["fields"]["lag"]["value"] != ""
        print(f"up took {took_up:.0f} s; the page checks {time.monotonic() - started - took_up:.0f} s")
    finally:
        stop_writing.set()
        if writer is not None:
            writer.join(30)
        if browser is not None:
            browser.close()
        if dashboard is not None:
            stop_dashboard(dashboard)
        down = run_pipeline("down", str(file), "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stdout + down.stderr
