"""Dispatching alerts to workers over the contract in proto/.

A ``WorkerClient`` is one worker address: a gRPC channel, its health, what the
worker said of itself in Describe, and the batches sent to it. Calls are
asynchronous: a finished call is put on a queue that the stage's loop drains,
so every decision about alerts is taken on the loop's one thread.

A ``WorkerPool`` spreads batches over the healthy workers and watches the
unhealthy ones from a background thread until they answer their health check
again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alertsidecar.v1 import worker_pb2, worker_pb2_grpc

from .exceptions import SidecarError, WorkerError
from .formats import JSON as JSON_CONTENT_TYPE

log = logging.getLogger("alert_sidecar.dispatch")

# A batch of 100 LSST-sized alerts (about 100 KB each, FACTS.md) is about 10 MB;
# gRPC's default 4 MB limit would refuse it. 256 MB leaves room for large stamps.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly after a worker restarts; gRPC's default backoff grows to
    # 120 s, which would leave a stage idle long after its worker is back.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# How often an unhealthy worker is asked for its health again.
HEALTH_PROBE_INTERVAL_S = 0.5
HEALTH_CHECK_TIMEOUT_S = 2.0


@dataclass(eq=False)
class Batch:
    """Alerts of one input partition sent in one ProcessBatch call."""

    id: int
    ledger: Any  # offsets.PartitionLedger
    entries: list  # offsets.Entry, in offset order
    alert_ids: list[str]
    worker: "WorkerClient | None" = None
    sent_at: float = 0.0


@dataclass
class Completion:
    """A finished call: either a BatchResult or the gRPC error."""

    batch: Batch
    result: worker_pb2.BatchResult | None = None
    error: grpc.RpcError | None = None


def describe_rpc_error(err: grpc.RpcError) -> str:
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    name = code.name if code else "ERROR"
    return f"{name}: {details}"


@dataclass(eq=False)
class WorkerClient:
    """One worker address."""

    address: str
    completions: "queue.Queue[Completion]"
    call_timeout: float
    channel: grpc.Channel = field(init=False)
    description: worker_pb2.WorkerDescription | None = None
    in_flight: int = 0  # batches sent and not answered (loop thread only)
    _healthy: threading.Event = field(default_factory=threading.Event)
    last_problem: str = ""

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self._stub = worker_pb2_grpc.AlertWorkerStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    @property
    def healthy(self) -> bool:
        return self._healthy.is_set()

    @property
    def name(self) -> str:
        if self.description and self.description.name:
            return f"{self.description.name}@{self.address}"
        return self.address

    def probe(self) -> bool:
        """Ask the health service once; remember why not when it is not SERVING."""
        try:
            answer = self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_CHECK_TIMEOUT_S)
        except grpc.RpcError as err:
            self.last_problem = _explain_unreachable(err)
            return False
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            self.last_problem = f"health is {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}"
            return False
        return True

    def describe(self) -> worker_pb2.WorkerDescription:
        request = worker_pb2.DescribeRequest(sidecar_protocol_version=worker_pb2.PROTOCOL_VERSION_1)
        try:
            return self._stub.Describe(request, timeout=HEALTH_CHECK_TIMEOUT_S * 5)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise WorkerError(
                    f"worker at {self.address} does not implement alertsidecar.v1.AlertWorker "
                    "(Describe is unimplemented): is this an alert-sidecar worker?"
                ) from None
            if err.code() == grpc.StatusCode.INTERNAL and "eserializ" in (err.details() or ""):
                raise WorkerError(
                    f"worker at {self.address} answered Describe with something that is not a "
                    f"WorkerDescription ({err.details()}); is it built against proto/alertsidecar/v1?"
                ) from None
            raise

    def mark_healthy(self, description: worker_pb2.WorkerDescription) -> None:
        self.description = description
        self._healthy.set()

    def mark_unhealthy(self, why: str) -> None:
        self.last_problem = why
        self._healthy.clear()

    def send(self, batch: Batch, schemas: dict[int, str]) -> None:
        request = worker_pb2.AlertBatch(batch_id=batch.id, alerts=[_to_alert(e, batch) for e in batch.entries])
        for schema_id, text in schemas.items():
            request.schemas[schema_id] = text
        batch.worker = self
        batch.sent_at = time.monotonic()
        self.in_flight += 1
        future = self._stub.ProcessBatch.future(request, timeout=self.call_timeout)
        future.add_done_callback(lambda f: self.completions.put(_completion(batch, f)))

    def close(self) -> None:
        self.channel.close()


def _completion(batch: Batch, future: grpc.Future) -> Completion:
    try:
        return Completion(batch, result=future.result())
    except grpc.RpcError as err:
        return Completion(batch, error=err)
    except grpc.FutureCancelledError:
        return Completion(batch, error=_Cancelled())


class _Cancelled(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED

    def details(self) -> str:
        return "call cancelled"


def _to_alert(entry: Any, batch: Batch) -> worker_pb2.Alert:
    message = entry.message
    timestamp_type, timestamp = message.timestamp()
    alert = worker_pb2.Alert(
        id=entry.alert_id,
        topic=batch.ledger.topic,
        partition=batch.ledger.partition,
        offset=entry.offset,
        timestamp_ms=timestamp if timestamp_type else 0,
        attempt=entry.attempts,
        schema_id=entry.schema_id,
    )
    if entry.payload is not None:  # decoded by the sidecar for this worker
        alert.value = entry.payload
        alert.content_type = JSON_CONTENT_TYPE
        alert.source_content_type = entry.content_type
    else:
        alert.value = message.value() or b""
        alert.content_type = entry.content_type
    key = message.key()
    if key is not None:
        alert.key = key
    headers = message.headers()
    if headers:
        alert.headers.extend(worker_pb2.Header(key=k, value=v or b"") for k, v in headers)
    return alert


def _explain_unreachable(err: grpc.RpcError) -> str:
    details = (err.details() or "").lower()
    if "connection refused" in details or "failed to connect" in details:
        return "nothing is listening (connection refused)"
    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer to the health check within 2 s"
    if err.code() == grpc.StatusCode.UNIMPLEMENTED:
        return "it does not serve the gRPC health service (grpc.health.v1.Health)"
    return describe_rpc_error(err)


class WorkerPool:
    """The workers of one stage, and a thread that watches the unhealthy ones."""

    def __init__(self, addresses: list[str], call_timeout: float, validate) -> None:
        self.completions: queue.Queue[Completion] = queue.Queue()
        self.workers = [WorkerClient(a, self.completions, call_timeout) for a in addresses]
        self._validate = validate  # raises WorkerError if a description is unusable
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._next = 0
        self.fatal: SidecarError | None = None  # set by the watcher; the loop raises it

    def wait_healthy(self, timeout: float, should_stop) -> None:
        """Block until every worker is SERVING and described, or raise WorkerError."""
        deadline = time.monotonic() + timeout
        next_note = time.monotonic() + 5
        waiting = list(self.workers)
        while waiting:
            for worker in list(waiting):
                if worker.probe():
                    worker.mark_healthy(self._checked_description(worker))
                    d = worker.description
                    log.info(
                        "worker ready address=%s name=%s version=%s sdk=%r batch_size=%d accepts=%s routes=%s",
                        worker.address, d.name or "?", d.version or "?", d.sdk, d.preferred_batch_size,
                        ",".join(d.accepts) or "*/*", ",".join(d.routes) or "-",
                    )
                    waiting.remove(worker)
            if not waiting or should_stop():
                return
            now = time.monotonic()
            if now >= deadline:
                worker = waiting[0]
                raise WorkerError(
                    f"worker at {worker.address} is not ready after {timeout:g} s: {worker.last_problem}; "
                    "start it, or check --worker (--worker-wait sets how long to wait)"
                )
            if now >= next_note:
                for worker in waiting:
                    log.info("waiting for worker address=%s problem=%r", worker.address, worker.last_problem)
                next_note = now + 5
            time.sleep(0.2)

    def _checked_description(self, worker: WorkerClient) -> worker_pb2.WorkerDescription:
        description = worker.describe()
        self._validate(worker.address, description)
        return description

    def start_watching(self) -> None:
        self._watcher = threading.Thread(target=self._watch, name="worker-health", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        next_note: dict[str, float] = {}
        while not self._stop.wait(HEALTH_PROBE_INTERVAL_S):
            for worker in self.workers:
                if worker.healthy:
                    continue
                try:
                    if worker.probe():
                        worker.mark_healthy(self._checked_description(worker))
                        log.info("worker back address=%s", worker.address)
                        continue
                except SidecarError as err:  # the worker came back changed: incompatible or unbound routes
                    self.fatal = err
                    return
                except grpc.RpcError as err:
                    worker.last_problem = describe_rpc_error(err)
                now = time.monotonic()
                if now >= next_note.get(worker.address, 0):
                    log.warning("worker unavailable address=%s problem=%r; holding its alerts until it is back",
                                worker.address, worker.last_problem)
                    next_note[worker.address] = now + 10

    def pick(self, max_in_flight: int) -> WorkerClient | None:
        """The healthy worker with the fewest batches in flight, or None if all are busy or down."""
        best = None
        count = len(self.workers)
        for i in range(count):
            worker = self.workers[(self._next + i) % count]
            if worker.healthy and worker.in_flight < max_in_flight:
                if best is None or worker.in_flight < best.in_flight:
                    best = worker
        if best is not None:
            self._next = (self.workers.index(best) + 1) % count
        return best

    @property
    def any_healthy(self) -> bool:
        return any(w.healthy for w in self.workers)

    @property
    def in_flight(self) -> int:
        return sum(w.in_flight for w in self.workers)

    def close(self) -> None:
        self._stop.set()
        if self._watcher:
            self._watcher.join(timeout=5)
        for worker in self.workers:
            worker.close()
