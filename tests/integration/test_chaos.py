"""The fault-injection suite keeps the stage honest, and its own checks can fail.

bench/chaos.py is a program (make chaos, make chaos-quick); here it runs one
cheap scenario on a cluster of its own: a sidecar SIGKILLed three times while
3,000 alerts flow must lose none of them. The counting it ends with is also
run on buffers with an alert taken out, a dead letter too many and a record
that names another alert, to see each of those fail.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from .stage_support import ROOT

CHAOS = ROOT / "bench" / "chaos.py"


def load_chaos():
    spec = importlib.util.spec_from_file_location("chaos", CHAOS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_a_sidecar_killed_three_times_loses_no_alert():
    done = subprocess.run([sys.executable, str(CHAOS), "--scenarios", "1", "--alerts", "3000", "--kills", "3"],
                          capture_output=True, text=True, timeout=220, cwd=ROOT)

    lines = done.stdout.strip().splitlines()
    assert lines, f"chaos.py printed nothing (exit {done.returncode}):\n{done.stderr[-4000:]}"
    summary = json.loads(lines[-1])
    figures = summary["scenarios"]["1"]
    assert done.returncode == 0, f"{lines[0]}\n{done.stderr[-4000:]}"
    assert figures["ran"] and figures["ok"], figures["failures"]
    assert figures["alerts_in"] == 3000 and figures["out"] == 3000
    assert figures["missing"] == 0 and figures["dead_lettered"] == 0
    assert summary["totals"]["missing"] == 0
    # Three kills, each recovered from: every alert written before a kill's end came out after it.
    assert len(figures["faults"]) == 3
    assert all(fault["caught_up_s"] is not None for fault in figures["faults"])
    assert lines[0].startswith("scenario 1 ") and "missing 0" in lines[0]


def _run_of(chaos, count: int, poison: set[int] = frozenset()):
    """What tally() reads of a scenario, for ``count`` alerts of which ``poison`` are to be dead-lettered."""
    delivered = [(i % 2, i // 2, 1000 + i) for i in range(count)]
    writer = SimpleNamespace(alert_id=lambda i: f"t-{i:06d}", delivered=delivered)
    spec = SimpleNamespace(title="test", exactly_once=False)
    return SimpleNamespace(key="t", spec=spec, suite=SimpleNamespace(kills=0), writer=writer, expected_dead=set(poison),
                           faults=[], failures=[], notes=[], started=0.0, started_writing=0.0, window=1.0)


def _buffers(chaos, count: int):
    def record(i: int, header: str, ts: int):
        value = json.dumps({"id": f"t-{i:06d}", "seq": i, "case": "ok"}).encode()
        return chaos.Record(i % 2, i // 2, ts, value, {header: f"in/{i % 2}/{i // 2}".encode()})

    inputs = [record(i, "none", 1000 + i) for i in range(count)]
    outputs = [record(i, chaos.OUTPUT_SOURCE_HEADER, 2000 + i) for i in range(count)]
    return inputs, outputs


def test_the_count_fails_on_a_missing_alert_an_unexpected_dead_letter_and_a_wrong_source():
    chaos = load_chaos()
    inputs, outputs = _buffers(chaos, 10)

    run = _run_of(chaos, 10)
    whole = chaos.tally(run, inputs, outputs, [], [5, 5])
    assert whole["ok"] and whole["missing"] == 0 and whole["out"] == 10 and not run.failures

    run = _run_of(chaos, 10)
    gone = chaos.tally(run, inputs, outputs[:4] + outputs[5:], [], [5, 5])
    assert not gone["ok"] and gone["missing"] == 1 and gone["missing_uncommitted"] == 0
    assert "1 alerts in neither" in run.failures[0] and "t-000004" in run.failures[0]

    run = _run_of(chaos, 10)
    dead = chaos.Record(0, 0, 3000, outputs[3].value, {chaos.SOURCE_HEADER: b"in/1/1"})
    extra = chaos.tally(run, inputs, outputs[:3] + outputs[4:], [dead], [5, 5])
    assert not extra["ok"] and extra["missing"] == 0 and extra["unexpected_dead_letters"] == 1

    run = _run_of(chaos, 10)
    wrong = chaos.Record(0, 9, 3000, outputs[2].value, {chaos.OUTPUT_SOURCE_HEADER: b"in/0/3"})
    mislabelled = chaos.tally(run, inputs, outputs + [wrong], [], [5, 5])
    assert not mislabelled["ok"] and "source header does not name their alert" in run.failures[0]


def test_poison_in_the_output_instead_of_the_dead_letter_buffer_fails():
    chaos = load_chaos()
    inputs, outputs = _buffers(chaos, 10)
    run = _run_of(chaos, 10, poison={7})

    figures = chaos.tally(run, inputs, outputs, [], [5, 5])

    assert not figures["ok"] and figures["poison_misplaced"] == 1 and figures["expected_dead_letters"] == 1
