"""One stage: input buffer -> workers -> output buffers, at least once.

The loop is a few named steps, all on one thread:

1. fetch alerts from the input buffer and put them in their partition's ledger;
2. dispatch batches to healthy workers (one batch in flight per partition, so a
   worker sees each partition in order);
3. collect answers: resolve alerts, schedule retries, build dead letters;
4. emit resolved alerts in offset order to the producers;
5. commit the finished prefix of each partition (offsets.py holds the rule);
6. pause fetching when too much is held, resume when it drains.

Rebalances, worker failures and stopping all come back to the same rule: only
finished alerts are committed; the rest are read again by whoever owns their
partition next.
"""

from __future__ import annotations

import functools
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool
import os
import itertools
import json
import logging
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from confluent_kafka import KafkaError

from alertsidecar.v1 import worker_pb2

from alert_sidecar.kafka.buffers import Buffer
from alert_sidecar.kafka.consumer import InputConsumer
from alert_sidecar.formats.decoding import DecoderPool, schema_id_of
from alert_sidecar.workers.pool import STREAM, Batch, ContractBroken, WorkerPool, describe_rpc_error
from alert_sidecar.exceptions import ConfigError, OutputFailed, WorkerError
from alert_sidecar.formats.content import AVRO_CONFLUENT, AVRO_OCF, JSON, accepted, content_type_for, sniff
from alert_sidecar.formats.avro_outputs import OutputEncoders
from alert_sidecar.stage.metrics import Counters, Rate
from alert_sidecar.stage.offsets import PartitionLedger, Record, Resolution, State
from alert_sidecar.formats.avro_outputs import EncodeError
from alert_sidecar.kafka.producer import Outputs
from alert_sidecar.stage.verdicts import DEAD_LETTER, OUTPUT_SOURCE_HEADER, RetryPolicy, dead_letter
from alert_sidecar.workers.wire import BatchEncoder

log = logging.getLogger("alert_sidecar.stage")

# Delivery errors worth producing again rather than dead-lettering: the output
# cluster is slow or away, not refusing the record.
_TRANSIENT_DELIVERY_ERRORS = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
}


@dataclass
class StageConfig:
    input: Buffer
    output: Buffer
    group: str
    workers: list[str]
    dead_letter: Buffer
    routes: dict[str, Buffer] = field(default_factory=dict)
    kafka_config: dict[str, str] = field(default_factory=dict)
    # 100 alerts per call: FACTS.md measures one call per alert capping near
    # 2,000 alerts/s from Python, and 100 per call well past 100,000.
    batch_size: int = 100
    # How long a partition's batch may wait to fill before it is sent short:
    # 5 ms turns a trickle into fewer, fuller calls and costs nothing against
    # a 60 s latency budget; a visit's burst fills batches without waiting.
    batch_linger: float = 0.005
    # 16 MB per call keeps a batch of LSST-sized alerts (~100 KB) whole and
    # bounds what one call holds in memory on both sides.
    max_batch_bytes: int = 16 * 1024 * 1024
    # Batches in flight per worker: enough to overlap the network with the
    # worker's processing without queueing much behind a slow worker.
    max_in_flight: int = 4
    # What the worker may see out of order: "partition" (nothing: one batch in
    # flight per partition), "key" (alerts of one record key stay in order,
    # other keys overtake), "none" (batches of a partition run concurrently).
    # Outputs always leave in offset order per partition, and only the
    # finished prefix of a partition is ever committed.
    ordering: str = "partition"
    # What the stage may hold before it pauses fetching: a 40,000-alert peak
    # visit of ~100 KB alerts would be 4 GB. 128 MB is about 2,000 LSST-sized
    # alerts, more than a second of work for a stage, and keeps the sidecar
    # under 500 MB on a peak visit: each held alert is also in librdkafka's
    # producer queue until acknowledged, and in the batch being sent
    # (make bench measured 495 MB of peak RSS with 256 MB).
    max_buffered_alerts: int = 20000
    max_buffered_bytes: int = 128 * 1024 * 1024
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    worker_timeout: float = 30.0
    worker_wait: float = 30.0
    drain_timeout: float = 30.0
    revoke_timeout: float = 10.0
    commit_interval: float = 1.0
    progress_interval: float = 10.0
    start_from: str = "earliest"
    create_topics: bool = True
    stats_file: Path | None = None
    schema_registry: str | None = None
    schema_dir: str | None = None
    # How batches reach a gRPC worker: one ProcessStream call per worker
    # ("stream"), or a ProcessBatch call per batch ("unary").
    worker_call: str = STREAM
    # Processes that decode alerts for workers that ask for JSON. Decoding an
    # LSST-sized alert costs 1.1 to 1.6 ms (FACTS.md): one process caps a stage
    # near 600 alerts/s, so by default there is one per core.
    decoders: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def outputs(self) -> dict[str, Buffer]:
        return {"": self.output, DEAD_LETTER: self.dead_letter, **self.routes}


