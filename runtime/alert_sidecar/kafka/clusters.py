"""Kafka clusters: where each is, and the settings its clients, and only its clients, get.

The buffers of one stage may live on different Kafka clusters with different
credentials (the LSST:UK design's separate Kafka services: Rubin's alert
stream, a broker's own cluster). A buffer names its cluster

- by name, ``kafka://rubin/alerts``, with ``rubin`` defined as a ``Cluster``
  (``--cluster rubin=HOST:PORT``, or a ``[clusters.rubin]`` table in a config
  file);
- or by its bootstrap servers, ``kafka://host:port/alerts``; settings may be
  given for that bootstrap string as for a name.

Every Kafka client of a stage (the input's consumer, one producer per output
cluster, the admin client that creates topics) is made with
``Clusters.settings_for(buffer)``: the settings common to every cluster, then
its own cluster's, and nothing of another's. The input cluster's password is
never sent to an output cluster.

``Cluster`` and ``Clusters`` are plain data that any front end fills (the
command line, a config file, a pipeline file). Settings stay as they were
given, references (``@env:VAR``, ``@file:PATH``; secrets.py) included, until a
client is made; ``repr`` shows no secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from alert_sidecar.exceptions import ConfigError
from alert_sidecar.kafka.buffers import CLUSTER_NAME, Buffer, check_bootstrap
from alert_sidecar.secrets import is_secret, redacted, resolve

# A cluster's bootstrap is its own field (and a buffer's host:port): the same
# setting among its settings would send its clients elsewhere.
_BOOTSTRAP_KEYS = ("bootstrap.servers", "metadata.broker.list")


@dataclass
class Cluster:
    """One Kafka cluster: its bootstrap servers and the librdkafka settings of its clients.

    ``name`` is a name (``rubin``) or, for a cluster its buffers name by
    host:port, the bootstrap string itself. ``secrets`` are settings too,
    never shown whatever their key; values of either may be references.
    """

    name: str
    bootstrap: str
    settings: dict[str, object] = field(default_factory=dict)
    secrets: dict[str, object] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Cluster(name={self.name!r}, bootstrap={self.bootstrap!r}, "
                f"settings={self.shown_settings()!r})")

    def shown_settings(self) -> dict[str, object]:
        """Every setting of this cluster, secrets redacted: what a log line or message may show."""
        return redacted({**self.settings, **self.secrets}, also=self.secrets)

    def check(self) -> None:
        """Raise ConfigError if the name, the bootstrap or a key is wrong (nothing is read)."""
        if not CLUSTER_NAME.match(self.name):
            check_bootstrap(self.name, f"cluster {self.name!r}")
        check_bootstrap(self.bootstrap, f"cluster {self.name}'s bootstrap {self.bootstrap!r}")
        for key in (*self.settings, *self.secrets):
            if key in _BOOTSTRAP_KEYS:
                raise ConfigError(f"cluster {self.name}: {key} is not a setting here; a cluster's bootstrap "
                                  "servers are its --cluster NAME=HOST:PORT, or its buffers' host:port")


@dataclass
class Clusters:
    """Every cluster a stage's buffers may name, and what every cluster gets.

    ``by_name`` holds the clusters defined by name and those given settings
    by their bootstrap string; a buffer on any other host:port is a cluster
    with the common settings only. ``common`` settings (``--kafka-config``)
    go to every cluster, so they may hold no secret.
    """

    by_name: dict[str, Cluster] = field(default_factory=dict)
    common: dict[str, object] = field(default_factory=dict)

    def bootstraps(self) -> dict[str, str]:
        """Each cluster defined by name, and its bootstrap servers: what ``parse_buffer`` resolves names with."""
        return {name: c.bootstrap for name, c in self.by_name.items() if CLUSTER_NAME.match(name)}

    def of(self, buffer: Buffer) -> Cluster:
        """The cluster ``buffer`` is on."""
        cluster = self.by_name.get(buffer.cluster)
        if cluster is not None:
            return cluster
        if buffer.cluster_name is not None:
            raise ConfigError(f"buffer {buffer} names cluster {buffer.cluster_name!r}, which is not defined")
        return Cluster(buffer.bootstrap, buffer.bootstrap)

    def settings_for(self, buffer: Buffer) -> dict[str, object]:
        """The librdkafka settings of a client of ``buffer``'s cluster, every reference read.

        Raises ConfigError naming the variable or file of a reference that
        cannot be read, never a value.
        """
        self._check_common()
        cluster = self.of(buffer)
        cluster.check()
        given = {**self.common, **cluster.settings, **cluster.secrets}
        return {key: resolve(value, f"cluster {cluster.name}'s {key}") for key, value in given.items()}

    def check(self, buffers: Iterable[Buffer]) -> None:
        """Read every setting the clients of ``buffers`` will get: a missing secret stops the start here."""
        for cluster in self.by_name.values():
            cluster.check()
        for buffer in buffers:
            self.settings_for(buffer)

    def _check_common(self) -> None:
        for key in self.common:
            if is_secret(key):
                raise ConfigError(
                    f"{key} is a secret, and settings for every cluster (--kafka-config) go to every cluster: "
                    f"give it to its own cluster, with --cluster-config NAME:{key}=@file:PATH (or @env:VAR)")
            if key in _BOOTSTRAP_KEYS:
                raise ConfigError(f"{key} is not a setting for every cluster (--kafka-config): a buffer's "
                                  "host:port, or --cluster NAME=HOST:PORT, says where its cluster is")
