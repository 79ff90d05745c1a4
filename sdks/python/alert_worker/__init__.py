"""alert_worker: write a worker for an alert-sidecar pipeline stage in Python.

A worker is a function (or class) that decides about alerts; the sidecar owns
everything Kafka and calls it over gRPC::

    import alert_worker

    @alert_worker.worker(name="bright", version="1.0.0")
    def bright(alert: alert_worker.Alert) -> bool:
        flux = alert.avro()["diaSource"]["psfFlux"]  # nJy, Rubin schema 5.0 on
        return flux is not None and flux > 91_000     # brighter than AB 19.0

    if __name__ == "__main__":
        alert_worker.serve(bright)

See ``alert_worker.processing`` for what a worker may return,
``alert_worker.testing`` to run one in a test, and ``alert_worker.cutouts``
to read an alert's image stamps.
"""

from . import codecs, cutouts
from ._version import __version__
from .alert import Alert
from .codecs import SchemaResolver
from .exceptions import (
    AlertDecodeError,
    AlertWorkerError,
    CutoutError,
    DeadLetter,
    InvalidReturn,
    MissingDependencyError,
    Retry,
    ServeError,
    UnknownSchemaError,
    WorkerDefinitionError,
)
from .results import Output, Result, Verdict
from .server import RunningServer, serve, start
from .workers import Worker, batch_worker, worker

__all__ = [
    "__version__",
    "Alert",
    "Verdict",
    "Output",
    "Result",
    "Worker",
    "worker",
    "batch_worker",
    "serve",
    "start",
    "RunningServer",
    "SchemaResolver",
    "codecs",
    "cutouts",
    "AlertWorkerError",
    "Retry",
    "DeadLetter",
    "InvalidReturn",
    "AlertDecodeError",
    "UnknownSchemaError",
    "CutoutError",
    "MissingDependencyError",
    "WorkerDefinitionError",
    "ServeError",
]
