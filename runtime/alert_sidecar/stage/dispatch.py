"""Dispatching: batches of each partition's ready alerts to the workers, in the form each worker takes.

A batch is the next ready alerts of one partition (offsets.py ``take``), up to
the batch size and ``max_batch_bytes``, sent to the least busy healthy worker
(workers/pool.py). With ordering ``partition`` a partition has one batch in
flight, so a worker sees it in order; ``key`` and ``none`` let several run.
Alerts the worker wants decoded go through the decoder processes first
(formats/decoding.py) while the worker's slot is held; Avro alerts passed as
they are travel with their writer schemas.
"""

from __future__ import annotations

import itertools
import logging
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from alert_sidecar.formats.content import AVRO_CONFLUENT, JSON
from alert_sidecar.formats.decoding import DecoderPool, schema_id_of
from alert_sidecar.formats.schemas import SchemaRegistryUnavailable, SchemaSource, UnknownSchemaError
from alert_sidecar.stage.config import Ordering, StageConfig
from alert_sidecar.stage.negotiation import Negotiation, Plan
from alert_sidecar.stage.offsets import Entry, PartitionLedger
from alert_sidecar.stage.outputs import StageOutputs
from alert_sidecar.stage.verdicts import Verdicts
from alert_sidecar.workers.clients import Batch, WorkerClient
from alert_sidecar.workers.pool import WorkerPool
from alert_sidecar.workers.wire import BatchEncoder

log = logging.getLogger("alert_sidecar.stage")


@dataclass
class Decoded:
    """A batch whose alerts the decoder processes have finished with (posted on the pool's event queue)."""

    batch: Batch
    entries: list[Entry]
    future: Future
    generation: int  # of the decoder pool that took it


