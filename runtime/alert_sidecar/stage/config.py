"""What a stage is told: its buffers, its workers, and every setting, each default with its reason.

The defaults are defined here once; the command line (cli.py) shows and reads
them from here.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from alert_sidecar.kafka.buffers import Buffer
from alert_sidecar.kafka.clusters import Clusters
from alert_sidecar.kafka.start import StartFrom, StartPosition
from alert_sidecar.stage.verdicts import DEAD_LETTER, RetryPolicy
from alert_sidecar.workers.address import WorkerAddress
from alert_sidecar.workers.clients import WorkerCall


class Ordering(enum.Enum):
    """What the worker may see out of order.

    Outputs always leave in offset order per partition, and only the finished
    prefix of a partition is ever committed, whichever is chosen.
    """

    PARTITION = "partition"  # nothing: one batch in flight per partition
    KEY = "key"  # alerts of one record key stay in order; other keys overtake
    NONE = "none"  # batches of a partition run concurrently


def default_decoders() -> int:
    """Decoder processes: none (decode on the stage's thread) with the compiled reader, else one per core.

    The compiled reader (``formats.avro_projection``) decodes an LSST-sized
    alert in about 0.1 ms, less than sending it to another process and its JSON
    back costs; fastavro takes about 1 ms (``python bench/decoding.py``), so
    without the extension one process per core keeps decoding off the stage's thread.
    """
    from alert_sidecar.formats import avro_projection

    return 0 if avro_projection.AVAILABLE else os.cpu_count() or 1


@dataclass
class StageConfig:
    input: Buffer
    output: Buffer
    group: str
    workers: list[WorkerAddress]
    dead_letter: Buffer
    routes: dict[str, Buffer] = field(default_factory=dict)
    # A mirror stage (--mirror) has no worker: every alert goes to --out as it is (workers/mirror.py).
    mirror: bool = False
    # Where each buffer's cluster is and the settings of its clients (none: plaintext, librdkafka's defaults).
    clusters: Clusters = field(default_factory=Clusters)
    # 100 alerts per call: on a 2-core machine one unary gRPC call per alert
    # caps Python near 2,000 alerts/s whatever the size, while 100 small alerts
    # per call go past 100,000/s; the per-call cost is what batching saves.
    batch_size: int = 100
    # How long a partition's batch may wait to fill before it is sent short:
    # 5 ms turns a trickle into fewer, fuller calls and costs nothing against
    # Rubin's 60 s latency budget (DMTN-102); a visit's burst fills batches
    # without waiting.
    batch_linger: float = 0.005
    # 16 MB per call keeps a batch of LSST-sized alerts (~100 KB) whole and
    # bounds what one call holds in memory on both sides.
    max_batch_bytes: int = 16 * 1024 * 1024
    # Batches in flight per worker: enough to overlap the network with the
    # worker's processing without queueing much behind a slow worker.
    max_in_flight: int = 4
    ordering: Ordering = Ordering.PARTITION
    # What the stage may hold before it pauses fetching: a 40,000-alert peak
    # visit (DMTN-102) of ~100 KB alerts would be 4 GB. 128 MB is about 2,000
    # LSST-sized alerts, more than a second of work for a stage, and keeps the
    # sidecar under 500 MB on a peak visit: each held alert is also in
    # librdkafka's producer queue until acknowledged, and in the batch being
    # sent (make bench measured 495 MB of peak RSS with 256 MB).
    max_buffered_alerts: int = 20000
    max_buffered_bytes: int = 128 * 1024 * 1024
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # A worker has 30 s to answer one batch: half the 60 s latency budget, long
    # past any healthy worker's answer to 100 alerts.
    worker_timeout: float = 30.0
    # A JVM worker loading a million-source catalogue is ready in a few
    # seconds; 30 s tells a worker that will never come from a slow one.
    worker_wait: float = 30.0
    # What SIGTERM leaves the stage to finish in-flight work: Kubernetes'
    # default grace period is 30 s.
    drain_timeout: float = 30.0
    # What a revocation waits for in-flight work of the partitions taken away,
    # so that the next owner repeats little, without stalling the rebalance.
    revoke_timeout: float = 10.0
    # Commit the finished prefix every second: a crash repeats at most a
    # second of work, and a commit per second is nothing to a broker.
    commit_interval: float = 1.0
    progress_interval: float = 10.0
    # Where the group starts on a partition it has no commit for: earliest,
    # latest, a time or an offset (kafka/start.py, which gives the default's reason).
    start_from: StartPosition = StartFrom.EARLIEST
    create_topics: bool = True
    stats_file: Path | None = None
    schema_registry: str | None = None
    schema_dir: str | None = None
    # One ProcessStream call per worker: in one run of small alerts it moved
    # 5,119 alerts/s against 4,262/s with a ProcessBatch call per batch
    # (docs/performance.md).
    worker_call: WorkerCall = WorkerCall.STREAM
    decoders: int = field(default_factory=default_decoders)
    # Outputs and input offsets in one Kafka transaction (stage/transactions.py);
    # off by default: it needs every buffer on the input's cluster, and it
    # waits for acknowledgements at every commit.
    exactly_once: bool = False
    # The producer's transactional.id: give each instance a stable one (a
    # StatefulSet's pod name) so that a restart aborts what it left open at once.
    transactional_id: str | None = None
    # Where the Prometheus endpoint listens (stage/prometheus.py); None: not served.
    metrics_port: int | None = None

    @property
    def outputs(self) -> dict[str, Buffer]:
        return {"": self.output, DEAD_LETTER: self.dead_letter, **self.routes}


def default_of(name: str) -> Any:
    """The default of a StageConfig setting (or of its RetryPolicy), as the command line shows it."""
    for holder in (StageConfig, RetryPolicy):
        for f in fields(holder):
            if f.name == name:
                value = f.default_factory() if callable(f.default_factory) else f.default
                return value.value if isinstance(value, enum.Enum) else value
    raise KeyError(name)
