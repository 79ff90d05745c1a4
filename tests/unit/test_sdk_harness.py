"""The Python SDK's worker definitions and its test harness (alert_worker.testing)."""

from __future__ import annotations

from typing import Any

import pytest

import alert_worker
from alert_worker import Alert, Output, Result, Verdict, WorkerDefinitionError, codecs, processing
from alert_worker.testing import make_alert, run
from alertsidecar.v1 import worker_pb2

# --- make_alert -----------------------------------------------------------------


def test_make_alert_fills_an_alert_as_the_sidecar_would() -> None:
    alert = make_alert({"candid": 739260766315010006}, key="ZTF18abc", topic="ztf", partition=3,
                       offset=2**40, timestamp_ms=1_700_000_000_000, headers=[("a", "1"), ("a", b"2")],
                       attempt=2)
    assert alert.id == f"ztf/3/{2**40}"
    assert (alert.topic, alert.partition, alert.offset) == ("ztf", 3, 2**40)
    assert alert.timestamp_ms == 1_700_000_000_000
    assert alert.key == b"ZTF18abc"
    assert alert.content_type == "application/json"
    assert alert.json() == {"candid": 739260766315010006}
    assert alert.headers == [("a", b"1"), ("a", b"2")]
    assert alert.attempt == 2


@pytest.mark.parametrize("value, content_type", [
    ({"a": 1}, codecs.JSON),
    ([1, 2], codecs.JSON),
    (b"\x01raw", codecs.OCTET_STREAM),
    (b"Obj\x01...", codecs.AVRO_OCF),
    ("hello", "text/plain; charset=utf-8"),
])
def test_make_alert_guesses_the_content_type(value: Any, content_type: str) -> None:
    assert make_alert(value).content_type == content_type


def test_an_alert_without_key_has_none() -> None:
    assert make_alert(b"x").key is None


# --- run ------------------------------------------------------------------------


def test_run_answers_in_order_through_the_wire_format() -> None:
    @alert_worker.worker(name="echo")
    def echo(alert: Alert) -> Any:
        return {"offset": alert.offset, "attempt": alert.attempt}

    alerts = [make_alert({}, offset=n, attempt=n % 2) for n in range(5)]
    results = run(echo, alerts)
    assert [codecs.decode_json(r.outputs[0].value) for r in results] == [
        {"offset": n, "attempt": n % 2} for n in range(5)]


def test_run_sends_batches_of_the_preferred_size() -> None:
    sizes = []

    @alert_worker.batch_worker(name="sizes", batch_size=3)
    def record_sizes(alerts: list[Alert]) -> list[bool]:
        sizes.append(len(alerts))
        return [True] * len(alerts)

    assert len(run(record_sizes, [make_alert({}, offset=n) for n in range(7)])) == 7
    assert sizes == [3, 3, 1]


def test_every_result_carries_its_alert_id() -> None:
    @alert_worker.batch_worker(name="reversed")
    def keep(alerts: list[Alert]) -> list[bool]:
        return [alert.offset != 1 for alert in alerts]

    messages = [make_alert({}, topic="t", partition=1, offset=n).to_proto() for n in range(3)]
    answered = processing.process(keep, messages)
    assert [result.id for result in answered] == ["t/1/0", "t/1/1", "t/1/2"]
    assert [len(result.outputs) for result in answered] == [1, 0, 1]


def test_result_survives_the_contract_messages() -> None:
    result = Result(Verdict.OK, (Output(b"v", key=b"k", content_type="x/y", headers=[("h", b"1")], route="r"),
                                 Output.forward(headers=[("f", b"2")])))
    message = processing.result_to_proto("t/0/1", result)
    assert message.id == "t/0/1"
    assert message.outputs[1].forward_input and not message.outputs[1].value
    assert processing.result_from_proto(message) == result


# --- worker definitions ---------------------------------------------------------


def test_decorator_keeps_the_function_callable() -> None:
    @alert_worker.worker
    def bright(alert: Alert) -> bool:
        return True

    assert isinstance(bright, alert_worker.Worker)
    assert bright.worker_name == "bright"
    assert bright(make_alert({})) is True


def test_class_worker_sets_up_once_and_processes() -> None:
    class Counter(alert_worker.Worker):
        version = "2.0"
        routes = ["odd"]

        def __init__(self) -> None:
            self.setups = 0

        def setup(self) -> None:
            self.setups += 1

        def process(self, alert: Alert) -> Any:
            return Output.forward(route="odd") if alert.offset % 2 else True

    counter = Counter()
    first = run(counter, [make_alert({}, offset=0)])
    second = run(counter, [make_alert({}, offset=1)])
    assert counter.setups == 1
    assert first[0].outputs[0].route == "" and second[0].outputs[0].route == "odd"
    description = processing.describe(counter)
    assert (description.name, description.version, list(description.routes)) == ("Counter", "2.0", ["odd"])


def test_class_batch_worker() -> None:
    class Half(alert_worker.Worker):
        name = "half"
        batch_size = 10

        def process_batch(self, alerts: list[Alert]) -> list[bool]:
            return [alert.offset < len(alerts) // 2 for alert in alerts]

    results = run(Half(), [make_alert({}, offset=n) for n in range(4)])
    assert [bool(r.outputs) for r in results] == [True, True, False, False]
    assert processing.describe(Half()).preferred_batch_size == 10


def test_describe_names_the_sdk_and_protocol() -> None:
    @alert_worker.worker(name="w", version="1.2.3", accepts=[codecs.AVRO_CONFLUENT], batch_size=50)
    def w(alert: Alert) -> bool:
        return True

    description = processing.describe(w)
    assert description.protocol_version == worker_pb2.PROTOCOL_VERSION_1
    assert description.sdk == f"python/alert_worker {alert_worker.__version__}"
    assert list(description.accepts) == [codecs.AVRO_CONFLUENT]
    assert description.preferred_batch_size == 50


@pytest.mark.parametrize("attributes, message", [
    ({}, "overrides neither process"),
    ({"process": lambda self, a: True, "routes": "bright"}, "routes must be a list of str"),
    ({"process": lambda self, a: True, "routes": [""]}, 'the default route "" is always there'),
    ({"process": lambda self, a: True, "batch_size": -1}, "batch_size must be a whole number"),
])
def test_badly_defined_workers_are_refused(attributes: dict[str, Any], message: str) -> None:
    broken = type("Broken", (alert_worker.Worker,), attributes)()
    with pytest.raises(WorkerDefinitionError, match=message):
        run(broken, [make_alert({})])
