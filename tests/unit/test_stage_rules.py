"""The stage's rules on their own: verdicts and retries (verdicts.py), and what a worker is given (negotiation.py)."""

from __future__ import annotations

import grpc
import pytest

from alertsidecar.v1 import worker_pb2

from alert_sidecar.exceptions import ConfigError, WorkerError
from alert_sidecar.formats.content import AVRO_CONFLUENT, AVRO_OCF, JSON, RAW
from alert_sidecar.stage.metrics import Counters
from alert_sidecar.stage.negotiation import Negotiation, Plan
from alert_sidecar.stage.offsets import PartitionLedger, Record, Resolution, State
from alert_sidecar.stage.verdicts import (ATTEMPTS_HEADER, DEAD_LETTER, REASON_HEADER, CallOutcome, RetryPolicy,
                                          Verdicts)
from alert_sidecar.workers.clients import SentAgain, Batch, CallFailed, ContractBroken, WorkerCall


class Message:
    """The parts of a confluent_kafka.Message the rules read."""

    def __init__(self, value: bytes, key: bytes | None = None, headers=None) -> None:
        self._value, self._key, self._headers = value, key, headers

    def value(self):
        return self._value

    def key(self):
        return self._key

    def headers(self):
        return self._headers


class Worker:
    address = "127.0.0.1:1"
    name = "rules@127.0.0.1:1"
    call = WorkerCall.STREAM


def _batch(ledger: PartitionLedger, n: int) -> Batch:
    for i in range(n):
        ledger.append(Message(b"v%d" % i), i, 2, headers=[("h", b"1")])
    entries = ledger.take(now=0.0, max_alerts=n, max_bytes=10**9)
    batch = Batch(1, ledger, entries, [e.alert_id for e in entries])
    batch.worker = Worker()
    return batch


def _kept(entry, answer):
    return Resolution([Record("", entry.message.value(), None, [])])


def _verdicts(max_retries: int = 2) -> tuple[Verdicts, Counters]:
    counters = Counters()
    return Verdicts(RetryPolicy(max_retries=max_retries, base_backoff_s=0.0), "stage-a", counters, _kept), counters


def _answer(alert_id: str, verdict: int, error: str = "") -> worker_pb2.AlertResult:
    return worker_pb2.AlertResult(id=alert_id, verdict=verdict, error=error)


def test_each_verdict_has_its_outcome():
    verdicts, counters = _verdicts()
    ledger = PartitionLedger("alerts", 0)
    batch = _batch(ledger, 4)
    ids = batch.alert_ids
    verdicts.answered(batch, worker_pb2.BatchResult(results=[
        _answer(ids[0], worker_pb2.VERDICT_OK),
        _answer(ids[1], worker_pb2.VERDICT_DEAD_LETTER, "bad stamp"),
        _answer(ids[2], worker_pb2.VERDICT_RETRY, "catalogue busy"),
        _answer(ids[3], 99),  # unknown to this sidecar: RETRY, never lost
    ]))
    first, second, third, fourth = batch.entries
    assert first.state is State.RESOLVED and first.resolution.records[0].value == b"v0"
    assert second.state is State.RESOLVED and second.resolution.dead_letter_reason == "bad stamp"
    letter = second.resolution.records[0]
    assert letter.buffer_name == DEAD_LETTER and letter.value == b"v1"
    assert dict(letter.headers)[REASON_HEADER] == b"bad stamp" and letter.headers[0] == ("h", b"1")
    assert dict(letter.headers)["x-dead-letter-worker"] == b"rules@127.0.0.1:1"
    assert dict(letter.headers)["x-dead-letter-offset"] == b"1"
    assert third.state is State.PENDING and third.attempts == 1 and third.last_error == "catalogue busy"
    assert fourth.state is State.PENDING and "verdict 99, unknown" in fourth.last_error
    assert counters.retried == 2 and counters.batches == 1


def test_retries_end_in_the_dead_letter_buffer_with_the_attempts():
    verdicts, _ = _verdicts(max_retries=2)
    ledger = PartitionLedger("alerts", 0)
    for attempt in range(3):
        entries = ledger.take(now=1e9, max_alerts=1, max_bytes=10**9) if attempt else _batch(ledger, 1).entries
        batch = Batch(attempt + 1, ledger, entries, [e.alert_id for e in entries])
        batch.worker = Worker()
        verdicts.answered(batch, worker_pb2.BatchResult(results=[_answer(entries[0].alert_id,
                                                                         worker_pb2.VERDICT_RETRY, "no")]))
    entry = entries[0]
    assert entry.state is State.RESOLVED
    assert entry.resolution.dead_letter_reason == "gave up after 3 attempts: no"
    assert dict(entry.resolution.records[0].headers)[ATTEMPTS_HEADER] == b"3"


