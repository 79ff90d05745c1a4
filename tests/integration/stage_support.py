"""Running real sidecars and workers as processes, and reading what they wrote.

Used by the integration tests: each sidecar and worker is a real process in its
own process group, killed with its whole group at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from alert_sidecar.workers.process import free_port  # noqa: F401  (tests import it from here)


def free_consecutive_ports(count: int) -> int:
    """The first of ``count`` consecutive ports that are free now (for a worker served by several processes)."""
    import socket

    for _ in range(50):
        first = free_port()
        try:
            held = []
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports found")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "python"
WORKERS = Path(__file__).resolve().parent / "workers"
SIDECAR = [sys.executable, "-m", "alert_sidecar.cli"]


@dataclass
class Proc:
    """A child process with its output in a log file."""

    argv: list[str]
    log_path: Path
    env: dict = field(default_factory=dict)
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **self.env}, start_new_session=True, cwd=ROOT)
        return self

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.signal(signal.SIGKILL)
            self.popen.wait(10)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if not self.alive:
                raise AssertionError(f"process exited before printing {text!r}:\n{self.output[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output[-3000:]}")


class Processes:
    """Every process a test starts; all killed at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Proc] = []

    def start(self, argv: list[str], name: str, env: dict | None = None) -> Proc:
        proc = Proc(argv, self.tmp_path / f"{name}-{len(self.started)}.log", env or {}).start()
        self.started.append(proc)
        return proc

    def worker(self, script: str, port: int, *args: str, name: str = "worker") -> Proc:
        path = EXAMPLES / script if (EXAMPLES / script).exists() else WORKERS / script
        return self.start([sys.executable, str(path), "--port", str(port), *args], name)

    def sidecar(self, *args: str, name: str = "sidecar") -> Proc:
        return self.start([*SIDECAR, "--progress-interval", "1", *args], name)

    def kill_all(self) -> None:
        for proc in self.started:
            proc.kill()


def produce_alerts(bootstrap: str, topic: str, count: int, partitions: int, start: int = 0,
                   keys: int = 0, config: dict | None = None) -> list[dict]:
    """Write ``count`` small JSON alerts, spread round-robin over partitions; return them.

    Ids are 64-bit and above 2**53, as Rubin's diaSourceIds are. With ``keys``,
    records are keyed "k0".."k<keys-1>" in turn (as if by object). ``config``:
    more client settings (a secured cluster's).
    """
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **(config or {})})
    alerts = []
    for i in range(start, start + count):
        alert = {"diaSourceId": 2**60 + i, "seq": i, "partition": i % partitions}
        key = f"k{i % keys}".encode() if keys else None
        producer.produce(topic, value=json.dumps(alert).encode(), key=key, partition=i % partitions)
        alerts.append(alert)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return alerts


def read_topic(bootstrap: str, topic: str, minimum: int = 0, timeout: float = 60.0, settle: float = 1.0,
               config: dict | None = None) -> list:
    """Every record of ``topic`` from the beginning, waiting until at least ``minimum`` are there.

    Returns messages in partition order, each partition in offset order. ``config``: more client settings.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, **(config or {})})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        parts = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        messages = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(1000, timeout=0.2) if m.error() is None]
            messages.extend(batch)
            if batch:
                quiet_since = time.monotonic()
            elif len(messages) >= minimum and time.monotonic() - quiet_since >= settle:
                break
        messages.sort(key=lambda m: (m.partition(), m.offset()))
        return messages
    finally:
        consumer.close()


def header(message, name: str) -> bytes | None:
    for key, value in message.headers() or []:
        if key == name:
            return value
    return None


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        answered = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in answered}
    finally:
        consumer.close()


def count_records(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` now, from its watermarks (does not wait for a stream to go quiet)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"counter-{uuid.uuid4()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        total = 0
        for partition in metadata.partitions if metadata else []:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()
