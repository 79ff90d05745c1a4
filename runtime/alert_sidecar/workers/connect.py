"""Calling a worker over the Connect protocol: unary protobuf calls as plain HTTP/1.1 POSTs.

Workers in languages without a gRPC server in their usual distribution (R:
neither Debian nor the gRPC project ships one) serve the same
``alertsidecar.v1.AlertWorker`` service with the Connect protocol
(connectrpc.com): ``POST /<package>.<Service>/<Method>`` with
``Content-Type: application/proto`` and ``Connect-Protocol-Version: 1``, the
serialized request as the body; a 200 answer carries the serialized response,
any other status an error, as JSON ``{"code": ..., "message": ...}`` when the
server wrote one. Only the standard library is used. An ``https://`` server is
reached over TLS with the ``ssl.SSLContext`` given (workers/tls.py makes it).

``ConnectChannel`` is thread-safe: each concurrent caller takes a keep-alive
connection of its own from a small pool and gives it back when its call is done.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from urllib.parse import urlsplit

from grpc_health.v1 import health_pb2

__all__ = ["ConnectChannel", "ConnectError", "health_check", "code_for_http_status", "HEALTH_CHECK_PATH"]

HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"

CONTENT_TYPE = "application/proto"

# Idle keep-alive connections kept per channel. The sidecar has at most
# --max-in-flight calls open on one worker (a handful), so a few cover it; a
# burst above it opens and closes extra connections rather than hoarding them.
MAX_IDLE_CONNECTIONS = 8

# The Connect specification's mapping for an error answer without a Connect
# JSON body (a proxy's page, a server that broke): "HTTP to Error Code".
_CODE_FOR_STATUS = {
    400: "internal",
    401: "unauthenticated",
    403: "permission_denied",
    404: "unimplemented",
    429: "unavailable",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}

# A connection the server closed while it sat idle in the pool fails on its
# next use with one of these, before any answer was read: the call is sent
# again once on a fresh connection.
_STALE_CONNECTION = (http.client.RemoteDisconnected, http.client.BadStatusLine, BrokenPipeError,
                     ConnectionResetError, ConnectionAbortedError)


class ConnectError(Exception):
    """A Connect call that failed: ``code`` is a Connect error code ("unavailable", "internal", ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def code_for_http_status(status: int) -> str:
    """The Connect code of an HTTP error status that came without a Connect JSON error."""
    return _CODE_FOR_STATUS.get(status, "unknown")


class _Connection(http.client.HTTPConnection):
    """A keep-alive connection that never lets the kernel delay its ACKs; over TLS with ``tls``.

    httpuv, which serves R workers, leaves Nagle's algorithm on: it holds back
    the second part of an answer until the first is acknowledged, and Linux
    delays that ACK by 40 ms unless TCP_QUICKACK is set. The flag does not
    stick (the kernel clears it as it sees fit), so it is set again before
    every read (on this project's machines: 44 ms per call without it, 1.6 ms
    with it; `python examples/r/measure_connect.py` measures a call).
    """

    def __init__(self, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None,
                 server_name: str | None = None) -> None:
        super().__init__(host, port, timeout=timeout)
        self._tls = tls
        self._server_name = server_name or host

    def connect(self) -> None:
        super().connect()
        # http.client sets it too; said here so that the socket's rules are in one place.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            # As http.client.HTTPSConnection does, but the name checked may be another than the host dialled.
            self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)

    def quick_ack(self) -> None:
        if self.sock is not None and _QUICKACK is not None:
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass  # a closed socket: the read that follows says so


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only; elsewhere ACKs are what they are


