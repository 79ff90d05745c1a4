"""Buffer URIs: where a Kafka topic used as a stage's buffer lives.

A buffer is ``kafka://host:port[,host:port...]/topic``. Every buffer names its own
cluster, so the input and outputs of a stage may live on different Kafka
clusters, as the LSST:UK design asks ("multiple logical Kafka services").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .exceptions import ConfigError

# Kafka's own rule for topic names (kafka.common.internals.Topic): at most 249
# characters of ASCII letters, digits, '.', '_' and '-'.
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")

EXAMPLE = "kafka://localhost:9092/alerts"


@dataclass(frozen=True)
class Buffer:
    """One Kafka topic on one cluster."""

    bootstrap: str  # "host:port,host:port", as librdkafka's bootstrap.servers wants it
    topic: str

    @property
    def uri(self) -> str:
        return f"kafka://{self.bootstrap}/{self.topic}"

    def __str__(self) -> str:
        return self.uri


def parse_buffer(text: str, *, what: str = "buffer") -> Buffer:
    """Parse ``kafka://host:port[,host:port]/topic``; raise ConfigError saying what is wrong."""
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
    if not hosts:
        raise ConfigError(f"{what} {original!r} names no broker: expected kafka://host:port/topic, e.g. {EXAMPLE}")
    for host in hosts.split(","):
        match = _HOST_PORT.match(host)
        if not match:
            raise ConfigError(f"{what} {original!r}: broker {host!r} is not host:port")
        port = int(match.group(2))
        if not 0 < port < 65536:
            raise ConfigError(f"{what} {original!r}: port {port} is out of range")
    if not _TOPIC.match(topic):
        raise ConfigError(
            f"{what} {original!r}: topic {topic!r} is not a Kafka topic name "
            "(1 to 249 of letters, digits, '.', '_', '-')"
        )
    return Buffer(bootstrap=hosts, topic=topic)