def test_a_worker_gone_costs_no_try_and_other_failures_cost_one():
    verdicts, counters = _verdicts()
    ledger = PartitionLedger("alerts", 0)
    batch = _batch(ledger, 2)
    outcome = verdicts.call_failed(batch, CallFailed(grpc.StatusCode.UNAVAILABLE, "gone"))
    assert outcome is CallOutcome.WORKER_GONE
    assert [e.attempts for e in batch.entries] == [0, 0] and counters.resent == 2
    entries = ledger.take(now=0.0, max_alerts=2, max_bytes=10**9)
    assert len(entries) == 1  # the batch the worker went away with is split in two
    batch = Batch(2, ledger, entries, [e.alert_id for e in entries])
    batch.worker = Worker()
    assert verdicts.call_failed(batch, CallFailed(grpc.StatusCode.INTERNAL, "boom")) is CallOutcome.RETRIED
    assert [e.attempts for e in batch.entries] == [1]
    assert "worker call failed: INTERNAL: boom" in batch.entries[0].last_error


def test_answers_that_break_the_contract_stop_the_stage():
    verdicts, _ = _verdicts()
    ledger = PartitionLedger("alerts", 0)
    batch = _batch(ledger, 2)
    with pytest.raises(WorkerError, match="missing"):
        verdicts.answered(batch, worker_pb2.BatchResult(results=[_answer(batch.alert_ids[0], 1)]))
    with pytest.raises(WorkerError, match="twice"):
        verdicts.answered(batch, worker_pb2.BatchResult(results=[_answer(batch.alert_ids[0], 1)] * 2))
    with pytest.raises(WorkerError, match="broke the contract on ProcessStream"):
        verdicts.call_failed(batch, ContractBroken("answered batch_id 7, which is not a batch in flight"))


def _description(**fields) -> worker_pb2.WorkerDescription:
    return worker_pb2.WorkerDescription(protocol_version=worker_pb2.PROTOCOL_VERSION_1, **fields)


def test_a_worker_is_given_what_it_accepts():
    negotiation = Negotiation(routes=[], fixed_content_type=None)
    negotiation.agree("w", _description())
    assert negotiation.treatment(AVRO_CONFLUENT).plan is Plan.PASS  # accepts nothing said: everything
    negotiation.agree("w", _description(accepts=[JSON], fields=["diaSource.psfFlux"]))
    assert negotiation.treatment(JSON).plan is Plan.PASS
    assert negotiation.treatment(AVRO_CONFLUENT).plan is Plan.DECODE
    assert negotiation.treatment(AVRO_OCF).plan is Plan.DECODE
    refused = negotiation.treatment(RAW)
    assert refused.plan is Plan.REFUSE and "accepts application/json" in refused.reason
    assert negotiation.fields == ("diaSource.psfFlux",)
    negotiation.agree("w", _description(accepts=["application/*"]))
    assert negotiation.treatment(RAW).plan is Plan.PASS  # a new description replaces what was decided


def test_accepts_is_taken_in_the_workers_order_of_preference():
    negotiation = Negotiation(routes=[], fixed_content_type=None)
    negotiation.agree("w", _description(accepts=[JSON, AVRO_CONFLUENT], fields=["diaSource.ra"]))
    assert negotiation.treatment(AVRO_CONFLUENT).plan is Plan.DECODE  # JSON first: decoded, though Avro is taken
    assert negotiation.treatment(JSON).plan is Plan.PASS
    negotiation.agree("w", _description(accepts=[AVRO_CONFLUENT, AVRO_OCF, JSON]))
    assert negotiation.treatment(AVRO_CONFLUENT).plan is Plan.PASS  # Avro first: the bytes as they are
    assert negotiation.treatment(AVRO_OCF).plan is Plan.PASS
    assert negotiation.treatment(JSON).plan is Plan.PASS
    negotiation.agree("w", _description(accepts=["Application/JSON; charset=utf-8", "*/*"]))
    assert negotiation.treatment(AVRO_CONFLUENT).plan is Plan.DECODE
    assert negotiation.treatment(RAW).plan is Plan.PASS  # then anything, as it is


