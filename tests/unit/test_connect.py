"""The sidecar's Connect client (alert_sidecar.workers.connect) against a real HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterator

import pytest
from grpc_health.v1 import health_pb2

from alert_sidecar.workers.connect import HEALTH_CHECK_PATH, ConnectChannel, ConnectError, health_check


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Each accepted connection's client port: keep-alive reuse shows as fewer connections than calls.
    connections: list[int]
    requests: list[dict]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpuv serves

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass

    def setup(self) -> None:
        super().setup()
        self.server.connections.append(self.client_address[1])

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        if self.path == "/test.Echo/Call":
            self._answer(200, "application/proto", body[::-1])
        elif self.path == "/test.Echo/JsonError":
            self._answer(400, "application/json",
                         json.dumps({"code": "invalid_argument", "message": "bad batch"}).encode())
        elif self.path == "/test.Echo/PlainError":
            self._answer(503, "text/html", b"<h1>Service Unavailable</h1>")
        elif self.path == "/test.Echo/Slow":
            time.sleep(1.0)
            self._answer(200, "application/proto", b"late")
        elif self.path == "/test.Echo/CloseAfter":  # says so in its answer
            self._answer(200, "application/proto", b"bye", close=True)
        elif self.path == "/test.Echo/DropAfter":  # closes without a word, as a restarted worker does
            self._answer(200, "application/proto", b"bye")
            self.close_connection = True
        elif self.path == HEALTH_CHECK_PATH:
            answer = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
            self._answer(200, "application/proto", answer.SerializeToString())
        else:
            self._answer(404, "text/plain", b"not found")

    def _answer(self, status: int, content_type: str, body: bytes, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.connections = []
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _channel(server: _Server) -> ConnectChannel:
    return ConnectChannel(f"http://127.0.0.1:{server.server_address[1]}")


def test_a_call_posts_the_request_with_connect_headers_and_returns_the_body(server: _Server) -> None:
    with _channel(server) as channel:
        assert channel.call("/test.Echo/Call", b"\x01\x02\x03", timeout=5) == b"\x03\x02\x01"
    sent = server.requests[0]
    assert sent["path"] == "/test.Echo/Call"
    assert sent["body"] == b"\x01\x02\x03"
    assert sent["headers"]["Content-Type"] == "application/proto"
    assert sent["headers"]["Connect-Protocol-Version"] == "1"


def test_calls_reuse_one_keep_alive_connection(server: _Server) -> None:
    with _channel(server) as channel:
        for i in range(5):
            assert channel.call("/test.Echo/Call", bytes([i]), timeout=5) == bytes([i])
    assert len(server.connections) == 1


def test_concurrent_callers_each_get_a_connection_and_their_own_answer(server: _Server) -> None:
    channel = _channel(server)
    answers: dict[int, bytes] = {}

    def call(i: int) -> None:
        answers[i] = channel.call("/test.Echo/Call", f"ab{i}".encode(), timeout=5)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    channel.close()
    assert answers == {i: f"{i}ba".encode() for i in range(8)}


def test_a_connect_json_error_keeps_the_servers_code_and_message(server: _Server) -> None:
    with _channel(server) as channel, pytest.raises(ConnectError) as caught:
        channel.call("/test.Echo/JsonError", b"", timeout=5)
    assert (caught.value.code, caught.value.message) == ("invalid_argument", "bad batch")


def test_an_http_error_without_a_json_body_gets_the_code_of_its_status(server: _Server) -> None:
    with _channel(server) as channel:
        with pytest.raises(ConnectError) as caught:
            channel.call("/test.Echo/PlainError", b"", timeout=5)
        assert caught.value.code == "unavailable"  # 503, per the Connect specification
        assert "503" in caught.value.message
        with pytest.raises(ConnectError) as caught:
            channel.call("/test.Echo/Missing", b"", timeout=5)
        assert caught.value.code == "unimplemented"  # 404: no such method


def test_an_error_answer_leaves_the_connection_usable(server: _Server) -> None:
    with _channel(server) as channel:
        with pytest.raises(ConnectError):
            channel.call("/test.Echo/JsonError", b"", timeout=5)
        assert channel.call("/test.Echo/Call", b"ok", timeout=5) == b"ko"
    assert len(server.connections) == 1


def test_a_refused_connection_is_unavailable() -> None:
    with socket.socket() as sock:  # a port that nothing listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with ConnectChannel(f"http://127.0.0.1:{port}") as channel, pytest.raises(ConnectError) as caught:
        channel.call("/test.Echo/Call", b"", timeout=5)
    assert caught.value.code == "unavailable"
    assert "refused" in caught.value.message


def test_no_answer_within_the_timeout_is_deadline_exceeded(server: _Server) -> None:
    with _channel(server) as channel:
        started = time.monotonic()
        with pytest.raises(ConnectError) as caught:
            channel.call("/test.Echo/Slow", b"", timeout=0.2)
        assert caught.value.code == "deadline_exceeded"
        assert time.monotonic() - started < 0.9
        # The late answer must not be read as the answer to the next call.
        assert channel.call("/test.Echo/Call", b"next", timeout=5) == b"txen"


def test_a_keep_alive_connection_the_server_closed_is_replaced_once(server: _Server) -> None:
    with _channel(server) as channel:
        assert channel.call("/test.Echo/DropAfter", b"", timeout=5) == b"bye"
        time.sleep(0.1)  # the server's FIN arrives while the connection sits in the pool
        assert channel.call("/test.Echo/Call", b"2", timeout=5) == b"2"
        assert channel.call("/test.Echo/Call", b"3", timeout=5) == b"3"
    assert len(server.connections) == 2
    assert [r["path"] for r in server.requests].count("/test.Echo/Call") == 2  # each sent once


def test_a_connection_the_server_announced_it_closes_is_not_pooled(server: _Server) -> None:
    with _channel(server) as channel:
        assert channel.call("/test.Echo/CloseAfter", b"", timeout=5) == b"bye"
        assert channel.call("/test.Echo/Call", b"x", timeout=5) == b"x"
    assert len(server.connections) == 2


def test_health_check_reads_the_serving_status(server: _Server) -> None:
    with _channel(server) as channel:
        assert health_check(channel, timeout=5) == health_pb2.HealthCheckResponse.SERVING
    assert server.requests[0]["path"] == "/grpc.health.v1.Health/Check"


def test_a_closed_channel_refuses_calls(server: _Server) -> None:
    channel = _channel(server)
    channel.close()
    with pytest.raises(ConnectError) as caught:
        channel.call("/test.Echo/Call", b"", timeout=5)
    assert caught.value.code == "canceled"


def test_an_address_that_is_not_http_host_port_is_refused() -> None:
    with pytest.raises(ValueError):
        ConnectChannel("ftp://example.invalid:443")
    with pytest.raises(ValueError):
        ConnectChannel("http://127.0.0.1")
    with pytest.raises(ValueError, match="plaintext"):
        ConnectChannel("http://127.0.0.1:1", tls=ssl.create_default_context())
