"""The Python SDK served for real: gRPC servers on loopback, called as the sidecar calls them."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import alert_worker
from alert_worker import Alert, codecs
from alert_worker.server import PORT_ENV, SERVICE_NAME
from alert_worker.testing import make_alert, rubin_alert, rubin_sample
from alertsidecar.v1 import worker_pb2, worker_pb2_grpc

from .example_support import EXAMPLES, free_port, serving

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
BIG = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@alert_worker.worker(name="odd-filter", version="3.1.4", accepts=["application/json"], routes=["even"],
                     batch_size=100, fields=["n", "source.psfFlux"])
def odd_filter(alert: Alert) -> Any:
    """Keeps alerts with an odd n, sends those with an even n to the route "even"."""
    n = alert.json()["n"]
    if n < 0:
        raise ValueError(f"negative n {n}")
    return True if n % 2 else alert_worker.Output.forward(route="even")


def json_alerts(count: int, start: int = 0) -> list[worker_pb2.Alert]:
    return [make_alert({"n": n}, offset=n).to_proto() for n in range(start, start + count)]


@pytest.fixture
def server() -> Iterator[alert_worker.RunningServer]:
    running = alert_worker.start(odd_filter, port=0)
    yield running
    running.stop(grace=0)


@pytest.fixture
def channel(server: alert_worker.RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address, options=BIG) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield channel


def health_of(channel: grpc.Channel, service: str = "") -> int:
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return response.status


def test_describe(channel: grpc.Channel) -> None:
    description = worker_pb2_grpc.AlertWorkerStub(channel).Describe(worker_pb2.DescribeRequest(
        sidecar_protocol_version=worker_pb2.PROTOCOL_VERSION_1), timeout=5)
    assert description.name == "odd-filter"
    assert description.version == "3.1.4"
    assert description.protocol_version == worker_pb2.PROTOCOL_VERSION_1
    assert list(description.accepts) == ["application/json"]
    assert list(description.routes) == ["even"]
    assert description.preferred_batch_size == 100
    assert list(description.fields) == ["n", "source.psfFlux"]
    assert description.sdk == f"python/alert_worker {alert_worker.__version__}"


def test_health_is_serving(channel: grpc.Channel) -> None:
    assert health_of(channel) == SERVING
    assert health_of(channel, SERVICE_NAME) == SERVING
    assert SERVICE_NAME == "alertsidecar.v1.AlertWorker"


def test_process_alert(channel: grpc.Channel) -> None:
    stub = worker_pb2_grpc.AlertWorkerStub(channel)
    [odd, even] = json_alerts(2, start=7)
    result = stub.ProcessAlert(odd, timeout=5)
    assert (result.id, result.verdict) == ("test/0/7", worker_pb2.VERDICT_OK)
    assert result.outputs[0].forward_input and result.outputs[0].route == ""
    assert stub.ProcessAlert(even, timeout=5).outputs[0].route == "even"


def test_process_batch_answers_each_of_100_alerts(channel: grpc.Channel) -> None:
    alerts = json_alerts(100)
    answer = worker_pb2_grpc.AlertWorkerStub(channel).ProcessBatch(
        worker_pb2.AlertBatch(batch_id=42, alerts=alerts), timeout=10)
    assert answer.batch_id == 42
    assert sorted(result.id for result in answer.results) == sorted(alert.id for alert in alerts)
    routes = {result.id: result.outputs[0].route for result in answer.results}
    assert all(routes[f"test/0/{n}"] == ("" if n % 2 else "even") for n in range(100))


def test_process_batch_of_large_alerts(channel: grpc.Channel) -> None:
    # 100 alerts of 100 KB, as a Rubin batch with cutouts: 10 MB, over gRPC's 4 MiB default.
    padding = "x" * 100_000
    alerts = [make_alert({"n": 2 * n + 1, "cutout": padding}, offset=n).to_proto() for n in range(100)]
    answer = worker_pb2_grpc.AlertWorkerStub(channel).ProcessBatch(
        worker_pb2.AlertBatch(batch_id=1, alerts=alerts), timeout=30)
    assert len(answer.results) == 100
    assert all(result.verdict == worker_pb2.VERDICT_OK for result in answer.results)


def test_process_stream_with_batches_in_flight(channel: grpc.Channel) -> None:
    batches = [worker_pb2.AlertBatch(batch_id=1000 + b, alerts=json_alerts(10, start=10 * b)) for b in range(8)]
    # Every batch is sent before any answer is read.
    answers = list(worker_pb2_grpc.AlertWorkerStub(channel).ProcessStream(iter(batches), timeout=30))
    assert sorted(answer.batch_id for answer in answers) == [batch.batch_id for batch in batches]
    for answer in answers:
        batch = next(b for b in batches if b.batch_id == answer.batch_id)
        assert sorted(r.id for r in answer.results) == sorted(a.id for a in batch.alerts)


def test_process_stream_answers_each_batch_as_it_comes(channel: grpc.Channel) -> None:
    outbox: queue.Queue[Any] = queue.Queue()
    responses = worker_pb2_grpc.AlertWorkerStub(channel).ProcessStream(iter(outbox.get, None), timeout=30)
    for batch_id in range(3):
        outbox.put(worker_pb2.AlertBatch(batch_id=batch_id, alerts=json_alerts(5, start=5 * batch_id)))
        # The answer comes while the stream stays open for the next batch.
        assert next(responses).batch_id == batch_id
    outbox.put(None)
    assert list(responses) == []


def test_worker_that_raises_answers_retry(channel: grpc.Channel) -> None:
    alerts = json_alerts(2) + [make_alert({"n": -3}, offset=99).to_proto()]
    answer = worker_pb2_grpc.AlertWorkerStub(channel).ProcessBatch(
        worker_pb2.AlertBatch(batch_id=5, alerts=alerts), timeout=5)
    by_id = {result.id: result for result in answer.results}
    assert by_id["test/0/99"].verdict == worker_pb2.VERDICT_RETRY
    assert by_id["test/0/99"].error == "ValueError: negative n -3"
    assert by_id["test/0/1"].verdict == worker_pb2.VERDICT_OK


# An id no registry knows: only the writer schema the batch carries decodes it.
UNREGISTERED_ID = 424242
SMALL_SCHEMA = {"type": "record", "name": "small", "fields": [
    {"name": "diaSourceId", "type": "long"}, {"name": "psfFlux", "type": ["null", "float"]}]}


@alert_worker.worker(name="source-ids", accepts=[codecs.AVRO_CONFLUENT])
def source_ids(alert: Alert) -> Any:
    return {"diaSourceId": alert.avro()["diaSourceId"]}


def unregistered_alerts(count: int) -> list[worker_pb2.Alert]:
    return [make_alert(codecs.encode_confluent({"diaSourceId": 2**62 + n, "psfFlux": None}, SMALL_SCHEMA,
                                               UNREGISTERED_ID), content_type=codecs.AVRO_CONFLUENT,
                       offset=n).to_proto() for n in range(count)]


def decoded_ids(results: Any) -> dict[str, int]:
    assert all(r.verdict == worker_pb2.VERDICT_OK for r in results), [r.error for r in results]
    return {r.id: codecs.decode_json(r.outputs[0].value)["diaSourceId"] for r in results}


def test_batch_schemas_decode_over_grpc() -> None:
    schemas = {UNREGISTERED_ID: json.dumps(SMALL_SCHEMA)}
    with alert_worker.start(source_ids, port=0) as running, grpc.insecure_channel(running.address) as channel:
        stub = worker_pb2_grpc.AlertWorkerStub(channel)
        answer = stub.ProcessBatch(worker_pb2.AlertBatch(batch_id=1, alerts=unregistered_alerts(3),
                                                         schemas=schemas), timeout=10)
        assert decoded_ids(answer.results) == {f"test/0/{n}": 2**62 + n for n in range(3)}

        batches = [worker_pb2.AlertBatch(batch_id=b, alerts=unregistered_alerts(2), schemas=schemas)
                   for b in range(3)]
        streamed = list(stub.ProcessStream(iter(batches), timeout=30))
        assert sorted(answer.batch_id for answer in streamed) == [0, 1, 2]
        for answer in streamed:
            assert decoded_ids(answer.results) == {"test/0/0": 2**62, "test/0/1": 2**62 + 1}

        # Without the schema, in a batch or alone, the alert is dead-lettered with the reason.
        bare = stub.ProcessBatch(worker_pb2.AlertBatch(batch_id=2, alerts=unregistered_alerts(1)), timeout=10)
        assert bare.results[0].verdict == worker_pb2.VERDICT_DEAD_LETTER
        assert f"the batch carries no writer schema for id {UNREGISTERED_ID}" in bare.results[0].error
        alone = stub.ProcessAlert(unregistered_alerts(1)[0], timeout=10)
        assert alone.verdict == worker_pb2.VERDICT_DEAD_LETTER
        assert f"schema id {UNREGISTERED_ID} is not a Rubin schema" in alone.error


def test_graceful_stop() -> None:
    entered, release = threading.Event(), threading.Event()

    @alert_worker.worker(name="slow")
    def slow(alert: Alert) -> bool:
        entered.set()
        release.wait(10)
        return True

    running = alert_worker.start(slow, port=0)
    channel = grpc.insecure_channel(running.address)
    try:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert next(watch).status == SERVING
        call = worker_pb2_grpc.AlertWorkerStub(channel).ProcessAlert.future(json_alerts(1)[0], timeout=20)
        assert entered.wait(10)
        stopper = threading.Thread(target=running.stop, kwargs={"grace": 15})
        stopper.start()
        # Health turns NOT_SERVING while the call in progress still runs.
        assert next(watch).status == NOT_SERVING
        assert stopper.is_alive()
        release.set()
        assert call.result(timeout=10).verdict == worker_pb2.VERDICT_OK
        stopper.join(timeout=10)
        assert not stopper.is_alive()
        with pytest.raises(grpc.RpcError) as gone:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert gone.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        release.set()
        running.stop(grace=0)
        channel.close()


def test_stop_ends_open_streams_promptly() -> None:
    running = alert_worker.start(odd_filter, port=0)
    channel = grpc.insecure_channel(running.address)
    outbox: queue.Queue[Any] = queue.Queue()
    try:
        responses = worker_pb2_grpc.AlertWorkerStub(channel).ProcessStream(iter(outbox.get, None), timeout=30)
        outbox.put(worker_pb2.AlertBatch(batch_id=1, alerts=json_alerts(3)))
        assert next(responses).batch_id == 1
        began = time.monotonic()
        running.stop(grace=20)
        assert time.monotonic() - began < 5  # not the whole grace period
        with pytest.raises(grpc.RpcError) as ended:
            next(responses)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        outbox.put(None)
        running.stop(grace=0)
        channel.close()


def test_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv(PORT_ENV, str(port))
    with alert_worker.start(odd_filter) as running:
        assert running.port == port


def test_a_busy_port_is_refused() -> None:
    with alert_worker.start(odd_filter, port=0) as running:
        with pytest.raises(alert_worker.ServeError, match=f"cannot listen on 127.0.0.1:{running.port}"):
            alert_worker.start(odd_filter, port=running.port)


# --- the examples, run as scripts -------------------------------------------------


example_process = serving()


def test_passthrough_example_served(example_process: Any) -> None:
    example = example_process("passthrough.py")
    assert example.stub.Describe(worker_pb2.DescribeRequest(), timeout=5).name == "passthrough"
    alerts = json_alerts(100)
    answer = example.stub.ProcessBatch(worker_pb2.AlertBatch(batch_id=9, alerts=alerts), timeout=10)
    assert answer.batch_id == 9
    assert sorted(r.id for r in answer.results) == sorted(a.id for a in alerts)
    assert all(r.verdict == worker_pb2.VERDICT_OK and r.outputs[0].forward_input for r in answer.results)
    code, output = example.terminate()
    assert code == 0, output
    assert f"serving worker passthrough 1.0.0 on 127.0.0.1:{example.port}" in output
    assert "received SIGTERM: stopping" in output


def rubin_with_mag(mag: float, offset: int) -> worker_pb2.Alert:
    record = rubin_sample("11.1")
    record["diaSource"]["psfFlux"] = 10 ** ((31.4 - mag) / 2.5)
    return rubin_alert(record, version="11.1", offset=offset).to_proto()


def test_brightness_filter_example_served(example_process: Any) -> None:
    example = example_process("brightness_filter.py", "--max-mag", "18.5")
    description = example.stub.Describe(worker_pb2.DescribeRequest(), timeout=5)
    assert (description.name, list(description.accepts)) == ("brightness-filter", [codecs.AVRO_CONFLUENT])
    mags = [16.0, 18.0, 19.0, 21.0]
    alerts = [rubin_with_mag(mag, offset=n) for n, mag in enumerate(mags)]
    answer = example.stub.ProcessBatch(worker_pb2.AlertBatch(batch_id=1, alerts=alerts), timeout=30)
    kept = {r.id: bool(r.outputs) for r in answer.results if r.verdict == worker_pb2.VERDICT_OK}
    assert kept == {"test/0/0": True, "test/0/1": True, "test/0/2": False, "test/0/3": False}
    code, output = example.terminate()
    assert code == 0, output



def test_example_on_a_busy_port_exits_with_a_message() -> None:
    with alert_worker.start(odd_filter, port=0) as running:
        finished = subprocess.run(
            [sys.executable, str(EXAMPLES / "passthrough.py"), "--port", str(running.port)],
            capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1
    assert f"alert_worker: cannot listen on 127.0.0.1:{running.port}" in finished.stderr
    assert "Traceback" not in finished.stderr