def test_a_worker_that_cannot_take_the_input_or_names_unbound_routes_is_refused():
    with pytest.raises(ConfigError, match="cannot make any of them from application/octet-stream"):
        Negotiation(routes=[], fixed_content_type=RAW).agree("w", _description(accepts=[JSON]))
    with pytest.raises(ConfigError, match="--route NAME="):
        Negotiation(routes=["kept"], fixed_content_type=None).agree("w", _description(routes=["kept", "other"]))
    with pytest.raises(WorkerError, match="protocol version"):
        Negotiation(routes=[], fixed_content_type=None).agree("w", worker_pb2.WorkerDescription())


def test_a_worker_that_dies_is_found_by_sending_its_alerts_alone_and_only_that_alert_counts_tries():
    verdicts, counters = _verdicts(max_retries=1)
    ledger = PartitionLedger("alerts", 0)
    batch = _batch(ledger, 8)
    gone = CallFailed(grpc.StatusCode.UNAVAILABLE, "the worker ended the stream")
    # The worker dies with 8 alerts in flight: no try is counted, each is suspect and goes out alone.
    assert verdicts.call_failed(batch, gone) is CallOutcome.WORKER_GONE
    sizes = []
    while True:  # the worker dies on whatever batch holds offset 5
        entries = ledger.take(now=1e9, max_alerts=100, max_bytes=10**9)
        if not entries:
            break
        sizes.append(len(entries))
        assert all(e.suspect for e in entries)
        batch = Batch(0, ledger, entries, [e.alert_id for e in entries], alone=True)
        batch.worker = Worker()
        if 5 in [e.offset for e in entries]:
            verdicts.call_failed(batch, gone)
        else:
            verdicts.answered(batch, worker_pb2.BatchResult(
                results=[_answer(e.alert_id, worker_pb2.VERDICT_OK) for e in entries]))
    assert sizes == [1] * 9  # eight alone, and offset 5 once more: two deaths alone spend its tries
    done = list(ledger.emittable())
    assert [e.offset for e in done] == list(range(8))
    poison = done[5]
    assert poison.resolution.dead_letter_reason.startswith("gave up after 2")
    assert "went away while it had this alert alone" in poison.resolution.dead_letter_reason
    assert all(e.attempts == 0 and not e.suspect for e in done if e.offset != 5)


def test_a_death_not_alone_on_its_worker_blames_no_alert():
    # One alert in its batch, but other batches were in flight on the worker
    # too (alone=False): any of them may have killed it, so no try is counted.
    verdicts, counters = _verdicts(max_retries=0)
    ledger = PartitionLedger("alerts", 0)
    batch = _batch(ledger, 1)
    assert verdicts.call_failed(batch, CallFailed(grpc.StatusCode.UNAVAILABLE, "gone")) is CallOutcome.WORKER_GONE
    [entry] = ledger.take(now=1e9, max_alerts=100, max_bytes=10**9)
    assert entry.attempts == 0 and entry.suspect and ledger.suspect_next is False


def test_a_batch_timed_out_is_sent_again_one_by_one_without_counting_tries():
    verdicts, counters = _verdicts(max_retries=0)
    ledger = PartitionLedger("alerts", 0)
    batch = _batch(ledger, 4)
    late = CallFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "no answer within 2 s")
    assert verdicts.call_failed(batch, late) is CallOutcome.HELD
    first = ledger.take(now=1e9, max_alerts=100, max_bytes=10**9)
    assert [e.attempts for e in first] == [0] and len(first) == 1
    alone = Batch(0, ledger, first, [e.alert_id for e in first])
    alone.worker = Worker()
    verdicts.call_failed(alone, late)  # alone, it times out again: with no retries left it is dead-lettered
    [poison] = list(ledger.emittable())
    assert poison.resolution.dead_letter_reason.startswith("gave up after 1")


def test_a_batch_cut_off_with_a_stream_another_batch_timed_out_on_counts_nothing():
    verdicts, counters = _verdicts(max_retries=0)
    ledger = PartitionLedger("alerts", 0)
    batch = _batch(ledger, 1)
    for _ in range(10):  # however often: no try, and no failure toward the circuit breaker
        assert verdicts.call_failed(batch, SentAgain("its stream was ended")) is CallOutcome.HELD
        batch = Batch(1, ledger, ledger.take(now=1e9, max_alerts=10, max_bytes=10**9), [])
        batch.worker = Worker()
    assert [e.attempts for e in batch.entries] == [0]
    assert verdicts.breaker.state.value == "closed"
