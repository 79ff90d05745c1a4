"""Retries and dead letters: what becomes of an alert a worker cannot finish.

An alert answered with RETRY (or whose call failed) is sent again after an
exponential backoff, up to ``max_retries`` times; then it goes to the
dead-letter buffer. An alert answered with DEAD_LETTER goes there at once.
A dead letter is the original record, byte for byte, with headers that say
why, where it came from and which stage gave up, so that it can be inspected
and replayed into the input buffer once the cause is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

from alert_sidecar.stage.offsets import Entry, Record, Resolution

DEAD_LETTER = "dead-letter"  # the name of the dead-letter output among the stage's outputs

# Headers of a dead-letter record.
REASON_HEADER = "x-dead-letter-reason"
SOURCE_HEADER = "x-dead-letter-source"  # "<topic>/<partition>/<offset>" of the input alert
STAGE_HEADER = "x-dead-letter-stage"  # the consumer group of the stage that gave up
ATTEMPTS_HEADER = "x-dead-letter-attempts"
# Added to every output: the input alert it came from, for lineage and replay.
OUTPUT_SOURCE_HEADER = "x-alert-source"


@dataclass(frozen=True)
class RetryPolicy:
    # 5 retries with a 0.5 s base reach 0.5+1+2+4+8 = 15.5 s in all: long
    # enough to ride out a catalogue restart, short against a night's stream.
    max_retries: int = 5
    base_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def backoff(self, attempts: int) -> float:
        """Seconds to wait before the try after ``attempts`` failed ones (attempts >= 1)."""
        return min(self.max_backoff_s, self.base_backoff_s * (2 ** max(0, attempts - 1)))

    def exhausted(self, attempts: int) -> bool:
        return attempts > self.max_retries


def dead_letter(entry: Entry, reason: str, stage: str) -> Resolution:
    """The resolution that sends ``entry``'s original record to the dead-letter buffer."""
    message = entry.message
    headers = list(message.headers() or [])
    headers += [
        (REASON_HEADER, reason.encode()),
        (SOURCE_HEADER, entry.alert_id.encode()),
        (STAGE_HEADER, stage.encode()),
        (ATTEMPTS_HEADER, str(entry.attempts).encode()),
    ]
    record = Record(DEAD_LETTER, message.value(), message.key(), headers)
    return Resolution([record], dead_letter_reason=reason)
