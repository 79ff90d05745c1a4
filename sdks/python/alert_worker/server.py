"""Serving a worker to the sidecar over gRPC: the AlertWorker service and the health service.

Only transport lives here; every call hands its alerts to
``alert_worker.processing``, as the test harness does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
from collections.abc import Iterator
from concurrent import futures
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from alertsidecar.v1 import worker_pb2, worker_pb2_grpc

from . import processing
from .exceptions import ServeError, WorkerDefinitionError
from .workers import Worker

__all__ = ["serve", "start", "RunningServer", "PORT_ENV", "DEFAULT_PORT", "SERVICE_NAME",
           "TLS_CERT_ENV", "TLS_KEY_ENV", "TLS_CLIENT_CA_ENV"]

log = logging.getLogger("alert_worker")

#: The environment variable the sidecar sets to the port it expects a worker
#: it starts itself to listen on.
PORT_ENV = "ALERT_WORKER_PORT"
#: gRPC's customary port, for a worker started by hand next to a sidecar
#: started with its defaults.
DEFAULT_PORT = 50051
#: Files (PEM) of the worker's TLS certificate and its private key, for a
#: worker not on loopback; what ``tls_cert`` and ``tls_key`` default to, so
#: that a worker the sidecar starts can be given them.
TLS_CERT_ENV = "ALERT_WORKER_TLS_CERT"
TLS_KEY_ENV = "ALERT_WORKER_TLS_KEY"
#: The CA(s) (PEM) that sign the certificates of the sidecars allowed in:
#: set, the worker asks every sidecar for a client certificate (mutual TLS).
TLS_CLIENT_CA_ENV = "ALERT_WORKER_TLS_CLIENT_CA"
#: The full name of the service, as the health service reports it.
SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["AlertWorker"].full_name

# gRPC refuses messages over 4 MiB by default. A batch of 100 Rubin alerts of
# about 100 KB each (mostly cutouts; Rubin DMTN-102) is about 10 MB, and batches of
# several hundred large alerts are reasonable, so the limit is set far above
# that while still bounding what one message can make the process allocate.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# Threads serving calls. A ProcessStream call holds one for its whole life (the
# sidecar opens a few); unary calls hold one while they run. Python runs one
# thread at a time, so more threads only help workers that wait on I/O.
DEFAULT_MAX_WORKERS = 16

# How long stop() lets calls in progress finish. A batch of 100 alerts takes
# well under a second even at Python's decoding speed (~2 ms an alert), and
# Kubernetes gives a pod 30 s between SIGTERM and SIGKILL.
DEFAULT_GRACE_SECONDS = 10.0

_END = object()  # the sidecar closed its side of a stream
_STOP = object()  # the server is stopping: answer what was received, then end the stream
_CANCELLED = object()  # the call ended (gRPC's callback): if cancelled, end the stream without waiting


class _AlertWorkerService(worker_pb2_grpc.AlertWorkerServicer):
    """The AlertWorker service over one worker."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._description = processing.describe(worker)
        self._lock = threading.Condition()
        self._stopping = False
        self._calls = 0  # alert calls in progress
        self._stream_inboxes: set[queue.SimpleQueue[Any]] = set()
        self._threads: futures.ThreadPoolExecutor | None = None  # processes the batches of streams

    def Describe(self, request: worker_pb2.DescribeRequest,
                 context: grpc.ServicerContext) -> worker_pb2.WorkerDescription:
        return self._description

    def ProcessAlert(self, request: worker_pb2.Alert, context: grpc.ServicerContext) -> worker_pb2.AlertResult:
        with self._call():
            return processing.process(self._worker, [request])[0]

    def ProcessBatch(self, request: worker_pb2.AlertBatch, context: grpc.ServicerContext) -> worker_pb2.BatchResult:
        with self._call():
            return processing.process_batch(self._worker, request)

    def ProcessStream(self, request_iterator: Iterator[worker_pb2.AlertBatch],
                      context: grpc.ServicerContext) -> Iterator[worker_pb2.BatchResult]:
        # Batches are read by a thread of their own into an inbox, so that a
        # stopping server can end the stream between two batches instead of
        # waiting, blocked in a read, for a batch the sidecar may never send.
        # The sidecar keeps several batches in flight on one stream (of
        # different partitions, or of one with --ordering none): they are
        # processed on the service's threads at once, as unary calls are, and
        # each is answered as soon as it is done. That is what lets a worker
        # that waits (on a catalogue, a database) serve more than one batch at
        # a time; a worker that computes is still one core per process.
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self._lock:
            if self._stopping:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the worker is shutting down")
            self._stream_inboxes.add(inbox)
        threading.Thread(target=_read_stream, args=(request_iterator, inbox),
                         name="alert_worker-stream-reader", daemon=True).start()
        # A stream the sidecar cancels (its batch timed out) ends here at once:
        # waiting for a batch the worker's code hangs on would hold this
        # thread for good, and enough such streams would leave none to serve.
        context.add_callback(lambda: inbox.put(_CANCELLED))
        self._enter_call()
        processing_now = 0
        ending = None  # _END or _STOP once seen: answer what is being processed, then end
        try:
            while ending is None or processing_now:
                item = inbox.get()
                if item is _CANCELLED:
                    if context.is_active():
                        continue  # the call ended normally: answer what is being processed
                    return  # cancelled: nobody reads the answers any more
                if item is _END or item is _STOP:
                    ending = ending or item
                elif isinstance(item, worker_pb2.BatchResult):
                    processing_now -= 1
                    yield item
                elif isinstance(item, _Failed):
                    raise item.error  # a bug of the SDK, not of the worker's code: stays loud
                elif ending is None:
                    processing_now += 1
                    self._batch_threads().submit(self._process_into, item, inbox)
                # A batch that arrives after _STOP is not answered; the sidecar
                # sends it again, to this worker or another.
            if ending is _STOP:
                context.set_code(grpc.StatusCode.UNAVAILABLE)
                context.set_details("the worker is shutting down")
        finally:
            with self._lock:
                self._stream_inboxes.discard(inbox)
            self._exit_call()

    def _process_into(self, batch: worker_pb2.AlertBatch, inbox: queue.SimpleQueue[Any]) -> None:
        try:
            inbox.put(processing.process_batch(self._worker, batch))
        except BaseException as exc:  # noqa: BLE001 - handed to the stream's handler, which raises it
            inbox.put(_Failed(exc))

    def _batch_threads(self) -> futures.ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = futures.ThreadPoolExecutor(DEFAULT_MAX_WORKERS, thread_name_prefix="alert_worker-batch")
            return self._threads

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        self._enter_call()
        try:
            yield
        finally:
            self._exit_call()

    def _enter_call(self) -> None:
        with self._lock:
            self._calls += 1

    def _exit_call(self) -> None:
        with self._lock:
            self._calls -= 1
            if not self._calls:
                self._lock.notify_all()

    def begin_shutdown(self) -> None:
        """Refuse new streams, and end open ones once the batches they received are answered."""
        with self._lock:
            self._stopping = True
            for inbox in self._stream_inboxes:
                inbox.put(_STOP)

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no alert call is in progress; False if ``timeout`` passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._calls, timeout)


