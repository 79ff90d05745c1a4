"""``Worker``: the user's code and what it declares to the sidecar.

Two ways to write one, both giving a ``Worker`` object that ``serve()``,
``start()`` and ``testing.run()`` take:

- a function with a decorator::

      @alert_worker.worker(name="bright", version="1.0")
      def bright(alert: Alert) -> bool: ...

      @alert_worker.batch_worker(name="bright", version="1.0", batch_size=100)
      def bright(alerts: list[Alert]) -> list[bool]: ...

- a class::

      class Bright(alert_worker.Worker):
          name = "bright"
          def setup(self) -> None: ...          # once, before the first alert
          def process(self, alert): ...        # or process_batch(self, alerts)

What ``process`` may return, and what each form means, is in
``alert_worker.processing``.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

from . import codecs
from .alert import Alert
from .exceptions import WorkerDefinitionError

__all__ = ["Worker", "worker", "batch_worker"]

log = logging.getLogger("alert_worker")

# The contract's preferred_batch_size is a uint32.
_MAX_BATCH_SIZE = 2**32 - 1

# A projection path: Avro names (the Avro spec's [A-Za-z_][A-Za-z0-9_]*)
# joined by dots, as the contract's WorkerDescription.fields writes them.
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


class Worker:
    """Base class of every worker: subclass it and override ``process`` or ``process_batch``.

    Class attributes (or instance attributes set in ``__init__``) describe the
    worker to the sidecar:

    - ``name``: a short name for logs and metrics (default: the class name);
    - ``version``: the worker's own version, free text;
    - ``accepts``: the content types it takes, in order of preference (``"*/*"``
      for any): the Avro forms to get alerts as they are, ``"application/json"``
      to have the sidecar decode Avro alerts into JSON for it;
    - ``fields``: the fields of the decoded alert it reads, as dotted paths
      (``"diaSource.psfFlux"``, ``"prvDiaSources.midpointMjdTai"``): alerts the
      sidecar decodes to JSON then carry only those. Empty: the whole alert;
    - ``routes``: output routes it may name besides the default ``""``;
    - ``batch_size``: how many alerts it prefers per call, 0 to let the sidecar choose;
    - ``schema_resolver``: where ``Alert.avro()`` finds Confluent schema ids
      (None: Rubin's registry from ``lsst-alert-packet``).

    The methods may be called from several threads at once when the sidecar
    keeps several batches in flight: guard any state they share.
    """

    name: str = ""
    version: str = "0.0.0"
    accepts: Sequence[str] = ("*/*",)
    fields: Sequence[str] = ()
    routes: Sequence[str] = ()
    batch_size: int = 0
    schema_resolver: codecs.SchemaResolver | None = None

    def setup(self) -> None:
        """Called once before the first alert (and before ``serve()`` reports healthy).

        Load models or catalogues here rather than at import time.
        """

    def process(self, alert: Alert) -> Any:
        """Decide about one alert. Return True (keep), False (drop), outputs or a ``Result``.

        Raise ``Retry`` or ``DeadLetter`` to say so; any other exception
        answers RETRY with the exception as the error.
        """
        raise NotImplementedError

    def process_batch(self, alerts: list[Alert]) -> Sequence[Any]:
        """Decide about a batch of alerts: return one item per alert, in order.

        Each item is what ``process`` may return. An exception raised here
        answers every alert of the batch.
        """
        raise NotImplementedError

    # -- used by the SDK ------------------------------------------------------

    @property
    def worker_name(self) -> str:
        """The name reported to the sidecar: ``name``, or the class name if it is empty."""
        return self.name or type(self).__name__

    def handles_batches(self) -> bool:
        """Whether the SDK calls ``process_batch`` (overridden) rather than ``process``."""
        return type(self).process_batch is not Worker.process_batch

    def check(self) -> None:
        """Raise ``WorkerDefinitionError`` naming what is wrong with this worker's definition."""
        who = f"worker {self.worker_name!r}"
        if not self._defines_processing():
            raise WorkerDefinitionError(f"{who} overrides neither process(alert) nor process_batch(alerts)")
        for attribute in ("name", "version"):
            if not isinstance(getattr(self, attribute), str):
                raise WorkerDefinitionError(f"{who}: {attribute} must be a str")
        for attribute in ("accepts", "fields", "routes"):
            value = getattr(self, attribute)
            if isinstance(value, str) or not all(isinstance(item, str) for item in value):
                raise WorkerDefinitionError(
                    f"{who}: {attribute} must be a list of str, like [{value!r}]"
                    if isinstance(value, str) else f"{who}: {attribute} must be a list of str")
        if any(not route for route in self.routes):
            raise WorkerDefinitionError(
                f"{who}: routes lists extra route names; the default route \"\" is always there")
        if len(set(self.routes)) != len(self.routes):
            raise WorkerDefinitionError(f"{who}: routes {list(self.routes)} repeats a name")
        self._check_fields(who)
        if (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                or not 0 <= self.batch_size <= _MAX_BATCH_SIZE):
            raise WorkerDefinitionError(
                f"{who}: batch_size must be a whole number from 0 (the sidecar chooses) up, "
                f"not {self.batch_size!r}")
        if self.schema_resolver is not None and not isinstance(self.schema_resolver, codecs.SchemaResolver):
            raise WorkerDefinitionError(f"{who}: schema_resolver must have a schema(schema_id) method")

    def _check_fields(self, who: str) -> None:
        for path in self.fields:
            if not _FIELD_PATH.fullmatch(path):
                raise WorkerDefinitionError(
                    f"{who}: fields lists {path!r}, which is not a dotted path of field names "
                    f"like \"diaSource.psfFlux\" (names are letters, digits and _, not starting with a digit)")
        if len(set(self.fields)) != len(self.fields):
            raise WorkerDefinitionError(f"{who}: fields {list(self.fields)} repeats a path")
        # A projection applies to the JSON form only, which a sidecar sends to workers that accept it.
        if self.fields and not codecs.accepted(codecs.JSON, self.accepts):
            # Not an error: a worker may switch accepts back and forth, and the
            # contract says the projection is then ignored. But say so once.
            log.warning("worker %r declares fields %s, but a projection only applies to the JSON form and "
                        "it accepts %s: every alert comes whole", self.worker_name, list(self.fields),
                        list(self.accepts))

    def _defines_processing(self) -> bool:
        return type(self).process is not Worker.process or self.handles_batches()

    def ensure_setup(self) -> None:
        """Check the definition and run ``setup()``, once per worker object, whoever asks first."""
        if getattr(self, "_alert_worker_ready", False):
            return
        with _setup_lock:
            if not getattr(self, "_alert_worker_ready", False):
                self.check()
                self.setup()
                self._alert_worker_ready = True

    def __repr__(self) -> str:
        kind = "batch" if self.handles_batches() else "per-alert"
        return f"<{type(self).__name__} {self.worker_name!r} {self.version} ({kind})>"


# setup() runs rarely and may be slow (loading a model): one lock for all
# workers keeps the code simple at no cost.
_setup_lock = threading.RLock()


class FunctionWorker(Worker):
    """A ``Worker`` made by ``@worker`` or ``@batch_worker`` from a function.

    Calling it calls the function, so the function stays testable as it was.
    """

    def __init__(self, function: Callable[..., Any], *, batch: bool, name: str | None, version: str,
                 accepts: Sequence[str], routes: Sequence[str], batch_size: int,
                 schema_resolver: codecs.SchemaResolver | None, fields: Sequence[str] = ()) -> None:
        if not callable(function):
            raise WorkerDefinitionError(f"@worker decorates a function, not {function!r}")
        functools.update_wrapper(self, function)
        self._function = function
        self._batch = batch
        self.name = name if name is not None else getattr(function, "__name__", "worker")
        self.version = version
        self.accepts = tuple(accepts) if not isinstance(accepts, str) else accepts
        self.fields = tuple(fields) if not isinstance(fields, str) else fields
        self.routes = tuple(routes) if not isinstance(routes, str) else routes
        self.batch_size = batch_size
        self.schema_resolver = schema_resolver

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)

    def handles_batches(self) -> bool:
        return self._batch

    def _defines_processing(self) -> bool:
        return True  # the function is the processing

    def process(self, alert: Alert) -> Any:
        return self._function(alert)

    def process_batch(self, alerts: list[Alert]) -> Sequence[Any]:
        return self._function(alerts)  # type: ignore[no-any-return]


