"""A whole pipeline through ``alert-pipeline up``: three stages, two buffers on each of two local Kafka clusters.

    upstream: raw --mirror--> downstream: local --slow--> slowed --keep--> final

The middle stage is slow, so that it lags and is the rate-limiting one; it is
scaled from 1 to 3 instances and back to 2 while alerts flow, and every alert
written upstream must arrive at the end (at least once), with nothing in a
dead-letter buffer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from .stage_support import EXAMPLES, WORKERS, produce_alerts, read_topic

pytestmark = pytest.mark.kafka

PIPELINE = Path(sys.executable).parent / "alert-pipeline"
ALERTS = 12_000


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(PIPELINE), *args], capture_output=True, text=True, timeout=timeout)


def pipeline_file(folder: Path) -> Path:
    file = folder / "three.yaml"
    file.write_text(f"""\
version: 1
name: three
clusters:
  upstream: {{local: {{brokers: 1}}}}
  downstream: {{local: {{brokers: 1}}}}
buffers:
  raw: {{cluster: upstream, partitions: 4}}
  raw-dead: {{cluster: upstream}}
  local: {{cluster: downstream, partitions: 4}}
  slowed: {{cluster: downstream, partitions: 4}}
  final: {{cluster: downstream, partitions: 2}}
  dead: {{cluster: downstream}}
stages:
  mirror: {{input: raw, output: local, dead_letter: raw-dead, worker: none}}
  slow:
    input: local
    output: slowed
    dead_letter: dead
    worker: {{command: ["{sys.executable}", "{WORKERS / 'slow.py'}", "--delay-ms", "160"]}}
    batch: {{size: 20}}
  keep:
    input: slowed
    output: final
    dead_letter: dead
    worker: {{command: ["{sys.executable}", "{EXAMPLES / 'passthrough.py'}"]}}
""")
    return file


def status(file: Path, state: Path) -> dict:
    result = run("status", str(file), "--state-dir", str(state), "--json", "--interval", "1")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_three_stages_on_two_clusters_up_status_scale_down(tmp_path):
    file, state = pipeline_file(tmp_path), tmp_path / "state"
    assert run("validate", str(file)).returncode == 0
    started = time.monotonic()
    up = run("up", str(file), "--detach", "--state-dir", str(state), "--wait", "200")
    try:
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        print(f"up in {time.monotonic() - started:.0f} s")
        recorded = json.loads((state / "supervisor.json").read_text())
        clusters = recorded["clusters"]
        assert clusters["upstream"] != clusters["downstream"]  # two clusters, two bootstraps
        assert "stage slow: 1 instance ready" in up.stdout

        sent = produce_alerts(clusters["upstream"], "raw", ALERTS, partitions=4)
        # While the slow stage works through them (~500 alerts/s: a batch of 20 every 160 ms on each of
        # 4 partitions), status reports every stage's lag. A reading is over 1 s: one taken while an
        # upstream stage has just started may see it lag with nothing finished yet. While the slow stage
        # works through the 12,000, it is the one marked, in the JSON form and in the table; both are
        # read in turn until each has been seen, within the ~24 s the slow stage takes.
        deadline = time.monotonic() + 60
        now = table = None
        while now is None or table is None:
            if now is None:
                reading = status(file, state)
                slow_lag = reading["stages"]["slow"]["lag"]
                if slow_lag and slow_lag > 1000 and reading["rate_limiting"] == "slow":
                    now = reading
            if table is None:
                text = run("status", str(file), "--state-dir", str(state), "--interval", "1").stdout
                marked = [line for line in text.splitlines() if line.endswith("<- rate-limiting")]
                if marked:
                    table = text
                    assert len(marked) == 1 and marked[0].startswith("slow "), text
            assert time.monotonic() < deadline, (json.dumps(reading["stages"], indent=1), text)
        for name in ("mirror", "slow", "keep"):
            assert isinstance(now["stages"][name]["lag"], int), name
            assert now["stages"][name]["instances"] == {**now["stages"][name]["instances"], "wanted": 1, "running": 1}
        assert now["rate_limiting"] == "slow"
        assert now["buffers"]["raw"]["alerts"] == ALERTS and now["buffers"]["raw"]["partitions"] == 4
        assert now["buffers"]["raw"]["bytes_on_disk"] > ALERTS * 50  # 12,000 JSON alerts of ~60 bytes and more
        assert now["buffers"]["raw"]["retention_ms"] == 7 * 86_400_000  # the cluster's default: the file sets none

        scaled = run("scale", str(file), "slow", "3", "--state-dir", str(state))
        assert scaled.returncode == 0 and "slow: 1 -> 3 instances, all ready" in scaled.stdout, scaled.stderr
        assert status(file, state)["stages"]["slow"]["instances"]["running"] == 3
        time.sleep(3)
        scaled = run("scale", str(file), "slow", "2", "--state-dir", str(state))
        assert scaled.returncode == 0 and "slow: 3 -> 2 instances" in scaled.stdout, scaled.stderr

        final = read_topic(clusters["downstream"], "final", minimum=ALERTS, timeout=180, settle=3)
        counts = Counter(json.loads(m.value())["diaSourceId"] for m in final)
        missing = [a["diaSourceId"] for a in sent if a["diaSourceId"] not in counts]
        assert not missing, f"{len(missing)} alerts lost, e.g. {missing[:5]}"
        print(f"{ALERTS} alerts through 3 stages on 2 clusters, scaled 1 -> 3 -> 2: "
              f"{sum(counts.values()) - len(counts)} duplicates")
        assert not read_topic(clusters["downstream"], "dead", timeout=5, settle=1)
        after = status(file, state)
        assert after["stages"]["slow"]["instances"]["running"] == 2
        assert all(after["stages"][name]["lag"] == 0 for name in after["stages"]), after["stages"]

        logs = run("logs", str(file), "slow", "--state-dir", str(state))
        assert logs.returncode == 0 and "slow.2 | " in logs.stdout and "stage started" in logs.stdout
        assert "stage stopped" in logs.stdout  # slow.2, scaled away, drained and stopped
    finally:
        down = run("down", str(file), "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert "three: down" in down.stdout
    recorded = json.loads((state / "supervisor.json").read_text())
    assert recorded["phase"] == "stopped"
    for items in recorded["stages"].values():
        for item in items:
            assert not _alive(item["pid"]), item
    assert not (state / "kafka" / "upstream").exists() or not list((state / "kafka" / "upstream").glob("broker-*"))


def _alive(pid: int) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


def test_a_broken_file_is_refused_before_anything_starts(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("version: 1\nname: bad\nclusters: {c: {local: {brokers: 1}}}\nbuffers: {a: {cluster: c}}\n"
                    "stages: {s: {input: a, output: nowhere, worker: none}}\n")
    result = run("up", str(file), "--detach", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 2
    assert f"{file}:5: error: stage 's': output 'nowhere' is not defined under buffers" in result.stderr
    assert not (tmp_path / "state").exists()
