"""One stage: input buffer -> workers -> output buffers, at least once.

The loop is a few named steps, all on one thread, each a call to the
collaborator that owns its concern:

1. fetch alerts from the input buffer into their partition's ledger (offsets.py);
2. dispatch batches to healthy workers, decoded if they ask (dispatch.py);
3. collect answers and events: the verdict and retry rule (verdicts.py) settles
   each alert, and workers that come back are checked again (negotiation.py);
4. emit settled alerts in offset order to the producers (outputs.py);
5. commit the finished prefix of each partition (offsets.py holds the rule);
6. pause fetching when too much is held, resume when it drains.

Threads (gRPC streams, decoders, the health watcher) only post events on the
worker pool's queue; the loop takes every decision. Rebalances, worker
failures and stopping all come back to the same rule: only finished alerts
are committed; the rest are read again by whoever owns their partition next.
"""

from __future__ import annotations

import json
import logging
import time

from alert_sidecar.exceptions import OutputFailed, SidecarError, WorkerError
from alert_sidecar.formats.avro_outputs import OutputEncoders
from alert_sidecar.formats.content import RAW, content_type_for, sniff
from alert_sidecar.formats.schemas import schema_source
from alert_sidecar.kafka.consumer import InputConsumer
from alert_sidecar.kafka.producer import Outputs
from alert_sidecar.stage.config import StageConfig
from alert_sidecar.stage.dispatch import Decoded, Dispatcher
from alert_sidecar.stage.metrics import Counters, Rate
from alert_sidecar.stage.negotiation import Negotiation
from alert_sidecar.stage.offsets import PartitionLedger
from alert_sidecar.stage.outputs import StageOutputs
from alert_sidecar.stage.prometheus import Snapshot, StageMetrics
from alert_sidecar.stage.transactions import (TransactionAborted, Transactions, default_transactional_id, same_cluster,
                                              transactional_settings)
from alert_sidecar.stage.verdicts import CallOutcome, Verdicts
from alert_sidecar.workers.clients import Completion
from alert_sidecar.workers.pool import WatchEnded, WorkerBack, WorkerPool

log = logging.getLogger("alert_sidecar.stage")

# How long one fetch may block when nothing else is due: alerts that wait only
# for a healthy worker or a retry backoff can wait 50 ms.
IDLE_FETCH_S = 0.05
# How long to wait for answers when batches are in flight: short, so that
# fetching goes on while the workers work.
ANSWER_WAIT_S = 0.002
# Fetch up to twice a batch (at least 500) at a time: librdkafka crosses into
# Python once per call rather than once per alert.
MIN_FETCH = 500
# What a stop gives the producers to deliver what is left.
FLUSH_TIMEOUT_S = 10.0
# With --exactly-once, what a commit waits for the open transaction's records
# to be acknowledged before it tries again at the next commit.
TRANSACTION_FLUSH_S = 5.0