F = TypeVar("F", bound=Callable[..., Any])


@overload
def worker(function: Callable[[Alert], Any], /) -> FunctionWorker: ...


@overload
def worker(*, name: str | None = None, version: str = "0.0.0", accepts: Sequence[str] = ("*/*",),
           routes: Sequence[str] = (), batch_size: int = 0,
           schema_resolver: codecs.SchemaResolver | None = None, fields: Sequence[str] = ()
           ) -> Callable[[Callable[[Alert], Any]], FunctionWorker]: ...


def worker(function: Callable[[Alert], Any] | None = None, /, *, name: str | None = None,
           version: str = "0.0.0", accepts: Sequence[str] = ("*/*",), routes: Sequence[str] = (),
           batch_size: int = 0, schema_resolver: codecs.SchemaResolver | None = None,
           fields: Sequence[str] = ()) -> Any:
    """Make a per-alert worker of a function taking one ``Alert``.

    Use as ``@worker`` or ``@worker(name=..., version=..., accepts=[...],
    fields=[...], routes=[...], batch_size=0)`` (see ``Worker`` for what each
    means). The function returns True (keep), False
    (drop), bytes, a dict (JSON), an ``Output``, a list of them or a
    ``Result``; it may raise ``Retry`` or ``DeadLetter``. ``batch_size`` still
    tells the sidecar how many alerts to send per call: the SDK calls the
    function once per alert of the batch.
    """

    def make(function: Callable[[Alert], Any]) -> FunctionWorker:
        return FunctionWorker(function, batch=False, name=name, version=version, accepts=accepts,
                              routes=routes, batch_size=batch_size, schema_resolver=schema_resolver,
                              fields=fields)

    return make(function) if function is not None else make


