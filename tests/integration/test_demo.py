"""`make demo-stage`'s script, examples/demo.py, run small against the session's Kafka: nothing lost.

The demo checks each alert itself (bright ones in the output byte for byte,
corrupt ones in the dead-letter buffer, the sidecar's filtered counter equal to
the faint ones written) and exits with 1 on any difference; this test holds its
exit code and its summary to the split of alerts it says it wrote.
"""

import re
import subprocess
import sys

import pytest

from .stage_support import ROOT

pytestmark = pytest.mark.kafka

ALERTS, CORRUPT = 600, 3


def test_demo_puts_every_alert_where_it_belongs(kafka_bootstrap):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--bootstrap", kafka_bootstrap,
                             "--alerts", str(ALERTS), "--corrupt", str(CORRUPT)],
                            capture_output=True, text=True, timeout=300)
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    assert "MISMATCH" not in result.stdout, output
    wrote = re.search(r"^demo: wrote (\d+) alerts, .*: (\d+) bright, (\d+) faint, (\d+) corrupt$", result.stdout,
                      re.MULTILINE)
    assert wrote, output
    written, bright, faint, corrupt = map(int, wrote.groups())
    assert (written, corrupt) == (ALERTS + CORRUPT, CORRUPT)
    assert bright + faint == ALERTS
    # A filter: some kept, most dropped (about 20% of Rubin alerts are brighter than mag 20).
    assert 0.1 * ALERTS < bright < 0.4 * ALERTS
    last = result.stdout.strip().splitlines()[-1]
    summary = re.fullmatch(r"alerts in: (\d+), out: (\d+), filtered: (\d+), dead-lettered: (\d+), lost: (\d+)", last)
    assert summary, last
    n, m, f, d, lost = map(int, summary.groups())
    assert lost == 0
    # Each figure is observed, none computed from the others: alerts in the
    # output, the sidecar's own filtered counter, alerts in the dead-letter buffer.
    assert (n, m, f, d) == (written, bright, faint, corrupt)
