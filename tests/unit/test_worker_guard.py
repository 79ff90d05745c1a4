"""worker_guard: a worker ends with whichever of its sidecar or its guard ends first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _child_of(pid: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("the guard started no worker")


def _wait_ended(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _ended(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _ended(pid)


def test_a_killed_guard_takes_its_worker_with_it():
    guard = subprocess.Popen([sys.executable, "-m", "alert_sidecar.workers.guard", str(os.getpid()), "sleep", "300"])
    worker = _child_of(guard.pid)
    guard.kill()
    guard.wait(10)
    try:
        assert _wait_ended(worker), "the worker outlived its guard"
    finally:
        if not _ended(worker):
            os.kill(worker, signal.SIGKILL)


def test_the_guard_exits_with_the_workers_code_and_ignores_terminal_signals():
    guard = subprocess.Popen([sys.executable, "-m", "alert_sidecar.workers.guard", str(os.getpid()),
                              sys.executable, "-c", "import time, sys; time.sleep(1); sys.exit(3)"])
    time.sleep(0.5)
    guard.send_signal(signal.SIGTERM)  # to the guard alone: it waits for its worker
    assert guard.wait(10) == 3
