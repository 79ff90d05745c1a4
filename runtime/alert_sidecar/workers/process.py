"""Starting the worker as a child of the sidecar: ``alert-sidecar ... -- COMMAND``.

Each worker process is told its port in the environment variable
``ALERT_WORKER_PORT`` (the SDKs read it), runs in its own process group so
that stopping it stops whatever it started, and is restarted with a backoff if
it exits while the stage runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from alert_sidecar.exceptions import WorkerError

log = logging.getLogger("alert_sidecar.worker_process")

PORT_ENV = "ALERT_WORKER_PORT"
# Restart a crashed worker after 1 s, doubling to at most 30 s while it keeps crashing.
RESTART_BACKOFF_S = (1.0, 30.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class WorkerProcess:
    command: list[str]
    port: int
    index: int
    popen: subprocess.Popen | None = None
    restarts: int = 0
    restart_at: float | None = None
    started_at: float = field(default=0.0)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, PORT_ENV: str(self.port)}
        if shutil.which(self.command[0], path=env.get("PATH")) is None:
            raise WorkerError(f"cannot start worker command {' '.join(self.command)!r}: "
                              f"{self.command[0]!r} is not an executable file or on PATH")
        # Through worker_guard, which ends the worker if this sidecar is killed without warning.
        guarded = [sys.executable, "-m", "alert_sidecar.workers.guard", str(os.getpid()), *self.command]
        try:
            self.popen = subprocess.Popen(guarded, env=env, start_new_session=True)
        except OSError as exc:
            raise WorkerError(f"cannot start worker command {' '.join(self.command)!r}: {exc.strerror}") from None
        self.started_at = time.monotonic()
        log.info("worker process started index=%d pid=%d port=%d command=%r",
                 self.index, self.popen.pid, self.port, " ".join(self.command))

    def stop(self, timeout: float) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        _signal_group(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


class Supervisor:
    """The worker processes a sidecar started, kept running while the stage runs."""

    def __init__(self, command: list[str], count: int) -> None:
        self.processes = [WorkerProcess(command, free_port(), i) for i in range(count)]

    @property
    def ports(self) -> list[int]:
        """The loopback ports the workers serve on, one each."""
        return [p.port for p in self.processes]

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def check_started(self) -> None:
        """While waiting for the workers to be healthy: fail fast if one exited."""
        for process in self.processes:
            code = process.popen.poll() if process.popen else None
            if code is not None:
                raise WorkerError(
                    f"worker command {' '.join(process.command)!r} exited with code {code} before it was ready; "
                    "run it on its own to see why"
                )

    def supervise(self) -> None:
        """Restart workers that exited, with a growing backoff (called from the stage loop)."""
        now = time.monotonic()
        for process in self.processes:
            if process.popen is None:
                continue
            code = process.popen.poll()
            if code is None:
                continue
            if process.restart_at is None:
                # A worker that ran for a minute was healthy: start its backoff afresh.
                if now - process.started_at > 60:
                    process.restarts = 0
                delay = min(RESTART_BACKOFF_S[1], RESTART_BACKOFF_S[0] * 2 ** process.restarts)
                process.restart_at = now + delay
                log.warning("worker process exited index=%d code=%s; restarting in %.0f s", process.index, code, delay)
            elif now >= process.restart_at:
                process.restarts += 1
                process.restart_at = None
                process.start()

    def served(self, port: int) -> None:
        """The worker on ``port`` became ready: if it dies now, it is restarted after the first backoff.

        A worker that dies before it is ready (a broken command) waits longer
        each time; one that dies on an alert is brought back quickly, since
        the stage is finding that alert by sending it alone (verdicts.py).
        """
        for process in self.processes:
            if process.port == port:
                process.restarts = 0

    def stop(self, timeout: float = 10.0) -> None:
        for process in self.processes:
            process.stop(timeout)
