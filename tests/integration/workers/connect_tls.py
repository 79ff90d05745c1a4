"""A test worker that serves the AlertWorker contract with the Connect protocol over TLS.

No SDK serves Connect over TLS (the R SDK's httpuv serves plaintext only), so
this one does, with the standard library, for tests of ``--worker
https://HOST:PORT``: unary calls as HTTP/1.1 POSTs of protobuf bodies
(``Content-Type: application/proto``), as the sidecar's Connect client sends
them (runtime/alert_sidecar/workers/connect.py): the health check, Describe
and ProcessBatch. It keeps every alert (OK, the input forwarded).

    python connect_tls.py --port PORT --tls-cert CERT --tls-key KEY [--tls-client-ca CA]

With ``--tls-client-ca`` it takes only clients whose certificate that CA
signed (mutual TLS).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from grpc_health.v1 import health_pb2

from alertsidecar.v1 import worker_pb2

log = logging.getLogger("connect_tls")


def health_check(body: bytes) -> bytes:
    health_pb2.HealthCheckRequest.FromString(body)
    return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING).SerializeToString()


def describe(body: bytes) -> bytes:
    worker_pb2.DescribeRequest.FromString(body)
    return worker_pb2.WorkerDescription(name="connect-tls", version="1",
                                        protocol_version=worker_pb2.PROTOCOL_VERSION_1,
                                        sdk="tests/connect_tls").SerializeToString()


def process_batch(body: bytes) -> bytes:
    batch = worker_pb2.AlertBatch.FromString(body)
    keep = [worker_pb2.AlertOutput(forward_input=True)]
    return worker_pb2.BatchResult(batch_id=batch.batch_id, results=[
        worker_pb2.AlertResult(id=alert.id, verdict=worker_pb2.VERDICT_OK, outputs=keep)
        for alert in batch.alerts]).SerializeToString()


CALLS = {
    "/grpc.health.v1.Health/Check": health_check,
    "/alertsidecar.v1.AlertWorker/Describe": describe,
    "/alertsidecar.v1.AlertWorker/ProcessBatch": process_batch,
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sidecar pools its connections
    timeout = 60  # an idle connection's thread ends after this

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        call = CALLS.get(self.path)
        if call is None:
            self._error(404, "unimplemented", f"{self.path} is not a method of this worker")
        elif self.headers.get("Content-Type") != "application/proto":
            self._answer(415, "text/plain", b"only application/proto")  # as the Connect spec says
        else:
            try:
                answer = call(body)
            except Exception as exc:  # protobuf's DecodeError: not the message the method takes
                self._error(400, "invalid_argument", f"{type(exc).__name__}: {exc}")
            else:
                self._answer(200, "application/proto", answer)

    def _error(self, status: int, code: str, message: str) -> None:
        self._answer(status, "application/json", json.dumps({"code": code, "message": message}).encode())

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass  # one line per call would drown the log


class TlsServer(ThreadingHTTPServer):
    """Each connection's TLS handshake in its own thread, so that a failed one holds up no other."""

    daemon_threads = True

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.context = context

    def finish_request(self, request, client_address) -> None:
        try:
            secured = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s:%d failed: %s", *client_address[:2], getattr(exc, "reason", None) or exc)
            return
        try:
            super().finish_request(secured, client_address)
        finally:
            secured.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mutual TLS)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    context.set_alpn_protocols(["http/1.1"])
    if args.tls_client_ca:
        context.load_verify_locations(args.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    server = TlsServer(args.port, context)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("serving connect-tls on https://127.0.0.1:%d (%s)", args.port,
             "mutual TLS" if args.tls_client_ca else "TLS")
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
