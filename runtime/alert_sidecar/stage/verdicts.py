"""The verdict and retry rule: what becomes of an alert once its worker answers, or fails to.

- OK: the alert is resolved to its outputs (none for a filter that drops it).
- DEAD_LETTER: it goes to the dead-letter buffer at once, with the worker's reason.
- RETRY, and also UNSPECIFIED or a value this sidecar does not know (the
  contract says those mean RETRY, so nothing is lost): it is sent again after
  an exponential backoff, up to ``max_retries`` times, then dead-lettered.
- A failed call: if the worker is gone (UNAVAILABLE, CANCELLED) the alerts wait
  for it without counting a try, each marked suspect: they go out again one
  at a time, each alone on an idle worker (dispatch.py). A worker that dies
  on one alert every time is so found at its next death, and each death
  with that alert alone counts a try for it, so that it ends in the
  dead-letter buffer after --max-retries while the rest of its partition
  goes on; no other alert is blamed. A batch that times out is sent again one
  alert a batch, counting no try, so that only an alert the worker hangs on
  runs out of tries. An answer the contract does not allow stops the stage
  (WorkerError); any other failure counts a try for every alert of the batch.
- Decoding for the worker: bytes that do not decode are dead-lettered, a
  registry that is down holds the alerts without counting a try, and a decoder
  process that dies counts a try, so that an alert that kills decoders ends as
  a dead letter.

A dead letter is the original record, byte for byte, with headers that say
why, where it came from and which stage gave up, so that it can be inspected
and replayed into the input buffer once the cause is fixed.
"""

from __future__ import annotations

import datetime
import enum
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from collections.abc import Callable

import grpc

from alertsidecar.v1 import worker_pb2

from alert_sidecar.exceptions import WorkerError
from alert_sidecar.stage.breaker import CircuitBreaker
from alert_sidecar.stage.metrics import Counters
from alert_sidecar.stage.offsets import Entry, PartitionLedger, Record, Resolution, State
from alert_sidecar.workers.clients import Batch, ContractBroken, SentAgain, WorkerCall, describe_rpc_error

if TYPE_CHECKING:
    from alert_sidecar.formats.decoding import Converted

log = logging.getLogger("alert_sidecar.stage")

DEAD_LETTER = "dead-letter"  # the name of the dead-letter output among the stage's outputs

# Headers of a dead-letter record, added after the original record's own.
REASON_HEADER = "x-dead-letter-reason"
SOURCE_HEADER = "x-dead-letter-source"  # "<topic>/<partition>/<offset>" of the input alert
STAGE_HEADER = "x-dead-letter-stage"  # the consumer group of the stage that gave up
ATTEMPTS_HEADER = "x-dead-letter-attempts"
WORKER_HEADER = "x-dead-letter-worker"  # name@address of the worker that answered last, when one did
TOPIC_HEADER = "x-dead-letter-topic"  # the source coordinates again, one per header, for filters
PARTITION_HEADER = "x-dead-letter-partition"
OFFSET_HEADER = "x-dead-letter-offset"
TIMESTAMP_HEADER = "x-dead-letter-timestamp"  # the input record's own timestamp, ms since 1970 UTC
TIME_HEADER = "x-dead-letter-time"  # when the stage gave up, ISO 8601 UTC
SIZE_HEADER = "x-dead-letter-size"  # on a dead letter that stands for a record too large to write: its bytes
# Every header this sidecar adds to a dead letter starts so: a replay drops them.
DEAD_LETTER_HEADER_PREFIX = "x-dead-letter-"
# Added to every output: the input alert it came from, for lineage and replay.
OUTPUT_SOURCE_HEADER = "x-alert-source"

# How long alerts are held when their schema cannot be fetched (a registry that
# is down): short enough to go on soon after it is back, long enough not to
# hammer it.
SCHEMA_UNAVAILABLE_HOLD_S = 2.0

_OK, _DEAD_LETTER = worker_pb2.VERDICT_OK, worker_pb2.VERDICT_DEAD_LETTER


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


def dead_letter(entry: Entry, reason: str, stage: str, worker: str = "") -> Resolution:
    """The resolution that sends ``entry``'s original record to the dead-letter buffer.

    The original key, value and headers, byte for byte, then headers that say
    why, where from, which stage and worker gave up, after how many attempts, and when.
    """
    message = entry.message
    topic, partition, offset = entry.alert_id.rsplit("/", 2)
    timestamp_type, timestamp = message.timestamp() if hasattr(message, "timestamp") else (0, 0)
    headers = list(entry.headers or [])
    headers += [
        (REASON_HEADER, reason.encode()),
        (SOURCE_HEADER, entry.alert_id.encode()),
        (STAGE_HEADER, stage.encode()),
        (ATTEMPTS_HEADER, str(entry.attempts).encode()),
        (TOPIC_HEADER, topic.encode()),
        (PARTITION_HEADER, partition.encode()),
        (OFFSET_HEADER, offset.encode()),
    ]
    if worker:
        headers.append((WORKER_HEADER, worker.encode()))
    if timestamp_type:
        headers.append((TIMESTAMP_HEADER, str(timestamp).encode()))
    headers.append((TIME_HEADER, _utc_now()))
    record = Record(DEAD_LETTER, message.value(), message.key(), headers)
    return Resolution([record], dead_letter_reason=reason)