class ConnectChannel:
    """Unary Connect calls to one server, e.g. ``ConnectChannel("http://127.0.0.1:50051")``.

    An ``https://`` server is reached over TLS with ``tls`` (default: the
    system's CAs), its certificate checked for ``server_name`` (default: its host).
    """

    def __init__(self, base_url: str, tls: ssl.SSLContext | None = None, server_name: str | None = None) -> None:
        parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            raise ValueError(f"{base_url!r} is not a Connect server address like http://127.0.0.1:50051")
        if parts.scheme == "http" and tls is not None:
            raise ValueError(f"{base_url!r} is plaintext: a TLS context goes with https://")
        self.base_url = f"{parts.scheme}://{parts.hostname}:{parts.port}"
        self.host = parts.hostname
        self.port = parts.port
        self._tls = (tls or ssl.create_default_context()) if parts.scheme == "https" else None
        self._server_name = server_name
        self._prefix = parts.path.rstrip("/")
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def call(self, method_path: str, request: bytes, timeout: float) -> bytes:
        """POST ``request`` to ``method_path`` (e.g. "/alertsidecar.v1.AlertWorker/ProcessBatch"); the answer's body.

        Raises ``ConnectError``: the server's own error, one derived from the
        HTTP status, "unavailable" when the server cannot be reached, and
        "deadline_exceeded" when no answer came within ``timeout`` seconds.
        """
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Connect-Protocol-Version": "1",
            # Lets the server give up on a call its caller no longer waits for.
            "Connect-Timeout-Ms": str(max(1, int(timeout * 1000))),
        }
        connection, reused = self._take(timeout)
        try:
            try:
                status, content_type, body = self._exchange(connection, method_path, request, headers, timeout)
            except _STALE_CONNECTION:
                if not reused:
                    raise
                # The server closed the idle connection (it restarted, or timed
                # it out): the request never reached it; send it once more.
                connection.close()
                connection = self._new(timeout)
                status, content_type, body = self._exchange(connection, method_path, request, headers, timeout)
        except TimeoutError:
            connection.close()  # an answer may still come: this connection is out of step
            raise ConnectError("deadline_exceeded",
                               f"no answer from {self.base_url}{method_path} within {timeout:g} s") from None
        except ConnectionRefusedError:
            connection.close()
            raise ConnectError("unavailable", f"connection refused by {self.base_url}") from None
        except ssl.SSLError as exc:
            connection.close()
            raise ConnectError("unavailable", f"TLS with {self.base_url} failed: "
                                              f"{getattr(exc, 'verify_message', None) or exc.reason or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise ConnectError("unavailable",
                               f"{self.base_url}{method_path}: {type(exc).__name__}: {exc}") from None
        except BaseException:
            connection.close()
            raise
        self._give_back(connection)
        if status == 200:
            return body
        raise _error_of(status, content_type, body, f"{self.base_url}{method_path}")

    def _exchange(self, connection: _Connection, method_path: str, request: bytes, headers: dict,
                  timeout: float) -> tuple[int, str, bytes]:
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        connection.request("POST", self._prefix + method_path, body=request, headers=headers)
        connection.quick_ack()
        response = connection.getresponse()
        connection.quick_ack()
        body = response.read()
        if response.will_close:
            connection.close()  # closed connections are not pooled again (see _give_back)
        return response.status, response.getheader("Content-Type", ""), body

    def _take(self, timeout: float) -> tuple[_Connection, bool]:
        with self._lock:
            if self._closed:
                raise ConnectError("canceled", f"the channel to {self.base_url} is closed")
            if self._idle:
                return self._idle.pop(), True
        return self._new(timeout), False

    def _new(self, timeout: float) -> _Connection:
        return _Connection(self.host, self.port, timeout, self._tls, self._server_name)

    def _give_back(self, connection: _Connection) -> None:
        if connection.sock is None:
            return
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        """Close the idle connections; calls made afterwards fail with "canceled"."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def __enter__(self) -> ConnectChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _error_of(status: int, content_type: str, body: bytes, where: str) -> ConnectError:
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            error = json.loads(body)
        except ValueError:
            error = None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            message = error.get("message")
            return ConnectError(error["code"], message if isinstance(message, str) else "")
    text = body[:200].decode("utf-8", "replace").strip()
    detail = f": {text}" if text else ""
    return ConnectError(code_for_http_status(status), f"{where} answered HTTP {status}{detail}")


def health_check(channel: ConnectChannel, timeout: float) -> int:
    """The server's serving status (``HealthCheckResponse.SERVING`` is 1) from grpc.health.v1.Health/Check."""
    request = health_pb2.HealthCheckRequest(service="").SerializeToString()
    answer = health_pb2.HealthCheckResponse()
    try:
        answer.ParseFromString(channel.call(HEALTH_CHECK_PATH, request, timeout))
    except Exception as exc:  # protobuf's DecodeError: a server that is not a worker
        if isinstance(exc, ConnectError):
            raise
        raise ConnectError("internal", f"{channel.base_url} answered the health check with something that "
                                       f"is not a HealthCheckResponse: {exc}") from None
    return answer.status
