"""Outputs: the records an answer makes, how they are encoded, and what their delivery means.

- **Records from answers.** Each output of an OK answer becomes a record for
  its buffer ("" for --out, or a route the worker names and --route binds):
  the input record itself for ``forward_input``, else the worker's value, key
  and headers. Every record carries ``x-alert-source``. An output to a route
  that no buffer is bound to, or that does not fit its buffer's Avro schema,
  sends the alert to the dead-letter buffer instead, with the reason.
- **Emission.** Records leave in offset order per input partition (the ledger
  yields them so) through the producers of kafka/producer.py.
- **Delivery.** An acknowledged record counts toward its alert's commit
  (offsets.py). A record the cluster is slow to take is produced again; one it
  refuses is replaced by a dead letter; a dead letter the dead-letter buffer
  refuses stops the stage, so that nothing is committed past it.
"""

from __future__ import annotations

import functools
import logging

from confluent_kafka import KafkaError

from alertsidecar.v1 import worker_pb2

from alert_sidecar.exceptions import EncodeError, OutputFailed
from alert_sidecar.formats.avro_outputs import OutputEncoders
from alert_sidecar.kafka.producer import Outputs
from alert_sidecar.stage.metrics import Counters
from alert_sidecar.stage.offsets import Entry, PartitionLedger, Record, Resolution
from alert_sidecar.stage.verdicts import DEAD_LETTER, OUTPUT_SOURCE_HEADER, dead_letter

log = logging.getLogger("alert_sidecar.stage")

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
                headers = message.headers()
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
                headers = list(message.headers() or []) + added + [source]
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
        callback = functools.partial(self._delivered, ledger, entry, record)
        self.producers.produce(record.buffer_name, record.value, record.key, record.headers, ledger.partition,
                               callback)

    # -- delivery (reports are served by poll() and flush(), on the loop's thread) --

    def _delivered(self, ledger: PartitionLedger, entry: Entry, record: Record, err, _message) -> None:
        if ledger.revoked:
            return
        if err is None:
            ledger.acknowledge(entry)
            self._counters.produced += 1
            return
        buffer = self.producers.buffers[record.buffer_name].buffer
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
            self.fatal = OutputFailed(
                f"the dead-letter buffer {buffer} refused alert {entry.alert_id}: {err.str()}; "
                "stopping so that nothing is committed past it"
            )

    def poll(self) -> None:
        self.producers.poll()

    def flush(self, timeout: float) -> int:
        return self.producers.flush(timeout)
