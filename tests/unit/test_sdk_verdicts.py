"""What a Python worker returns or raises, and the verdict the sidecar gets for it."""

from __future__ import annotations

import logging
from typing import Any

import numpy
import pytest

import alert_worker
from alert_worker import DeadLetter, Output, Result, Retry, Verdict, codecs
from alert_worker.testing import make_alert, run


def answer(returned: Any, **worker_args: Any) -> Result:
    """The result for one alert of a worker that returns ``returned``."""

    @alert_worker.worker(name="fixed", **worker_args)
    def fixed(alert: alert_worker.Alert) -> Any:
        return returned

    [result] = run(fixed, [make_alert({"n": 1})])
    return result


def raising(exc: Exception) -> Result:
    @alert_worker.worker(name="raising")
    def fails(alert: alert_worker.Alert) -> Any:
        raise exc

    [result] = run(fails, [make_alert({"n": 1})])
    return result


# --- return forms ---------------------------------------------------------------


def test_true_keeps_the_alert_as_it_is() -> None:
    result = answer(True)
    assert result.verdict is Verdict.OK
    assert result.outputs == (Output.forward(),)
    assert result.outputs[0].forward_input


def test_false_drops_the_alert() -> None:
    assert answer(False) == Result(Verdict.OK)


def test_numpy_bool_counts_as_bool() -> None:
    assert answer(numpy.float32(3.0) > 2.0).outputs == (Output.forward(),)
    assert answer(numpy.bool_(False)) == Result(Verdict.OK)


def test_bytes_are_one_raw_output() -> None:
    [output] = answer(b"\x00\x01").outputs
    assert (output.value, output.content_type, output.forward_input) == (b"\x00\x01", codecs.OCTET_STREAM, False)


def test_dict_is_one_json_output_with_exact_ids() -> None:
    [output] = answer({"diaSourceId": 2**63 - 1, "ra": 10.5}).outputs
    assert output.content_type == "application/json"
    assert codecs.decode_json(output.value) == {"diaSourceId": 9223372036854775807, "ra": 10.5}
    assert b"9223372036854775807" in output.value


def test_outputs_are_produced_as_given() -> None:
    outputs = [
        Output(value=b"a", key=b"k", content_type="text/plain", headers=[("h", b"1")]),
        Output.json({"x": 1}, key="obj-1", headers=[("from", "test")]),
        Output.forward(headers=[("tag", b"bright")]),
    ]
    assert answer(outputs[0]).outputs == (outputs[0],)
    result = answer(outputs)
    assert result.verdict is Verdict.OK
    assert result.outputs == tuple(outputs)
    assert result.outputs[1].key == b"obj-1"
    assert result.outputs[1].headers == (("from", b"test"),)


def test_empty_list_drops_the_alert() -> None:
    assert answer([]) == Result(Verdict.OK)


def test_result_is_passed_as_it_is() -> None:
    assert answer(Result(Verdict.DEAD_LETTER, error="bad cutout")) == Result(Verdict.DEAD_LETTER, error="bad cutout")


def test_none_is_an_error_not_a_drop() -> None:
    result = answer(None)
    assert result.verdict is Verdict.RETRY
    assert "returned None" in result.error
    assert "return True to keep the alert, False to drop it" in result.error


@pytest.mark.parametrize("returned, named", [
    ("text", "returned a str"),
    (42, "returned a int (42)"),
    ([b"bytes"], "returned a list holding a bytes"),
    ({"x": object()}, "cannot be written as JSON"),
])
def test_other_returns_are_errors(returned: Any, named: str) -> None:
    result = answer(returned)
    assert result.verdict is Verdict.RETRY
    assert named in result.error


def test_outputs_of_a_retry_are_dropped() -> None:
    result = answer(Result(Verdict.RETRY, outputs=(Output(b"x"),), error="later"))
    assert result == Result(Verdict.RETRY, error="later")


# --- exceptions -----------------------------------------------------------------


def test_retry_raised() -> None:
    assert raising(Retry("catalogue down")) == Result(Verdict.RETRY, error="catalogue down")