def _utc_now() -> bytes:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z").encode()


class CallOutcome(enum.Enum):
    WORKER_GONE = "worker-gone"  # the worker is unavailable: its alerts wait for it
    RETRIED = "retried"  # the call failed; every alert of it counted a try
    HELD = "held"  # its alerts wait or go again, no try counted (circuit open, a stream cut off, a batch split)


class Verdicts:
    """Applies the rule above to the alerts of a stage's partitions (on the loop's thread)."""

    def __init__(self, policy: RetryPolicy, stage: str, counters: Counters,
                 outputs_of: Callable[[Entry, worker_pb2.AlertResult], Resolution]) -> None:
        self.policy = policy
        self.stage = stage  # the consumer group, named in dead letters
        self._counters = counters
        self._outputs_of = outputs_of  # the records of an OK answer (outputs.py)
        self.breaker = CircuitBreaker()  # outage or poison (breaker.py)

    def answered(self, batch: Batch, result: worker_pb2.BatchResult) -> None:
        """Resolve or retry each alert of ``batch`` by its answer; WorkerError if the answers do not fit."""
        self._counters.batches += 1
        answers = result.results
        if [answer.id for answer in answers] != batch.alert_ids:  # the usual case is one answer each, in order
            answers = _answers_by_id(batch, answers)
        ledger = batch.ledger
        worker = batch.worker.name
        retries = []
        for entry, answer in zip(batch.entries, answers):
            entry.suspect = False  # it survived a call
            verdict = answer.verdict
            if verdict == _OK:
                ledger.resolve(entry, self._outputs_of(entry, answer))
            elif verdict == _DEAD_LETTER:
                reason = answer.error or "the worker answered DEAD_LETTER without saying why"
                ledger.resolve(entry, dead_letter(entry, reason, self.stage, worker))
            else:
                entry.last_error = answer.error or f"the worker answered {_verdict_name(verdict)}"
                retries.append(entry)
        if retries and len(retries) == len(batch.entries):
            # Every alert of the batch answered RETRY: an outage of what the
            # worker depends on, or one alert's trouble? The breaker decides.
            if self.breaker.failed(batch.alert_ids, f"every alert answered RETRY ({retries[0].last_error})",
                                   time.monotonic()):
                ledger.give_back(retries)
                self._counters.resent += len(retries)
                return
        else:
            self.breaker.succeeded()
        if retries:
            self.retry(ledger, retries, worker=worker)

    def call_failed(self, batch: Batch, err: grpc.RpcError) -> CallOutcome:
        if isinstance(err, SentAgain):  # cut off with a batch that timed out: no try, no failure of the worker
            entries = [e for e in batch.entries if e.state is State.IN_FLIGHT]
            batch.ledger.give_back(entries)
            self._counters.resent += len(entries)
            return CallOutcome.HELD
        code = err.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            entries = [e for e in batch.entries if e.state is State.IN_FLIGHT]
            if batch.alone and len(entries) == 1:
                # The only alert in flight on its worker, and the worker went
                # away: this alert is what killed it (or it was there when the
                # worker was killed). Count the try.
                self.retry(batch.ledger, entries,
                           f"the worker went away while it had this alert alone ({describe_rpc_error(err)})",
                           worker=batch.worker.name)
                return CallOutcome.WORKER_GONE
            # Any of them, or none (the worker was killed from outside), may be
            # to blame: each goes out again alone (dispatch.py), counting no try.
            self._one_by_one(batch.ledger, entries, suspect=True)
            return CallOutcome.WORKER_GONE
        if isinstance(err, ContractBroken) or code == grpc.StatusCode.UNIMPLEMENTED or (
                code == grpc.StatusCode.INTERNAL and "eserializ" in (err.details() or "")):
            worker = batch.worker
            call = "ProcessStream" if worker.call is WorkerCall.STREAM else "ProcessBatch"
            raise WorkerError(
                f"worker at {worker.address} broke the contract on {call}: {describe_rpc_error(err)}; "
                "it must answer each AlertBatch with one alertsidecar.v1.BatchResult of the same batch_id"
            )
        why = f"worker call failed: {describe_rpc_error(err)}"
        entries = [e for e in batch.entries if e.state is State.IN_FLIGHT]
        if self.breaker.failed(batch.alert_ids, why, time.monotonic()):
            batch.ledger.give_back(entries)
            self._counters.resent += len(entries)
            return CallOutcome.HELD
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and len(entries) > 1:
            # One alert the worker hangs on times its whole batch out: each
            # goes again in a batch of its own, counting no try, so that only
            # the one that hangs runs out of tries.
            self._one_by_one(batch.ledger, entries, suspect=False, why=why)
            return CallOutcome.HELD
        half = max(1, len(entries) // 2)  # split, so that an alert that fails its whole batch is found
        for entry in entries:
            entry.split_limit = min(entry.split_limit, half)
        self.retry(batch.ledger, entries, why, worker=batch.worker.name)
        return CallOutcome.RETRIED

    def _one_by_one(self, ledger: PartitionLedger, entries: list[Entry], suspect: bool, why: str = "") -> None:
        """Send ``entries`` again in batches of one, counting no try (``suspect``: each alone on its worker)."""
        for entry in entries:
            entry.split_limit = 1
            entry.suspect = entry.suspect or suspect
            entry.last_error = why or entry.last_error
        ledger.give_back(entries)
        self._counters.resent += len(entries)

    def retry(self, ledger: PartitionLedger, entries: list[Entry], reason: str | None = None,
              worker: str = "") -> None:
        """Count a try for each alert; dead-letter those that have had their tries, send the rest again later."""
        policy = self.policy
        again = []
        for entry in entries:
            entry.attempts += 1
            if reason is not None:
                entry.last_error = reason
            if policy.exhausted(entry.attempts):
                why = f"gave up after {entry.attempts} attempts: {entry.last_error}"
                ledger.resolve(entry, dead_letter(entry, why, self.stage, worker))
            else:
                again.append(entry)
        if again:
            self._counters.retried += len(again)
            first = again[0]
            ledger.give_back(again, not_before=time.monotonic() + policy.backoff(first.attempts))
            log.info("retrying alerts=%d first=%s attempt=%d reason=%r",
                     len(again), first.alert_id, first.attempts, first.last_error)

    def refuse(self, ledger: PartitionLedger, entry: Entry, reason: str) -> None:
        """Dead-letter an alert the worker cannot be given in any form it accepts."""
        ledger.resolve(entry, dead_letter(entry, reason, self.stage))

    def unreadable(self, ledger: PartitionLedger, entry: Entry, reason: str) -> None:
        """Dead-letter, at fetch, an alert the sidecar cannot hand to any worker as it is."""
        ledger.settle_unsent(entry, dead_letter(entry, reason, self.stage))

    def decoded(self, batch: Batch, entries: list[Entry], results: list[Converted]) -> list[Entry]:
        """Apply the decoders' results; return the alerts now ready for the worker.

        An alert that does not decode is dead-lettered. If a schema could not be
        fetched (a registry that is down: not the alerts' fault), every alert
        still waiting is held, in order, and tried again shortly, without
        counting a try; then nothing is ready.
        """
        ledger = batch.ledger
        transient = None
        for entry, converted in zip(entries, results):
            if converted.transient:
                transient = converted.error
            elif converted.error is not None:
                entry.schema_id = converted.schema_id or 0
                ledger.resolve(entry, dead_letter(entry, converted.error, self.stage))
            else:
                entry.payload = converted.payload
                entry.schema_id = converted.schema_id or 0
        waiting = [e for e in batch.entries if e.state is State.IN_FLIGHT]
        if transient is not None:
            log.warning("holding alerts=%d reason=%r; trying again in %g s", len(waiting), transient,
                        SCHEMA_UNAVAILABLE_HOLD_S)
            ledger.give_back(waiting, not_before=time.monotonic() + SCHEMA_UNAVAILABLE_HOLD_S)
            return []
        return waiting

    def decoder_died(self, batch: Batch, exc: BaseException) -> None:
        """A decoder process died (killed, or crashed on these bytes): a try for each alert of the batch."""
        log.warning("decoder process died alerts=%d; restarting the decoders", len(batch.entries))
        self.retry(batch.ledger, [e for e in batch.entries if e.state is State.IN_FLIGHT],
                   f"the decoder process died while decoding this batch ({exc})")


def _answers_by_id(batch: Batch, answers) -> list:
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


def _verdict_name(value: int) -> str:
    try:
        return worker_pb2.Verdict.Name(value)
    except ValueError:
        return f"verdict {value}, unknown to this sidecar"
