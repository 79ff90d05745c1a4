"""A Python example script served as a real process on loopback, called over gRPC as a sidecar calls it.

ExampleProcess starts a script and reads its log as it runs, so a test can
wait for a line (a reload, say) without stopping the script; serving() makes
the pytest fixture that starts scripts for a test and kills them at its end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alert_worker.server import SERVICE_NAME
from alertsidecar.v1 import worker_pb2_grpc

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"
SERVING = health_pb2.HealthCheckResponse.SERVING
BIG = [("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.max_send_message_length", 64 * 1024 * 1024)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ExampleProcess:
    """An example script serving on a free port, in a process group of its own."""

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, **(env or {})})
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}", options=BIG)
        self.stub = worker_pb2_grpc.AlertWorkerStub(self.channel)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def wait_serving(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        health = health_pb2_grpc.HealthStub(self.channel)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"the example exited ({self.process.returncode}): {self.output}")
            try:
                if health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=1).status == SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
        raise AssertionError(f"the example did not report SERVING in time: {self.output}")

    def wait_for_output(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in the example's output: {self.output}")
            time.sleep(0.05)

    def terminate(self) -> tuple[int, str]:
        """SIGTERM, as Kubernetes or the sidecar would send; returns the exit code and the whole output."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        self._reader.join(10)
        return self.process.returncode, self.output

    def kill(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def serving(script: str | None = None) -> Any:
    """A pytest fixture that starts examples, each once it reports SERVING, and kills them at the test's end.

    Its value is a function that returns the ExampleProcess. Bound to a script,
    ``example = serving("thumbnails.py")``, it takes the script's arguments and
    env=: ``example("--size", "96")``; unbound, ``example_process = serving()``,
    the script comes first: ``example_process("passthrough.py")``.
    """

    @pytest.fixture
    def start_examples() -> Iterator[Callable[..., ExampleProcess]]:
        started: list[ExampleProcess] = []

        def start(*args: str, **options: Any) -> ExampleProcess:
            process = ExampleProcess(*args, **options) if script is None else ExampleProcess(script, *args, **options)
            started.append(process)
            process.wait_serving()
            return process

        yield start
        for process in started:
            process.kill()

    return start_examples