def test_dead_letter_raised() -> None:
    assert raising(DeadLetter("no diaSource")) == Result(Verdict.DEAD_LETTER, error="no diaSource")


def test_any_other_exception_is_a_retry_named_by_its_type(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="alert_worker"):
        result = raising(KeyError("psfFlux"))
    assert result == Result(Verdict.RETRY, error="KeyError: 'psfFlux'")
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1
    assert "test/0/0" in tracebacks[0].getMessage()


def test_errors_are_one_line() -> None:
    result = raising(ValueError("first line\nsecond line"))
    assert result.error == "ValueError: first line second line"


def test_undecodable_alert_is_dead_lettered() -> None:
    @alert_worker.worker(name="decoder")
    def decoder(alert: alert_worker.Alert) -> bool:
        return alert.avro()["x"] > 0

    [result] = run(decoder, [make_alert(b"\x00\x00\x00\x02\xbd\xff", content_type=codecs.AVRO_CONFLUENT)])
    assert result.verdict is Verdict.DEAD_LETTER
    assert result.error.startswith("cannot decode the alert: ")
    assert "schema id 701" in result.error


# --- routes ---------------------------------------------------------------------


def test_declared_route_is_fine() -> None:
    result = answer(Output.forward(route="bright"), routes=["bright"])
    assert result.verdict is Verdict.OK
    assert result.outputs[0].route == "bright"


def test_undeclared_route_is_a_dead_letter() -> None:
    result = answer([Output.forward(), Output.forward(route="faint")], routes=["bright"])
    assert result.verdict is Verdict.DEAD_LETTER
    assert result.outputs == ()
    assert "route 'faint'" in result.error and "does not declare" in result.error


# --- batch workers --------------------------------------------------------------


def test_batch_worker_answers_each_alert() -> None:
    @alert_worker.batch_worker(name="odd")
    def odd(alerts: list[alert_worker.Alert]) -> list[Any]:
        return [alert.json()["n"] % 2 == 1 for alert in alerts]

    results = run(odd, [make_alert({"n": n}, offset=n) for n in range(5)])
    assert [bool(r.outputs) for r in results] == [False, True, False, True, False]
    assert all(r.verdict is Verdict.OK for r in results)


def test_batch_worker_may_answer_alerts_with_exceptions() -> None:
    @alert_worker.batch_worker(name="mixed")
    def mixed(alerts: list[alert_worker.Alert]) -> Any:
        return (DeadLetter("bad") if alert.offset == 1 else True for alert in alerts)

    results = run(mixed, [make_alert({}, offset=n) for n in range(3)])
    assert [r.verdict for r in results] == [Verdict.OK, Verdict.DEAD_LETTER, Verdict.OK]
    assert results[1].error == "bad"


def test_batch_worker_returning_too_few_items_retries_the_batch() -> None:
    @alert_worker.batch_worker(name="short")
    def short(alerts: list[alert_worker.Alert]) -> list[bool]:
        return [True]

    results = run(short, [make_alert({}, offset=n) for n in range(3)])
    assert {r.verdict for r in results} == {Verdict.RETRY}
    assert "returned 1 items for 3 alerts" in results[0].error


def test_batch_worker_raising_answers_every_alert() -> None:
    @alert_worker.batch_worker(name="broken")
    def broken(alerts: list[alert_worker.Alert]) -> list[bool]:
        raise RuntimeError("model not loaded")

    results = run(broken, [make_alert({}, offset=n) for n in range(4)])
    assert results == [Result(Verdict.RETRY, error="RuntimeError: model not loaded")] * 4


def test_one_undecodable_alert_does_not_dead_letter_its_batch() -> None:
    @alert_worker.batch_worker(name="decode-all")
    def decode_all(alerts: list[alert_worker.Alert]) -> list[bool]:
        return [alert.decode()["n"] > 0 for alert in alerts]

    alerts = [make_alert({"n": 1}), make_alert(b"{broken", content_type="application/json", offset=1)]
    results = run(decode_all, alerts)
    assert {r.verdict for r in results} == {Verdict.RETRY}
    assert results[0].error.startswith("cannot decode an alert of the batch: ")
    assert "DeadLetter(...)" in results[0].error
