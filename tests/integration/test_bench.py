"""``alert-sidecar bench`` against a real stage: a sidecar with a real worker on a real Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from .stage_support import EXAMPLES, ROOT

BENCH = [sys.executable, "-m", "alert_sidecar.commands.bench"]


def uri(bootstrap: str, topic: str) -> str:
    return f"kafka://{bootstrap}/{topic}"


def run_bench(*args: str, timeout: float) -> tuple[int, dict, str]:
    done = subprocess.run([*BENCH, *args, "--json"], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = done.stdout.strip().splitlines()
    assert lines, f"bench printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return done.returncode, json.loads(lines[-1]), done.stderr


def start_stage(procs, bootstrap: str, source: str, sink: str, worker: list[str]):
    sidecar = procs.sidecar("--in", uri(bootstrap, source), "--out", uri(bootstrap, sink),
                            "--group", f"g-{source}", "--", *worker)
    sidecar.wait_for_line("partitions assigned", 60)
    return sidecar


@pytest.mark.kafka
def test_two_visits_through_a_passthrough_stage_all_come_out(kafka_bootstrap, new_topic, procs):
    source, sink = new_topic(partitions=4), new_topic(partitions=4)
    start_stage(procs, kafka_bootstrap, source, sink, [sys.executable, str(EXAMPLES / "passthrough.py")])

    code, result, stderr = run_bench("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
                                     "--visits", "2", "--visit-size", "500", "--visit-interval", "2",
                                     "--size", "small", "--timeout", "20", timeout=90)

    assert code == 0, stderr[-3000:]
    assert result["alerts"] == 1000 and result["out_alerts"] == 1000 and result["missing"] == 0
    assert not result["timed_out"]
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["alerts_per_s"] > 0
    # The second visit is written 2 s after the first began, so the run spans at least that.
    assert result["elapsed_s"] >= 2.0
    assert [v["out"] for v in result["per_visit"]] == [500, 500]
    assert all(0 < v["p50_ms"] <= v["p99_ms"] for v in result["per_visit"])
    assert "bench sent=" in stderr  # the progress line


@pytest.mark.kafka
def test_a_stage_that_drops_everything_ends_by_timeout_with_none_out(kafka_bootstrap, new_topic, procs, tmp_path):
    source, sink = new_topic(partitions=4), new_topic(partitions=4)
    dropper = tmp_path / "drop_all.py"
    dropper.write_text(textwrap.dedent("""
        import alert_worker

        @alert_worker.worker(name="drop-all", version="1")
        def drop_all(alert):
            return False

        alert_worker.serve(drop_all)
    """))
    sidecar = start_stage(procs, kafka_bootstrap, source, sink, [sys.executable, str(dropper)])

    code, result, stderr = run_bench("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
                                     "--visits", "2", "--visit-size", "200", "--visit-interval", "1",
                                     "--size", "small", "--timeout", "3", timeout=60)

    assert code == 1, stderr[-3000:]
    assert result["alerts"] == 400 and result["out_alerts"] == 0 and result["missing"] == 400
    assert result["timed_out"] and result["p99_ms"] is None and result["alerts_per_s"] == 0
    sidecar.wait_for_line("consumed=400", 30)  # the stage did read them: dropped, not lost on the way
