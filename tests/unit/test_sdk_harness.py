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


# --- projection: fields ------------------------------------------------------------


def test_fields_reach_describe() -> None:
    @alert_worker.batch_worker(name="light-curve", accepts=[codecs.JSON],
                               fields=["diaSourceId", "diaSource.psfFlux", "prvDiaSources.midpointMjdTai"])
    def light_curve(alerts: list[Alert]) -> list[bool]:
        return [True] * len(alerts)

    class Projected(alert_worker.Worker):
        accepts = [codecs.JSON]
        fields = ["candid", "candidate.magpsf"]

        def process(self, alert: Alert) -> bool:
            return True

    assert list(processing.describe(light_curve).fields) == [
        "diaSourceId", "diaSource.psfFlux", "prvDiaSources.midpointMjdTai"]
    assert list(processing.describe(Projected()).fields) == ["candid", "candidate.magpsf"]
    assert list(processing.describe(alert_worker.worker(lambda alert: True)).fields) == []


@pytest.mark.parametrize("fields, message", [
    ("diaSource.psfFlux", r"fields must be a list of str, like \['diaSource.psfFlux'\]"),
    ([""], "fields lists '', which is not a dotted path of field names"),
    (["diaSource..psfFlux"], "is not a dotted path"),
    (["diaSource.psfFlux "], "is not a dotted path"),
    (["1st"], "is not a dotted path"),
    (["prvDiaSources[0].psfFlux"], "is not a dotted path"),
    (["a.b", "a.b"], r"fields \['a.b', 'a.b'\] repeats a path"),
])
def test_bad_fields_are_refused(fields: Any, message: str) -> None:
    @alert_worker.worker(name="projected", accepts=[codecs.JSON], fields=fields)
    def projected(alert: Alert) -> bool:
        return True

    with pytest.raises(WorkerDefinitionError, match=message):
        run(projected, [make_alert({})])


def test_fields_without_the_json_form_are_worth_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    @alert_worker.worker(name="raw-projected", accepts=[codecs.AVRO_CONFLUENT], fields=["diaSourceId"])
    def raw_projected(alert: Alert) -> bool:
        return True

    @alert_worker.worker(name="any-projected", fields=["diaSourceId"])
    def any_projected(alert: Alert) -> bool:
        return True

    with caplog.at_level("WARNING", logger="alert_worker"):
        run(raw_projected, [make_alert({})])
        run(any_projected, [make_alert({})])
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 1
    assert "'raw-projected' declares fields ['diaSourceId'], but a projection only applies to the JSON form" \
        in warned[0]


# --- the contract's newer Alert fields, and batch schemas, through the harness ----------------


def test_make_alert_carries_what_the_sidecar_says_of_the_value() -> None:
    alert = make_alert({"diaSourceId": 2**63 - 1}, source_content_type=codecs.AVRO_CONFLUENT, schema_id=1101)
    message = alert.to_proto()
    assert (message.source_content_type, message.schema_id) == (codecs.AVRO_CONFLUENT, 1101)
    assert (alert.source_content_type, alert.schema_id) == (codecs.AVRO_CONFLUENT, 1101)
    assert "source_content_type='application/vnd.apache.avro+confluent'" in repr(alert)
    # A Confluent-framed value is labelled with the id in its header, as the sidecar labels it.
    framed = make_alert(codecs.encode_confluent({"id": 1}, {"type": "record", "name": "r", "fields": [
        {"name": "id", "type": "long"}]}, 31337), content_type=codecs.AVRO_CONFLUENT)
    assert framed.to_proto().schema_id == 31337
    assert make_alert(b"\x00\x00").to_proto().schema_id == 0
    assert make_alert({}).source_content_type == ""


def test_run_sends_schemas_with_every_batch() -> None:
    schema = {"type": "record", "name": "r", "fields": [{"name": "id", "type": "long"}]}
    seen = []

    @alert_worker.batch_worker(name="ids", batch_size=2)
    def ids(alerts: list[Alert]) -> list[Any]:
        seen.append(len(alerts))
        return [{"id": alert.avro()["id"]} for alert in alerts]

    alerts = [make_alert(codecs.encode_confluent({"id": 2**60 + n}, schema, 424242),
                         content_type=codecs.AVRO_CONFLUENT, offset=n) for n in range(3)]
    results = run(ids, alerts, schemas={424242: schema})  # a dict is sent as its JSON text
    assert seen == [2, 1]
    assert [codecs.decode_json(r.outputs[0].value) for r in results] == [{"id": 2**60 + n} for n in range(3)]


def test_a_broken_confluent_value_makes_an_alert_that_dead_letters() -> None:
    @alert_worker.worker(name="decoder")
    def decoder(alert: Alert) -> bool:
        return bool(alert.avro())

    broken = make_alert(b"\x07junk", content_type=codecs.AVRO_CONFLUENT)
    assert broken.schema_id == 0
    [result] = run(decoder, [broken])
    assert result.verdict is Verdict.DEAD_LETTER
    assert "first byte is 0x07" in result.error
