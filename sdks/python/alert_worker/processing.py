"""The SDK's core: contract messages in, the worker's code run, contract messages out.

Both transports go through here and only here: the gRPC server
(``alert_worker.server``) and the test harness (``alert_worker.testing``). So a
worker that passes its tests answers the sidecar the same way.

What a worker may return for one alert, and what it becomes:

=============================  =====================================================
returned                       result
=============================  =====================================================
``True``                       OK, the input alert forwarded as it is (kept)
``False``                      OK, no output (dropped)
``bytes``                      OK, one output of those bytes (application/octet-stream)
``dict``                       OK, one JSON output (application/json, exact integers)
``Output`` or a list of them   OK, those outputs (an empty list drops the alert)
``Result``                     as it is
``Retry(...)``/``DeadLetter``  RETRY/DEAD_LETTER with its message (raised or returned)
``None``                       RETRY, with an error telling the author what to return
anything else (``str`` too)    RETRY, with an error naming the type
=============================  =====================================================

A ``str`` is refused rather than guessed at: it is as often a JSON document
made by hand as it is text, and a wrong content type would mislead every stage
downstream. Return a dict, bytes, or an ``Output`` with its content type.

Exceptions a worker raises: ``Retry`` and ``DeadLetter`` give those verdicts;
``AlertDecodeError`` (the alert's bytes do not decode) gives DEAD_LETTER, since
the same bytes never decode later; any other exception gives RETRY with
``"ExceptionType: message"`` as the error, and its traceback is logged once.
An exception escaping a batch worker answers every alert of the batch the
same way, except ``AlertDecodeError``: it gives RETRY, since the other alerts
of the batch are not at fault (a batch worker answers a bad alert alone by
returning ``DeadLetter(...)`` as its item).

Then the SDK checks each result as the sidecar would: outputs of a RETRY or
DEAD_LETTER are dropped (the sidecar ignores them), and an OK result with an
output naming a route the worker did not declare becomes DEAD_LETTER.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from alertsidecar.v1 import worker_pb2

from . import codecs
from ._version import __version__
from .alert import Alert
from .exceptions import AlertDecodeError, DeadLetter, InvalidReturn, Retry
from .results import Output, Result, Verdict
from .workers import Worker

__all__ = ["SDK", "describe", "process", "process_batch", "schema_resolver", "to_result", "result_to_proto",
           "result_from_proto"]

SDK = f"python/alert_worker {__version__}"

log = logging.getLogger("alert_worker")

# An error is one line for a person, logged and written into the dead-letter
# record's headers; a runaway message (a whole payload in an exception) must
# not make every dead-letter record huge.
_MAX_ERROR_CHARS = 2000


# The answers of a filter, made once: results are immutable.
_KEEP = Result(Verdict.OK, (Output.forward(),))
_DROP = Result(Verdict.OK)


def describe(worker: Worker) -> worker_pb2.WorkerDescription:
    """The worker's answer to Describe."""
    return worker_pb2.WorkerDescription(
        name=worker.worker_name,
        version=worker.version,
        protocol_version=worker_pb2.PROTOCOL_VERSION_1,
        accepts=list(worker.accepts),
        preferred_batch_size=worker.batch_size,
        routes=list(worker.routes),
        sdk=SDK,
        fields=list(worker.fields),
    )


def process_batch(worker: Worker, batch: worker_pb2.AlertBatch) -> worker_pb2.BatchResult:
    """Run the worker on a batch (ProcessBatch, or one batch of ProcessStream) and answer it."""
    return worker_pb2.BatchResult(batch_id=batch.batch_id,
                                  results=process(worker, batch.alerts, schemas=batch.schemas))


def schema_resolver(worker: Worker, schemas: Mapping[int, str] | None) -> codecs.SchemaResolver | None:
    """Where ``Alert.avro()`` finds writer schemas for alerts of a batch carrying ``schemas``.

    The batch's schemas first: they are the sidecar's, the writers of exactly
    these bytes. Then the worker's ``schema_resolver``, which replaces Rubin's
    registry rather than adding to it, since a registry of another stream may
    use the same ids for other schemas. None (no batch, ProcessAlert): the
    worker's resolver, which ``Alert`` takes to mean Rubin's when unset.
    """
    if schemas is None:
        return worker.schema_resolver
    return codecs.BatchSchemaResolver(schemas, fallback=worker.schema_resolver)


