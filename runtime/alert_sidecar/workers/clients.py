"""Clients of one worker each, over the contract in proto/.

A ``WorkerClient`` is one worker address: a gRPC channel, its health, what the
worker said of itself in Describe, and the batches sent to it, over one
streaming call or as unary calls. ``ConnectWorkerClient`` is the same over the
Connect protocol (R workers). Sending is asynchronous: a finished batch is put
on a queue as a ``Completion``, which the stage's loop drains, so every
decision about alerts is taken on the loop's one thread (pool.py).
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alertsidecar.v1 import worker_pb2, worker_pb2_grpc

from alert_sidecar.workers.connect import ConnectChannel, ConnectError, health_check
from alert_sidecar.exceptions import WorkerError
from alert_sidecar.workers.address import WorkerAddress
from alert_sidecar.workers.tls import diagnose

log = logging.getLogger("alert_sidecar.dispatch")

# A batch of 100 LSST-sized alerts (about 100 KB each in practice; DMTN-102 bounds
# a packet at 82 KB without its schema) is about 10 MB;
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
# A worker that takes longer than this to answer its health check is taken
# for unavailable: a live worker answers in microseconds, even when busy.
HEALTH_CHECK_TIMEOUT_S = 2.0


@dataclass(eq=False)
class Batch:
    """Alerts of one input partition sent to a worker as one AlertBatch."""

    id: int
    ledger: Any  # offsets.PartitionLedger
    entries: list  # offsets.Entry, in offset order
    alert_ids: list[str]
    worker: WorkerClient | None = None
    sent_at: float = 0.0
    # One alert suspected of killing its worker, sent while nothing else is
    # in flight on it: if the worker dies now, that alert did it.
    alone: bool = False


@dataclass
class Completion:
    """A finished batch: either its BatchResult or the error of its call."""

    batch: Batch
    result: worker_pb2.BatchResult | None = None
    error: grpc.RpcError | None = None


class CallFailed(grpc.RpcError):
    """A failure of a batch that no gRPC call reported itself: a stream ended, a deadline the sidecar enforced."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class SentAgain(CallFailed):
    """A batch that did nothing wrong, cut off with its stream when another batch on it timed out: send it again."""

    def __init__(self, details: str) -> None:
        super().__init__(grpc.StatusCode.ABORTED, details)


class ContractBroken(CallFailed):
    """The worker answered something the contract does not allow; the stage stops rather than guess."""

    def __init__(self, details: str) -> None:
        super().__init__(grpc.StatusCode.INTERNAL, details)


def describe_rpc_error(err: grpc.RpcError) -> str:
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    name = code.name if code else "ERROR"
    return f"{name}: {details}"


# The calls, by path: requests are AlertBatch bytes the stage wrote itself
# (wire.py), so no request serializer.
_PROCESS_BATCH = "/alertsidecar.v1.AlertWorker/ProcessBatch"
_PROCESS_STREAM = "/alertsidecar.v1.AlertWorker/ProcessStream"
_DESCRIBE = "/alertsidecar.v1.AlertWorker/Describe"


class WorkerCall(enum.Enum):
    """How batches reach a worker."""

    STREAM = "stream"  # one ProcessStream call per worker, batches answered as each finishes
    UNARY = "unary"  # one ProcessBatch call per batch


_END = object()  # ends a stream's requests


