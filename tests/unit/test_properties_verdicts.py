"""Answer handling over random BatchResults: every alert is settled, or the worker broke the contract.

``Verdicts.answered`` takes what a worker sent back for a batch. Whatever it
sent (answers in any order, some missing, some twice, ids never sent, verdicts
this sidecar does not know, any errors, outputs to bound and unbound routes,
forwarded or not, with keys and headers), either every alert of the batch is
settled, RESOLVED with well-formed records or given back PENDING with its try
counted (dead-lettered once its tries are used up), or nothing is touched and
``WorkerError`` says what was wrong. The records are those
``StageOutputs.records_of`` makes, as in the stage.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alertsidecar.v1 import worker_pb2

from alert_sidecar.exceptions import WorkerError
from alert_sidecar.formats.avro_outputs import OutputEncoders
from alert_sidecar.stage.metrics import Counters
from alert_sidecar.stage.offsets import Entry, PartitionLedger, Record, State
from alert_sidecar.stage.outputs import StageOutputs
from alert_sidecar.stage.verdicts import (DEAD_LETTER, OUTPUT_SOURCE_HEADER, REASON_HEADER, SOURCE_HEADER,
                                          RetryPolicy, Verdicts)
from alert_sidecar.workers.clients import Batch, WorkerCall

# A batch of a few alerts is answered in well under a millisecond: 300 random
# answers take a second or two.
PROPERTY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

BOUND_ROUTES = ["", "bright", "faint"]  # "" is --out; the others as --route NAME=BUFFER binds them
ROUTES = st.one_of(st.sampled_from([*BOUND_ROUTES, "unbound", DEAD_LETTER]), st.text(max_size=8))
TEXT = st.text(max_size=20)
BYTES = st.binary(max_size=20)
HEADERS = st.lists(st.tuples(TEXT, st.one_of(st.none(), BYTES)), max_size=3)
# OK the most often, as workers answer; every other value of the open enum too.
VERDICTS = st.one_of(st.just(worker_pb2.VERDICT_OK), st.sampled_from(worker_pb2.Verdict.values()),
                     st.integers(-(2**31), 2**31 - 1))
MAYBE_BYTES = st.one_of(st.none(), BYTES)
MAYBE_HEADERS = st.one_of(st.none(), HEADERS)
ERRORS = st.one_of(st.just(""), TEXT)
TIMESTAMPS = st.sampled_from([(0, 0), (1, 1_764_000_000_000)])  # none, or CreateTime


class Message:
    """The parts of a confluent_kafka.Message the rules read."""

    def __init__(self, value: bytes | None, key: bytes | None, headers, timestamp: tuple[int, int]) -> None:
        self._value, self._key, self._headers, self._timestamp = value, key, headers, timestamp

    def value(self):
        return self._value

    def key(self):
        return self._key

    def headers(self):
        return self._headers

    def timestamp(self):
        return self._timestamp


class Worker:
    name = "test-worker"
    address = "127.0.0.1:1"
    call = WorkerCall.STREAM


class Buffered:
    def __init__(self, name: str) -> None:
        self.buffer = f"kafka://localhost:9092/{name or 'out'}"


class Producers:
    """The stage's producers as records_of sees them: the bound buffers, nothing produced."""

    buffers = {name: Buffered(name) for name in [*BOUND_ROUTES, DEAD_LETTER]}

    def prepare(self, create_topics: bool, partitions: int) -> None:
        pass


@st.composite
def batches(draw):
    """A ledger with alerts fetched, the first of them in flight as one batch, and the policy's retry limit."""
    ledger = PartitionLedger(draw(st.sampled_from(["alerts", "ztf.alerts_2024", "a-b"])), draw(st.integers(0, 99)))
    offset = draw(st.integers(0, 2**40))
    max_retries = draw(st.integers(0, 4))
    for _ in range(draw(st.integers(1, 6))):
        offset += draw(st.integers(1, 3))  # compaction and transaction markers leave gaps
        headers = draw(MAYBE_HEADERS)
        message = Message(draw(MAYBE_BYTES), draw(MAYBE_BYTES), headers, draw(TIMESTAMPS))
        entry = ledger.append(message, offset, len(message.value() or b""))
        if "headers" in Entry.__dataclass_fields__:  # a ledger that keeps the headers read at fetch
            entry.headers = headers
    entries = ledger.take(now=0.0, max_alerts=draw(st.integers(1, ledger.ready)), max_bytes=10**9)
    for entry in entries:  # tries an alert may have had already
        entry.attempts = draw(st.integers(0, max_retries))
    batch = Batch(draw(st.integers(1, 2**40)), ledger, entries, [e.alert_id for e in entries])
    batch.worker = Worker()
    return batch, max_retries


@st.composite
def outputs(draw) -> worker_pb2.AlertOutput:
    output = worker_pb2.AlertOutput(value=draw(BYTES), content_type=draw(st.sampled_from(["", "application/json"])),
                                    route=draw(ROUTES), forward_input=draw(st.booleans()))
    key = draw(MAYBE_BYTES)
    if key is not None:
        output.key = key
    for name, value in draw(HEADERS):
        output.headers.add(key=name, value=value or b"")
    return output


# The most common answer, a filter keeping its alert as it is, or any outputs.
OUTPUTS = st.one_of(st.just([worker_pb2.AlertOutput(forward_input=True)]), st.lists(outputs(), max_size=3))


