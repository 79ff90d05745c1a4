"""Outputs: the records an answer makes, how they are encoded, and what their delivery means.

- **Records from answers.** Each output of an OK answer becomes a record for
  its buffer ("" for --out, or a route the worker names and --route binds):
  the input record itself for ``forward_input``, else the worker's value, key
  and headers. Every record carries ``x-alert-source``. An output to a route
  that no buffer is bound to, or that does not fit its buffer's Avro schema,
  sends the alert to the dead-letter buffer instead, with the reason.
- **Emission.** Records leave in offset order per input partition (the ledger
  yields them so) through the producers of kafka/producer.py. Producing never
  blocks: when librdkafka's queue is full, records wait in a backlog, in
  order, that is drained after the producers' delivery reports are served, so
  the loop goes on polling its consumer and no delivery report produces from
  inside another.
- **Delivery.** An acknowledged record counts toward its alert's commit
  (offsets.py). A record the cluster is slow to take is produced again; one it
  refuses, or one larger than its buffer takes, is replaced by a dead letter. A
  dead letter too large for the dead-letter buffer is replaced by a small one
  that carries the reason, the source coordinates and the size. Any other
  refusal by the dead-letter buffer, a topic that disappears or a fatal
  producer error stops the stage, so that nothing is committed past it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import deque

from confluent_kafka import KafkaError

from alertsidecar.v1 import worker_pb2

from alert_sidecar.exceptions import EncodeError, OutputFailed
from alert_sidecar.formats.avro_outputs import OutputEncoders
from alert_sidecar.kafka.producer import AbortNeeded, Outputs, QueueFull, RecordTooLarge
from alert_sidecar.stage.metrics import Counters
from alert_sidecar.stage.offsets import Entry, PartitionLedger, Record, Resolution
from alert_sidecar.stage.verdicts import (DEAD_LETTER, OUTPUT_SOURCE_HEADER, REASON_HEADER, SIZE_HEADER,
                                          SOURCE_HEADER, STAGE_HEADER, dead_letter)

log = logging.getLogger("alert_sidecar.stage")

# How long a flush waits for delivery reports before it tries the backlog again.
BACKLOG_WAIT_S = 0.05

# Delivery errors worth producing again rather than dead-lettering: the output
# cluster is slow or away, not refusing the record.
TRANSIENT_DELIVERY_ERRORS = frozenset({
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
})


class StageOutputs:
    """The output side of a stage: records from answers, emission, delivery outcomes."""

    def __init__(self, producers: Outputs, encoders: OutputEncoders, stage: str, counters: Counters) -> None:
        self.producers = producers
        self.encoders = encoders
        self.stage = stage  # the consumer group, named in dead letters
        self._counters = counters
        self._plain_default_output = False
        self.fatal: OutputFailed | None = None  # set by a delivery report; the loop raises it
        # Set when a record of the open transaction failed (--exactly-once):
        # the loop aborts the transaction and reads every partition again.
        self.abort_reason: str | None = None
        # (alert, output) pairs a cluster refused as too large inside a
        # transaction: after the abort they are dead-lettered at once, so
        # the same record cannot abort every transaction after it.
        self._refused_as_too_large: set[tuple[str, str]] = set()
        # Records waiting for room in librdkafka's queue, in the order they must leave.
        self._backlog: deque[tuple[PartitionLedger, Entry, Record]] = deque()

    def prepare(self, create_topics: bool, partitions: int) -> None:
        """Check (or create) every output topic and load the output schemas."""
        self.producers.prepare(create_topics, partitions)
        self.encoders.prepare()
        self._plain_default_output = self.encoders.get("") is None  # --out takes the bytes as they are

    # -- records from answers -------------------------------------------------

    def records_of(self, entry: Entry, answer: worker_pb2.AlertResult) -> Resolution:
        """The resolution of an alert answered OK: its output records, or a dead letter saying why not."""
        message = entry.message
        source = (OUTPUT_SOURCE_HEADER, entry.alert_id.encode())
        outputs = answer.outputs
        if len(outputs) == 1 and self._plain_default_output:
            # The most common answer, a filter keeping its alert, without the
            # general path's steps: the input record goes to --out as it is.
            output = outputs[0]
            if output.forward_input and not output.route and not output.headers:
                headers = entry.headers
                return Resolution([Record("", message.value(), message.key(), headers + [source] if headers
                                          else [source])])
        records = []
        for output in outputs:
            route = output.route
            if route == DEAD_LETTER or route not in self.producers.buffers:
                reason = (f"the worker sent an output to route {route!r}, which is not bound to a buffer "
                          f"(bind it with --route {route}=kafka://HOST:PORT/TOPIC)")
                return dead_letter(entry, reason, self.stage)
            added = [(h.key, h.value) for h in output.headers]
            if output.forward_input:
                headers = list(entry.headers or []) + added + [source]
                value, content_type, key = message.value(), entry.content_type, message.key()
            else:
                content_type = output.content_type
                if content_type:
                    added.insert(0, ("content-type", content_type.encode()))
                headers = added + [source]
                value, key = output.value, (output.key if output.HasField("key") else None)
            encoder = self.encoders.get(route)
            if encoder is not None:
                try:
                    value = encoder.encode(value, content_type)
                except EncodeError as exc:
                    return dead_letter(entry, f"output for {self.producers.buffers[route].buffer} {exc.reason}",
                                       self.stage)
            records.append(Record(route, value, key, headers))
        return Resolution(records)

    # -- emission -------------------------------------------------------------

    def emit(self, ledger: PartitionLedger) -> None:
        """Produce the records of every alert of ``ledger`` that may leave now, in offset order."""
        counters = self._counters
        for entry in ledger.emittable():
            resolution = entry.resolution
            if resolution.dead_letter_reason is not None:
                counters.dead_lettered += 1
                log.warning("dead letter alert=%s reason=%r", entry.alert_id, resolution.dead_letter_reason)
            elif resolution.filtered:
                counters.filtered += 1
            else:
                counters.kept += 1
            for record in resolution.records:
                self._produce(ledger, entry, record)

    def _produce(self, ledger: PartitionLedger, entry: Entry, record: Record) -> None:
        if self._backlog:  # behind what already waits, to keep the order
            self._backlog.append((ledger, entry, record))
        elif not self._send(ledger, entry, record):
            self._backlog.append((ledger, entry, record))

    def _send(self, ledger: PartitionLedger, entry: Entry, record: Record) -> bool:
        """Produce one record; False if librdkafka's queue is full (it must be sent again later)."""
        callback = functools.partial(self._delivered, ledger, entry, record)
        if self._refused_as_too_large and (entry.alert_id, record.buffer_name) in self._refused_as_too_large:
            self._too_large(ledger, entry, record, "the cluster refused it before, in a transaction since aborted")
            return True
        try:
            self.producers.produce(record.buffer_name, record.value, record.key, record.headers, ledger.partition,
                                   callback)
        except QueueFull:
            return False
        except RecordTooLarge as exc:
            self._too_large(ledger, entry, record, str(exc))
        except AbortNeeded as exc:
            self.abort_reason = self.abort_reason or f"producing to {record.buffer_name or 'the output'} failed: {exc}"
        except OutputFailed as exc:
            self.fatal = self.fatal or exc
        return True

    def _drain_backlog(self) -> None:
        backlog = self._backlog
        while backlog and self.fatal is None and self.abort_reason is None:
            ledger, entry, record = backlog[0]
            if ledger.revoked:
                backlog.popleft()
                continue
            if not self._send(ledger, entry, record):
                return
            backlog.popleft()

    @property
    def waiting(self) -> int:
        """Records waiting for room in the producers' queues."""
        return len(self._backlog)

    def _too_large(self, ledger: PartitionLedger, entry: Entry, record: Record, why: str) -> None:
        """Replace a record its buffer cannot take by a dead letter (or a small one, if even that is too large)."""
        buffer = self.producers.buffers[record.buffer_name].buffer
        if record.buffer_name != DEAD_LETTER:
            reason = f"output to {buffer} is too large: {why}"
            log.warning("dead letter alert=%s reason=%r", entry.alert_id, reason)
            self._counters.dead_lettered += 1
            for dead in dead_letter(entry, reason, self.stage).records:
                self._produce(ledger, entry, dead)
            return
        reason = dict(record.headers).get(REASON_HEADER, b"").decode(errors="replace")
        size = len(record.value or b"")  # the alert's own bytes, as its input held them
        log.warning("dead letter too large alert=%s size=%d buffer=%s; writing a small one that names it",
                    entry.alert_id, size, buffer)
        summary = {"reason": reason, "source": entry.alert_id, "size": size,
                   "dead_letter": f"the record was too large for {buffer}: {why}"}
        self._produce(ledger, entry, Record(DEAD_LETTER, json.dumps(summary).encode(), record.key, [
            (REASON_HEADER, reason.encode()), (SOURCE_HEADER, entry.alert_id.encode()),
            (STAGE_HEADER, self.stage.encode()), (SIZE_HEADER, str(size).encode()),
            ("content-type", b"application/json")]))

    # -- delivery (reports are served by poll() and flush(), on the loop's thread) --

    def _delivered(self, ledger: PartitionLedger, entry: Entry, record: Record, err, _message) -> None:
        if ledger.revoked:
            return
        if err is None:
            ledger.acknowledge(entry)
            self._counters.produced += 1
            return
        buffer = self.producers.buffers[record.buffer_name].buffer
        if self.producers.transactional and not err.fatal():
            # Inside a transaction a failed record fails the transaction: it is
            # aborted and its alerts read again, rather than produced twice.
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                self._refused_as_too_large.add((entry.alert_id, record.buffer_name))
            self.abort_reason = self.abort_reason or f"a record for {buffer} failed: {err.str()}"
            return
        if err.fatal():
            self.fatal = self.fatal or OutputFailed(
                f"the producer for {buffer} failed for good: {err.str()}; stopping so that nothing is committed "
                "past it (starting the stage again resumes from its last commit)")
            return
        if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            self._too_large(ledger, entry, record, f"the cluster refused it: {err.str()}")
            return
        if err.retriable() or err.code() in TRANSIENT_DELIVERY_ERRORS:
            log.warning("output not acknowledged buffer=%s alert=%s reason=%r; producing it again",
                        buffer, entry.alert_id, err.str())
            self._produce(ledger, entry, record)
        elif record.buffer_name != DEAD_LETTER:
            reason = f"output to {buffer} refused: {err.str()}"
            log.warning("dead letter alert=%s reason=%r", entry.alert_id, reason)
            self._counters.dead_lettered += 1
            # The refused record is replaced by a dead letter, so the alert
            # still waits for exactly one more acknowledgement.
            for dead in dead_letter(entry, reason, self.stage).records:
                self._produce(ledger, entry, dead)
        else:
            self.fatal = self.fatal or OutputFailed(
                f"the dead-letter buffer {buffer} refused alert {entry.alert_id}: {err.str()}; "
                "stopping so that nothing is committed past it"
            )

    def forget_transaction(self) -> None:
        """The open transaction was aborted: nothing waiting belongs to a live alert any more."""
        self._backlog.clear()
        self.abort_reason = None

    def poll(self) -> None:
        """Serve delivery reports, then send what waited for room."""
        self.producers.poll()
        if self._backlog:
            self._drain_backlog()

    def flush(self, timeout: float) -> int:
        """Deliver everything, the backlog included, for up to ``timeout`` s; return how many records are left."""
        deadline = time.monotonic() + timeout
        while self._backlog and self.fatal is None and self.abort_reason is None and time.monotonic() < deadline:
            self.producers.poll(BACKLOG_WAIT_S)
            self._drain_backlog()
        return self.producers.flush(max(0.0, deadline - time.monotonic())) + len(self._backlog)