@dataclass(eq=False)
class WorkerClient:
    """One worker address, over gRPC.

    Batches go over one ``ProcessStream`` call per worker (``call=stream``):
    batches of several partitions are in flight on it at once and answered
    as each finishes, with no per-call set-up. ``call=unary`` sends each batch
    as its own ``ProcessBatch`` call instead; a worker that does not
    implement ProcessStream is switched to that on its first answer.
    """

    endpoint: WorkerAddress
    completions: queue.Queue[Completion]
    call_timeout: float
    call: WorkerCall = WorkerCall.STREAM
    channel: grpc.Channel = field(init=False)
    description: worker_pb2.WorkerDescription | None = None
    in_flight: int = 0  # batches sent, or held while decoded, and not answered: the pool counts them
    # Counts the times the loop found this worker unavailable, so that the
    # health watcher reports each recovery once (pool.py).
    outages: int = 0
    _healthy: threading.Event = field(default_factory=threading.Event)
    last_problem: str = ""
    # What TLS says of each kind of failure to connect (tls.diagnose), asked once per kind.
    _tls_problems: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.channel = _channel(self.endpoint)
        self._stub = worker_pb2_grpc.AlertWorkerStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._process_batch = self.channel.unary_unary(
            _PROCESS_BATCH, request_serializer=None, response_deserializer=worker_pb2.BatchResult.FromString)
        self._process_stream = self.channel.stream_stream(
            _PROCESS_STREAM, request_serializer=None, response_deserializer=worker_pb2.BatchResult.FromString)
        self._stream: _Stream | None = None

    @property
    def address(self) -> str:
        return str(self.endpoint)

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
            self.last_problem = self._tls_problem(err.details() or "") or _explain_unreachable(err)
            return False
        return self._serving(answer.status)

    def _tls_problem(self, details: str) -> str | None:
        """Why connecting fails, when TLS explains it (a plaintext sidecar and a TLS worker, say)."""
        if "refused" in details.lower():
            return None  # nothing listens: no TLS to speak of
        if details not in self._tls_problems:
            if len(self._tls_problems) > 16:  # kinds of failure, not failures: a few at most
                self._tls_problems.clear()
            self._tls_problems[details] = diagnose(self.endpoint.host, self.endpoint.port, self.endpoint.tls)
        return self._tls_problems[details]

    def _serving(self, status: int) -> bool:
        """Whether a health answer says SERVING; why not, remembered, when it does not."""
        if status != health_pb2.HealthCheckResponse.SERVING:
            self.last_problem = f"health is {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}"
            return False
        return True

    def describe(self) -> worker_pb2.WorkerDescription:
        request = worker_pb2.DescribeRequest(sidecar_protocol_version=worker_pb2.PROTOCOL_VERSION_1)
        try:
            return self._stub.Describe(request, timeout=HEALTH_CHECK_TIMEOUT_S * 5)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise _not_a_worker(self.address) from None
            if err.code() == grpc.StatusCode.INTERNAL and "eserializ" in (err.details() or ""):
                raise _not_a_description(self.address, err.details()) from None
            raise

    def mark_healthy(self, description: worker_pb2.WorkerDescription) -> None:
        self.description = description
        self._healthy.set()

    def mark_unhealthy(self, why: str) -> None:
        self.last_problem = why
        if self._healthy.is_set():
            self.outages += 1
        self._healthy.clear()

    def send(self, batch: Batch, request: bytes) -> None:
        """Send ``request`` (the batch as AlertBatch bytes); its Completion arrives on the queue."""
        batch.worker = self
        batch.sent_at = time.monotonic()
        if self.call is WorkerCall.STREAM:
            stream = self._stream
            if stream is not None and stream.submit(batch, request):
                return
            self._stream = stream = _Stream(self)
            if stream.submit(batch, request):
                return
            if self.call is WorkerCall.STREAM:  # the new stream ended before it took the batch: the worker is leaving
                self.completions.put(Completion(batch, error=CallFailed(
                    grpc.StatusCode.UNAVAILABLE, "the worker ended its stream as it opened")))
                return
        self.send_unary(batch, request)

    def send_unary(self, batch: Batch, request: bytes) -> None:
        future = self._process_batch.future(request, timeout=self.call_timeout)
        future.add_done_callback(lambda f: self.completions.put(_completion(batch, f)))

    def expire(self, now: float) -> None:
        """End the stream if its oldest batch has waited longer than the call timeout (unary calls time out alone)."""
        stream = self._stream
        if stream is not None:
            stream.expire(now - self.call_timeout)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self.channel.close()


