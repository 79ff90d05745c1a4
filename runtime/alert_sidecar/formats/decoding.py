"""Decoding alerts into records, and records into the JSON form of the contract.

Used by the stage for workers that accept JSON (see ``WorkerDescription.accepts``
in proto/) and by ``alert-sidecar inspect``. Decoding is the most expensive
thing the sidecar does (about 1.5 ms for an LSST-sized alert with fastavro, see
FACTS.md), so the stage runs it in a pool of processes (``DecoderPool``) and
only for workers that ask for a decoded form.

The JSON form (documented above ``AlertBatch`` in the contract): records and
maps become objects, a union its value, int and long JSON integers written in
full (64-bit ids stay exact), float and double numbers with NaN and infinities
as null, bytes and fixed base64 strings, timestamps ISO 8601 in UTC.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import signal
import struct
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import fastavro
import orjson

from alert_sidecar.exceptions import DecodeError
from alert_sidecar.formats.content import AVRO_CONFLUENT, AVRO_OCF, JSON, RAW

_CONFLUENT_HEADER = 5  # magic byte 0 and a 4-byte big-endian schema id



def schema_id_of(value: bytes | None) -> int | None:
    """The Confluent schema id of a framed value, or None if it is not framed."""
    if value is None or len(value) < _CONFLUENT_HEADER or value[0] != 0:
        return None
    return struct.unpack_from(">I", value, 1)[0]


def decode(value: bytes, content_type: str, schemas) -> tuple[Any, int | None]:
    """One alert's record and its Confluent schema id (None when it has none).

    ``schemas`` is a ``schemas.SchemaSource``. Raises DecodeError for bytes
    that do not decode, and lets the source's UnknownSchemaError and
    SchemaRegistryUnavailable through.
    """
    if content_type == AVRO_CONFLUENT:
        schema_id = schema_id_of(value)
        if schema_id is None:
            raise DecodeError("not Confluent wire format (no magic byte 0 and 4-byte schema id)")
        schema = schemas.parsed(schema_id)
        body = io.BytesIO(memoryview(value)[_CONFLUENT_HEADER:])
        try:
            record = fastavro.schemaless_reader(body, schema, None)
        except Exception as exc:  # fastavro raises anything from EOFError to IndexError on bad bytes
            raise DecodeError(f"the Avro body does not decode with schema id {schema_id}: "
                              f"{type(exc).__name__}: {exc}") from None
        left = len(value) - _CONFLUENT_HEADER - body.tell()
        if left:
            raise DecodeError(f"the Avro body leaves {left} bytes after a whole record of schema id {schema_id}: "
                              "it was written with another schema than its id says")
        return record, schema_id
    if content_type == AVRO_OCF:
        try:
            records = list(fastavro.reader(io.BytesIO(value)))
        except Exception as exc:
            raise DecodeError(f"not a readable Avro container file: {type(exc).__name__}: {exc}") from None
        if len(records) != 1:
            raise DecodeError(f"the Avro container file holds {len(records)} records; one alert per message expected")
        return records[0], None
    if content_type == JSON:
        try:
            return orjson.loads(value), None
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"not valid JSON: {exc}") from None
    if content_type == RAW:
        raise DecodeError("raw bytes have no known format; give the buffer's format (e.g. ?format=avro-confluent)")
    raise DecodeError(f"cannot decode content type {content_type!r}")


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float):  # reached only through numpy floats and the like
        return None
    raise TypeError(f"{type(value).__name__} has no JSON form")


_JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY


def to_json(record: Any, fields: Sequence[str] | None = None) -> bytes:
    """The JSON form of a record, with only ``fields`` (dotted paths) when given."""
    if fields:
        record = project(record, projection_tree(tuple(fields)))
    try:
        return orjson.dumps(record, default=_json_default, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits, which JSON input may hold;
        # the standard library writes them in full.
        return json.dumps(record, default=_json_default, allow_nan=True).replace(
            "NaN", "null").encode()  # pragma: no cover - only huge ints reach here


@functools.lru_cache(maxsize=64)
def projection_tree(fields: tuple[str, ...]) -> dict:
    """{"diaSource": {"ra": None, "psfFlux": None}} from ["diaSource.ra", "diaSource.psfFlux"].

    None marks a field kept whole; a shorter path wins over a longer one
    ("diaSource" keeps all of diaSource even if "diaSource.ra" is asked too).
    """
    tree: dict = {}
    for path in fields:
        node = tree
        names = path.split(".")
        for depth, name in enumerate(names):
            if depth == len(names) - 1:
                node[name] = None
                break
            child = node.get(name, {})
            if child is None:
                break  # an ancestor is kept whole already
            node = node.setdefault(name, child)
    return tree


def project(value: Any, tree: dict | None) -> Any:
    """Keep only the fields of ``tree``; a path through an array applies to each element.

    A field the record does not have is left out.
    """
    if tree is None:
        return value
    if isinstance(value, dict):
        return {name: project(value[name], sub) for name, sub in tree.items() if name in value}
    if isinstance(value, list):
        return [project(item, tree) for item in value]
    return value


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


def convert_batch(values: list[bytes], content_types: list[str], fields: tuple[str, ...] | None,
                  source=None) -> list[Converted]:
    """Decode alerts to the JSON form; one Converted per alert, in order."""
    from alert_sidecar.formats.schemas import SchemaRegistryUnavailable, UnknownSchemaError

    source = source if source is not None else _SOURCE
    out = []
    for value, content_type in zip(values, content_types):
        try:
            record, schema_id = decode(value, content_type, source)
            out.append(Converted(to_json(record, fields), schema_id))
        except (DecodeError, UnknownSchemaError) as exc:
            out.append(Converted(None, schema_id_of(value), f"cannot decode the alert: {exc}"))
        except SchemaRegistryUnavailable as exc:
            out.append(Converted(None, schema_id_of(value), str(exc), transient=True))
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