def process(worker: Worker, messages: Sequence[worker_pb2.Alert],
            schemas: Mapping[int, str] | None = None) -> list[worker_pb2.AlertResult]:
    """Run the worker on alerts and answer each of them, in the same order, with its id.

    ``schemas`` is the batch's ``AlertBatch.schemas`` (writer schemas by
    Confluent schema id), None for alerts that came without a batch.
    """
    worker.ensure_setup()
    resolver = schema_resolver(worker, schemas)
    alerts = [Alert(message, schema_resolver=resolver) for message in messages]
    if worker.handles_batches():
        results = _run_batch(worker, alerts)
    else:
        results = [_run_one(worker, alert) for alert in alerts]
    return [result_to_proto(alert.id, _checked(worker, alert, result))
            for alert, result in zip(alerts, results, strict=True)]


def _run_one(worker: Worker, alert: Alert) -> Result:
    try:
        returned = worker.process(alert)
    except Exception as exc:
        return _exception_result(worker, exc, f"alert {alert.id}")
    return _returned_result(worker, returned, alert)


def _run_batch(worker: Worker, alerts: list[Alert]) -> list[Result]:
    count = len(alerts)
    where = f"a batch of {count} alerts from {alerts[0].id}" if alerts else "an empty batch"
    try:
        returned = worker.process_batch(alerts)
        # A generator's own exceptions surface here, as the function's would.
        items = list(returned) if isinstance(returned, Iterator) else returned
    except AlertDecodeError as exc:
        # One bad alert must not dead-letter the good ones of its batch: retry
        # them all, and tell the author how to answer the bad one alone.
        error = (f"cannot decode an alert of the batch: {exc} (a batch worker should answer that "
                 f"alert alone with DeadLetter(...) and keep the others)")
        log.warning("worker %r, %s: %s", worker.worker_name, where, error)
        return [Result(Verdict.RETRY, error=_one_line(error))] * count
    except Exception as exc:
        return [_exception_result(worker, exc, where)] * count
    problem = ""
    if not isinstance(items, (list, tuple)):
        problem = f"returned {_describe_value(items)}; return a list with one item per alert, in order"
    elif len(items) != count:
        problem = f"returned {len(items)} items for {count} alerts; return exactly one item per alert, in order"
    if problem:
        error = f"process_batch of worker {worker.worker_name!r} {problem}"
        log.error("%s (%s)", error, where)
        return [Result(Verdict.RETRY, error=_one_line(error))] * count
    return [_returned_result(worker, item, alert) for item, alert in zip(items, alerts, strict=True)]


def _exception_result(worker: Worker, exc: Exception, where: str) -> Result:
    if isinstance(exc, Retry):
        return Result(Verdict.RETRY, error=_one_line(str(exc) or "Retry raised without a reason"))
    if isinstance(exc, DeadLetter):
        return Result(Verdict.DEAD_LETTER, error=_one_line(str(exc) or "DeadLetter raised without a reason"))
    if isinstance(exc, AlertDecodeError):
        log.warning("worker %r could not decode %s: %s", worker.worker_name, where, exc)
        return Result(Verdict.DEAD_LETTER, error=_one_line(f"cannot decode the alert: {exc}"))
    error = _one_line(f"{type(exc).__name__}: {exc}")
    log.error("worker %r raised on %s: %s", worker.worker_name, where, error, exc_info=exc)
    return Result(Verdict.RETRY, error=error)


def _returned_result(worker: Worker, returned: Any, alert: Alert) -> Result:
    try:
        return to_result(returned, worker_name=worker.worker_name)
    except InvalidReturn as exc:
        log.error("%s (alert %s)", exc, alert.id)
        return Result(Verdict.RETRY, error=_one_line(str(exc)))


