"""The pipeline file as plain data: clusters, buffers between stages, and stages.

A pipeline is a directed graph of stages with a Kafka buffer between every
two; buffers may live on different clusters. ``load.py`` builds these from a
file and checks them; the commands (``alert-pipeline validate``, later
``plan``, ``apply``, ``up``...) only read them. Every item keeps the line it
was defined on, so that any later message can say ``FILE:LINE``. Defaults are
filled in by the loader: what is here is what the pipeline will be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# What a worker started from a command speaks when the file does not say: the
# R SDK serves Connect (HTTP/1.1), the others gRPC.
CONNECT_LANGUAGES = frozenset({"r"})


@dataclass
class ClusterSpec:
    """A Kafka cluster: an existing one (``bootstrap``) or one ``alert-pipeline up`` starts (``local_brokers``)."""

    name: str
    line: int
    bootstrap: str | None = None
    local_brokers: int | None = None  # set for a local cluster
    settings: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # key -> "@env:VAR" or "@file:PATH"

    @property
    def is_local(self) -> bool:
        return self.local_brokers is not None


@dataclass
class BufferSpec:
    """A Kafka topic on one cluster, between stages."""

    name: str
    line: int
    cluster: str
    topic: str
    partitions: int = 1
    replication: int = 3
    min_insync_replicas: int = 2
    retention_ms: int | None = None  # None: the cluster's default; -1: unlimited (Kafka's convention)
    retention_bytes: int | None = None
    format: str = "auto"
    schema: str | None = None


@dataclass
class WorkerSpec:
    """A worker: a command the sidecar starts, or the address of one already running."""

    line: int
    command: list[str] | None = None
    address: str | None = None
    language: str | None = None
    protocol: str = "grpc"
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class StageSpec:
    """One stage: a sidecar (``instances`` of it) reading ``input`` and writing the rest."""

    name: str
    line: int
    input: str
    output: str | None = None
    routes: dict[str, str] = field(default_factory=dict)  # route name -> buffer name
    dead_letter: str | None = None
    worker: WorkerSpec | None = None  # None: a mirror stage, copying input to output
    instances: int = 1
    processes: int = 1
    ordering: str = "partition"
    batch_size: int | None = None  # None: the sidecar's default
    batch_linger_ms: int | None = None
    group: str = ""
    exactly_once: bool = False

    @property
    def is_mirror(self) -> bool:
        return self.worker is None

    def writes(self) -> list[str]:
        """The buffers this stage writes: output, routes, dead letter (each once, in that order)."""
        names = [self.output, *self.routes.values(), self.dead_letter]
        return list(dict.fromkeys(name for name in names if name is not None))


@dataclass
class Pipeline:
    """A whole pipeline file, defaults filled in."""

    path: str
    name: str
    version: int
    clusters: dict[str, ClusterSpec]
    buffers: dict[str, BufferSpec]
    stages: dict[str, StageSpec]
    warnings: list = field(default_factory=list)  # the loader's Diagnostics that are warnings

    def readers(self, buffer: str) -> list[StageSpec]:
        """The stages that read ``buffer``."""
        return [stage for stage in self.stages.values() if stage.input == buffer]

    def writers(self, buffer: str) -> list[StageSpec]:
        """The stages that write ``buffer`` (as output, route or dead letter)."""
        return [stage for stage in self.stages.values() if buffer in stage.writes()]

    def summary(self) -> str:
        """``5 stages, 6 buffers on 2 clusters``."""
        return (f"{plural(len(self.stages), 'stage')}, {plural(len(self.buffers), 'buffer')} "
                f"on {plural(len(self.clusters), 'cluster')}")


def plural(n: int, noun: str) -> str:
    """``1 stage``, ``2 stages``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