class Stage:
    """The sidecar of one stage."""

    def __init__(self, config: StageConfig, supervisor=None) -> None:
        self.config = config
        self.counters = Counters()
        self.ledgers: dict[tuple[str, int], PartitionLedger] = {}
        self._supervisor = supervisor  # worker_process.Supervisor when the sidecar started its workers
        self._fixed_content_type = content_type_for(config.input.format)
        from alert_sidecar.formats.schemas import schema_source

        self.schemas = schema_source(config.schema_registry, config.schema_dir)
        self._decoders: DecoderPool | None = None  # started only if a worker needs decoded alerts
        self._plans: dict[str, str] = {}  # input content type -> PASS, DECODE, or why it is refused
        self._fields: tuple[str, ...] | None = None
        self._schema_texts: dict[int, str | None] = {}
        self.encoders = OutputEncoders(config.outputs, config.schema_registry, self.schemas)
        self.pool = WorkerPool(config.workers, config.worker_timeout, self._check_description, config.worker_call)
        self._wire: dict[tuple[str, int], BatchEncoder] = {}
        self._plain_default_output = False
        self.consumer = InputConsumer(config.input, config.group, config.start_from,
                                      {**config.kafka_config, "on_commit": self._on_commit})
        self.outputs = Outputs(config.outputs, config.kafka_config)
        self._batch_ids = itertools.count(1)
        self._batch_size = config.batch_size
        self._accepts: list[str] = []
        self._accepts_all = True
        self._stop_requested = False
        self._fatal: BaseException | None = None
        self._broken = False  # a worker broke the contract or an output failed: settle nothing more
        self._paused_all = False
        self._rotation = 0
        self._next_commit = 0.0
        self._next_progress = 0.0
        self._rate = Rate()
        self._warned_content_types: set[str] = set()

    # -- lifecycle ---------------------------------------------------------

    def request_stop(self) -> None:
        """Stop fetching, finish what is in flight, commit, return (SIGTERM, SIGINT)."""
        self._stop_requested = True

    def run(self) -> Counters:
        config = self.config
        partitions = self.consumer.check_reachable()
        self.outputs.prepare(config.create_topics, partitions)
        self.encoders.prepare()
        self._plain_default_output = self.encoders.get("") is None  # --out takes the bytes as they are
        # Join the group while the worker starts: each takes about a second and
        # neither needs the other. librdkafka joins in its own thread; the
        # assignment is taken on the first fetch, once the worker is ready.
        self.consumer.subscribe(self._on_assign, self._on_revoke, self._on_lost)
        try:
            self.pool.wait_healthy(config.worker_wait, self._still_waiting)
        except BaseException:
            self._close(drain=False)
            raise
        if self._stop_requested:
            self._close(drain=False)
            return self.counters
        preferred = [w.description.preferred_batch_size for w in self.pool.workers if w.description]
        self._batch_size = min([config.batch_size, *[p for p in preferred if p > 0]])
        self.pool.start_watching()
        log.info(
            "stage started in=%s out=%s dead_letter=%s routes=%s group=%s workers=%s batch_size=%d",
            config.input, config.output, config.dead_letter,
            ",".join(f"{k}={v}" for k, v in config.routes.items()) or "-",
            config.group, ",".join(config.workers), self._batch_size,
        )
        self._next_progress = time.monotonic() + config.progress_interval
        drain = True
        try:
            while not self._stop_requested:
                self._step()
        except (WorkerError, OutputFailed):
            drain = False  # never send more to a broken worker; commit what is finished
            self._broken = True
            raise
        finally:
            self._close(drain=drain)
        return self.counters

    def _still_waiting(self) -> bool:
        if self._supervisor is not None:
            self._supervisor.check_started()
        return self._stop_requested

    def _step(self) -> None:
        # While answers are due, fetch without blocking and wait on the answers
        # instead; otherwise block briefly in fetch (alerts waiting only for a
        # healthy worker or a retry backoff can wait 50 ms).
        busy = self.pool.in_flight > 0
        if busy:
            timeout = 0.0
        elif any(l.ready for l in self.ledgers.values()):
            timeout = self.config.batch_linger  # wake up when a lingering batch is due
        else:
            timeout = 0.05
        messages = self.consumer.fetch(max(self._batch_size * 2, 500), timeout=timeout)
        self._intake(messages)
        self._dispatch()
        self._collect(timeout=0.002 if self.pool.in_flight else 0)
        self.outputs.poll()
        now = time.monotonic()
        if now >= self._next_commit:
            self._commit(asynchronous=True)
            self.pool.expire(now)
            self._next_commit = now + self.config.commit_interval
        self._apply_backpressure()
        if now >= self._next_progress:
            self._progress()
            self._next_progress = now + self.config.progress_interval
        if self._supervisor is not None:
            self._supervisor.supervise()
        if self.pool.fatal is not None:
            raise self.pool.fatal
        if self._fatal is not None:
            raise self._fatal

    def _close(self, drain: bool) -> None:
        assigned = list(self.ledgers)
        self.consumer.pause(assigned)  # stop fetching
        if drain and assigned:
            settled = self._settle(assigned, time.monotonic() + self.config.drain_timeout)
            if not settled:
                log.warning("drain timed out after %g s; unfinished alerts stay uncommitted and will be read again",
                            self.config.drain_timeout)
        left = self.outputs.flush(min(10.0, self.config.drain_timeout))
        if left:
            log.warning("%d output records not acknowledged at stop; their alerts stay uncommitted", left)
        self._commit(asynchronous=False)
        self.consumer.close()
        self.pool.close()
        if self._decoders is not None:
            self._decoders.close()
        c = self.counters
        log.info(
            "stage stopped consumed=%d kept=%d filtered=%d dead_lettered=%d produced=%d retried=%d resent=%d abandoned=%d",
            c.consumed, c.kept, c.filtered, c.dead_lettered, c.produced, c.retried, c.resent, c.abandoned,
        )
        if self.config.stats_file:
            self.config.stats_file.write_text(json.dumps(c.as_dict(), indent=2) + "\n")

    # -- 1. fetch ----------------------------------------------------------

    def _intake(self, messages: list) -> None:
        now = time.monotonic()
        for message in messages:
            ledger = self.ledgers.get((message.topic(), message.partition()))
            if ledger is None:
                continue  # a partition revoked since the fetch: its new owner reads it
            value = message.value()
            content_type = self._fixed_content_type or sniff(value)
            ledger.append(message, message.offset(), len(value) if value else 0, content_type, now)
        self.counters.consumed += len(messages)

    # -- 2. dispatch -------------------------------------------------------

    def _dispatch(self) -> None:
        if not self.pool.any_healthy:
            return
        ledgers = list(self.ledgers.values())
        if not ledgers:
            return
        now = time.monotonic()
        self._rotation = (self._rotation + 1) % len(ledgers)
        ordering = self.config.ordering
        linger = 0.0 if self._stop_requested else self.config.batch_linger
        progress = True
        while progress:  # with ordering key or none, a partition may have several batches in flight
            progress = False
            for ledger in ledgers[self._rotation:] + ledgers[: self._rotation]:
                if not ledger.ready or (ordering == "partition" and ledger.in_flight):
                    continue  # ordering partition: one batch in flight, the worker sees the partition in order
                if ledger.ready < self._batch_size and now - ledger.oldest_ready_at() < linger:
                    continue  # a short wait for a fuller batch: fewer, larger calls
                worker = self.pool.pick(self.config.max_in_flight)
                if worker is None:
                    return
                entries = ledger.take(now, self._batch_size, self.config.max_batch_bytes, by_key=ordering == "key")
                if entries:
                    progress = True
                    self._dispatch_batch(worker, ledger, entries)

    def _dispatch_batch(self, worker, ledger: PartitionLedger, entries: list) -> None:
        entries = self._refuse_unaccepted(ledger, entries)
        if not entries:
            return
        batch = Batch(next(self._batch_ids), ledger, entries, [e.alert_id for e in entries])
        to_decode = [e for e in entries if e.payload is None and self._plan(e.content_type) == DECODE]
        if not to_decode:
            self._send(worker, batch)
            return
        # The worker's slot is held while the alerts are decoded in the pool.
        worker.in_flight += 1
        batch.worker = worker
        decoders = self._decoder_pool()
        future = decoders.submit(
            [e.message.value() for e in to_decode], [e.content_type for e in to_decode], self._fields)
        generation = decoders.generation
        future.add_done_callback(
            lambda f, b=batch, d=to_decode, g=generation: self.pool.completions.put(Decoded(b, d, f, g)))

    def _decoder_pool(self) -> DecoderPool:
        if self._decoders is None:
            self._decoders = DecoderPool(self.config.decoders, self.schemas)
            log.info("decoding alerts for the worker processes=%d fields=%s", self.config.decoders,
                     ",".join(self._fields) if self._fields else "all")
        return self._decoders

    def _send(self, worker, batch: Batch) -> None:
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
        worker.send(batch, encoder.encode(batch.id, _alert_fields(batch.entries), schemas))

    def _schema_text(self, schema_id: int) -> str | None:
        """The writer schema to hand the worker with raw Avro alerts; None if no source knows it.

        Best effort: a worker that passes alerts on without decoding them must
        not stop on an id nobody knows, so an unknown id is only logged once.
        """
        if schema_id not in self._schema_texts:
            from alert_sidecar.formats.schemas import SchemaRegistryUnavailable, UnknownSchemaError

            try:
                self._schema_texts[schema_id] = self.schemas.schema_text(schema_id)
            except UnknownSchemaError as exc:
                log.warning("schema unknown schema_id=%d reason=%r; alerts go to the worker without it",
                            schema_id, str(exc))
                self._schema_texts[schema_id] = None
            except SchemaRegistryUnavailable as exc:
                log.warning("schema registry unavailable schema_id=%d reason=%r", schema_id, str(exc))
                return None  # asked again with the next batch
        return self._schema_texts[schema_id]

    def _refuse_unaccepted(self, ledger: PartitionLedger, entries: list) -> list:
        if self._accepts_all:
            return entries
        kept = []
        for entry in entries:
            plan = self._plan(entry.content_type)
            if plan in (PASS, DECODE):
                kept.append(entry)
                continue
            if entry.content_type not in self._warned_content_types:
                self._warned_content_types.add(entry.content_type)
                log.warning("alerts refused content_type=%s reason=%r", entry.content_type, plan)
            ledger.resolve(entry, dead_letter(entry, plan, self.config.group))
        if len(kept) < len(entries):
            self._emit(ledger)
        return kept

    def _plan(self, content_type: str) -> str:
        """PASS the alert as it is, DECODE it to JSON for the worker, or the reason it cannot be given."""
        plan = self._plans.get(content_type)
        if plan is None:
            accepts = self._accepts
            if self._accepts_all or accepted(content_type, accepts):
                plan = PASS
            elif JSON in accepts and content_type in (AVRO_CONFLUENT, AVRO_OCF):
                plan = DECODE
            else:
                plan = (f"the worker accepts {', '.join(accepts)}; the sidecar cannot make any of them from "
                        f"{content_type} (set the input buffer's format if it was guessed wrongly)")
            self._plans[content_type] = plan
        return plan

    # -- 3. collect --------------------------------------------------------

    def _collect(self, timeout: float) -> None:
        completions = self.pool.completions
        try:
            completion = completions.get(timeout=timeout) if timeout > 0 else completions.get_nowait()
        except queue.Empty:
            return
        while True:
            self._answer(completion)
            try:
                completion = completions.get_nowait()
            except queue.Empty:
                return

    def _answer(self, completion) -> None:
        if isinstance(completion, Decoded):
            self._after_decoding(completion)
            return
        batch = completion.batch
        batch.worker.in_flight -= 1
        ledger = batch.ledger
        if ledger.revoked:
            return  # its alerts were abandoned; the partition's new owner reads them again
        if completion.error is not None:
            self._call_failed(batch, completion.error)
        else:
            self._resolve(batch, completion.result)
        self._emit(ledger)

    def _after_decoding(self, decoded: "Decoded") -> None:
        batch = decoded.batch
        worker = batch.worker
        worker.in_flight -= 1  # the slot held while decoding
        ledger = batch.ledger
        if ledger.revoked:
            return
        try:
            results = decoded.future.result()  # any other exception is a bug of the program: stay loud
        except (BrokenProcessPool, CancelledError) as exc:
            # A decoder process died (killed, or crashed on these bytes): count
            # a try, so that an alert that kills decoders ends as a dead letter.
            log.warning("decoder process died alerts=%d; restarting the decoders", len(batch.entries))
            self._decoder_pool().restart(decoded.generation)
            self._retry(ledger, [e for e in batch.entries if e.state is State.IN_FLIGHT],
                        f"the decoder process died while decoding this batch ({exc})")
            self._emit(ledger)
            return
        transient = None
        for entry, converted in zip(decoded.entries, results):
            if converted.transient:
                transient = converted.error
            elif converted.error is not None:
                entry.schema_id = converted.schema_id or 0
                ledger.resolve(entry, dead_letter(entry, converted.error, self.config.group))
            else:
                entry.payload = converted.payload
                entry.schema_id = converted.schema_id or 0
        waiting = [e for e in batch.entries if e.state is State.IN_FLIGHT]
        if transient is not None:
            # A registry that is down is not the alerts' fault: hold them, in
            # order, and try again shortly, without counting a retry.
            log.warning("holding alerts=%d reason=%r; trying again in 2 s", len(waiting), transient)
            ledger.give_back(waiting, not_before=time.monotonic() + 2.0)
        elif waiting:
            batch.entries = waiting
            batch.alert_ids = [e.alert_id for e in waiting]
            self._send(worker, batch)
        self._emit(ledger)

    def _call_failed(self, batch: Batch, err: grpc.RpcError) -> None:
        code = err.code()
        worker = batch.worker
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            # The worker is gone, not the alerts at fault: send them again once
            # it is back, without counting a retry.
            if worker.healthy:
                log.warning("worker unavailable address=%s problem=%r; pausing until it is healthy again",
                            worker.address, describe_rpc_error(err))
            worker.mark_unhealthy(describe_rpc_error(err))
            batch.ledger.give_back(batch.entries)
            self.counters.resent += len(batch.entries)
            return
        if isinstance(err, ContractBroken) or code == grpc.StatusCode.UNIMPLEMENTED or (
                code == grpc.StatusCode.INTERNAL and "eserializ" in (err.details() or "")):
            raise WorkerError(
                f"worker at {worker.address} broke the contract on "
                f"{'ProcessStream' if worker.call == STREAM else 'ProcessBatch'}: {describe_rpc_error(err)}; "
                "it must answer each AlertBatch with one alertsidecar.v1.BatchResult of the same batch_id"
            )
        self._retry(batch.ledger, batch.entries, f"worker call failed: {describe_rpc_error(err)}")

    def _resolve(self, batch: Batch, result: worker_pb2.BatchResult) -> None:
        self.counters.batches += 1
        answers = result.results
        if [answer.id for answer in answers] != batch.alert_ids:  # the usual case is one answer each, in order
            answers = self._answers_by_id(batch, answers)
        ledger = batch.ledger
        retries = []
        for entry, answer in zip(batch.entries, answers):
            verdict = answer.verdict
            if verdict == _OK:
                ledger.resolve(entry, self._outputs_of(entry, answer))
            elif verdict == _DEAD_LETTER:
                reason = answer.error or "the worker answered DEAD_LETTER without saying why"
                ledger.resolve(entry, dead_letter(entry, reason, self.config.group))
            else:
                # RETRY, and also UNSPECIFIED or a value this sidecar does not
                # know: the contract says those mean RETRY, so nothing is lost.
                entry.last_error = answer.error or f"the worker answered {_verdict_name(verdict)}"
                retries.append(entry)
        if retries:
            self._retry(ledger, retries, None)

    def _answers_by_id(self, batch: Batch, answers) -> list:
        """The answers in the order of the batch's alerts, or WorkerError if they are not one per alert."""
        worker = batch.worker
        by_id: dict[str, worker_pb2.AlertResult] = {}
        for answer in answers:
            if answer.id in by_id:
                raise WorkerError(f"worker at {worker.address} answered alert {answer.id} twice in one batch; "
                                  "every alert needs exactly one AlertResult")
            by_id[answer.id] = answer
        expected = set(batch.alert_ids)
        if by_id.keys() != expected:
            missing = sorted(expected - by_id.keys())
            unknown = sorted(by_id.keys() - expected)
            raise WorkerError(
                f"worker at {worker.address} answered a batch of {len(expected)} alerts with "
                f"{len(by_id)} results (missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                f"not sent {unknown[:3]}{'...' if len(unknown) > 3 else ''}); every alert needs exactly one "
                "AlertResult with its id"
            )
        return [by_id[alert_id] for alert_id in batch.alert_ids]

    def _retry(self, ledger: PartitionLedger, entries: list, reason: str | None) -> None:
        policy = self.config.retry
        again = []
        for entry in entries:
            entry.attempts += 1
            if reason is not None:
                entry.last_error = reason
            if policy.exhausted(entry.attempts):
                why = f"gave up after {entry.attempts} attempts: {entry.last_error}"
                ledger.resolve(entry, dead_letter(entry, why, self.config.group))
            else:
                again.append(entry)
        if again:
            self.counters.retried += len(again)
            first = again[0]
            ledger.give_back(again, not_before=time.monotonic() + policy.backoff(first.attempts))
            log.info("retrying alerts=%d first=%s attempt=%d reason=%r",
                     len(again), first.alert_id, first.attempts, first.last_error)

    def _outputs_of(self, entry, answer: worker_pb2.AlertResult) -> Resolution:
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
            if route == DEAD_LETTER or route not in self.outputs.buffers:
                reason = (f"the worker sent an output to route {route!r}, which is not bound to a buffer "
                          f"(bind it with --route {route}=kafka://HOST:PORT/TOPIC)")
                return dead_letter(entry, reason, self.config.group)
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
                    return dead_letter(entry, f"output for {self.outputs.buffers[route].buffer} {exc.reason}",
                                       self.config.group)
            records.append(Record(route, value, key, headers))
        return Resolution(records)

    # -- 4. emit -----------------------------------------------------------

    def _emit(self, ledger: PartitionLedger) -> None:
        for entry in ledger.emittable():
            resolution = entry.resolution
            if resolution.dead_letter_reason is not None:
                self.counters.dead_lettered += 1
                log.warning("dead letter alert=%s reason=%r", entry.alert_id, resolution.dead_letter_reason)
            elif resolution.filtered:
                self.counters.filtered += 1
            else:
                self.counters.kept += 1
            for record in resolution.records:
                self._produce(ledger, entry, record)

    def _produce(self, ledger: PartitionLedger, entry, record: Record) -> None:
        callback = functools.partial(self._delivered, ledger, entry, record)
        self.outputs.produce(record.buffer_name, record.value, record.key, record.headers, ledger.partition, callback)

    def _delivered(self, ledger: PartitionLedger, entry, record: Record, err, _message) -> None:
        if ledger.revoked:
            return
        if err is None:
            ledger.acknowledge(entry)
            self.counters.produced += 1
            return
        buffer = self.outputs.buffers[record.buffer_name].buffer
        if err.retriable() or err.code() in _TRANSIENT_DELIVERY_ERRORS:
            log.warning("output not acknowledged buffer=%s alert=%s reason=%r; producing it again",
                        buffer, entry.alert_id, err.str())
            self._produce(ledger, entry, record)
        elif record.buffer_name != DEAD_LETTER:
            reason = f"output to {buffer} refused: {err.str()}"
            log.warning("dead letter alert=%s reason=%r", entry.alert_id, reason)
            self.counters.dead_lettered += 1
            # The refused record is replaced by a dead letter, so the alert
            # still waits for exactly one more acknowledgement.
            for dead in dead_letter(entry, reason, self.config.group).records:
                self._produce(ledger, entry, dead)
        else:
            self._fatal = OutputFailed(
                f"the dead-letter buffer {buffer} refused alert {entry.alert_id}: {err.str()}; "
                "stopping so that nothing is committed past it"
            )

    # -- 5. commit ---------------------------------------------------------

    def _commit(self, asynchronous: bool, only: list[tuple[str, int]] | None = None) -> None:
        offsets = {}
        for key in only if only is not None else list(self.ledgers):
            ledger = self.ledgers.get(key)
            if ledger is None:
                continue
            target = ledger.advance()
            if target is not None:
                offsets[key] = target
        for key, offset in self.consumer.commit(offsets, asynchronous):
            if not asynchronous and key in self.ledgers:
                self.ledgers[key].mark_committed(offset)

    def _on_commit(self, err, partitions) -> None:
        if err is not None:
            log.warning("commit failed reason=%r; it is repeated with the next one", err.str())
            return
        for tp in partitions:
            ledger = self.ledgers.get((tp.topic, tp.partition))
            if ledger is not None and tp.error is None:
                ledger.mark_committed(tp.offset)

    # -- 6. backpressure ---------------------------------------------------

    def _apply_backpressure(self) -> None:
        alerts = sum(l.waiting for l in self.ledgers.values())
        held = sum(l.buffered_bytes for l in self.ledgers.values())
        limit_alerts, limit_bytes = self.config.max_buffered_alerts, self.config.max_buffered_bytes
        if not self._paused_all and (alerts >= limit_alerts or held >= limit_bytes):
            self._paused_all = True
            log.info("pausing fetch held_alerts=%d held_bytes=%d workers_healthy=%s",
                     alerts, held, self.pool.any_healthy)
        elif self._paused_all and alerts < limit_alerts // 2 and held < limit_bytes // 2:
            self._paused_all = False
            self.consumer.resume(list(self.ledgers))
            log.info("resuming fetch held_alerts=%d held_bytes=%d", alerts, held)
        if self._paused_all:
            self.consumer.pause(list(self.ledgers))  # also pauses partitions assigned since

    # -- rebalancing -------------------------------------------------------

    def _on_assign(self, partitions) -> None:
        for tp in partitions:
            self.ledgers[(tp.topic, tp.partition)] = PartitionLedger(tp.topic, tp.partition)
        if partitions:
            log.info("partitions assigned %s", _names(partitions))

    def _on_revoke(self, partitions) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions if (tp.topic, tp.partition) in self.ledgers]
        if not keys:
            return
        # Finish what is in flight for these partitions, briefly, so that the
        # next owner repeats as little as possible; then commit and let go.
        self._settle(keys, time.monotonic() + self.config.revoke_timeout, fetch_new=False)
        self._commit(asynchronous=False, only=keys)
        abandoned = 0
        for key in keys:
            abandoned += self.ledgers.pop(key).abandon()
        self.counters.abandoned += abandoned
        self.consumer.forget(keys)
        log.info("partitions revoked %s abandoned=%d", _names(partitions), abandoned)

    def _on_lost(self, partitions) -> None:
        # Lost, not revoked: another member may own them already, so commit nothing.
        abandoned = 0
        keys = [(tp.topic, tp.partition) for tp in partitions]
        for key in keys:
            ledger = self.ledgers.pop(key, None)
            if ledger is not None:
                abandoned += ledger.abandon()
        self.counters.abandoned += abandoned
        self.consumer.forget(keys)
        log.warning("partitions lost %s abandoned=%d", _names(partitions), abandoned)

    def _settle(self, keys: list[tuple[str, int]], deadline: float, fetch_new: bool = False) -> bool:
        """Run dispatch, collect and emit, without fetching, until ``keys`` are finished or the deadline."""
        while time.monotonic() < deadline:
            ledgers = [self.ledgers[k] for k in keys if k in self.ledgers]
            if all(l.unfinished == 0 for l in ledgers):
                return True
            if self._broken or self._fatal is not None or self.pool.fatal is not None:
                return False
            self._dispatch()
            self._collect(timeout=0.01)
            self.outputs.poll()
        return False

    # -- reporting ---------------------------------------------------------

    def _progress(self) -> None:
        c = self.counters
        keys = list(self.ledgers)
        positions = self.consumer.position(keys) if keys else {}
        healthy = sum(w.healthy for w in self.pool.workers)
        log.info(
            "progress consumed=%d kept=%d filtered=%d dead_lettered=%d produced=%d retried=%d rate=%.1f/s lag=%d "
            "in_flight=%d held=%d partitions=%d workers_healthy=%d/%d paused=%s",
            c.consumed, c.kept, c.filtered, c.dead_lettered, c.produced, c.retried,
            self._rate.read(c.kept + c.filtered + c.dead_lettered), self.consumer.lag(positions),
            sum(l.in_flight for l in self.ledgers.values()), sum(l.waiting for l in self.ledgers.values()),
            len(keys), healthy, len(self.pool.workers), "yes" if self._paused_all else "no",
        )

    def _check_description(self, address: str, description: worker_pb2.WorkerDescription) -> None:
        if description.protocol_version != worker_pb2.PROTOCOL_VERSION_1:
            raise WorkerError(
                f"worker at {address} speaks protocol version {description.protocol_version}, this sidecar "
                f"speaks {worker_pb2.PROTOCOL_VERSION_1}; upgrade one of them"
            )
        unbound = [r for r in description.routes if r not in self.config.routes]
        if unbound:
            raise ConfigError(
                f"worker at {address} may send outputs to route(s) {', '.join(unbound)}: bind each with "
                f"--route NAME=kafka://HOST:PORT/TOPIC"
            )
        accepts = list(description.accepts)
        self._accepts = accepts
        self._accepts_all = not accepts or "*/*" in accepts
        self._fields = tuple(description.fields) or None
        self._plans.clear()
        if self._fixed_content_type and self._plan(self._fixed_content_type) not in (PASS, DECODE):
            raise ConfigError(f"worker at {address}: {self._plan(self._fixed_content_type)}")


_OK, _DEAD_LETTER = worker_pb2.VERDICT_OK, worker_pb2.VERDICT_DEAD_LETTER
PASS = "pass"  # give the worker the alert as it is
DECODE = "decode"  # decode the alert to the JSON form for the worker


@dataclass
class Decoded:
    """A batch whose alerts the decoder pool has finished with."""

    batch: Batch
    entries: list
    future: object
    generation: int  # of the decoder pool that took it


def _alert_fields(entries: list):
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
               message.headers(), entry.attempts, source_content_type, entry.schema_id)


def _verdict_name(value: int) -> str:
    try:
        return worker_pb2.Verdict.Name(value)
    except ValueError:
        return f"verdict {value}, unknown to this sidecar"


def _names(partitions) -> str:
    return ",".join(f"{tp.topic}/{tp.partition}" for tp in partitions)