class Dispatcher:
    """Forms batches, prepares them for their worker and sends them (on the loop's thread)."""

    def __init__(self, config: StageConfig, pool: WorkerPool, negotiation: Negotiation, verdicts: Verdicts,
                 outputs: StageOutputs, schemas: SchemaSource) -> None:
        self._config = config
        self._pool = pool
        self._negotiation = negotiation
        self._verdicts = verdicts
        self._outputs = outputs
        self._schemas = schemas
        self.batch_size = config.batch_size  # lowered to what the workers prefer once they are ready
        self._batch_ids = itertools.count(1)
        self._rotation = 0
        self._wire: dict[tuple[str, int], BatchEncoder] = {}
        self._schema_texts: dict[int, str | None] = {}
        self._warned_content_types: set[str] = set()
        self._decoders: DecoderPool | None = None  # started only if a worker needs decoded alerts

    def dispatch(self, ledgers: list[PartitionLedger], lingering: bool) -> None:
        """Send every batch that is due now; ``lingering`` lets a short batch wait to fill."""
        if not ledgers or not self._pool.any_healthy:
            return
        now = time.monotonic()
        self._rotation = (self._rotation + 1) % len(ledgers)
        ordering = self._config.ordering
        one_per_partition = ordering is Ordering.PARTITION
        linger = self._config.batch_linger if lingering else 0.0
        rotated = ledgers[self._rotation:] + ledgers[: self._rotation]
        if any(ledger.suspect_next for ledger in rotated):
            self._dispatch_suspects(rotated, now)
            return
        progress = True
        while progress:  # with ordering key or none, a partition may have several batches in flight
            progress = False
            for ledger in rotated:
                if not ledger.ready or (one_per_partition and ledger.in_flight):
                    continue
                if ledger.ready < self.batch_size and now - ledger.oldest_ready_at() < linger:
                    continue  # a short wait for a fuller batch: fewer, larger calls
                worker = self._pool.pick(self._config.max_in_flight)
                if worker is None:
                    return
                breaker = self._verdicts.breaker
                if not breaker.allows(now):
                    return  # the circuit is open: nothing goes out but its probe
                entries = ledger.take(now, self.batch_size, self._config.max_batch_bytes,
                                      by_key=ordering is Ordering.KEY)
                if entries:
                    progress = True
                    self._dispatch_batch(worker, ledger, entries)
                else:
                    breaker.unused_probe()

    def _dispatch_suspects(self, ledgers: list[PartitionLedger], now: float) -> None:
        """Alerts in flight when a worker died go out one at a time, each alone on an idle worker.

        Until they are answered nothing else is sent, so that a worker that
        dies again names the alert that kills it (verdicts.py counts a try
        for it only then), and no other alert is blamed. It costs a few
        hundred single calls after a worker's death: a second or so.
        """
        for ledger in ledgers:
            if not ledger.suspect_next or ledger.in_flight:
                continue
            if not self._verdicts.breaker.allows(now):
                return
            worker = self._pool.pick(self._config.max_in_flight, alone=True)
            if worker is None:
                return  # the workers are busy: wait for them to be idle
            entries = ledger.take(now, 1, self._config.max_batch_bytes)
            if entries:
                self._dispatch_batch(worker, ledger, entries, alone=True)
            else:
                self._verdicts.breaker.unused_probe()

    def _dispatch_batch(self, worker: WorkerClient, ledger: PartitionLedger, entries: list[Entry],
                        alone: bool = False) -> None:
        entries = self._refuse_unaccepted(ledger, entries)
        if not entries:
            return
        batch = Batch(next(self._batch_ids), ledger, entries, [e.alert_id for e in entries], alone=alone)
        treatment = self._negotiation.treatment
        to_decode = [e for e in entries if e.payload is None and treatment(e.content_type).plan is Plan.DECODE]
        if not to_decode:
            self._send(worker, batch)
            return
        self._pool.hold(worker, batch)  # the worker's slot is kept while its alerts are decoded
        decoders = self._decoder_pool()
        future = decoders.submit(
            [e.message.value() for e in to_decode], [e.content_type for e in to_decode], self._negotiation.fields)
        generation = decoders.generation
        events = self._pool.events
        future.add_done_callback(lambda f, b=batch, d=to_decode, g=generation: events.put(Decoded(b, d, f, g)))

    def decoded(self, decoded: Decoded) -> None:
        """Go on with a batch once its alerts are decoded: send what is ready, settle the rest."""
        batch = decoded.batch
        worker = batch.worker
        self._pool.release(worker, batch)  # the slot held while decoding
        ledger = batch.ledger
        if ledger.revoked:
            return
        try:
            results = decoded.future.result()  # any other exception is a bug of the program: stay loud
        except (BrokenProcessPool, CancelledError) as exc:
            self._decoder_pool().restart(decoded.generation)
            self._verdicts.decoder_died(batch, exc)
            self._outputs.emit(ledger)
            return
        waiting = self._verdicts.decoded(batch, decoded.entries, results)
        if waiting:
            batch.entries = waiting
            batch.alert_ids = [e.alert_id for e in waiting]
            self._send(worker, batch)
        self._outputs.emit(ledger)

    def _decoder_pool(self) -> DecoderPool:
        if self._decoders is None:
            self._decoders = DecoderPool(self._config.decoders, self._schemas)
            fields = self._negotiation.fields
            log.info("decoding alerts for the worker processes=%d fields=%s", self._config.decoders,
                     ",".join(fields) if fields else "all")
        return self._decoders

    def _send(self, worker: WorkerClient, batch: Batch) -> None:
        schemas = {}
        for entry in batch.entries:
            if entry.payload is None and entry.content_type == AVRO_CONFLUENT:
                schema_id = schema_id_of(entry.message.value())
                if schema_id is not None:
                    entry.schema_id = schema_id
                    text = self._schema_text(schema_id)
                    if text is not None:
                        schemas[schema_id] = text
        ledger = batch.ledger
        key = (ledger.topic, ledger.partition)
        encoder = self._wire.get(key)
        if encoder is None:
            encoder = self._wire[key] = BatchEncoder(ledger.topic, ledger.partition)
        self._pool.send(worker, batch, encoder.encode(batch.id, _alert_fields(batch.entries), schemas))

    def _schema_text(self, schema_id: int) -> str | None:
        """The writer schema to hand the worker with raw Avro alerts; None if no source knows it.

        Best effort: a worker that passes alerts on without decoding them must
        not stop on an id nobody knows, so an unknown id is only logged once.
        """
        if schema_id not in self._schema_texts:
            try:
                self._schema_texts[schema_id] = self._schemas.schema_text(schema_id)
            except UnknownSchemaError as exc:
                log.warning("schema unknown schema_id=%d reason=%r; alerts go to the worker without it",
                            schema_id, str(exc))
                self._schema_texts[schema_id] = None
            except SchemaRegistryUnavailable as exc:
                log.warning("schema registry unavailable schema_id=%d reason=%r", schema_id, str(exc))
                return None  # asked again with the next batch
        return self._schema_texts[schema_id]

    def _refuse_unaccepted(self, ledger: PartitionLedger, entries: list[Entry]) -> list[Entry]:
        negotiation = self._negotiation
        if negotiation.accepts_all:
            return entries
        kept = []
        for entry in entries:
            treatment = negotiation.treatment(entry.content_type)
            if treatment.plan is not Plan.REFUSE:
                kept.append(entry)
                continue
            if entry.content_type not in self._warned_content_types:
                self._warned_content_types.add(entry.content_type)
                log.warning("alerts refused content_type=%s reason=%r", entry.content_type, treatment.reason)
            self._verdicts.refuse(ledger, entry, treatment.reason)
        if len(kept) < len(entries):
            self._outputs.emit(ledger)
        return kept

    def close(self) -> None:
        if self._decoders is not None:
            self._decoders.close()


def _alert_fields(entries: list[Entry]):
    """What wire.BatchEncoder writes of each alert: the contract's Alert fields, in its order."""
    for entry in entries:
        message = entry.message
        timestamp_type, timestamp = message.timestamp()
        payload = entry.payload
        if payload is None:
            value, content_type, source_content_type = message.value() or b"", entry.content_type, ""
        else:  # decoded by the sidecar for this worker
            value, content_type, source_content_type = payload, JSON, entry.content_type
        yield (entry.alert_id, entry.offset, timestamp if timestamp_type else 0, message.key(), value, content_type,
               entry.headers, entry.attempts, source_content_type, entry.schema_id)
