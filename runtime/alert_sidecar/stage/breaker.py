"""Outage or poison: the circuit breaker between a stage and its workers.

When single alerts fail, they are retried and dead-lettered alone
(verdicts.py). When everything fails — every call errors, or the worker
answers RETRY for every alert because what it depends on is down — retrying
each alert until it is dead-lettered would empty the input into the
dead-letter buffer. So the breaker watches whole batches:

    CLOSED --N failed batches in a row, over several alerts--> OPEN
    OPEN --cool-down--> HALF_OPEN (one batch goes out to probe)
    HALF_OPEN --it succeeds--> CLOSED;  --it fails--> OPEN (cool-down doubled)

While it is not CLOSED nothing but the probe is sent, and the failures of
batches count no try for their alerts: they wait, in order, like alerts of a
worker that is down. Failures that all concern one alert are poison, not an
outage: they never open the breaker, so that alert ends as a dead letter.
"""

from __future__ import annotations

import enum
import logging

log = logging.getLogger("alert_sidecar.stage")

# Five failed batches in a row is past what a few poison alerts in a stream
# cause (each fails only its own batch, and halving isolates it), and at a
# stage's pace is a second or less of an outage.
FAILURES_TO_OPEN = 5
# ...and they must concern more alerts than one poison batch being retried.
DISTINCT_ALERTS_TO_OPEN = 10
# The first pause is 1 s: a worker restarting is back within it; doubling to
# 30 s keeps an outage from costing more than a probe every half minute.
COOL_DOWN_S = (1.0, 30.0)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(self) -> None:
        self.state = BreakerState.CLOSED
        self.opened = 0  # times it opened, for the counters and metrics
        self._failures = 0
        self._failed_alerts: set[str] = set()
        self._cool_down = COOL_DOWN_S[0]
        self._retry_at = 0.0
        self._probe_out = False

    def allows(self, now: float) -> bool:
        """Whether a batch may be sent now (at most one while HALF_OPEN)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and now >= self._retry_at:
            self.state = BreakerState.HALF_OPEN
            self._probe_out = False
        if self.state is BreakerState.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def unused_probe(self) -> None:
        """The batch ``allows`` let out was not formed after all: let the next one probe."""
        if self.state is BreakerState.HALF_OPEN:
            self._probe_out = False

    def succeeded(self) -> None:
        if self.state is not BreakerState.CLOSED:
            log.info("circuit closed: the worker answers again")
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._failed_alerts.clear()
        self._cool_down = COOL_DOWN_S[0]

    def failed(self, alert_ids: list[str], why: str, now: float) -> bool:
        """Record a failed batch; True if its failure is the breaker's (count no try for its alerts)."""
        if self.state is BreakerState.HALF_OPEN:
            self._open(now, why, doubled=True)
            return True
        if self.state is BreakerState.OPEN:
            return True  # in flight when it opened
        self._failures += 1
        self._failed_alerts.update(alert_ids)
        if self._failures >= FAILURES_TO_OPEN and len(self._failed_alerts) >= DISTINCT_ALERTS_TO_OPEN:
            self._open(now, why, doubled=False)
            return True
        return False

    def _open(self, now: float, why: str, doubled: bool) -> None:
        if doubled:
            self._cool_down = min(COOL_DOWN_S[1], self._cool_down * 2)
        else:
            self.opened += 1
            log.warning("circuit open: every call to the worker fails (last: %s); sending nothing but a probe "
                        "every %g s, counting no tries, dead-lettering nothing, until it answers", why,
                        self._cool_down)
        self.state = BreakerState.OPEN
        self._retry_at = now + self._cool_down