class _Stream:
    """One ProcessStream call: batches in, answers out by batch_id, on a reader thread of its own."""

    def __init__(self, client: WorkerClient) -> None:
        self._client = client
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: dict[int, tuple[Batch, bytes]] = {}  # by batch id, oldest first
        self._lock = threading.Lock()
        self._ended = False
        self._expired: CallFailed | None = None
        self._expired_batch: int | None = None  # the batch that timed out, when one did
        self._call = client._process_stream(iter(self._requests.get, _END))
        threading.Thread(target=self._read, name=f"worker-stream-{client.address}", daemon=True).start()

    def submit(self, batch: Batch, request: bytes) -> bool:
        """False if the stream has ended: the caller opens another."""
        with self._lock:
            if self._ended:
                return False
            self._pending[batch.id] = (batch, request)
        self._requests.put(request)
        return True

    def expire(self, sent_before: float) -> None:
        with self._lock:
            oldest = next(iter(self._pending.values()), None)
            if oldest is None or oldest[0].sent_at >= sent_before or self._expired is not None:
                return
            self._expired = CallFailed(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no answer within {self._client.call_timeout:g} s (--worker-timeout)")
            self._expired_batch = oldest[0].id
        self._call.cancel()

    def close(self) -> None:
        self._requests.put(_END)
        self._call.cancel()

    def _read(self) -> None:
        client = self._client
        error: grpc.RpcError = CallFailed(grpc.StatusCode.UNAVAILABLE, "the worker ended the stream")
        try:
            for result in self._call:
                with self._lock:
                    sent = self._pending.pop(result.batch_id, None)
                if sent is None:
                    # Not a batch this stream sent, or one answered twice: the
                    # worker broke the contract, and nothing it says can be trusted.
                    error = ContractBroken(f"it answered batch_id {result.batch_id}, which is not a batch in "
                                           "flight on its stream (answered twice, or never sent)")
                    self._call.cancel()
                    break
                client.completions.put(Completion(sent[0], result=result))
        except grpc.RpcError as err:
            error = err
        unimplemented = error.code() == grpc.StatusCode.UNIMPLEMENTED
        if unimplemented:  # before the stream is marked ended, so that send() sees it
            client.call = WorkerCall.UNARY
        with self._lock:
            self._ended = True
            left = list(self._pending.values())
            self._pending.clear()
            if self._expired is not None:
                error = self._expired
        if unimplemented:
            log.info("worker does not implement ProcessStream address=%s; using ProcessBatch calls", client.address)
            for batch, request in left:
                client.send_unary(batch, request)
            return
        expired = self._expired_batch
        for batch, _request in left:
            if expired is not None and batch.id != expired:
                # Only the batch that timed out is to blame; the others shared its stream.
                client.completions.put(Completion(batch, error=SentAgain(
                    f"its stream was ended because batch {expired} on it timed out")))
            else:
                client.completions.put(Completion(batch, error=error))


# Connect error codes are gRPC's status codes in snake case ("unavailable",
# "deadline_exceeded"); "canceled" is spelt the American way.
_CONNECT_CODES = {code.name.lower(): code for code in grpc.StatusCode} | {"canceled": grpc.StatusCode.CANCELLED}
# Calls in progress at once on one Connect worker: the loop keeps at most
# --max-in-flight batches on a worker (4 by default); more calls than threads wait.
CONNECT_CALL_THREADS = 8


@dataclass(eq=False)
class ConnectWorkerClient(WorkerClient):
    """One worker address over the Connect protocol (HTTP/1.1 POSTs; R workers): ProcessBatch calls only.

    Its ``endpoint`` has the CONNECT protocol (``http://HOST:PORT``). Each call runs on a
    thread of a small pool and puts its Completion on the same queue as
    gRPC's, so the stage does not know which protocol a worker speaks.
    """

    def __post_init__(self) -> None:
        self.call = WorkerCall.UNARY
        tls = self.endpoint.tls
        self._channel = ConnectChannel(self.endpoint.url, tls.ssl_context() if tls else None,
                                       tls.server_name if tls else None)
        self._calls = ThreadPoolExecutor(CONNECT_CALL_THREADS, thread_name_prefix="connect-call")

    def probe(self) -> bool:
        try:
            status = health_check(self._channel, HEALTH_CHECK_TIMEOUT_S)
        except ConnectError as err:
            if err.code == "unimplemented":
                self.last_problem = "it does not serve the health check (POST /grpc.health.v1.Health/Check)"
            elif "refused" in err.message:
                self.last_problem = "nothing is listening (connection refused)"
            else:
                self.last_problem = self._tls_problem(err.message) or str(err)
            return False
        return self._serving(status)

    def describe(self) -> worker_pb2.WorkerDescription:
        request = worker_pb2.DescribeRequest(sidecar_protocol_version=worker_pb2.PROTOCOL_VERSION_1)
        try:
            answer = self._channel.call(_DESCRIBE, request.SerializeToString(), HEALTH_CHECK_TIMEOUT_S * 5)
        except ConnectError as err:
            if err.code == "unimplemented":
                raise _not_a_worker(self.address) from None
            raise CallFailed(_CONNECT_CODES.get(err.code, grpc.StatusCode.UNKNOWN), err.message) from None
        try:
            return worker_pb2.WorkerDescription.FromString(answer)
        except DecodeError as exc:
            raise _not_a_description(self.address, str(exc)) from None

    def send(self, batch: Batch, request: bytes) -> None:
        batch.worker = self
        batch.sent_at = time.monotonic()
        self.send_unary(batch, request)

    def send_unary(self, batch: Batch, request: bytes) -> None:
        self._calls.submit(self._process_batch_call, batch, request)

    def _process_batch_call(self, batch: Batch, request: bytes) -> None:
        try:
            answer = self._channel.call(_PROCESS_BATCH, request, self.call_timeout)
            completion = Completion(batch, result=worker_pb2.BatchResult.FromString(answer))
        except ConnectError as err:
            code = _CONNECT_CODES.get(err.code, grpc.StatusCode.UNKNOWN)
            completion = Completion(batch, error=CallFailed(code, err.message))
        except DecodeError as exc:
            completion = Completion(batch, error=ContractBroken(
                f"it answered ProcessBatch with something that is not a BatchResult ({exc})"))
        self.completions.put(completion)

    def expire(self, now: float) -> None:
        """Each call has its own timeout."""

    def close(self) -> None:
        self._calls.shutdown(wait=False, cancel_futures=True)
        self._channel.close()


def _channel(endpoint: WorkerAddress) -> grpc.Channel:
    """A plaintext channel to a worker on loopback; a TLS one, optionally mutual, when the address says so."""
    if endpoint.tls is None:
        return grpc.insecure_channel(endpoint.target, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(endpoint.target, endpoint.tls.grpc_credentials(),
                               options=CHANNEL_OPTIONS + endpoint.tls.grpc_options())


def _completion(batch: Batch, future: grpc.Future) -> Completion:
    try:
        return Completion(batch, result=future.result())
    except grpc.RpcError as err:
        return Completion(batch, error=err)
    except grpc.FutureCancelledError:
        return Completion(batch, error=CallFailed(grpc.StatusCode.CANCELLED, "call cancelled"))


def _not_a_worker(address: str) -> WorkerError:
    return WorkerError(f"worker at {address} does not implement alertsidecar.v1.AlertWorker "
                       "(Describe is unimplemented): is this an alert-sidecar worker?")


def _not_a_description(address: str, detail: str) -> WorkerError:
    return WorkerError(f"worker at {address} answered Describe with something that is not a "
                       f"WorkerDescription ({detail}); is it built against proto/alertsidecar/v1?")


def _explain_unreachable(err: grpc.RpcError) -> str:
    details = (err.details() or "").lower()
    if "connection refused" in details:
        return "nothing is listening (connection refused)"
    if "failed to connect" in details:  # gRPC's prefix for every failure to connect: say what it said
        return f"cannot connect ({describe_rpc_error(err)})"
    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer to the health check within 2 s"
    if err.code() == grpc.StatusCode.UNIMPLEMENTED:
        return "it does not serve the gRPC health service (grpc.health.v1.Health)"
    return describe_rpc_error(err)