class _Failed:
    """An exception raised while processing a stream's batch, on its way to the stream's handler."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _read_stream(request_iterator: Iterator[worker_pb2.AlertBatch], inbox: queue.SimpleQueue[Any]) -> None:
    try:
        for batch in request_iterator:
            inbox.put(batch)
    except Exception:
        pass  # the call was cancelled or broke: the handler ends the stream
    finally:
        inbox.put(_END)


class RunningServer:
    """A worker being served. ``port`` is the port it listens on; ``stop()`` ends it.

    Usable as a context manager that stops the server on exit.
    """

    def __init__(self, server: grpc.Server, service: _AlertWorkerService,
                 health_service: health.HealthServicer, host: str, port: int) -> None:
        self._server = server
        self._service = service
        self._health = health_service
        self.host = host
        self.port = port
        self._stopped = False
        self._stop_lock = threading.Lock()
        #: How it serves: "plaintext", "TLS" or "mutual TLS" (client certificates required).
        self.security = "plaintext"

    @property
    def address(self) -> str:
        """``host:port``, as a gRPC client dials it."""
        return f"{_bracketed(self.host)}:{self.port}"

    def stop(self, grace: float | None = DEFAULT_GRACE_SECONDS) -> None:
        """Stop serving, gracefully: health NOT_SERVING, open streams end, calls in progress finish.

        Calls still running after ``grace`` seconds are cancelled. Returns once
        the server is gone. Calling it again does nothing.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        # Health first, so a sidecar watching it stops sending before the
        # calls it has open end.
        self._health.enter_graceful_shutdown()
        self._service.begin_shutdown()
        self._server.stop(grace)  # refuses new calls from now on
        # Health watches never end by themselves: once the alert calls are
        # done, nothing is left worth waiting for.
        self._service.wait_idle(grace if grace is not None else 0)
        self._server.stop(0).wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout`` passes); True if it has stopped."""
        return bool(self._server.wait_for_termination(timeout))

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def resolve_port(port: int | None) -> int:
    """The port to listen on: ``port``, else ``$ALERT_WORKER_PORT``, else 50051."""
    if port is None:
        text = os.environ.get(PORT_ENV, "").strip()
        if not text:
            return DEFAULT_PORT
        try:
            port = int(text)
        except ValueError:
            raise ServeError(f"{PORT_ENV}={text!r} is not a port number") from None
        source = PORT_ENV
    else:
        source = "port"
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServeError(f"{source} {port!r} is not a port number (0 to 65535; 0 picks a free port)")
    return port


def _server_credentials(tls_cert: str | os.PathLike[str] | None, tls_key: str | os.PathLike[str] | None,
                        tls_client_ca: str | os.PathLike[str] | None) -> grpc.ServerCredentials | None:
    """TLS credentials from the arguments, else ``$ALERT_WORKER_TLS_*``; None to serve in plaintext.

    With a client CA the worker requires a certificate signed by it from
    every sidecar (mutual TLS).
    """
    cert = tls_cert or os.environ.get(TLS_CERT_ENV) or None
    key = tls_key or os.environ.get(TLS_KEY_ENV) or None
    client_ca = tls_client_ca or os.environ.get(TLS_CLIENT_CA_ENV) or None
    if cert is None and key is None:
        if client_ca is not None:
            raise ServeError(f"a client CA ({TLS_CLIENT_CA_ENV}, tls_client_ca) needs TLS: give the worker's "
                             f"certificate and key too ({TLS_CERT_ENV}, {TLS_KEY_ENV})")
        return None
    if cert is None or key is None:
        raise ServeError(f"TLS needs both the worker's certificate and its key ({TLS_CERT_ENV} and {TLS_KEY_ENV}, "
                         "or tls_cert and tls_key)")
    return grpc.ssl_server_credentials(
        [(_read_pem(key, "key"), _read_pem(cert, "certificate"))],
        root_certificates=_read_pem(client_ca, "client CA") if client_ca else None,
        require_client_auth=client_ca is not None)


def _read_pem(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ServeError(f"cannot read the TLS {what} {path}: {exc.strerror or type(exc).__name__}") from None


def start(worker: Worker, port: int | None = None, host: str = "127.0.0.1",
          max_workers: int = DEFAULT_MAX_WORKERS, *, tls_cert: str | os.PathLike[str] | None = None,
          tls_key: str | os.PathLike[str] | None = None,
          tls_client_ca: str | os.PathLike[str] | None = None) -> RunningServer:
    """Serve a worker in background threads and return at once; ``port=0`` picks a free port.

    Runs the worker's ``setup()`` first (if it has not run), so the health
    service reports SERVING only once the worker can take alerts. With
    ``tls_cert`` and ``tls_key`` (PEM files; default ``$ALERT_WORKER_TLS_CERT``
    and ``$ALERT_WORKER_TLS_KEY``) it serves over TLS, and with
    ``tls_client_ca`` (``$ALERT_WORKER_TLS_CLIENT_CA``) it takes only sidecars
    whose client certificate that CA signed. Health checks and Describe go
    over the same secured port.
    """
    if not isinstance(worker, Worker):
        raise ServeError(f"serve a Worker (made with @alert_worker.worker or a subclass), not {worker!r}")
    port = resolve_port(port)
    credentials = _server_credentials(tls_cert, tls_key, tls_client_ca)
    worker.ensure_setup()
    service = _AlertWorkerService(worker)
    health_service = health.HealthServicer()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="alert_worker"),
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # gRPC lets several servers share a port by default on Linux; a
            # second worker on a busy port must fail, not steal half the calls.
            ("grpc.so_reuseport", 0),
        ],
    )
    worker_pb2_grpc.add_AlertWorkerServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    address = f"{_bracketed(host)}:{port}"
    try:
        bound = (server.add_insecure_port(address) if credentials is None
                 else server.add_secure_port(address, credentials))
    except RuntimeError as exc:
        raise ServeError(f"cannot listen on {address}: is another worker there? choose another port") from exc
    if not bound:
        raise ServeError(f"cannot listen on {address}: is another worker there? choose another port")
    server.start()
    for service_name in ("", SERVICE_NAME):
        health_service.set(service_name, health_pb2.HealthCheckResponse.SERVING)
    running = RunningServer(server, service, health_service, host, bound)
    if credentials is not None:
        running.security = "mutual TLS" if tls_client_ca or os.environ.get(TLS_CLIENT_CA_ENV) else "TLS"
    return running


def serve(worker: Worker, port: int | None = None, host: str = "127.0.0.1",
          max_workers: int = DEFAULT_MAX_WORKERS, grace: float = DEFAULT_GRACE_SECONDS, processes: int = 1, *,
          tls_cert: str | os.PathLike[str] | None = None, tls_key: str | os.PathLike[str] | None = None,
          tls_client_ca: str | os.PathLike[str] | None = None) -> None:
    """Serve a worker until SIGTERM or SIGINT, then stop gracefully and return.

    The port is ``port``, else ``$ALERT_WORKER_PORT`` (set by a sidecar that
    starts the worker itself), else 50051. Logs one line when serving starts.
    Installs signal handlers, so call it from the main thread. A port that
    cannot be used or a worker defined wrongly ends the program with a
    one-line message (``SystemExit``).

    With ``processes=N`` the worker is served by N processes on the N ports
    from ``port`` up, so that a CPU-bound worker uses N cores (Python runs one
    thread at a time). Give them all to the sidecar:
    ``alert-sidecar ... --worker host:PORT-LASTPORT``.
    """
    _configure_logging()
    if processes > 1:
        try:
            first = resolve_port(port)
        except ServeError as exc:
            raise SystemExit(f"alert_worker: {exc}") from None
        if first == 0:
            raise SystemExit("alert_worker: serve(processes=N) needs a fixed first port, not 0")
        _serve_processes(worker, first, host, max_workers, grace, processes,
                         {"tls_cert": tls_cert, "tls_key": tls_key, "tls_client_ca": tls_client_ca})
        return
    try:
        running = start(worker, port=port, host=host, max_workers=max_workers, tls_cert=tls_cert, tls_key=tls_key,
                        tls_client_ca=tls_client_ca)
    except (ServeError, WorkerDefinitionError) as exc:
        # The user's to fix, and the message says how: no traceback.
        raise SystemExit(f"alert_worker: {exc}") from None
    description = processing.describe(worker)
    log.info("serving worker %s %s on %s (%s, %s)", description.name, description.version,
             running.address, processing.SDK, running.security)
    stop_requested = threading.Event()
    received: list[int] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # Only note it: the handler runs between two bytecodes of the main
        # thread, possibly in the middle of a logging call.
        received.append(signum)
        stop_requested.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        # A timeout keeps the wait responsive to signals on every platform.
        while not stop_requested.wait(timeout=1.0):
            pass
        log.info("received %s: stopping", signal.Signals(received[0]).name)
        running.stop(grace)
        log.info("stopped worker %s", description.name)
    finally:
        running.stop(0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _serve_processes(worker: Worker, port: int, host: str, max_workers: int, grace: float, processes: int,
                     tls: dict[str, Any]) -> None:
    """Fork ``processes`` servers on consecutive ports; stop them all on SIGTERM or SIGINT."""
    import multiprocessing

    # fork, before this process has created any gRPC object: each child then
    # starts its own gRPC runtime, and the worker need not be importable by
    # name (a decorated function in a script's __main__ is not).
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=serve, args=(worker, port + i, host, max_workers, grace, 1), kwargs=tls,
                                name=f"alert-worker-{i}") for i in range(processes)]
    for child in children:
        child.start()
    log.info("serving worker on %d processes, ports %d-%d (--worker %s:%d-%d)",
             processes, port, port + processes - 1, host, port, port + processes - 1)
    stop_requested = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop_requested.set())
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop_requested.wait(timeout=0.5):
            if all(not child.is_alive() for child in children):
                break
    finally:
        for child in children:
            if child.is_alive() and child.pid:
                os.kill(child.pid, signal.SIGTERM)
        for child in children:
            child.join(grace + 5)
            if child.is_alive():
                child.kill()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    failed = [child.exitcode for child in children if child.exitcode not in (0, None)]
    if failed and not stop_requested.is_set():
        raise SystemExit(f"alert_worker: {len(failed)} of {processes} worker processes exited (codes {failed})")


def _configure_logging() -> None:
    # serve() is a program's main loop: if the program has not configured
    # logging, make the SDK's INFO lines visible rather than lost.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
