"""Bad input gets one clear line and a defined exit code, never a traceback or a hang."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .stage_support import ROOT, SIDECAR, free_port, produce_alerts, read_topic

pytestmark = pytest.mark.kafka


def run_sidecar(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*SIDECAR, *args], capture_output=True, text=True, timeout=timeout)


def assert_one_clear_line(result: subprocess.CompletedProcess, code: int, *says: str) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(("alert-sidecar: error:", "Error:"))]
    assert len(errors) == 1, result.stderr
    for text in says:
        assert text in errors[0], errors[0]
    return errors[0]


def test_malformed_buffer_uri():
    result = run_sidecar("--in", "localhost:9092/alerts", "--out", "kafka://localhost:9092/out",
                         "--worker", "localhost:50051")
    assert_one_clear_line(result, 2, "--in", "not a buffer URI", "kafka://")


def test_missing_worker_and_bad_flag():
    result = run_sidecar("--in", "kafka://localhost:9092/a", "--out", "kafka://localhost:9092/b")
    assert_one_clear_line(result, 2, "no worker")
    result = run_sidecar("--in", "kafka://localhost:9092/a", "--out", "kafka://localhost:9092/b",
                         "--worker", "localhost:1", "--batch-size", "zero")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--batch-size" in result.stderr


def test_unreachable_broker():
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = run_sidecar("--in", f"kafka://127.0.0.1:{port}/alerts", "--out", f"kafka://127.0.0.1:{port}/out",
                         "--worker", "localhost:50051")
    assert_one_clear_line(result, 3, f"cannot reach Kafka at 127.0.0.1:{port}", "input buffer")
    assert time.monotonic() - started < 30


def test_missing_input_topic(kafka_bootstrap):
    result = run_sidecar("--in", f"kafka://{kafka_bootstrap}/no-such-topic-here", "--out",
                         f"kafka://{kafka_bootstrap}/out", "--worker", "localhost:50051")
    assert_one_clear_line(result, 3, "does not exist")


def test_worker_not_listening(kafka_bootstrap, new_topic):
    source = new_topic()
    port = free_port()
    result = run_sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out", f"kafka://{kafka_bootstrap}/{source}-o",
                         "--worker", f"127.0.0.1:{port}", "--worker-wait", "2")
    assert_one_clear_line(result, 4, f"worker at 127.0.0.1:{port} is not ready after 2 s", "connection refused")


def test_worker_command_that_exits(kafka_bootstrap, new_topic):
    source = new_topic()
    result = run_sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out", f"kafka://{kafka_bootstrap}/{source}-o",
                         "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert_one_clear_line(result, 4, "exited with code 3 before it was ready")


def test_worker_without_health_service(kafka_bootstrap, new_topic, procs):
    source = new_topic()
    port = free_port()
    procs.worker("liar.py", port, "--mode", "no-health")
    _wait_listening(port)  # so that what the sidecar meets is the missing service, not a worker still starting
    result = run_sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out", f"kafka://{kafka_bootstrap}/{source}-o",
                         "--worker", f"127.0.0.1:{port}", "--worker-wait", "3")
    assert_one_clear_line(result, 4, "health service")


@pytest.mark.parametrize("mode, says", [
    ("missing", "answered a batch of"),
    ("garbage", "broke the contract on ProcessBatch"),
])
def test_worker_answering_an_invalid_result(kafka_bootstrap, new_topic, procs, mode, says):
    source, sink = new_topic(), new_topic()
    produce_alerts(kafka_bootstrap, source, 10, partitions=1)
    port = free_port()
    procs.worker("liar.py", port, "--mode", mode)
    result = run_sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out", f"kafka://{kafka_bootstrap}/{sink}",
                         "--worker", f"127.0.0.1:{port}", "--group", f"g-{source}")
    assert_one_clear_line(result, 4, f"worker at 127.0.0.1:{port}", says)
    # Nothing was produced or committed for a batch the worker answered wrongly.
    assert read_topic(kafka_bootstrap, sink, settle=0.5) == []


def test_unknown_verdict_is_retried_and_unbound_route_dead_lettered(kafka_bootstrap, new_topic, procs):
    source, sink, dead = new_topic(), new_topic(), new_topic()
    produce_alerts(kafka_bootstrap, source, 5, partitions=1)
    port = free_port()
    worker = procs.worker("liar.py", port, "--mode", "unknown-verdict")
    sidecar = procs.sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out", f"kafka://{kafka_bootstrap}/{sink}",
                            "--dead-letter", f"kafka://{kafka_bootstrap}/{dead}", "--worker", f"127.0.0.1:{port}",
                            "--retry-backoff", "0.1")
    assert len(read_topic(kafka_bootstrap, sink, minimum=5, timeout=30)) == 5
    assert "unknown to this sidecar" in sidecar.output
    sidecar.kill()
    worker.kill()

    source2 = new_topic()
    produce_alerts(kafka_bootstrap, source2, 3, partitions=1)
    port = free_port()
    procs.worker("liar.py", port, "--mode", "unbound-route")
    procs.sidecar("--in", f"kafka://{kafka_bootstrap}/{source2}", "--out", f"kafka://{kafka_bootstrap}/{sink}",
                  "--dead-letter", f"kafka://{kafka_bootstrap}/{dead}", "--worker", f"127.0.0.1:{port}")
    letters = read_topic(kafka_bootstrap, dead, minimum=3, timeout=30)
    assert len(letters) == 3
    reason = dict(letters[0].headers())["x-dead-letter-reason"].decode()
    assert "route 'secret'" in reason and "--route secret=" in reason
    assert [json.loads(m.value())["seq"] for m in letters] == [0, 1, 2]


def test_help_documents_every_option():
    import click

    from alert_sidecar.cli import run

    result = run_sidecar("--help")
    assert result.returncode == 0
    options = [p for p in run.params if isinstance(p, click.Option)]
    assert len(options) > 20
    for option in options:
        for opt in option.opts:
            assert opt in result.stdout, f"{opt} missing from --help"
        assert option.help, f"{option.opts[0]} has no help text"
    assert "alert-sidecar kafka up" in result.stdout


def test_workers_end_with_a_sidecar_killed_without_warning(kafka_bootstrap, new_topic, procs):
    """SIGKILL gives the sidecar no time to stop the workers it started; they must not outlive it."""
    source = new_topic()
    sidecar = procs.sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out",
                            f"kafka://{kafka_bootstrap}/{source}-o", "--worker-processes", "2", "--",
                            sys.executable, str(ROOT / "examples" / "python" / "passthrough.py"))
    sidecar.wait_for_line("stage started", 60)
    workers = _descendants(sidecar.popen.pid)
    # Each worker runs under its guard (workers/guard.py), whose command line names the worker too.
    assert len([p for p in workers if "passthrough.py" in _cmdline(p) and "workers.guard" not in _cmdline(p)]) == 2
    sidecar.signal(signal.SIGKILL)
    sidecar.wait(10)
    deadline = time.monotonic() + 15
    while any(_cmdline(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in workers if _cmdline(p)], "worker processes outlived their sidecar"


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            children = [int(c) for c in (task / "children").read_text().split()]
            found += children
            todo += children
    return found


def _cmdline(pid: int) -> str:
    """The process's command line; empty once it has ended (a zombie has none)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def test_a_server_that_is_healthy_but_no_alert_worker_is_refused(kafka_bootstrap, new_topic):
    """Something else on the port (here a bare gRPC health service) is named as such, exit 4."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    source = new_topic()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = run_sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out",
                             f"kafka://{kafka_bootstrap}/{source}-o", "--worker", f"127.0.0.1:{port}")
    finally:
        server.stop(0)
    assert_one_clear_line(result, 4, f"worker at 127.0.0.1:{port}", "does not implement alertsidecar.v1.AlertWorker")


@pytest.mark.parametrize("describe, says", [
    (None, "does not implement alertsidecar.v1.AlertWorker"),
    (b"\xff\xff\xff", "is not a WorkerDescription"),
])
def test_a_connect_server_that_is_no_alert_worker_is_refused(kafka_bootstrap, new_topic, describe, says):
    """An HTTP server that answers the health check but not Describe (or not with a description), exit 4."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/grpc.health.v1.Health/Check":
                body, status = b"\x08\x01", 200  # HealthCheckResponse{status: SERVING}
            elif describe is not None:
                body, status = describe, 200
            else:
                body, status = b"", 404
            self.send_response(status)
            self.send_header("Content-Type", "application/proto")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    source = new_topic()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        result = run_sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out",
                             f"kafka://{kafka_bootstrap}/{source}-o", "--worker", address)
    finally:
        server.shutdown()
    assert_one_clear_line(result, 4, f"worker at {address}", says)


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout:g} s")
