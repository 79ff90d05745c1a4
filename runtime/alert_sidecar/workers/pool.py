"""The workers of one stage: which is healthy, how busy each is, and what happened to them.

The pool spreads batches over the healthy workers and counts the batches each
has in flight; nothing else changes those counts. Its health watcher, a
background thread, only probes: when a worker that was down answers again it
posts a ``WorkerBack`` event on the same queue as the batches' completions, and
the stage's loop decides (checks the worker's description, then calls
``back``). So every decision is taken on the loop's one thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from alertsidecar.v1 import worker_pb2

from alert_sidecar.workers.address import Protocol, WorkerAddress
from alert_sidecar.workers.clients import (
    Batch,
    Completion,
    ConnectWorkerClient,
    WorkerCall,
    WorkerClient,
    describe_rpc_error,
)
from alert_sidecar.exceptions import WorkerError

log = logging.getLogger("alert_sidecar.dispatch")

# How often an unhealthy worker is asked for its health again.
HEALTH_PROBE_INTERVAL_S = 0.5
# How often a worker that is starting is asked whether it is ready: a Python
# worker is up about a second after its process starts, and every probe
# interval is start-up time the stage may add to its first alert's latency.
READY_PROBE_INTERVAL_S = 0.05
# How often the watcher repeats that a worker is still away.
UNAVAILABLE_NOTE_INTERVAL_S = 10.0


@dataclass
class WorkerBack:
    """A worker that was unavailable answers its health check and Describe again."""

    worker: WorkerClient
    description: worker_pb2.WorkerDescription
    outage: int  # the worker's outage count when it was probed: a later outage makes this stale


@dataclass
class WatchEnded:
    """The health watcher stopped on ``error``, which the loop raises.

    A WorkerError when a worker came back as something that is no alert
    worker; any other exception is a bug of the program.
    """

    error: BaseException


Event = Completion | WorkerBack | WatchEnded | object


class WorkerPool:
    """The workers of one stage, their in-flight counts and their health."""

    def __init__(self, addresses: list[WorkerAddress], call_timeout: float,
                 call: WorkerCall = WorkerCall.STREAM, *, mirror: bool = False) -> None:
        # Completions of batches, WorkerBack events, and whatever else the
        # stage posts for its loop (decoded batches): one queue, one reader.
        self.events: queue.Queue[Event] = queue.Queue()
        self.workers = [
            ConnectWorkerClient(a, self.events, call_timeout) if a.protocol is Protocol.CONNECT
            else WorkerClient(a, self.events, call_timeout, call)
            for a in addresses
        ]
        if mirror:  # no worker process: the built-in one forwards every alert as it is
            from alert_sidecar.workers.mirror import mirror_client

            self.workers = [mirror_client(self.events)]
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._next = 0
        self._alone: set[int] = set()  # workers (by id) with a batch in flight that must be alone on it

    # -- start ----------------------------------------------------------------

    def wait_healthy(self, timeout: float, should_stop: Callable[[], bool],
                     agree: Callable[[str, worker_pb2.WorkerDescription], None]) -> None:
        """Block until every worker is SERVING and ``agree`` accepted its description, or raise WorkerError.

        Runs on the loop's thread, before the loop: ``agree`` may raise to refuse a worker.
        """
        deadline = time.monotonic() + timeout
        next_note = time.monotonic() + 5
        waiting = list(self.workers)
        while waiting:
            for worker in list(waiting):
                if worker.probe():
                    description = worker.describe()
                    agree(worker.address, description)
                    worker.mark_healthy(description)
                    d = description
                    log.info(
                        "worker ready address=%s name=%s version=%s sdk=%r batch_size=%d accepts=%s routes=%s",
                        worker.address, d.name or "?", d.version or "?", d.sdk, d.preferred_batch_size,
                        ",".join(d.accepts) or "*/*", ",".join(d.routes) or "-",
                    )
                    waiting.remove(worker)
            if not waiting or should_stop():
                return
            now = time.monotonic()
            if now >= deadline:
                worker = waiting[0]
                raise WorkerError(
                    f"worker at {worker.address} is not ready after {timeout:g} s: {worker.last_problem}; "
                    "start it, or check --worker (--worker-wait sets how long to wait)"
                )
            if now >= next_note:
                for worker in waiting:
                    log.info("waiting for worker address=%s problem=%r", worker.address, worker.last_problem)
                next_note = now + 5
            time.sleep(READY_PROBE_INTERVAL_S)

    def start_watching(self) -> None:
        self._watcher = threading.Thread(target=self._watch, name="worker-health", daemon=True)
        self._watcher.start()

    # -- the loop's side ------------------------------------------------------

    def pick(self, max_in_flight: int, alone: bool = False) -> WorkerClient | None:
        """The healthy worker with the fewest batches in flight, or None if all are busy or down.

        ``alone``: only a worker with nothing in flight (for a batch that must
        be the only one on it). A worker with such a batch in flight is
        never picked until it is answered.
        """
        best = None
        count = len(self.workers)
        for i in range(count):
            worker = self.workers[(self._next + i) % count]
            if worker.healthy and id(worker) not in self._alone and (
                    worker.in_flight == 0 if alone else worker.in_flight < max_in_flight):
                if best is None or worker.in_flight < best.in_flight:
                    best = worker
        if best is not None:
            self._next = (self.workers.index(best) + 1) % count
        return best

    def send(self, worker: WorkerClient, batch: Batch, request: bytes) -> None:
        """Send a batch (AlertBatch bytes); its Completion comes back through ``next_event``."""
        worker.in_flight += 1
        if batch.alone:
            self._alone.add(id(worker))
        worker.send(batch, request)

    def hold(self, worker: WorkerClient, batch: Batch) -> None:
        """Keep a slot of ``worker`` for ``batch`` while its alerts are prepared (decoded) for it."""
        worker.in_flight += 1
        batch.worker = worker
        if batch.alone:
            self._alone.add(id(worker))

    def release(self, worker: WorkerClient, batch: Batch) -> None:
        """Give back a slot taken by ``hold`` (``send`` takes it again if the batch still goes out)."""
        worker.in_flight -= 1
        if batch.alone:
            self._alone.discard(id(worker))

    def next_event(self, timeout: float) -> Event | None:
        """The next completion or event, waiting up to ``timeout`` seconds (0: only what is there)."""
        try:
            event = self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()
        except queue.Empty:
            return None
        if isinstance(event, Completion):
            event.batch.worker.in_flight -= 1
            if event.batch.alone:
                self._alone.discard(id(event.batch.worker))
        return event

    def unavailable(self, worker: WorkerClient, err: grpc.RpcError) -> None:
        """A call found ``worker`` gone: send it nothing more until the watcher sees it back."""
        if worker.healthy:
            log.warning("worker unavailable address=%s problem=%r; pausing until it is healthy again",
                        worker.address, describe_rpc_error(err))
        worker.mark_unhealthy(describe_rpc_error(err))

    def back(self, event: WorkerBack) -> bool:
        """Take a worker back after the loop agreed to its description; False if the event is stale."""
        worker = event.worker
        if worker.healthy or event.outage != worker.outages:
            return False
        worker.mark_healthy(event.description)
        log.info("worker back address=%s", worker.address)
        return True

    def expire(self, now: float) -> None:
        for worker in self.workers:
            worker.expire(now)

    @property
    def any_healthy(self) -> bool:
        return any(w.healthy for w in self.workers)

    def probe_now(self) -> tuple[int, str]:
        """Ask every worker's health service now (a readiness probe's thread): how many serve, and why not."""
        serving, problem = 0, ""
        for worker in list(self.workers):
            if worker.probe():
                serving += 1
            elif not problem:
                problem = f"worker at {worker.address}: {worker.last_problem}"
        return serving, problem

    @property
    def healthy_count(self) -> int:
        return sum(w.healthy for w in self.workers)

    @property
    def in_flight(self) -> int:
        return sum(w.in_flight for w in self.workers)

    def close(self) -> None:
        self._stop.set()
        if self._watcher:
            self._watcher.join(timeout=5)
        for worker in self.workers:
            worker.close()

    # -- the watcher's thread -------------------------------------------------

    def _watch(self) -> None:
        try:
            self._watch_until_stopped()
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which raises it
            self.events.put(WatchEnded(exc))

    def _watch_until_stopped(self) -> None:
        next_note: dict[str, float] = {}
        reported: dict[str, int] = {}  # address -> outage whose recovery was posted
        while not self._stop.wait(HEALTH_PROBE_INTERVAL_S):
            for worker in self.workers:
                outage = worker.outages  # read once: the loop may count another meanwhile
                if worker.healthy or reported.get(worker.address) == outage:
                    continue
                try:
                    if worker.probe():  # a WorkerError from describe() ends the watch: no alert worker is there
                        self.events.put(WorkerBack(worker, worker.describe(), outage))
                        reported[worker.address] = outage
                        continue
                except grpc.RpcError as err:
                    worker.last_problem = describe_rpc_error(err)
                now = time.monotonic()
                if now >= next_note.get(worker.address, 0):
                    log.warning("worker unavailable address=%s problem=%r; holding its alerts until it is back",
                                worker.address, worker.last_problem)
                    next_note[worker.address] = now + UNAVAILABLE_NOTE_INTERVAL_S