class Stage:
    """The sidecar of one stage."""

    def __init__(self, config: StageConfig, supervisor=None) -> None:
        self.config = config
        self.counters = Counters()
        self.metrics = StageMetrics(config.group, self.counters)  # served with --metrics-port (prometheus.py)
        self.ledgers: dict[tuple[str, int], PartitionLedger] = {}
        self._supervisor = supervisor  # workers/process.Supervisor when the sidecar started its workers
        fixed_content_type = content_type_for(config.input.format)
        self._content_type = fixed_content_type
        schemas = schema_source(config.schema_registry, config.schema_dir)
        self.negotiation = Negotiation(config.routes, fixed_content_type)
        self.pool = WorkerPool(config.workers, config.worker_timeout, config.worker_call, mirror=config.mirror)
        # Each client gets its own cluster's settings only (kafka/clusters.py).
        input_settings = {**config.clusters.settings_for(config.input), "on_commit": self._on_commit}
        transactional = None
        self._transactional_id = None
        if config.exactly_once:
            same_cluster(config.input, config.outputs)
            self._transactional_id = config.transactional_id or default_transactional_id(config.group)
            transactional = transactional_settings(self._transactional_id)
            # Read only what upstream committed (librdkafka's default, said here because exactly-once needs it).
            input_settings["isolation.level"] = "read_committed"
        self.transactions: Transactions | None = None  # made in run(), once the producer is sized
        self.consumer = InputConsumer(config.input, config.group, config.start_from, input_settings)
        self.outputs = StageOutputs(Outputs(config.outputs, config.clusters.settings_for, transactional),
                                    OutputEncoders(config.outputs, config.schema_registry, schemas),
                                    config.group, self.counters)
        self.verdicts = Verdicts(config.retry, config.group, self.counters, self.outputs.records_of)
        self.dispatcher = Dispatcher(config, self.pool, self.negotiation, self.verdicts, self.outputs, schemas)
        self._stop_requested = False
        self._broken = False  # a worker broke the contract or an output failed: settle nothing more
        self._fatal: BaseException | None = None  # raised by the loop at its next step
        self._paused_all = False
        self._next_commit = 0.0
        self._next_progress = 0.0
        self._rate = Rate()

    # -- lifecycle ---------------------------------------------------------

    def request_stop(self) -> None:
        """Stop fetching, finish what is in flight, commit, return (SIGTERM, SIGINT)."""
        self._stop_requested = True

    def run(self) -> Counters:
        config = self.config
        if config.metrics_port is not None:
            self.metrics.serve(config.metrics_port)
        partitions = self.consumer.check_reachable()
        self.outputs.prepare(config.create_topics, partitions)
        if self._transactional_id is not None:
            [producer] = self.outputs.producers.producers  # one cluster (same_cluster), so one producer
            self.transactions = Transactions(producer, self._transactional_id)
            self.transactions.start()
        # Join the group while the worker starts: each takes about a second and
        # neither needs the other. librdkafka joins in its own thread; the
        # assignment is taken on the first fetch, once the worker is ready.
        self.consumer.subscribe(self._on_assign, self._on_revoke, self._on_lost)
        try:
            self.pool.wait_healthy(config.worker_wait, self._still_waiting, self.negotiation.agree)
        except BaseException:
            self._close(drain=False)
            raise
        if self._stop_requested:
            self._close(drain=False)
            return self.counters
        preferred = [w.description.preferred_batch_size for w in self.pool.workers if w.description]
        self.dispatcher.batch_size = min([config.batch_size, *[p for p in preferred if p > 0]])
        self.pool.start_watching()
        log.info(
            "stage started in=%s out=%s dead_letter=%s routes=%s group=%s workers=%s batch_size=%d",
            config.input, config.output, config.dead_letter,
            ",".join(f"{k}={v}" for k, v in config.routes.items()) or "-",
            config.group, ",".join(map(str, config.workers)), self.dispatcher.batch_size,
        )
        self._next_progress = time.monotonic() + config.progress_interval
        self._refresh_metrics()
        self.metrics.probe_workers = self.pool.probe_now
        self.metrics.phase = "running"
        drain = True
        try:
            while not self._stop_requested:
                self._step()
        except (WorkerError, OutputFailed):
            drain = False  # never send more to a broken worker; commit what is finished
            self._broken = True
            raise
        finally:
            self.metrics.phase = "stopping"
            self._close(drain=drain)
        return self.counters

    def _still_waiting(self) -> bool:
        if self._supervisor is not None:
            self._supervisor.check_started()
        return self._stop_requested

    def _step(self) -> None:
        # While answers are due, fetch without blocking and wait on the answers
        # instead; otherwise block briefly in fetch.
        if self.pool.in_flight > 0:
            timeout = 0.0
        elif any(ledger.ready for ledger in self.ledgers.values()):
            timeout = self.config.batch_linger  # wake up when a lingering batch is due
        else:
            timeout = IDLE_FETCH_S
        self._intake(self.consumer.fetch(max(self.dispatcher.batch_size * 2, MIN_FETCH), timeout=timeout))
        self.dispatcher.dispatch(list(self.ledgers.values()), lingering=not self._stop_requested)
        self._collect(timeout=ANSWER_WAIT_S if self.pool.in_flight else 0)
        self.outputs.poll()
        if self.outputs.abort_reason is not None:
            self._rewind(self.outputs.abort_reason)
        now = time.monotonic()
        if now >= self._next_commit:
            self._commit(asynchronous=True)
            self.pool.expire(now)
            self._next_commit = now + self.config.commit_interval
            self._refresh_metrics()
        self._apply_backpressure()
        if now >= self._next_progress:
            self._progress()
            self._next_progress = now + self.config.progress_interval
        if self._supervisor is not None:
            self._supervisor.supervise()
        self._raise_fatal()

    def _raise_fatal(self) -> None:
        if self.outputs.fatal is not None:
            raise self.outputs.fatal
        if self._fatal is not None:
            raise self._fatal

    def _close(self, drain: bool) -> None:
        assigned = list(self.ledgers)
        self.consumer.pause(assigned)  # stop fetching
        # Commit what is finished now, before the rest drains: an orchestrator
        # may kill the stage when its grace period ends, and what was finished
        # must not be done again then.
        self.outputs.poll()
        self._commit(asynchronous=False)
        if drain and assigned:
            settled = self._settle(assigned, time.monotonic() + self.config.drain_timeout)
            if not settled:
                log.warning("drain timed out after %g s; unfinished alerts stay uncommitted and will be read again",
                            self.config.drain_timeout)
        left = self.outputs.flush(min(FLUSH_TIMEOUT_S, self.config.drain_timeout))
        if left:
            log.warning("%d output records not acknowledged at stop; their alerts stay uncommitted", left)
        self._commit(asynchronous=False)
        self.consumer.close()
        self.pool.close()
        self.dispatcher.close()
        c = self.counters
        c.circuit_opened = self.verdicts.breaker.opened
        log.info(
            "stage stopped consumed=%d kept=%d filtered=%d dead_lettered=%d produced=%d retried=%d resent=%d "
            "abandoned=%d",
            c.consumed, c.kept, c.filtered, c.dead_lettered, c.produced, c.retried, c.resent, c.abandoned,
        )
        if self.config.stats_file:
            self.config.stats_file.write_text(json.dumps(c.as_dict(), indent=2) + "\n")

    # -- 1. fetch ----------------------------------------------------------

    def _intake(self, messages: list) -> None:
        now = time.monotonic()
        fixed = self._content_type
        unreadable = set()
        for message in messages:
            ledger = self.ledgers.get((message.topic(), message.partition()))
            if ledger is None:
                continue  # a partition revoked since the fetch: its new owner reads it
            value = message.value()
            try:
                headers = message.headers()
            except (SystemError, UnicodeDecodeError) as exc:
                # Kafka allows any bytes in a header key, but the client can
                # only read keys that are UTF-8; nothing of them can be passed on.
                entry = ledger.append(message, message.offset(), len(value) if value else 0, RAW, now)
                self.verdicts.unreadable(ledger, entry, (
                    f"a header key of this record is not UTF-8, which the sidecar's Kafka client cannot read "
                    f"({type(exc).__name__}); its headers are left out of this dead letter"))
                unreadable.add(ledger)
                continue
            ledger.append(message, message.offset(), len(value) if value else 0, fixed or sniff(value), now,
                          headers)
        self.counters.consumed += len(messages)
        for ledger in unreadable:
            self.outputs.emit(ledger)

    # -- 3. collect (4. emit follows each answer) --------------------------

    def _collect(self, timeout: float) -> None:
        event = self.pool.next_event(timeout)
        while event is not None:
            self._handle(event)
            event = self.pool.next_event(0)

    def _handle(self, event) -> None:
        if isinstance(event, Completion):
            batch = event.batch
            ledger = batch.ledger
            if ledger.revoked:
                return  # its alerts were abandoned; the partition's new owner reads them again
            if event.error is None:
                self.metrics.answered(batch.sent_at, time.monotonic(), len(batch.entries))
                self.verdicts.answered(batch, event.result)
            elif self.verdicts.call_failed(batch, event.error) is CallOutcome.WORKER_GONE:
                self.pool.unavailable(batch.worker, event.error)
            self.outputs.emit(ledger)
        elif isinstance(event, Decoded):
            self.dispatcher.decoded(event)
        elif isinstance(event, WorkerBack):
            # The worker may come back changed (another version, other routes):
            # check it again before it gets alerts. A refusal stops the stage.
            try:
                self.negotiation.agree(event.worker.address, event.description)
            except SidecarError as err:
                self._fatal = err
                return
            if self.pool.back(event) and self._supervisor is not None:
                self._supervisor.served(event.worker.endpoint.port)  # it was ready: restart it quickly next time
        elif isinstance(event, WatchEnded):
            self._fatal = event.error
        else:
            raise TypeError(f"unknown event on the worker pool's queue: {event!r}")

    # -- 5. commit ---------------------------------------------------------

    def _commit(self, asynchronous: bool, only: list[tuple[str, int]] | None = None) -> None:
        if self.transactions is not None:
            self._commit_transaction(final=not asynchronous)
            return
        offsets = self._finished_offsets(only if only is not None else list(self.ledgers))
        for key, offset in self.consumer.commit(offsets, asynchronous):
            if not asynchronous and key in self.ledgers:
                self.ledgers[key].mark_committed(offset)

    def _finished_offsets(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The offset each of these partitions may be committed to now, where it moved (offsets.py's rule)."""
        offsets = {}
        for key in keys:
            ledger = self.ledgers.get(key)
            target = ledger.advance() if ledger is not None else None
            if target is not None:
                offsets[key] = target
        return offsets

    def _commit_transaction(self, final: bool) -> None:
        """Commit the open transaction with every finished prefix (transactions.py); rewind if it fails.

        ``final`` (a revocation or a stop): what is not acknowledged now is
        aborted and read again, rather than left to the next commit.
        """
        outputs = self.outputs
        if outputs.producers.failed:
            return  # the producer failed for good (fenced): nothing can be committed; the stage stops
        if outputs.abort_reason is None:
            left = outputs.flush(min(FLUSH_TIMEOUT_S, self.config.drain_timeout) if final else TRANSACTION_FLUSH_S)
            if outputs.fatal is not None:
                return  # the loop raises it; nothing more is committed
            if left and outputs.abort_reason is None:
                if not final:
                    log.info("transaction not committed yet: %d records not acknowledged; trying again", left)
                    return
                outputs.abort_reason = f"{left} records of the transaction were not acknowledged in time"
        if outputs.abort_reason is not None:
            self._rewind(outputs.abort_reason)
            return
        offsets = self._finished_offsets(list(self.ledgers))
        if not offsets:
            return  # nothing emitted since the last commit: no transaction to commit
        try:
            self.transactions.commit(offsets, self.consumer.group_metadata())
        except TransactionAborted:
            self._rewind(None)  # aborted already
            return
        for key, offset in offsets.items():
            self.ledgers[key].mark_committed(offset)

    def _rewind(self, abort_reason: str | None) -> None:
        """Abort the open transaction (unless it is already) and read every partition again from its last commit.

        Every alert not committed is forgotten as at a revocation: late
        answers and delivery reports for it are ignored, and it is read again.
        """
        positions = {}
        abandoned = 0
        for key, ledger in list(self.ledgers.items()):
            target = ledger.committed if ledger.committed is not None else ledger.first_offset
            abandoned += ledger.abandon()
            fresh = self.ledgers[key] = PartitionLedger(*key)
            fresh.committed = ledger.committed
            if target is not None:
                positions[key] = target
        if abort_reason is not None:
            self.transactions.abort(abort_reason)
        self.outputs.forget_transaction()
        self.counters.abandoned += abandoned
        self.counters.aborted += 1
        try:
            self.consumer.seek(positions)
        except Exception as exc:  # noqa: BLE001 - a partition that cannot be sought must not be read on past its gap
            raise OutputFailed(f"after an aborted transaction the input could not be read again from its last "
                               f"commit ({exc}); stopping: starting the stage again resumes from it") from None
        log.warning("rewound after an aborted transaction partitions=%s abandoned=%d",
                    ",".join(f"{t}/{p}@{o}" for (t, p), o in positions.items()) or "-", abandoned)

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
        alerts = sum(ledger.waiting for ledger in self.ledgers.values())
        held = sum(ledger.buffered_bytes for ledger in self.ledgers.values())
        limit_alerts, limit_bytes = self.config.max_buffered_alerts, self.config.max_buffered_bytes
        if not self._paused_all and (alerts >= limit_alerts or held >= limit_bytes):
            self._paused_all = True
            self.metrics.pauses += 1
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
        self.metrics.rebalances += 1
        for tp in partitions:
            self.ledgers[(tp.topic, tp.partition)] = PartitionLedger(tp.topic, tp.partition)
        if partitions:
            log.info("partitions assigned %s", _names(partitions))

    def _on_revoke(self, partitions) -> None:
        self.metrics.rebalances += 1
        keys = [(tp.topic, tp.partition) for tp in partitions if (tp.topic, tp.partition) in self.ledgers]
        if not keys:
            return
        # Finish what is in flight for these partitions, briefly, so that the
        # next owner repeats as little as possible; then commit and let go.
        self._settle(keys, time.monotonic() + self.config.revoke_timeout)
        self._commit(asynchronous=False, only=keys)
        abandoned = 0
        for key in keys:
            abandoned += self.ledgers.pop(key).abandon()
        self.counters.abandoned += abandoned
        self.consumer.forget(keys)
        log.info("partitions revoked %s abandoned=%d", _names(partitions), abandoned)

    def _on_lost(self, partitions) -> None:
        self.metrics.rebalances += 1
        # Lost, not revoked: another member may own them already, so commit nothing.
        if self.transactions is not None:
            # The open transaction may hold their outputs: abort it, and read
            # the partitions still assigned again from their last commit.
            self.outputs.abort_reason = self.outputs.abort_reason or "partitions were lost to the group"
        abandoned = 0
        keys = [(tp.topic, tp.partition) for tp in partitions]
        for key in keys:
            ledger = self.ledgers.pop(key, None)
            if ledger is not None:
                abandoned += ledger.abandon()
        self.counters.abandoned += abandoned
        self.consumer.forget(keys)
        log.warning("partitions lost %s abandoned=%d", _names(partitions), abandoned)
        if self.transactions is not None:
            self._rewind(self.outputs.abort_reason)

    def _settle(self, keys: list[tuple[str, int]], deadline: float) -> bool:
        """Run dispatch, collect and emit, without fetching, until ``keys`` are finished or the deadline."""
        while time.monotonic() < deadline:
            ledgers = [self.ledgers[k] for k in keys if k in self.ledgers]
            if all(ledger.unfinished == 0 for ledger in ledgers):
                return True
            if self._broken or self._fatal is not None or self.outputs.fatal is not None:
                return False
            if self.outputs.abort_reason is not None:
                return False  # the commit that follows aborts and rewinds
            self.dispatcher.dispatch(list(self.ledgers.values()), lingering=False)
            self._collect(timeout=0.01)
            self.outputs.poll()
        return False

    # -- reporting ---------------------------------------------------------

    def _refresh_metrics(self) -> None:
        """A new snapshot of the gauges for the metrics endpoint (read by its own thread)."""
        ledgers = list(self.ledgers.items())
        positions = self.consumer.position([key for key, _ in ledgers]) if ledgers else {}
        metrics = self.metrics
        metrics.circuit_opened = self.verdicts.breaker.opened
        metrics.transactions_committed = self.transactions.committed if self.transactions else 0
        metrics.snapshot = Snapshot(
            in_flight=sum(ledger.in_flight for _, ledger in ledgers),
            held=sum(ledger.waiting for _, ledger in ledgers),
            held_bytes=sum(ledger.buffered_bytes for _, ledger in ledgers),
            lag=self.consumer.lag_by_partition({key: positions.get(key) for key, _ in ledgers}),
            paused=self._paused_all,
            breaker=self.verdicts.breaker.state.value,
            workers_healthy=self.pool.healthy_count,
            workers=len(self.pool.workers))

    def _progress(self) -> None:
        c = self.counters
        keys = list(self.ledgers)
        positions = self.consumer.position(keys) if keys else {}
        log.info(
            "progress consumed=%d kept=%d filtered=%d dead_lettered=%d produced=%d retried=%d rate=%.1f/s lag=%d "
            "in_flight=%d held=%d partitions=%d workers_healthy=%d/%d paused=%s circuit=%s",
            c.consumed, c.kept, c.filtered, c.dead_lettered, c.produced, c.retried,
            self._rate.read(c.kept + c.filtered + c.dead_lettered), self.consumer.lag(positions),
            sum(ledger.in_flight for ledger in self.ledgers.values()),
            sum(ledger.waiting for ledger in self.ledgers.values()),
            len(keys), self.pool.healthy_count, len(self.pool.workers), "yes" if self._paused_all else "no",
            self.verdicts.breaker.state.value,
        )


def _names(partitions) -> str:
    return ",".join(f"{tp.topic}/{tp.partition}" for tp in partitions)