@overload
def batch_worker(function: Callable[[list[Alert]], Sequence[Any]], /) -> FunctionWorker: ...


@overload
def batch_worker(*, name: str | None = None, version: str = "0.0.0", accepts: Sequence[str] = ("*/*",),
                 routes: Sequence[str] = (), batch_size: int = 0,
                 schema_resolver: codecs.SchemaResolver | None = None, fields: Sequence[str] = ()
                 ) -> Callable[[Callable[[list[Alert]], Sequence[Any]]], FunctionWorker]: ...


def batch_worker(function: Callable[[list[Alert]], Sequence[Any]] | None = None, /, *,
                 name: str | None = None, version: str = "0.0.0", accepts: Sequence[str] = ("*/*",),
                 routes: Sequence[str] = (), batch_size: int = 0,
                 schema_resolver: codecs.SchemaResolver | None = None, fields: Sequence[str] = ()) -> Any:
    """Make a batch worker of a function taking ``list[Alert]`` and returning one item per alert.

    Each item is anything a per-alert worker may return, or a ``Retry`` or
    ``DeadLetter`` instance for that alert alone. An exception raised by the
    function answers every alert of the batch, so catch what concerns one
    alert (such as ``AlertDecodeError``) and return ``DeadLetter(...)`` for it.
    """

    def make(function: Callable[[list[Alert]], Sequence[Any]]) -> FunctionWorker:
        return FunctionWorker(function, batch=True, name=name, version=version, accepts=accepts,
                              routes=routes, batch_size=batch_size, schema_resolver=schema_resolver,
                              fields=fields)

    return make(function) if function is not None else make
