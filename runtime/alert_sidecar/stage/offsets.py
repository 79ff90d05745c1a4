"""The commit rule, in one place.

An input offset may be committed only when the alert at that offset and every
earlier alert of its partition is finished: its outputs (or its dead letter)
acknowledged by their cluster, or nothing to produce because a filter dropped
it. ``PartitionLedger`` follows every alert of one input partition from fetch
to commit and is the only code that decides how far a partition may be
committed. It is pure bookkeeping (no Kafka, no threads) so that the rule can
be tested on its own.

An alert moves through these states::

    PENDING --dispatch--> IN_FLIGHT --answer--> RESOLVED --emit--> EMITTED --acks--> DONE
       ^                      |
       +---- retry / worker --+
             unavailable

Outputs are emitted in offset order (an alert is emitted only after every
earlier alert of its partition), which keeps output order per input partition
even when a batch is answered out of order or an alert is retried.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterator


class State(enum.Enum):
    PENDING = "pending"  # fetched, waiting to be sent to a worker
    IN_FLIGHT = "in_flight"  # sent to a worker, no answer yet
    RESOLVED = "resolved"  # answered; its records are known but not yet produced
    EMITTED = "emitted"  # its records were handed to the producer
    DONE = "done"  # every record acknowledged (or none to produce)


@dataclass(slots=True)
class Record:
    """One record to produce: an output of a worker, or a dead letter."""

    buffer_name: str  # "" for --out, a route name, or "dead-letter"
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(slots=True)
class Resolution:
    """What became of one alert once the worker answered for good."""

    records: list[Record]
    dead_letter_reason: str | None = None  # set when the single record is a dead letter

    @property
    def filtered(self) -> bool:
        return not self.records


@dataclass(slots=True, eq=False)
class Entry:
    """One alert of one partition, with everything the sidecar knows about it."""

    offset: int
    message: Any  # the confluent_kafka.Message: key, value, timestamp
    size: int
    # The record's headers, read once at fetch (a header key that is not UTF-8
    # cannot be read by the client at all: then None, and the alert is
    # dead-lettered with the reason).
    headers: list[tuple[str, bytes | None]] | None = None
    alert_id: str = ""  # "<topic>/<partition>/<offset>", Alert.id in the contract
    content_type: str = ""  # what the input bytes are
    payload: bytes | None = None  # the alert decoded for the worker (JSON form), kept across retries
    schema_id: int = 0  # the input's Confluent schema id, once known
    fetched_at: float = 0.0  # monotonic time it was fetched (batches linger for more)
    state: State = State.PENDING
    attempts: int = 0  # answers of RETRY (or failed calls) so far
    # The most alerts the batch carrying this alert may hold: 1 once a worker
    # died with it in flight, or a call with it timed out, to find the alert
    # that did it.
    split_limit: int = 1 << 30
    # In flight when a worker died: sent again alone, with nothing else in
    # flight on its worker, until it survives a call (verdicts.py).
    suspect: bool = False
    not_before: float = 0.0  # monotonic time before which a retry must not be sent
    last_error: str = ""
    resolution: Resolution | None = None
    unacked: int = 0  # records produced and not yet acknowledged


@dataclass(eq=False)
class PartitionLedger:
    """Every alert of one input partition from fetch to commit."""

    topic: str
    partition: int
    # Alerts fetched and not yet emitted, in offset order.
    _waiting: deque[Entry] = field(default_factory=deque)
    # The PENDING alerts among them, in offset order: what may be sent next.
    _ready: deque[Entry] = field(default_factory=deque)
    # Alerts emitted and not yet popped for commit, in offset order.
    _emitted: deque[Entry] = field(default_factory=deque)
    in_flight: int = 0  # alerts of this partition sent and not yet answered
    buffered_bytes: int = 0  # value bytes of alerts fetched and not yet DONE
    committed: int | None = None  # the offset last committed (next to read)
    first_offset: int | None = None  # the first offset fetched (where a rewind goes before any commit)
    commit_target: int | None = None  # the offset that may be committed now
    revoked: bool = False  # set when the partition is taken away; late answers are ignored
    _keys_in_flight: dict = field(default_factory=dict)  # record key -> alerts of it in flight (ordering by key)

    def append(self, message: Any, offset: int, size: int, content_type: str = "", now: float = 0.0,
               headers: list | None = None) -> Entry:
        if self._waiting and offset <= self._waiting[-1].offset:
            raise ValueError(
                f"offset {offset} fetched after {self._waiting[-1].offset} on {self.topic}/{self.partition}")
        if self.first_offset is None:
            self.first_offset = offset
        alert_id = f"{self.topic}/{self.partition}/{offset}"
        entry = Entry(offset=offset, message=message, size=size, headers=headers, alert_id=alert_id,
                      content_type=content_type, fetched_at=now)
        self._waiting.append(entry)
        self._ready.append(entry)
        self.buffered_bytes += size
        return entry

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def ready(self) -> int:
        return len(self._ready)

    @property
    def unfinished(self) -> int:
        """Alerts fetched and not yet DONE: zero means the partition is settled."""
        return len(self._waiting) + sum(1 for e in self._emitted if e.state is not State.DONE)

    def take(self, now: float, max_alerts: int, max_bytes: int, by_key: bool = False) -> list[Entry]:
        """The next alerts to send, in offset order, and mark them IN_FLIGHT.

        Without ``by_key``, stops at the first alert still waiting for its retry
        backoff, so that a worker sees the alerts of a partition in order. With
        it, an alert is held back only while an earlier alert of the same key is
        in flight or waiting: order is kept per key, and other keys go on.
        """
        if self._ready:  # a batch no larger than its first alert allows (after a worker died on it)
            max_alerts = min(max_alerts, self._ready[0].split_limit)
        if by_key:
            return self._take_by_key(now, max_alerts, max_bytes)
        batch: list[Entry] = []
        size = 0
        while self._ready and len(batch) < max_alerts:
            entry = self._ready[0]
            if entry.not_before > now:
                break
            if batch and size + entry.size > max_bytes:
                break
            self._ready.popleft()
            entry.state = State.IN_FLIGHT
            batch.append(entry)
            size += entry.size
        self.in_flight += len(batch)
        return batch

    def _take_by_key(self, now: float, max_alerts: int, max_bytes: int) -> list[Entry]:
        batch: list[Entry] = []
        held: list[Entry] = []
        blocked = set(self._keys_in_flight)
        size = 0
        while self._ready and len(batch) < max_alerts:
            entry = self._ready.popleft()
            key = _key_of(entry)
            if (key is not None and key in blocked) or entry.not_before > now or (
                    batch and size + entry.size > max_bytes):
                held.append(entry)
                if key is not None:
                    blocked.add(key)  # later alerts of this key wait behind it
                if batch and size + entry.size > max_bytes:
                    break
                continue
            entry.state = State.IN_FLIGHT
            batch.append(entry)  # alerts of one key in one batch keep their order in it
            size += entry.size
        self._ready.extendleft(reversed(held))
        self.in_flight += len(batch)
        for entry in batch:
            key = _key_of(entry)
            if key is not None:
                self._keys_in_flight[key] = self._keys_in_flight.get(key, 0) + 1
        return batch

    def _answered(self, entry: Entry) -> None:
        self.in_flight -= 1
        if not self._keys_in_flight:  # nothing taken by key
            return
        key = _key_of(entry)
        if key is not None:
            left = self._keys_in_flight.get(key, 0) - 1
            if left > 0:
                self._keys_in_flight[key] = left
            else:
                self._keys_in_flight.pop(key, None)

    @property
    def suspect_next(self) -> bool:
        """The next alert to send is suspected of killing its worker (it goes out alone)."""
        return bool(self._ready) and self._ready[0].suspect

    def oldest_ready_at(self) -> float | None:
        """When the oldest alert ready to send was fetched."""
        return self._ready[0].fetched_at if self._ready else None

    def give_back(self, entries: list[Entry], not_before: float = 0.0) -> None:
        """Put unanswered alerts back among the ready ones, in offset order, to be sent again."""
        if self.revoked:
            return  # abandoned: as for resolve and acknowledge, the partition's next owner reads them again
        returned = sorted((e for e in entries if e.state is State.IN_FLIGHT), key=lambda e: e.offset)
        for entry in returned:
            entry.state = State.PENDING
            entry.not_before = not_before
            self._answered(entry)
        if not returned:
            return
        if not self._ready or returned[-1].offset < self._ready[0].offset:
            # The usual case (one batch in flight per partition): everything
            # sent comes before everything still ready.
            self._ready.extendleft(reversed(returned))
        else:  # several batches in flight: merge by offset
            self._ready = deque(sorted([*self._ready, *returned], key=lambda e: e.offset))

    def settle_unsent(self, entry: Entry, resolution: Resolution) -> None:
        """Resolve a PENDING alert that no worker will see (one the sidecar cannot hand over as it is)."""
        if entry.state is not State.PENDING:
            raise ValueError(f"alert at offset {entry.offset} settled unsent while {entry.state.value}")
        self._ready.remove(entry)
        entry.state = State.RESOLVED
        entry.resolution = resolution

    def resolve(self, entry: Entry, resolution: Resolution) -> None:
        if self.revoked:
            return  # a late answer for an abandoned alert: the partition's next owner reads it again
        if entry.state is not State.IN_FLIGHT:
            raise ValueError(f"alert at offset {entry.offset} answered while {entry.state.value}")
        entry.state = State.RESOLVED
        entry.resolution = resolution
        self._answered(entry)

    def emittable(self) -> Iterator[Entry]:
        """Yield RESOLVED alerts that may be produced now, in offset order, marking them EMITTED.

        An alert is emittable only when every earlier alert of the partition is
        emitted: this is what keeps output order per input partition.
        """
        while self._waiting and self._waiting[0].state is State.RESOLVED:
            entry = self._waiting.popleft()
            entry.state = State.EMITTED
            entry.unacked = len(entry.resolution.records) if entry.resolution else 0
            if entry.unacked == 0:
                self._finish(entry)
            self._emitted.append(entry)
            yield entry

    def acknowledge(self, entry: Entry) -> None:
        """One record of ``entry`` was acknowledged by its cluster."""
        if self.revoked:
            return  # everything was forgotten at revocation; nothing of it is committed here any more
        entry.unacked -= 1
        if entry.unacked == 0:
            self._finish(entry)

    def _finish(self, entry: Entry) -> None:
        entry.state = State.DONE
        entry.message = None  # the alert's bytes are no longer needed
        self.buffered_bytes -= entry.size

    def advance(self) -> int | None:
        """Pop the finished prefix of the partition; return the offset to commit, if it moved.

        The offset to commit is the next one to read: the last finished offset
        plus one. It only ever moves forward, and it stays the target until a
        commit of it succeeds (``mark_committed``), so a failed asynchronous
        commit is repeated by the next one.
        """
        while self._emitted and self._emitted[0].state is State.DONE:
            self.commit_target = self._emitted.popleft().offset + 1
        if self.commit_target is None:
            return None
        if self.committed is not None and self.commit_target <= self.committed:
            return None
        return self.commit_target

    def mark_committed(self, offset: int) -> None:
        if self.committed is None or offset > self.committed:
            self.committed = offset

    def abandon(self) -> int:
        """Forget every alert not yet finished (the partition was revoked); return how many.

        They are still uncommitted, so whichever member owns the partition next
        reads them again: at-least-once, never a loss.
        """
        dropped = self.unfinished
        self.revoked = True
        self._waiting.clear()
        self._ready.clear()
        self._emitted.clear()
        self.in_flight = 0
        self._keys_in_flight.clear()
        self.buffered_bytes = 0
        return dropped


def _key_of(entry: Entry) -> bytes | None:
    message = entry.message
    return message.key() if message is not None and hasattr(message, "key") else None
