"""The built-in worker of a mirror stage (``alert-sidecar --mirror``): every alert forwarded as it is.

The seed's first stage copies the upstream stream into a local rolling buffer,
to insulate the rest of the system from trouble upstream. It needs no worker
process, but every rule of a stage still holds (commit only what is
acknowledged, dead letters, rebalances, backpressure, metrics), so the mirror
is a ``WorkerClient`` that answers each batch at once, on the caller's
thread, with one ``forward_input`` output per alert: the record goes to
``--out`` with its key, value and headers unchanged.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass

from alertsidecar.v1 import worker_pb2

from alert_sidecar import __version__
from alert_sidecar.workers.address import WorkerAddress
from alert_sidecar.workers.clients import Batch, Completion, WorkerClient

_OK = worker_pb2.VERDICT_OK
_FORWARD = worker_pb2.AlertOutput(forward_input=True)


@dataclass(eq=False)
class MirrorClient(WorkerClient):
    """A worker with no process: keeps every alert unchanged."""

    def __post_init__(self) -> None:
        self._stream = None

    @property
    def address(self) -> str:
        return "mirror"

    def probe(self) -> bool:
        return True

    def describe(self) -> worker_pb2.WorkerDescription:
        return worker_pb2.WorkerDescription(
            name="mirror", version=__version__, protocol_version=worker_pb2.PROTOCOL_VERSION_1,
            accepts=["*/*"], sdk="alert-sidecar (built in)")

    def send(self, batch: Batch, request: bytes) -> None:
        batch.worker = self
        batch.sent_at = time.monotonic()
        result = worker_pb2.BatchResult(batch_id=batch.id)
        for alert_id in batch.alert_ids:
            result.results.add(id=alert_id, verdict=_OK).outputs.append(_FORWARD)
        self.completions.put(Completion(batch, result=result))

    send_unary = send

    def expire(self, now: float) -> None:
        """Answers are immediate: nothing waits."""

    def close(self) -> None:
        """Nothing to close."""


def mirror_client(completions: queue.Queue) -> MirrorClient:
    return MirrorClient(WorkerAddress("mirror", 0), completions, call_timeout=0.0)
