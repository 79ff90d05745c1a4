"""Counters of a stage and the periodic progress line.

Counters are plain integers touched only on the stage's loop thread. The same
numbers end the run in the summary line and, with --stats-file, a JSON file.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field


@dataclass
class Counters:
    consumed: int = 0  # alerts read from the input buffer
    kept: int = 0  # alerts that produced at least one output
    filtered: int = 0  # alerts answered OK with no output
    dead_lettered: int = 0  # alerts sent to the dead-letter buffer
    produced: int = 0  # output records acknowledged by their cluster
    retried: int = 0  # alert retries (RETRY answers and failed calls)
    resent: int = 0  # alerts sent again because their worker became unavailable
    abandoned: int = 0  # alerts given up at revocation, to be read again by the next owner
    batches: int = 0  # ProcessBatch calls answered
    aborted: int = 0  # transactions aborted (--exactly-once); their alerts are read again
    circuit_opened: int = 0  # times every call failed and the stage held its alerts (breaker.py)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Rate:
    """Alerts per second finished since the last reading."""

    _last_time: float = field(default_factory=time.monotonic)
    _last_count: int = 0

    def read(self, count: int) -> float:
        now = time.monotonic()
        elapsed = now - self._last_time
        rate = (count - self._last_count) / elapsed if elapsed > 0 else 0.0
        self._last_time, self._last_count = now, count
        return rate
