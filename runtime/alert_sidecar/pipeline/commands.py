"""What each stage of a pipeline runs: the ``alert-sidecar`` options made from the pipeline file.

One place turns a ``StageSpec`` into the sidecar's command line, so that
``alert-pipeline up`` (local processes), ``export k8s``/``helm`` (a sidecar
container beside a worker container) and ``export compose`` all run a stage
the same way. Only where the clusters are (``bootstraps``) and where the
worker is differ between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from alert_sidecar.pipeline.model import BufferSpec, Pipeline, StageSpec

# Where a worker container listens, beside its sidecar in one pod or service.
WORKER_PORT = 50051


def buffer_uri(buffer: BufferSpec, *, base: Path | None = None, output: bool = False) -> str:
    """``kafka://CLUSTER/TOPIC[?format=...&schema=...]``: the buffer on its cluster, by the cluster's name.

    For an ``output``, the format is given only with a schema: it then says
    what the worker's JSON outputs are encoded into, while forwarded alerts
    (a mirror's, a filter's) are already in the buffer's format.
    """
    options = []
    if buffer.format != "auto" and (not output or buffer.schema):
        options.append(f"format={buffer.format}")
    if buffer.schema:
        schema = Path(buffer.schema)
        if base is not None and not schema.is_absolute():
            schema = base / schema
        options.append(f"schema={quote(str(schema), safe='/._-')}")
    return f"kafka://{buffer.cluster}/{buffer.topic}" + (f"?{'&'.join(options)}" if options else "")


def clusters_of(pipeline: Pipeline, stage: StageSpec) -> list[str]:
    """The clusters a stage's buffers are on, each once, input's first."""
    names = [pipeline.buffers[name].cluster for name in [stage.input, *stage.writes()]]
    return list(dict.fromkeys(names))


def default_output(stage: StageSpec) -> str:
    """The buffer given as ``--out``: the output, else the first route, else the dead letter.

    A stage with no ``output`` only routes or only dead-letters; the sidecar
    still needs a default buffer, and one the stage already writes is the safe one.
    """
    for name in (stage.output, *stage.routes.values(), stage.dead_letter):
        if name is not None:
            return name
    raise ValueError(f"stage {stage.name!r} writes no buffer")  # refused by the loader before this


def sidecar_args(pipeline: Pipeline, stage: StageSpec, bootstraps: Mapping[str, str], *,
                 worker_address: str | None = None, metrics_port: int | None = None,
                 transactional_id: str | None = None, base: Path | None = None,
                 create_topics: bool = True) -> list[str]:
    """The options of ``alert-sidecar`` for one instance of ``stage``.

    ``bootstraps``: each cluster's bootstrap servers where this instance runs.
    ``worker_address``: a worker already listening (a container beside the
    sidecar), instead of the file's command; a worker given by address in the
    file is called there. Without either, the file's command follows ``--``
    and the sidecar starts and supervises it. ``base``: the folder relative
    schema paths are read from. ``create_topics`` False: the sidecar leaves
    missing topics to whoever owns the cluster (Strimzi's topic operator).
    """
    args: list[str] = []
    for name in clusters_of(pipeline, stage):
        cluster = pipeline.clusters[name]
        args += ["--cluster", f"{name}={bootstraps[name]}"]
        for key, value in {**cluster.settings, **cluster.secrets}.items():
            args += ["--cluster-config", f"{name}:{key}={value}"]  # secrets stay @env:/@file: references
    buffers = pipeline.buffers
    args += ["--in", buffer_uri(buffers[stage.input], base=base),
             "--out", buffer_uri(buffers[default_output(stage)], base=base, output=True),
             "--group", stage.group, "--ordering", stage.ordering]
    for route, name in stage.routes.items():
        args += ["--route", f"{route}={buffer_uri(buffers[name], base=base, output=True)}"]
    if stage.dead_letter is not None:
        args += ["--dead-letter", buffer_uri(buffers[stage.dead_letter], base=base, output=True)]
    if stage.batch_size is not None:
        args += ["--batch-size", str(stage.batch_size)]
    if stage.batch_linger_ms is not None:
        args += ["--batch-linger-ms", f"{stage.batch_linger_ms:g}"]
    if stage.exactly_once:
        args.append("--exactly-once")
        if transactional_id:
            args += ["--transactional-id", transactional_id]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    if not create_topics:
        args.append("--no-create-topics")
    worker = stage.worker
    if worker is None:
        return [*args, "--mirror"]
    if worker.protocol == "connect":
        args += ["--worker-protocol", "connect"]
    if worker_address is not None or worker.address is not None:
        address = worker_address or worker.address
        if worker.protocol == "connect" and not address.startswith(("http://", "https://")):
            address = f"http://{address}"
        return [*args, "--worker", address]
    if stage.processes > 1:
        args += ["--worker-processes", str(stage.processes)]
    return [*args, "--", *worker.command]


def worker_container_command(stage: StageSpec) -> list[str] | None:
    """The worker's command when it runs in a container of its own, listening on ``WORKER_PORT``.

    The SDKs read ``ALERT_WORKER_PORT`` (the sidecar sets it for the workers it
    starts); a container gets it in its environment instead.
    """
    if stage.worker is None or stage.worker.command is None:
        return None
    return list(stage.worker.command)


def worker_environment(stage: StageSpec) -> dict[str, str]:
    """The environment the file gives a stage's worker (the sidecar passes its own on to the workers it starts)."""
    return dict(stage.worker.env) if stage.worker is not None else {}