@st.composite
def answers(draw, alert_ids: list[str]) -> worker_pb2.BatchResult:
    """What a worker may answer: one result per alert in any order, or any ids at all."""
    every = st.permutations(alert_ids)
    ids = draw(st.one_of(
        every,
        every.flatmap(lambda ids: st.sampled_from(ids).map(lambda twice: [*ids, twice])),  # one answered twice
        every.map(lambda ids: ids[1:]),  # one not answered
        every.flatmap(lambda ids: TEXT.filter(lambda i: i not in ids).map(lambda other: [*ids, other])),  # not sent
        st.lists(st.one_of(st.sampled_from(alert_ids), TEXT), max_size=len(alert_ids) + 2),
    ))
    result = worker_pb2.BatchResult(batch_id=draw(st.integers(0, 2**64 - 1)))
    for alert_id in ids:
        result.results.append(worker_pb2.AlertResult(id=alert_id, verdict=draw(VERDICTS), error=draw(ERRORS),
                                                     outputs=draw(OUTPUTS)))
    return worker_pb2.BatchResult.FromString(result.SerializeToString())  # as it came over the wire


def stage(max_retries: int) -> tuple[Verdicts, Counters]:
    counters = Counters()
    encoders = OutputEncoders({}, None, None)  # no buffer with an Avro schema
    outputs = StageOutputs(Producers(), encoders, "stage-a", counters)
    outputs.prepare(create_topics=False, partitions=1)
    return Verdicts(RetryPolicy(max_retries=max_retries, base_backoff_s=0.0), "stage-a", counters,
                    outputs.records_of), counters


def well_formed(record: Record) -> None:
    assert record.buffer_name in Producers.buffers
    assert record.value is None or isinstance(record.value, bytes)
    assert record.key is None or isinstance(record.key, bytes)
    assert all(isinstance(name, str) and (value is None or isinstance(value, bytes))
               for name, value in record.headers)


def check_dead_letter(entry, resolution, reason: str) -> None:
    [record] = resolution.records
    well_formed(record)
    assert resolution.dead_letter_reason == reason
    assert record.buffer_name == DEAD_LETTER
    assert (record.value, record.key) == (entry.message.value(), entry.message.key())  # the original, as it was
    original = list(entry.message.headers() or [])
    assert record.headers[:len(original)] == original
    added = dict(record.headers[len(original):])
    assert added[REASON_HEADER] == reason.encode() and added[SOURCE_HEADER] == entry.alert_id.encode()


def check_outputs(entry, resolution, answer: worker_pb2.AlertResult) -> None:
    assert resolution.dead_letter_reason is None
    assert len(resolution.records) == len(answer.outputs)
    source = (OUTPUT_SOURCE_HEADER, entry.alert_id.encode())
    for record, output in zip(resolution.records, answer.outputs):
        well_formed(record)
        assert record.buffer_name == output.route and record.headers[-1] == source
        added = [(h.key, h.value) for h in output.headers]
        if output.forward_input:
            assert (record.value, record.key) == (entry.message.value(), entry.message.key())
            assert record.headers == list(entry.message.headers() or []) + added + [source]
        else:
            assert record.value == output.value
            assert record.key == (output.key if output.HasField("key") else None)
            typed = [("content-type", output.content_type.encode())] if output.content_type else []
            assert record.headers == typed + added + [source]


@PROPERTY
@given(data=st.data())
def test_every_alert_of_a_batch_is_settled_or_the_worker_broke_the_contract(data) -> None:
    batch, max_retries = data.draw(batches())
    result = data.draw(answers(batch.alert_ids))
    ledger = batch.ledger
    verdicts, counters = stage(max_retries)
    tries_before = {entry.alert_id: entry.attempts for entry in batch.entries}
    one_each = Counter(answer.id for answer in result.results) == Counter(batch.alert_ids)
    try:
        verdicts.answered(batch, result)
    except WorkerError as exc:
        event("refused: not one result per alert")
        assert not one_each, f"a whole answer was refused: {exc}"
        assert str(exc)
        # Refused as a whole: no alert was settled on the strength of a broken answer.
        assert all(entry.state is State.IN_FLIGHT and entry.resolution is None for entry in batch.entries)
        assert ledger.in_flight == len(batch.entries)
        return
    event("settled")
    assert one_each, "an answer that is not one result per alert was taken"
    assert ledger.in_flight == 0
    by_id = {answer.id: answer for answer in result.results}
    given_back = 0
    for entry in batch.entries:
        answer = by_id[entry.alert_id]
        tries = tries_before[entry.alert_id]
        if answer.verdict == worker_pb2.VERDICT_OK:
            assert entry.state is State.RESOLVED and entry.attempts == tries
            if all(output.route in BOUND_ROUTES for output in answer.outputs):
                check_outputs(entry, entry.resolution, answer)
            else:
                check_dead_letter(entry, entry.resolution, entry.resolution.dead_letter_reason)
                assert "not bound to a buffer" in entry.resolution.dead_letter_reason
                event("an output to an unbound route")
        elif answer.verdict == worker_pb2.VERDICT_DEAD_LETTER:
            assert entry.state is State.RESOLVED and entry.attempts == tries
            check_dead_letter(entry, entry.resolution,
                              answer.error or "the worker answered DEAD_LETTER without saying why")
        else:  # RETRY, UNSPECIFIED or a verdict this sidecar does not know: a try counted, never lost
            assert entry.attempts == tries + 1
            assert entry.last_error == answer.error or (not answer.error and entry.last_error)
            if entry.attempts > max_retries:
                assert entry.state is State.RESOLVED
                check_dead_letter(entry, entry.resolution,
                                  f"gave up after {entry.attempts} attempts: {entry.last_error}")
                event("an alert out of tries")
            else:
                assert entry.state is State.PENDING and entry.resolution is None
                given_back += 1
                event("an alert given back")
    assert counters.retried == given_back and counters.batches == 1
    assert ledger.ready == given_back + (ledger.waiting - len(batch.entries))  # given back, and never sent
