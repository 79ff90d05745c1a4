"""Where a consumer group starts reading a partition it has no committed offset for.

- ``earliest`` or ``latest`` (StartFrom): Kafka's own ``auto.offset.reset``.
- a time (StartAtTime): in each partition, the first record whose timestamp is
  at or after it (``offsets_for_times``); the end of a partition whose records
  are all older.
- an offset (StartAtOffset): the same offset in every partition, or N records
  before each partition's end; held to what the partition still holds.

A partition the group has committed goes on from its commit, whatever is given:
a start position is for a new group, or for a partition new to it, exactly as
``auto.offset.reset`` is. ``starts`` works out each assigned partition's start
when the assignment comes, and logs one line saying which starts where.
"""

from __future__ import annotations

import datetime
import enum
import logging
import re
from dataclasses import dataclass

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition

from alert_sidecar.exceptions import ConfigError, KafkaUnreachable

log = logging.getLogger("alert_sidecar.consumer")


class StartFrom(enum.Enum):
    """Kafka's own resets: the first record a partition holds, or its end."""

    # The whole rolling buffer: a new stage must not skip what is already there.
    EARLIEST = "earliest"
    LATEST = "latest"


@dataclass(frozen=True)
class StartAtTime:
    """The first record at or after a time, by the records' own timestamps."""

    at: datetime.datetime  # aware

    @property
    def ms(self) -> int:
        """Milliseconds since 1970 UTC, as Kafka's timestamps count."""
        return (self.at - _EPOCH) // datetime.timedelta(milliseconds=1)

    def __str__(self) -> str:
        return self.at.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class StartAtOffset:
    """The same offset in every partition; with ``from_end``, that many records before each partition's end."""

    offset: int  # >= 0
    from_end: bool = False

    def __str__(self) -> str:
        return f"-{self.offset}" if self.from_end else str(self.offset)


StartPosition = StartFrom | StartAtTime | StartAtOffset

EXAMPLES = "earliest, latest, 2026-12-01T00:00Z, 2026-12-01T00:00:00+00:00, 2026-12-01, 1000 or -1000"

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_OFFSET = re.compile(r"^[+-]?\d+$")
# A date first: a year, a month and a day; anything else that is not an offset is no time either.
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def parse_start(text: str, what: str = "--start-from") -> StartPosition:
    """``earliest``, ``latest``, an ISO 8601 time or an offset; ConfigError with examples otherwise.

    A time without an offset from UTC is in UTC, as every time of the sidecar
    is; a date alone is its 00:00 UTC.
    """
    value = str(text).strip()
    for reset in StartFrom:
        if value.lower() == reset.value:
            return reset
    if _OFFSET.match(value):
        return StartAtOffset(abs(int(value)), from_end=value.startswith("-"))
    if _DATE.match(value):
        try:
            # Python before 3.11 reads neither a trailing Z nor a date alone as a datetime.
            at = datetime.datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", value))
        except ValueError:
            pass
        else:
            if at.tzinfo is None:
                at = at.replace(tzinfo=datetime.timezone.utc)
            return StartAtTime(at)
    raise ConfigError(f"{what} {text!r} is not earliest, latest, an ISO 8601 time or an offset; "
                      f"e.g. {EXAMPLES} (-N: N records before the end)")


def starts(consumer: Consumer, partitions: list[TopicPartition], start: StartPosition,
           timeout: float) -> list[TopicPartition]:
    """The ``partitions`` just assigned, each with the offset it starts at; logs one line saying where.

    A partition left at OFFSET_INVALID starts where librdkafka puts it: its
    commit, else ``auto.offset.reset``. KafkaUnreachable if the group's commits
    or the partitions' offsets cannot be read for a time or an offset.
    """
    if not partitions:
        return []
    assigned = [TopicPartition(tp.topic, tp.partition, OFFSET_INVALID) for tp in partitions]
    try:
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(assigned, timeout=timeout)}
    except KafkaException as exc:
        if isinstance(start, StartFrom):
            # librdkafka reads the commits itself: only this line would be missing.
            log.warning("partitions start from their commits, else %s; the commits could not be read to say "
                        "which reason=%r", start.value, _reason(exc))
            return assigned
        raise KafkaUnreachable(f"cannot read the committed offsets of the group to start from {start}: "
                               f"{_reason(exc)}") from None
    where = []
    fresh = []
    for tp in assigned:
        offset = committed.get((tp.topic, tp.partition), OFFSET_INVALID)
        if offset >= 0:
            where.append(f"{tp.topic}/{tp.partition} at its commit {offset}")
        else:
            fresh.append(tp)
    if isinstance(start, StartFrom):
        where += [f"{tp.topic}/{tp.partition} at {start.value} (no commit)" for tp in fresh]
    else:
        try:
            for tp, (offset, why) in zip(fresh, _offsets_of(consumer, fresh, start, timeout)):
                tp.offset = offset
                where.append(f"{tp.topic}/{tp.partition} at offset {offset} ({why})")
        except KafkaException as exc:
            raise KafkaUnreachable(f"cannot read the offsets of {fresh[0].topic} to start from {start}: "
                                   f"{_reason(exc)}") from None
    log.info("partitions start %s", ", ".join(where))
    return assigned


def _offsets_of(consumer: Consumer, partitions: list[TopicPartition], start: StartAtTime | StartAtOffset,
                timeout: float) -> list[tuple[int, str]]:
    """Where each of ``partitions`` starts, and why there."""
    if not partitions:
        return []
    if isinstance(start, StartAtTime):
        found = consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, start.ms) for tp in partitions],
                                           timeout=timeout)
        answers = []
        for tp in found:
            if tp.error is not None:
                raise KafkaException(tp.error)
            if tp.offset >= 0:
                answers.append((tp.offset, f"the first record at or after {start}"))
            else:  # every record is older: the end, as it is now, so that what comes next is read
                _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout)
                answers.append((high, f"the end: no record at or after {start}"))
        return answers
    answers = []
    for tp in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout)
        wanted = high - start.offset if start.from_end else start.offset
        # An offset the partition no longer or not yet holds would be reset by
        # auto.offset.reset, to the start: the nearest one it holds is meant.
        offset = min(max(wanted, low), high)
        if start.from_end:
            why = f"{high - offset} before the end"
        elif offset != wanted:
            why = f"{wanted} is {'past the end' if wanted > high else 'no longer held'}; it holds {low} to {high}"
        else:
            why = "as given"
        answers.append((offset, why))
    return answers


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else exc
    return err.str() if hasattr(err, "str") else str(err)
