"""`make demo`'s script, run small against the session's Kafka: its summary must balance with nothing lost."""

import re
import subprocess
import sys

import pytest

from .stage_support import ROOT

pytestmark = pytest.mark.kafka


def test_demo_summary_balances(kafka_bootstrap):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--bootstrap", kafka_bootstrap,
                             "--alerts", "600", "--corrupt", "3"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"alerts in: (\d+), out: (\d+), filtered: (\d+), dead-lettered: (\d+), lost: (\d+)", last)
    assert match, last
    n, m, f, d, lost = map(int, match.groups())
    assert n == 603 and d == 3 and lost == 0
    assert n == m + f + d
    assert 0 < m < n  # a filter: some kept, most dropped (about 20% of Rubin alerts are brighter than mag 20)
