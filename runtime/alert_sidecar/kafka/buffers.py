"""Buffer URIs: where a Kafka topic used as a stage's buffer lives.

A buffer is ``kafka://host:port[,host:port...]/topic[?option=value&...]``, or
``kafka://NAME/topic`` on a cluster defined by name (``--cluster
NAME=HOST:PORT``; clusters.py holds each cluster's settings). Every buffer
names its own cluster, so the input and outputs of a stage may live on
different Kafka clusters, as the LSST:UK design asks ("multiple logical Kafka
services").

Options say what the buffer's records are:

- ``format``: ``auto`` (the default: told from the bytes), ``avro-confluent``
  (Rubin), ``avro-ocf`` (ZTF), ``json`` or ``raw``;
- ``schema``: for an output buffer in ``avro-confluent``, the Avro schema file
  (.avsc) its records are written with;
- ``schema-id``: the Confluent id to frame them with, when no registry is
  configured (with a registry, the schema is registered and its id used);
- ``subject``: the registry subject to register under (default ``<topic>-value``,
  Confluent's TopicNameStrategy).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from alert_sidecar.exceptions import ConfigError

# Kafka's own rule for topic names (kafka.common.internals.Topic): at most 249
# characters of ASCII letters, digits, '.', '_' and '-'.
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
# A cluster's name: a word without ':' or '.', so that it never reads as a host or host:port.
CLUSTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

EXAMPLE = "kafka://localhost:9092/alerts"


OPTIONS = ("format", "schema", "schema-id", "subject")
FORMAT_NAMES = ("auto", "avro-confluent", "avro-ocf", "json", "raw")


@dataclass(frozen=True)
class Buffer:
    """One Kafka topic on one cluster, and what its records are."""

    bootstrap: str  # "host:port,host:port", as librdkafka's bootstrap.servers wants it
    topic: str
    format: str = "auto"
    schema: str | None = None  # path of an .avsc file (output buffers in avro-confluent)
    schema_id: int | None = None
    subject: str | None = None
    cluster_name: str | None = None  # the NAME of kafka://NAME/topic; None when the URI gives host:port

    @property
    def cluster(self) -> str:
        """The cluster the buffer is on: its NAME, else its bootstrap servers (clusters.py)."""
        return self.cluster_name or self.bootstrap

    @property
    def uri(self) -> str:
        return f"kafka://{self.cluster}/{self.topic}"

    def __str__(self) -> str:
        return self.uri


def parse_buffer(text: str, *, what: str = "buffer", clusters: Mapping[str, str] | None = None) -> Buffer:
    """Parse ``kafka://host:port[,host:port]/topic`` or ``kafka://NAME/topic``; raise ConfigError saying what is wrong.

    ``clusters`` maps the names of defined clusters to their bootstrap servers.
    """
    original = text
    text = text.strip()
    if "://" not in text:
        raise ConfigError(
            f"{what} {original!r} is not a buffer URI: expected kafka://host:port/topic, e.g. {EXAMPLE}"
        )
    scheme, rest = text.split("://", 1)
    if scheme != "kafka":
        raise ConfigError(f"{what} {original!r} has scheme {scheme!r}: only kafka:// buffers exist, e.g. {EXAMPLE}")
    if "/" not in rest:
        raise ConfigError(f"{what} {original!r} names no topic: expected kafka://host:port/topic, e.g. {EXAMPLE}")
    hosts, topic = rest.split("/", 1)
    topic, _, query = topic.partition("?")
    options = _options(query, original, what)
    if not hosts:
        raise ConfigError(f"{what} {original!r} names no broker: expected kafka://host:port/topic, e.g. {EXAMPLE}")
    cluster_name = None
    if CLUSTER_NAME.match(hosts):
        if hosts not in (clusters or {}):
            known = f" (defined: {', '.join(sorted(clusters))})" if clusters else ""
            raise ConfigError(f"{what} {original!r}: {hosts!r} is not host:port, nor a cluster defined by "
                              f"--cluster {hosts}=HOST:PORT{known}")
        cluster_name, hosts = hosts, clusters[hosts]
    else:
        check_bootstrap(hosts, f"{what} {original!r}")
    if not _TOPIC.match(topic):
        raise ConfigError(
            f"{what} {original!r}: topic {topic!r} is not a Kafka topic name "
            "(1 to 249 of letters, digits, '.', '_', '-')"
        )
    schema_id = options.get("schema-id")
    if schema_id is not None and not schema_id.isdigit():
        raise ConfigError(f"{what} {original!r}: schema-id {schema_id!r} is not a number")
    return Buffer(bootstrap=hosts, topic=topic, format=options.get("format", "auto"), schema=options.get("schema"),
                  schema_id=int(schema_id) if schema_id is not None else None, subject=options.get("subject"),
                  cluster_name=cluster_name)


def check_bootstrap(hosts: str, what: str) -> str:
    """``hosts`` if it is ``host:port[,host:port]``; else a ConfigError that starts with ``what``."""
    for host in hosts.split(","):
        match = _HOST_PORT.match(host)
        if not match:
            raise ConfigError(f"{what}: broker {host!r} is not host:port")
        port = int(match.group(2))
        if not 0 < port < 65536:
            raise ConfigError(f"{what}: port {port} is out of range")
    return hosts


def _options(query: str, original: str, what: str) -> dict[str, str]:
    options = {}
    for item in filter(None, query.split("&")):
        name, sep, value = item.partition("=")
        if not sep or name not in OPTIONS:
            raise ConfigError(f"{what} {original!r}: {item!r} is not an option; buffers take "
                              + ", ".join(f"{o}=..." for o in OPTIONS))
        options[name] = urllib.parse.unquote(value)
    if options.get("format", "auto") not in FORMAT_NAMES:
        raise ConfigError(f"{what} {original!r}: format {options['format']!r} is not one of {', '.join(FORMAT_NAMES)}")
    return options
