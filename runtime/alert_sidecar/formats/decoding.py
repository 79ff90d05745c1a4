"""Decoding alerts into records, and records into the JSON form of the contract, for workers.

Used by the stage for workers that accept JSON (see ``WorkerDescription.accepts``
in proto/) and by ``alert-sidecar inspect``. The formats themselves, the JSON
form and the projection by ``fields`` are the SDK's (``alert_worker.codecs``),
so that a worker tested with ``alert_worker.testing`` sees the bytes a sidecar
sends it. Decoding is the most expensive thing the sidecar does (3.6 ms for an
LSST-sized alert with fastavro on a 2-core machine, measured by
``python bench/decoding.py``), so the stage runs it in a pool of processes
(``DecoderPool``) and only for workers that ask for a decoded form.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from alert_worker import codecs
from alert_worker.codecs import project, projection_tree, schema_id_of
from alert_worker.exceptions import AlertDecodeError

from alert_sidecar.exceptions import DecodeError
from alert_sidecar.formats import avro_projection
from alert_sidecar.formats.content import AVRO_CONFLUENT, AVRO_OCF, JSON, RAW

__all__ = ["Converted", "DecodeError", "DecoderPool", "convert_batch", "decode", "project", "projection_tree",
           "schema_id_of", "to_json"]


def decode(value: bytes | None, content_type: str, schemas) -> tuple[Any, int | None]:
    """One alert's record and its Confluent schema id (None when it has none).

    ``schemas`` is a ``schemas.SchemaSource``. Raises DecodeError for bytes
    that do not decode and for a record with no value at all (None: a Kafka
    tombstone, whatever format its buffer has), and lets the source's
    UnknownSchemaError and SchemaRegistryUnavailable through.
    """
    if value is None:
        raise DecodeError("the record has no value (null, a tombstone): there is no alert to decode")
    try:
        if content_type == AVRO_CONFLUENT:
            return codecs.decode_confluent(value, schemas), schema_id_of(value)
        if content_type == AVRO_OCF:
            return codecs.decode_ocf(value), None
        if content_type == JSON:
            return codecs.decode_json(value), None
    except AlertDecodeError as exc:
        raise DecodeError(str(exc)) from None
    if content_type == RAW:
        raise DecodeError("raw bytes have no known format; give the buffer's format (e.g. ?format=avro-confluent)")
    raise DecodeError(f"cannot decode content type {content_type!r}")


def _decode_projected(value: bytes | None, readers: dict[int, Any], source,
                      fields: tuple[str, ...] | None) -> tuple[Any, int] | None:
    """``(record, schema id)`` by the compiled reader of the value's schema and ``fields``, or None to use fastavro.

    None for values that are not Confluent-framed (``decode`` says what is
    wrong), without the compiled extension, and for recursive schemas.
    ``readers`` holds each schema id's reader (or None) for one batch, so
    that a batch looks up each schema once.
    """
    schema_id = schema_id_of(value)
    if schema_id is None:
        return None
    if schema_id in readers:
        reader = readers[schema_id]
    else:
        reader = readers[schema_id] = avro_projection.reader_for(source.schema(schema_id), fields)
    if reader is None:
        return None
    try:
        return avro_projection.decode_confluent_projected(value, schema_id, reader), schema_id
    except AlertDecodeError as exc:
        raise DecodeError(str(exc)) from None


def to_json(record: Any, fields: Sequence[str] | None = None) -> bytes:
    """The JSON form of a record, with only ``fields`` (dotted paths) when given."""
    return codecs.encode_json_form(record, fields)


# -- decoding in a pool of processes ------------------------------------------

@dataclass(frozen=True, slots=True)
class Converted:
    """One alert decoded for a worker, or why not."""

    payload: bytes | None  # the JSON form, or None when it failed
    schema_id: int | None
    error: str | None = None
    transient: bool = False  # the schema could not be fetched now (registry down): try later


_SOURCE = None  # the schema source of a decoder process, set once by _init


def _init(source, sidecar_pid: int) -> None:
    global _SOURCE
    _SOURCE = source
    # Ctrl-C reaches every process of the terminal's process group: the
    # sidecar decides when its decoders stop, after draining, not the signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_end_with_the_sidecar, args=(sidecar_pid,), name="sidecar-watch", daemon=True).start()


# How often a decoder checks that its sidecar still runs.
SIDECAR_WATCH_INTERVAL_S = 1.0


def _end_with_the_sidecar(sidecar_pid: int) -> None:
    """End this decoder, and the fork server that started it, once the sidecar has ended.

    A decoder ignores SIGTERM (above), and multiprocessing's fork server (its
    parent) does not notice a sidecar killed with SIGKILL: without this both
    would outlive it. Each sidecar has a fork server of its own.
    """
    while True:
        time.sleep(SIDECAR_WATCH_INTERVAL_S)
        try:
            os.kill(sidecar_pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:  # a process of another user took the pid: the sidecar is gone
            break
    fork_server = os.getppid()
    if fork_server not in (1, sidecar_pid):
        try:
            os.kill(fork_server, signal.SIGKILL)
        except OSError:
            pass
    os._exit(0)


def convert_batch(values: list[bytes | None], content_types: list[str], fields: tuple[str, ...] | None,
                  source=None) -> list[Converted]:
    """Decode alerts to the JSON form; one Converted per alert, in order, whatever the alerts' bytes.

    An alert that does not decode, or whose record cannot be written as JSON,
    is answered with its error; one whose schema the registry cannot give now
    with a transient error.
    """
    from alert_sidecar.formats.schemas import SchemaRegistryUnavailable, UnknownSchemaError

    source = source if source is not None else _SOURCE
    out = []
    project = avro_projection.AVAILABLE
    wanted = tuple(fields) if fields else None
    readers: dict[int, Any] = {}
    for value, content_type in zip(values, content_types):
        try:
            projected = (_decode_projected(value, readers, source, wanted)
                         if project and content_type == AVRO_CONFLUENT else None)
            if projected is not None:
                record, schema_id = projected
                fields_left = None  # the compiled reader kept only the fields asked for
            else:
                (record, schema_id), fields_left = decode(value, content_type, source), fields
        except (DecodeError, UnknownSchemaError) as exc:
            out.append(Converted(None, schema_id_of(value), f"cannot decode the alert: {exc}"))
            continue
        except SchemaRegistryUnavailable as exc:
            out.append(Converted(None, schema_id_of(value), str(exc), transient=True))
            continue
        try:
            out.append(Converted(to_json(record, fields_left), schema_id))
        except TypeError as exc:  # encode_json's one error: a record it cannot write (nested too deep)
            out.append(Converted(None, schema_id, f"cannot write the alert's JSON form: {exc}"))
    return out


class DecoderPool:
    """Processes that decode batches, so that decoding does not cap the stage at one core."""

    def __init__(self, processes: int, source) -> None:
        self.processes = processes
        self._source = source
        self._pool: ProcessPoolExecutor | None = None
        self.generation = 0  # counts restarts, so that one broken pool is restarted once
        self._start()

    def _start(self) -> None:
        if self.processes > 0:
            import multiprocessing

            # forkserver: the sidecar has gRPC and librdkafka threads running,
            # which a plain fork would copy in an unknown state.
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(self.processes, mp_context=context, initializer=_init,
                                             initargs=(self._source, os.getpid()))

    def restart(self, generation: int | None = None) -> None:
        """Start a new pool after one of its processes died (its batches are failed, not lost).

        With ``generation``, only if the pool is still the one of that generation.
        """
        if generation is not None and generation != self.generation:
            return
        self.generation += 1
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._start()

    def submit(self, values: list[bytes], content_types: list[str], fields: tuple[str, ...] | None) -> Future:
        if self._pool is not None:
            try:
                return self._pool.submit(convert_batch, values, content_types, fields)
            except BrokenProcessPool:
                self.restart()
        if self._pool is None:
            future: Future = Future()
            try:
                future.set_result(convert_batch(values, content_types, fields, self._source))
            except BaseException as exc:  # a bug of the program: surface it where the result is read
                future.set_exception(exc)
            return future
        return self._pool.submit(convert_batch, values, content_types, fields)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