def to_result(returned: Any, *, worker_name: str = "worker") -> Result:
    """Turn what a worker returned for one alert into a ``Result`` (see the table above).

    Raises ``InvalidReturn``, with a message for the worker's author, when it cannot.
    """
    if returned is True:
        return _KEEP
    if returned is False:
        return _DROP
    who = f"worker {worker_name!r}"
    if isinstance(returned, Result):
        return returned
    if isinstance(returned, Output):
        return Result(Verdict.OK, (returned,))
    if isinstance(returned, (bytes, bytearray, memoryview)):
        return Result(Verdict.OK, (Output(value=bytes(returned)),))
    if isinstance(returned, dict):
        try:
            return Result(Verdict.OK, (Output.json(returned),))
        except (TypeError, ValueError) as exc:
            raise InvalidReturn(f"{who} returned a dict that cannot be written as JSON: {exc}") from exc
    if isinstance(returned, (list, tuple)):
        for item in returned:
            if not isinstance(item, Output):
                raise InvalidReturn(
                    f"{who} returned a list holding {_describe_value(item)}; a list returned for one "
                    f"alert holds Output objects (a batch worker returns one item per alert)")
        return Result(Verdict.OK, tuple(returned))
    if isinstance(returned, Retry):
        return Result(Verdict.RETRY, error=_one_line(str(returned) or "Retry returned without a reason"))
    if isinstance(returned, DeadLetter):
        return Result(Verdict.DEAD_LETTER, error=_one_line(str(returned) or "DeadLetter returned without a reason"))
    if _is_numpy_bool(returned):
        return to_result(bool(returned), worker_name=worker_name)
    if returned is None:
        raise InvalidReturn(
            f"{who} returned None; return True to keep the alert, False to drop it, or its outputs "
            f"(bytes, a dict, an Output or a list of them). Did the function end without a return?")
    if isinstance(returned, str):
        raise InvalidReturn(
            f"{who} returned a str, which could be text or JSON; return a dict for JSON, bytes, or "
            f"Output(value=..., content_type=...) naming what the text is")
    raise InvalidReturn(
        f"{who} returned {_describe_value(returned)}; return True to keep the alert, False to drop it, "
        f"or its outputs (bytes, a dict, an Output or a list of them)")


def _is_numpy_bool(value: Any) -> bool:
    # Filters often return a comparison of numpy values (numpy.bool_), which
    # is not a Python bool. numpy is only looked at if the worker imported it.
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.bool_)


def _describe_value(value: Any) -> str:
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"a {type(value).__name__} ({text})"


def _checked(worker: Worker, alert: Alert, result: Result) -> Result:
    """The result as the sidecar will act on it: outputs only with OK, routes only declared ones."""
    if result.verdict is not Verdict.OK:
        return Result(result.verdict, error=result.error) if result.outputs else result
    declared = worker.routes
    for output in result.outputs:
        if output.route and output.route not in declared:
            error = (f"worker {worker.worker_name!r} produced an output for route {output.route!r}, which "
                     f"it does not declare (routes: {list(declared)}); add it to the worker's routes and "
                     f"bind it with --route {output.route}=BUFFER")
            log.error("%s (alert %s)", error, alert.id)
            return Result(Verdict.DEAD_LETTER, error=error)
    return result


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    if len(line) > _MAX_ERROR_CHARS:
        line = line[: _MAX_ERROR_CHARS - 3] + "..."
    return line


def result_to_proto(alert_id: str, result: Result) -> worker_pb2.AlertResult:
    """The contract's AlertResult for a result about the alert ``alert_id``."""
    message = worker_pb2.AlertResult(id=alert_id, verdict=result.verdict.value, error=result.error)
    for output in result.outputs:
        produced = message.outputs.add(route=output.route)
        if output.forward_input:
            produced.forward_input = True
        else:
            produced.value = output.value
            produced.content_type = output.content_type
            if output.key is not None:
                produced.key = output.key
        for name, value in output.headers:
            produced.headers.add(key=name, value=value)
    return message


def result_from_proto(message: worker_pb2.AlertResult) -> Result:
    """A ``Result`` from the contract's AlertResult (the inverse of ``result_to_proto``, id aside).

    VERDICT_UNSPECIFIED reads as RETRY, as the contract says the sidecar treats it.
    """
    outputs = []
    for produced in message.outputs:
        headers = tuple((header.key, header.value) for header in produced.headers)
        if produced.forward_input:
            outputs.append(Output.forward(headers=headers, route=produced.route))
        else:
            outputs.append(Output(value=produced.value, key=produced.key if produced.HasField("key") else None,
                                  content_type=produced.content_type, headers=headers,
                                  route=produced.route))
    verdict = Verdict(message.verdict) if message.verdict else Verdict.RETRY
    return Result(verdict, tuple(outputs), message.error)
