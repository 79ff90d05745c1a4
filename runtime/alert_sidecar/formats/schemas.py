"""Where the Avro schema of a Confluent schema id comes from.

An alert in the Confluent wire format (Rubin's form) carries only a 4-byte
schema id; its writer schema lives elsewhere. A ``SchemaSource`` answers
"which schema is id N", as text (``schema_text``: self-contained Avro schema
JSON, what a worker or a registry is given) and parsed for fastavro
(``parsed``: done once per id per process, then cached).

The sources:

- ``RubinSchemas``: Rubin's ids (701 is schema 7.1, 1101 is 11.1), from the
  registry that the ``lsst-alert-packet`` package ships. Always the last
  resort, so Rubin alerts decode with no configuration.
- ``DirectorySchemas``: a folder of ``.avsc`` files (layout below).
- ``RegistrySchemas``: a Confluent-compatible schema registry over HTTP(S)
  (Confluent Schema Registry, Apicurio Registry's ``/apis/ccompat/v7``,
  Karapace, Redpanda). It can also ``register`` the sidecar's output schemas.
- ``ChainedSchemas``: the first of several sources that knows the id.

``schema_source(registry_url, schema_dir)`` builds the chain the command line
asks for.

Two conditions are told apart, because the sidecar treats them oppositely:

- ``UnknownSchemaError``: no source knows the id (or its schema is not usable
  Avro). Permanent for that alert: the sidecar dead-letters it with the reason.
- ``SchemaRegistryUnavailable``: the registry could not answer (refused, timed
  out, 5xx, credentials refused, not a registry at that URL). Transient: the
  sidecar pauses and retries. A source never falls back to the next one when a
  registry is down, since another source may give the same id another schema.

Sources are picklable (the stage hands them to decoder processes): what they
fetched or parsed is left out of the pickle and fetched again where needed.
Each is an ``alert_worker.codecs.SchemaResolver`` too (``schema`` is
``parsed``), which the SDK's decoders take. Rubin's index and the walk of
Avro named types that makes a schema's text stand alone are the SDK's.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema

from alert_worker.codecs import RubinSchemaResolver, inline_named_types, named_types, plain_schema
from alert_worker.codecs.rubin import package_version
from alert_worker.exceptions import MissingDependencyError

from alert_sidecar.exceptions import (  # the schema errors are raised here; they live with the others
    ConfigError,
    InvalidSchemaError,
    SchemaRegistryUnavailable,
    SchemaRejected,
    UnknownSchemaError,
)

__all__ = [
    "ChainedSchemas",
    "DirectorySchemas",
    "InvalidSchemaError",
    "RegistrySchemas",
    "RubinSchemas",
    "SchemaRegistryUnavailable",
    "SchemaRejected",
    "SchemaSource",
    "UnknownSchemaError",
    "inline_named_types",
    "named_types",
    "plain_schema",
    "schema_source",
]


# --- The interface ----------------------------------------------------------------


class SchemaSource(ABC):
    """Answers which Avro schema a Confluent schema id stands for.

    Implementations give ``schema_text`` and ``describe``; ``parsed`` parses
    and caches. Safe to call from several threads.
    """

    # Attributes rebuilt after unpickling rather than pickled: caches and locks.
    _TRANSIENT: tuple[str, ...] = ("_parsed", "_lock")

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """(Re)create what is not pickled; subclasses extend it for their own caches."""
        self._parsed: dict[int, Any] = {}
        self._lock = threading.RLock()

    @abstractmethod
    def schema_text(self, schema_id: int) -> str:
        """The schema of ``schema_id`` as self-contained Avro schema JSON.

        Raises UnknownSchemaError (and SchemaRegistryUnavailable for a registry).
        """

    @abstractmethod
    def describe(self) -> str:
        """What this source is, for messages: "schema folder /etc/schemas"."""

    def parsed(self, schema_id: int) -> Any:
        """The schema of ``schema_id`` parsed by ``fastavro.parse_schema``, parsed once per process."""
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            with self._lock:
                parsed = self._parsed.get(schema_id)
                if parsed is None:
                    parsed = _parse(self.schema_text(schema_id), schema_id, self.describe())
                    self._parsed[schema_id] = parsed
        return parsed

    def schema(self, schema_id: int) -> Any:
        """``parsed``, by the name ``alert_worker.codecs.SchemaResolver`` gives it: a source is a resolver."""
        return self.parsed(schema_id)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"


def _parse(text: str, schema_id: int, where: str) -> Any:
    try:
        return fastavro.parse_schema(json.loads(text))
    except (ValueError, fastavro.schema.SchemaParseException) as exc:  # not JSON; JSON but not Avro
        raise InvalidSchemaError(schema_id, where, f"{type(exc).__name__}: {exc}") from None
    except (TypeError, AttributeError, KeyError) as exc:  # JSON that is not a schema's shape
        raise InvalidSchemaError(schema_id, where, f"not an Avro schema ({type(exc).__name__}: {exc})") from None
    except RecursionError:  # JSON nested about a thousand deep: json.loads recurses per level
        raise InvalidSchemaError(schema_id, where, "its JSON is nested deeper than Python's recursion limit "
                                                   "allows to read") from None


# --- Rubin's ids, from lsst-alert-packet ----------------------------------------------


class RubinSchemas(SchemaSource):
    """Rubin's schema ids, from the registry the ``lsst-alert-packet`` package ships.

    The index of the package's schema files is the SDK's
    (``alert_worker.codecs.RubinSchemaResolver``): indexed by name on the
    first lookup, only the schema asked for is read. Reading all of them, as
    the package's own ``SchemaRegistry`` does, costs about 0.5 s, which a
    stage would pay before its first batch. Without the package every id is
    unknown here, with a message saying how to install it.
    """

    _TRANSIENT = SchemaSource._TRANSIENT + ("_rubin",)

    def _reset(self) -> None:
        super()._reset()
        self._rubin: RubinSchemaResolver | None = None  # made on first use, in each process

    def known_ids(self) -> frozenset[int]:
        """Every Rubin id the installed lsst-alert-packet knows (300 for 3.0 ... 1101 for 11.1)."""
        try:
            return self._index().known_ids()
        except MissingDependencyError:
            raise ConfigError(f"Rubin's schemas are not available: {_NO_PACKAGE}") from None

    def schema_text(self, schema_id: int) -> str:
        try:
            index = self._index()
            if schema_id not in index.known_ids():
                known = sorted(index.known_ids())
                raise UnknownSchemaError(
                    schema_id, self.describe(),
                    f"Rubin's ids there are {known[0]} to {known[-1]}; a newer lsst-alert-packet may know it")
            return index.schema_text(schema_id)
        except MissingDependencyError:
            raise UnknownSchemaError(schema_id, "Rubin's schemas", _NO_PACKAGE) from None

    def describe(self) -> str:
        return f"Rubin's schemas in lsst-alert-packet {package_version()}"

    def _index(self) -> RubinSchemaResolver:
        with self._lock:
            if self._rubin is None:
                self._rubin = RubinSchemaResolver()
            return self._rubin


_NO_PACKAGE = "the lsst-alert-packet package is not installed: pip install lsst-alert-packet"


# --- A folder of .avsc files -------------------------------------------------------------

_ID_FILE = re.compile(r"^(0|[1-9][0-9]*)\.avsc$")


class DirectorySchemas(SchemaSource):
    """A folder of Avro schema files, for schema ids no registry serves.

    Layout:

    - ``<id>.avsc`` (decimal, no leading zeros: ``42.avsc``) is the schema of
      Confluent id ``<id>``. It may be self-contained, or refer by full name to
      named types defined in the folder's other files;
    - any other ``*.avsc`` file defines named types that id files may use, as
      ZTF's schema folder does (``alert.avsc`` refers to ``ztf.alert.candidate``,
      defined in ``candidate.avsc``). If two files define one name, the first
      in file-name order wins.

    ``schema_text`` gives the schema with every type it refers to written in
    at its first use, so the text stands alone. The files of named types are
    read at once (ConfigError if one is not JSON), an id file when its id is
    first asked for; an id file added later is found (unknown ids are not
    remembered).
    """

    _TRANSIENT = SchemaSource._TRANSIENT + ("_texts", "_named")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise ConfigError(f"schema folder {self.path} does not exist or is not a folder: "
                              "give a folder of <id>.avsc files")
        super().__init__()
        self._named_types()  # a broken file of named types is said at start, not at the first alert

    def _reset(self) -> None:
        super()._reset()
        self._texts: dict[int, str] = {}
        self._named: dict[str, Any] | None = None

    def schema_text(self, schema_id: int) -> str:
        text = self._texts.get(schema_id)
        if text is not None:
            return text
        with self._lock:
            file = self.path / f"{schema_id}.avsc"
            try:
                raw = file.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise UnknownSchemaError(schema_id, self.describe(), f"no {file.name} in {self.path}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidSchemaError(schema_id, self.describe(), f"{file.name} cannot be read: {exc}") from None
            try:
                text = json.dumps(inline_named_types(json.loads(raw), self._named_types()))
            except ValueError as exc:
                raise InvalidSchemaError(schema_id, self.describe(), f"{file.name} is not JSON: {exc}") from None
            except RecursionError:  # JSON nested about a thousand deep: reading and walking it recurse per level
                raise InvalidSchemaError(schema_id, self.describe(), f"{file.name} is JSON nested deeper "
                                                                     "than Python's recursion limit allows") from None
            self._texts[schema_id] = text
        return text

    def describe(self) -> str:
        return f"schema folder {self.path}"

    def _named_types(self) -> dict[str, Any]:
        if self._named is None:
            named: dict[str, Any] = {}
            for file in sorted(self.path.glob("*.avsc")):
                if _ID_FILE.match(file.name):
                    continue
                try:
                    definitions = named_types(json.loads(file.read_text(encoding="utf-8")))
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"{self.describe()}: {file.name} is not a readable schema file: {exc}") from None
                for name, definition in definitions.items():
                    named.setdefault(name, definition)
            self._named = named
        return self._named


# --- A Confluent-compatible schema registry ----------------------------------------------

# Confluent's REST API content type (its documentation asks clients to send it).
_REGISTRY_JSON = "application/vnd.schemaregistry.v1+json"
_ACCEPT = f"{_REGISTRY_JSON}, application/vnd.schemaregistry+json; q=0.9, application/json; q=0.5"

# Confluent error codes (Schema Registry API reference).
_SCHEMA_NOT_FOUND = 40403
_SUBJECT_NOT_FOUND = 40401
_VERSION_NOT_FOUND = 40402

# A registry on the same network answers in milliseconds; 5 s is Confluent's
# own clients' order of magnitude, and short enough that a stage notices a
# registry that is down before its worker calls time out (30 s by default).
DEFAULT_TIMEOUT_S = 5.0

# An id unknown now may be registered later (ids are given out on
# registration), so "unknown" is remembered only this long: a burst of alerts
# with one bad id costs one request, not one each.
UNKNOWN_MEMO_S = 30.0

# Schema references nest; Confluent sets no limit, but a deeper chain than this
# is a reference cycle.
_MAX_REFERENCE_DEPTH = 32


class RegistrySchemas(SchemaSource):
    """A Confluent-compatible schema registry, read (``GET /schemas/ids/{id}``) and written (``register``).

    ``url`` is the root of the Confluent API: ``http://localhost:8081`` for
    Confluent's or Karapace, ``http://host:8080/apis/ccompat/v7`` for Apicurio.
    Credentials for HTTP basic auth go in the URL
    (``https://user:password@host``, percent-encoded as URLs need). HTTPS is
    checked against the system's CAs, or those of ``cafile`` (or of the
    ``SSL_CERT_FILE`` environment variable).

    What it fetched is kept for the life of the process: a Confluent id always
    names the same schema.
    """

    _TRANSIENT = SchemaSource._TRANSIENT + ("_texts", "_ids", "_unknown", "_ssl")

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S, cafile: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"schema registry {_without_password(url)!r} is not an http:// or https:// URL "
                              "(e.g. http://localhost:8081)")
        try:
            parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        except ValueError:
            raise ConfigError(f"schema registry {_without_password(url)!r} has an invalid port") from None
        host = parts.netloc.rpartition("@")[2]
        self.url = urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
        self.timeout = timeout
        self.cafile = cafile
        self._authorization: str | None = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._authorization = f"Basic {token}"
        self._shown = _without_password(url.strip()).rstrip("/")
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._texts: dict[int, str] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._unknown: dict[int, float] = {}  # id -> when the registry said it does not have it
        self._ssl: ssl.SSLContext | None = None

    def describe(self) -> str:
        return f"schema registry {self._shown}"

    # -- reading

    def schema_text(self, schema_id: int) -> str:
        text = self._texts.get(schema_id)
        if text is not None:
            return text
        with self._lock:
            text = self._texts.get(schema_id)
            if text is None:
                text = self._fetch(schema_id)
                self._texts[schema_id] = text
        return text

    def _fetch(self, schema_id: int) -> str:
        said_unknown = self._unknown.get(schema_id)
        if said_unknown is not None and time.monotonic() - said_unknown < UNKNOWN_MEMO_S:
            raise UnknownSchemaError(schema_id, self.describe())
        status, body = self._request("GET", f"/schemas/ids/{int(schema_id)}")
        if status == 404 and _error_code(body) == _SCHEMA_NOT_FOUND:
            self._unknown[schema_id] = time.monotonic()
            raise UnknownSchemaError(schema_id, self.describe())
        answer = self._expect_ok(status, body, f"schema id {schema_id}")
        schema_type = answer.get("schemaType") or "AVRO"
        if schema_type.upper() != "AVRO":
            raise InvalidSchemaError(schema_id, self.describe(), f"it is a {schema_type} schema, not Avro")
        text = answer.get("schema")
        if not isinstance(text, str):
            raise SchemaRegistryUnavailable(self._shown, f"its answer for schema id {schema_id} has no \"schema\": "
                                                         "is this the root of a Confluent-compatible API?")
        references = answer.get("references") or []
        if not references:
            return text
        # Named types defined in other subjects (Confluent schema references):
        # written in, so that the text stands alone as other sources' do.
        named: dict[str, Any] = {}
        self._collect_references(schema_id, references, named, depth=0)
        try:
            return json.dumps(inline_named_types(json.loads(text), named))
        except ValueError as exc:
            raise InvalidSchemaError(schema_id, self.describe(), f"not JSON: {exc}") from None

    def _collect_references(self, schema_id: int, references: Sequence[Any], named: dict[str, Any],
                            depth: int) -> None:
        if depth > _MAX_REFERENCE_DEPTH:
            raise InvalidSchemaError(schema_id, self.describe(), "its schema references nest too deep (a cycle?)")
        for reference in references:
            subject, version = reference.get("subject"), reference.get("version")
            what = f"reference {reference.get('name')!r} (subject {subject!r} version {version})"
            status, body = self._request(
                "GET",
                f"/subjects/{urllib.parse.quote(str(subject), safe='')}/versions/{urllib.parse.quote(str(version))}")
            if status == 404 and _error_code(body) in (_SUBJECT_NOT_FOUND, _VERSION_NOT_FOUND):
                raise InvalidSchemaError(schema_id, self.describe(), f"its {what} is not in the registry")
            answer = self._expect_ok(status, body, what)
            try:
                referenced = json.loads(answer.get("schema", ""))
            except ValueError as exc:
                raise InvalidSchemaError(schema_id, self.describe(), f"its {what} is not JSON: {exc}") from None
            self._collect_references(schema_id, answer.get("references") or [], named, depth + 1)
            for name, definition in named_types(referenced).items():
                named.setdefault(name, definition)

    # -- writing

    def register(self, subject: str, schema_text: str) -> int:
        """Register an Avro schema under ``subject``; its id (the same id for the same schema, every time).

        Raises SchemaRejected if the registry refuses the schema (invalid, or
        incompatible with the subject's earlier versions) and
        SchemaRegistryUnavailable if it cannot answer.
        """
        known = self._ids.get((subject, schema_text))
        if known is not None:
            return known
        payload = json.dumps({"schema": schema_text}).encode("utf-8")
        status, body = self._request("POST", f"/subjects/{urllib.parse.quote(subject, safe='')}/versions", payload)
        if status in (409, 422):
            message = _error_message(body)
            why = ("is incompatible with its earlier versions" if status == 409 else "refused it as invalid")
            raise SchemaRejected(f"{self.describe()} did not register the schema under subject {subject!r}: "
                                 f"it {why} ({message}); fix the schema, or the subject's compatibility setting")
        answer = self._expect_ok(status, body, f"registering under subject {subject!r}")
        schema_id = answer.get("id")
        if not isinstance(schema_id, int):
            raise SchemaRegistryUnavailable(self._shown, f"its answer to registering under subject {subject!r} "
                                                         "has no id: is this a Confluent-compatible API?")
        with self._lock:
            self._ids[(subject, schema_text)] = schema_id
            self._texts.setdefault(schema_id, schema_text)
            self._unknown.pop(schema_id, None)
        return schema_id

    def subjects(self) -> list[str]:
        """The registry's subjects (``GET /subjects``)."""
        status, body = self._request("GET", "/subjects")
        if status != 200 or not isinstance(body, list):
            self._expect_ok(status, body, "the list of subjects")
            raise SchemaRegistryUnavailable(self._shown, "GET /subjects did not answer a list")
        return [str(s) for s in body]

    # -- HTTP

    def _request(self, method: str, path: str, payload: bytes | None = None) -> tuple[int, Any]:
        """(status, JSON body or None); SchemaRegistryUnavailable when no HTTP answer comes."""
        headers = {"Accept": _ACCEPT, "User-Agent": "alert-sidecar"}
        if payload is not None:
            headers["Content-Type"] = _REGISTRY_JSON
        if self._authorization:
            headers["Authorization"] = self._authorization
        request = urllib.request.Request(self.url + path, data=payload, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl_context()) as response:
                return response.status, _json_or_none(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _json_or_none(exc.read())
        except (OSError, http.client.HTTPException) as exc:
            # URLError (an OSError) wraps refused connections, unknown hosts
            # and TLS failures; a timeout while reading is a bare TimeoutError;
            # a connection cut or garbled mid-answer is an HTTPException.
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                reason = f"no answer within {self.timeout:g} s"
            raise SchemaRegistryUnavailable(self._shown, f"{method} {path}: {reason}") from None

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.cafile)
        return self._ssl

    def _expect_ok(self, status: int, body: Any, what: str) -> dict:
        if status == 200 and isinstance(body, dict):
            return body
        if status == 200:
            raise SchemaRegistryUnavailable(self._shown, f"its answer for {what} is not a JSON object: "
                                                         "is this the root of a Confluent-compatible API?")
        message = _error_message(body)
        if status in (401, 403):
            reason = (f"it refused the credentials for {what} (HTTP {status}: {message}): "
                      "check user and password in the URL")
        elif status == 404:
            reason = (f"HTTP 404 for {what} without a Confluent error code ({message}): is the URL the root of a "
                      "Confluent-compatible API (for Apicurio Registry, .../apis/ccompat/v7)?")
        else:
            reason = f"HTTP {status} for {what} ({message})"
        raise SchemaRegistryUnavailable(self._shown, reason)


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def _error_code(body: Any) -> int | None:
    return body.get("error_code") if isinstance(body, dict) else None


def _error_message(body: Any) -> str:
    if isinstance(body, dict) and body.get("message"):
        code = body.get("error_code")
        return f"{code}: {body['message']}" if code else str(body["message"])
    return "no Confluent error body"


def _without_password(url: str) -> str:
    """The URL as it may be shown in a log: a password is replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


# --- Chains, and the chain the command line asks for ------------------------------------------


class ChainedSchemas(SchemaSource):
    """The first source that knows an id; ``UnknownSchemaError`` if none does.

    A source that is unavailable (a registry that is down) stops the search
    rather than passing it on: the next source might give the same id another
    schema. A source that knows the id but holds an unusable schema for it
    stops it too.
    """

    _TRANSIENT = SchemaSource._TRANSIENT + ("_owner",)

    def __init__(self, sources: Iterable[SchemaSource]) -> None:
        self.sources = list(sources)
        if not self.sources:
            raise ValueError("a chain of schema sources needs at least one source")
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._owner: dict[int, SchemaSource] = {}  # which source answered an id, once it has

    def schema_text(self, schema_id: int) -> str:
        return self._source_of(schema_id).schema_text(schema_id)

    def parsed(self, schema_id: int) -> Any:
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            parsed = self._source_of(schema_id).parsed(schema_id)
            self._parsed[schema_id] = parsed
        return parsed

    def describe(self) -> str:
        names = [source.describe() for source in self.sources]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    def _source_of(self, schema_id: int) -> SchemaSource:
        owner = self._owner.get(schema_id)
        if owner is not None:
            return owner
        details = []
        for source in self.sources:
            try:
                source.schema_text(schema_id)
            except InvalidSchemaError:
                raise
            except UnknownSchemaError as exc:
                if exc.detail:
                    details.append(exc.detail)
                continue
            self._owner[schema_id] = source
            return source
        raise UnknownSchemaError(schema_id, self.describe(), "; ".join(details) or None)


def schema_source(registry_url: str | None, schema_dir: str | os.PathLike[str] | None,
                  timeout: float = DEFAULT_TIMEOUT_S) -> SchemaSource:
    """The sources the command line names, in the order they are asked.

    A ``--schema-dir`` first (local, explicit, never down), then a
    ``--schema-registry``, then Rubin's ids always last, so Rubin alerts
    decode with no option at all.
    """
    sources: list[SchemaSource] = []
    if schema_dir:
        sources.append(DirectorySchemas(schema_dir))
    if registry_url:
        sources.append(RegistrySchemas(registry_url, timeout=timeout))
    sources.append(RubinSchemas())
    return sources[0] if len(sources) == 1 else ChainedSchemas(sources)
