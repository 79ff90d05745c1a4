"""Every SDK's conformance worker answers the vectors as the contract says (see README.md here).

The SDK cases run the real sidecar on the session's Kafka. The driver's own
checks are tested first, without Kafka, on recorded outcomes that are right
and then wrong by one byte, one integer or one header: a driver that cannot
fail would let every SDK pass.
"""

from __future__ import annotations

import importlib
import json
import sys
from types import ModuleType

import pytest

from .driver import ROOT, Input, Outcome, Record, Report, VectorResult, compare, load_vectors, run_conformance

STAGE = "conformance-test"  # the consumer group the recorded dead letters name


def _support(name: str) -> ModuleType:
    """``tests.<name>`` (the Java or R toolchain helper), imported only by the case that needs it."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module(f"tests.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"tests.{name}":
            raise
        pytest.fail(f"tests/{name}.py is missing: it says how to build and start that SDK's worker")


def _python_worker() -> tuple[list[str], list[str]]:
    return [sys.executable, "tests/conformance/workers/conformance_worker.py"], []


def _java_worker() -> tuple[list[str], list[str]]:
    command = _support("java_support").java_worker_command("org.alertsidecar.conformance.ConformanceWorker")
    return list(command), []


def _r_worker() -> tuple[list[str], list[str]]:
    command = _support("r_support").r_worker_command("sdks/r/inst/conformance/conformance_worker.R")
    # The R SDK serves the Connect protocol (HTTP/1.1) rather than gRPC.
    return list(command), ["--worker-protocol", "connect"]


SDKS = {"python": _python_worker, "java": _java_worker, "r": _r_worker}


@pytest.mark.kafka
@pytest.mark.parametrize("sdk", list(SDKS))
def test_sdk_worker_conforms(sdk, kafka_bootstrap, tmp_path):
    command, sidecar_args = SDKS[sdk]()
    report = run_conformance(kafka_bootstrap, command, sidecar_args=sidecar_args, log_dir=tmp_path)
    assert report.ok, f"the {sdk} conformance worker fails:\n{report.failure_text()}"


# -- the driver itself, without Kafka ----------------------------------------------


VECTORS = {vector.name: vector for vector in load_vectors()}
SOURCE_ID = "conformance-t-in/0/5"


def _input(name: str) -> Input:
    vector = VECTORS[name]
    record = Record(vector.encoded_value(), vector.encoded_key(), vector.encoded_headers())
    return Input("conformance-t-in", 0, 5, record)


def _output(value: bytes, key: bytes | None, *headers: tuple[str, bytes]) -> Record:
    return Record(value, key, (*headers, ("x-alert-source", SOURCE_ID.encode())))


def _dead_letter(source: Input, reason: str, attempts: str) -> Record:
    return Record(source.record.value, source.record.key, (
        *source.record.headers, ("x-dead-letter-reason", reason.encode()),
        ("x-dead-letter-source", SOURCE_ID.encode()), ("x-dead-letter-stage", STAGE.encode()),
        ("x-dead-letter-attempts", attempts.encode())))


def _forwarded(value: bytes | None = None) -> tuple[Input, Outcome]:
    """The forward vector as a conforming stage answers it; ``value`` replaces the output's bytes."""
    source = _input("forward")
    record = source.record
    return source, Outcome(out=[_output(value if value is not None else record.value, record.key, *record.headers)])


def _echoed(alert_id_text: str) -> tuple[Input, Outcome]:
    """The echo vector for 2^53+1 with ``alert_id_text`` written as the echoed id."""
    source = _input("echo_alert_id_2_53_plus_1")
    value = (f'{{"id":"{SOURCE_ID}","topic":"conformance-t-in","partition":0,"offset":5,"key":null,"headers":{{}},'
             f'"attempt":0,"alert_id":{alert_id_text}}}').encode()
    return source, Outcome(out=[_output(value, None, ("content-type", b"application/json"))])


def test_vectors_cover_every_op_of_the_command_language():
    ops = {vector.value["op"] for vector in VECTORS.values()}
    assert {"forward", "drop", "emit", "retry", "dead_letter", "fail", "echo", "large"} <= ops
    assert len(ops) == 9, "one vector has an op outside the language, to check the unknown-op answer"


def test_compare_accepts_a_conforming_outcome():
    assert compare(VECTORS["forward"], *_forwarded(), STAGE) == []
    assert compare(VECTORS["echo_alert_id_2_53_plus_1"], *_echoed("9007199254740993"), STAGE) == []
    source = _input("retry_always")
    outcome = Outcome(dead_letter=[_dead_letter(source, "gave up after 3 attempts: retry requested", "3")])
    assert compare(VECTORS["retry_always"], source, outcome, STAGE) == []


def test_compare_reports_one_byte_changed():
    source, _ = _forwarded()
    changed = bytearray(source.record.value)
    changed[10] ^= 0x01
    problems = compare(VECTORS["forward"], *_forwarded(bytes(changed)), STAGE)
    assert problems and "first difference at byte 10" in problems[0]


@pytest.mark.parametrize("written", ["9007199254740992", "9007199254740993.0", '"9007199254740993"'])
def test_compare_reports_a_64_bit_id_not_echoed_exactly(written):
    problems = compare(VECTORS["echo_alert_id_2_53_plus_1"], *_echoed(written), STAGE)
    assert problems == [f"out[0] json alert_id: expected 9007199254740993, got {json.loads(written)!r}"]


def test_compare_reports_a_lost_header_an_extra_output_and_a_wrong_dead_letter():
    source, outcome = _forwarded()
    outcome.out[0] = Record(outcome.out[0].value, outcome.out[0].key,
                            tuple(h for h in outcome.out[0].headers if h[0] != "trace"))
    assert any("header 'trace'" in p for p in compare(VECTORS["forward"], source, outcome, STAGE))

    source, outcome = _forwarded()
    outcome.side.append(outcome.out[0])
    assert compare(VECTORS["forward"], source, outcome, STAGE)[0].startswith("side: expected 0 record(s), got 1")

    source = _input("retry_always")
    early = Outcome(dead_letter=[_dead_letter(source, "retry requested", "0")])
    assert compare(VECTORS["retry_always"], source, early, STAGE) == [
        "dead letter header x-dead-letter-attempts: expected ['3'], got ['0']"]


def test_a_report_without_results_is_not_a_pass():
    assert not Report().ok
    assert Report(results=[VectorResult("forward", ())]).ok
    failed = Report(results=[VectorResult("forward", ("out: expected 1 record(s), got 0 (none)",))])
    assert not failed.ok and "FAIL forward: out: expected 1" in failed.failure_text()
