"""Rubin's schema registry, from the ``lsst-alert-packet`` package: the one index of its schema files.

Rubin's Confluent schema ids encode the schema version: 701 is 7.1, 1101 is
11.1 (``lsst.alert.packet.Schema.get_schema_id``). The package ships every
version's schema under its schema root, ``<major>/<minor>/lsst.v<major>_<minor>.alert.avsc``
with the named types it uses beside it. The SDK's workers, the sidecar's
schema sources and its alert simulator all read the schemas through here.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Callable
from typing import Any

import fastavro

from ..exceptions import MissingDependencyError, UnknownSchemaError
from .schema_names import plain_schema

__all__ = ["RubinSchemaResolver", "rubin_resolver", "rubin_schema_id", "rubin_schema_files"]


class RubinSchemaResolver:
    """Rubin's schema registry, from the ``lsst-alert-packet`` package.

    The package's schema files are indexed by name on the first call and only
    the schema asked for is read (the package's own ``SchemaRegistry`` reads
    every version, 0.3 s or more before a worker's first alert); each schema,
    parsed and as text, is kept for the life of the object. Safe to call from
    several threads.

    Without the package every call raises ``MissingDependencyError``, saying
    how to install it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[int, str] | None = None
        self._definitions: dict[int, Any] = {}
        self._parsed: dict[int, Any] = {}
        self._texts: dict[int, str] = {}

    def schema(self, schema_id: int) -> Any:
        """The parsed (``fastavro.parse_schema``) schema of a Rubin id; ``UnknownSchemaError`` if none."""
        return self._kept(self._parsed, schema_id, fastavro.parse_schema)

    def schema_text(self, schema_id: int) -> str:
        """The schema of a Rubin id as self-contained Avro schema JSON, as a sidecar sends it with a batch."""
        return self._kept(self._texts, schema_id, lambda definition: json.dumps(plain_schema(definition)))

    def known_ids(self) -> frozenset[int]:
        """Every id the installed lsst-alert-packet knows (300 for 3.0 ... 1101 for 11.1)."""
        with self._lock:
            return frozenset(self._index())

    def versions(self) -> tuple[str, ...]:
        """Every schema version the installed lsst-alert-packet ships, ``"MAJOR.MINOR"``, oldest first."""
        return tuple(f"{i // 100}.{i % 100}" for i in sorted(self.known_ids()))

    def latest_version(self) -> str:
        """The version lsst-alert-packet calls its latest, ``"MAJOR.MINOR"``."""
        major, minor = _package().get_latest_schema_version()
        return f"{major}.{minor}"

    def schema_id(self, version: str) -> int:
        """The registry id of a schema version such as ``"7.1"``; ``UnknownSchemaError`` if not shipped."""
        with self._lock:
            files = self._index()
        major, _, minor = version.partition(".")
        if major.isdigit() and minor.isdigit() and rubin_schema_id(int(major), int(minor)) in files:
            return rubin_schema_id(int(major), int(minor))
        known = ", ".join(f"{i // 100}.{i % 100}" for i in sorted(files))
        raise UnknownSchemaError(
            f"{version!r} is not a Rubin schema version known to lsst-alert-packet "
            f"{package_version()} (known: {known})")

    def _kept(self, kept: dict[int, Any], schema_id: int, make: Callable[[Any], Any]) -> Any:
        """``kept[schema_id]``, made from the schema's definition the first time it is asked for."""
        value = kept.get(schema_id)
        if value is None:
            with self._lock:
                value = kept.get(schema_id)
                if value is None:
                    value = kept[schema_id] = make(self._definition(schema_id))
        return value

    def _definition(self, schema_id: int) -> Any:
        """The schema of ``schema_id`` as lsst-alert-packet reads it (named types resolved); under the lock."""
        definition = self._definitions.get(schema_id)
        if definition is None:
            files = self._index()
            if schema_id not in files:
                known = ", ".join(str(i) for i in sorted(files))
                raise UnknownSchemaError(
                    f"schema id {schema_id} is not a Rubin schema known to lsst-alert-packet "
                    f"{package_version()} (known ids: {known}): upgrade lsst-alert-packet, "
                    f"or give the worker a schema_resolver that knows it")
            definition = _package().Schema.from_file(files[schema_id]).definition
            self._definitions[schema_id] = definition
        return definition

    def _index(self) -> dict[int, str]:
        if self._files is None:
            self._files = rubin_schema_files(str(_package().schema.get_schema_root()))
        return self._files


def _package() -> Any:
    try:
        import lsst.alert.packet as packet
        import lsst.alert.packet.schema  # noqa: F401 - get_schema_root lives there
    except ImportError as exc:
        raise MissingDependencyError(
            "decoding Rubin alerts (application/vnd.apache.avro+confluent) needs the "
            "lsst-alert-packet package, which is not installed: pip install lsst-alert-packet "
            "(the SDK's extra rubin), or give the worker a schema_resolver") from exc
    return packet


_RUBIN_SCHEMA_FILE = re.compile(r"lsst\.v(\d+)_(\d+)\.alert\.avsc")


def rubin_schema_id(major: int, minor: int) -> int:
    """Rubin's id of schema version major.minor, by lsst-alert-packet's rule (``Schema.get_schema_id``)."""
    return major * 100 + minor


def rubin_schema_files(root: str) -> dict[int, str]:
    """Rubin's id of each top-level alert schema under ``root`` (lsst-alert-packet's schema folder) -> its file."""
    files = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            match = _RUBIN_SCHEMA_FILE.fullmatch(name)
            if match:
                files[rubin_schema_id(int(match.group(1)), int(match.group(2)))] = os.path.join(folder, name)
    return files


@functools.cache
def package_version() -> str:
    """The installed lsst-alert-packet's version, for messages."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lsst-alert-packet")
    except PackageNotFoundError:
        return "(version unknown)"


_rubin_resolver: RubinSchemaResolver | None = None
_rubin_resolver_lock = threading.Lock()


def rubin_resolver() -> RubinSchemaResolver:
    """The process-wide Rubin resolver: every worker shares its cache of parsed schemas."""
    global _rubin_resolver
    with _rubin_resolver_lock:
        if _rubin_resolver is None:
            _rubin_resolver = RubinSchemaResolver()
        return _rubin_resolver
