"""librdkafka's own lines go through the sidecar's logging, each repeat said once."""

from __future__ import annotations

import subprocess
import time

from .stage_support import SIDECAR, free_port


def test_an_unreachable_broker_is_a_handful_of_lines_then_the_clear_error():
    """Without a logger librdkafka writes about 150 FAIL lines in these 10 s, one per connection attempt."""
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = subprocess.run([*SIDECAR, "--in", f"kafka://127.0.0.1:{port}/alerts",
                             "--out", f"kafka://127.0.0.1:{port}/out", "--worker", "127.0.0.1:1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) <= 6, f"{len(lines)} lines:\n" + "\n".join(lines[:20])
    assert lines[-1].startswith(f"alert-sidecar: error: cannot reach Kafka at 127.0.0.1:{port}"), lines
    # The cause librdkafka saw is said once, through the sidecar's logging, not as librdkafka's raw %3|... lines.
    refused = [line for line in lines if "Connection refused" in line]
    assert len(refused) >= 1 and all(" alert_sidecar.kafka." in line for line in refused), lines
    assert not any(line.startswith("%") for line in lines), lines
    assert time.monotonic() - started < 30
