"""Turning flags, environment variables and a config file into a StageConfig.

Every option can come from three places, in this order of precedence: the
command line, an environment variable ``ALERT_SIDECAR_<OPTION>`` (``--in`` is
``ALERT_SIDECAR_IN``; repeated options take space-separated values), and a TOML
config file given with ``--config`` whose keys are the option names
(``in = "kafka://..."``, ``kafka-config = ["security.protocol=SSL"]``).

Clusters (kafka/clusters.py) come from ``--cluster NAME=HOST:PORT``,
``--cluster-config NAME:KEY=VALUE`` and ``--kafka-config KEY=VALUE`` (every
cluster), and from ``[clusters.NAME]`` tables of the config file::

    [clusters.rubin]
    bootstrap = "usdf-alert-stream.lsst.cloud:9094"
    settings = { "security.protocol" = "SASL_SSL", "sasl.mechanism" = "SCRAM-SHA-512", "sasl.username" = "lasair" }
    secrets = { "sasl.password" = "@file:/run/secrets/rubin-password" }
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from alert_sidecar.kafka.buffers import CLUSTER_NAME, Buffer, check_bootstrap, parse_buffer
from alert_sidecar.kafka.clusters import Cluster, Clusters
from alert_sidecar.exceptions import ConfigError
from alert_sidecar.secrets import is_reference, is_secret

ENV_PREFIX = "ALERT_SIDECAR"


def load_config_file(path: str) -> dict[str, Any]:
    """Read a TOML config file into click's default_map (keys with dashes become underscores)."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    options = {_PARAMS.get(key, key.replace("-", "_")): value for key, value in data.items() if key != CLUSTERS}
    if CLUSTERS in data:
        options[CLUSTERS] = clusters_of_table(data[CLUSTERS], f"config file {path}")
    return options


# The config file's tables of clusters, ``[clusters.NAME]``; the key stays in
# click's default_map, where it names no option, for the command line to read.
CLUSTERS = "clusters"
_CLUSTER_KEYS = ("bootstrap", "settings", "secrets")


def clusters_of_table(table: Any, where: str) -> dict[str, Cluster]:
    """``[clusters.NAME]`` tables (bootstrap, settings, secrets) as Clusters.

    A table named by a bootstrap string (``[clusters."k1:9092,k2:9092"]``)
    gives settings to the buffers on those brokers and needs no ``bootstrap``.
    Dotted keys left unquoted (``security.protocol = "SSL"``, which TOML reads
    as nested tables) are joined again.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: clusters must be tables, [clusters.NAME]")
    clusters = {}
    for name, entry in table.items():
        what = f"{where}: [clusters.{name}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{what} is not a table")
        unknown = sorted(set(entry) - set(_CLUSTER_KEYS))
        if unknown:
            raise ConfigError(f"{what}: {', '.join(unknown)} is not one of {', '.join(_CLUSTER_KEYS)}")
        bootstrap = entry.get("bootstrap", None if CLUSTER_NAME.match(name) else name)
        if not isinstance(bootstrap, str):
            raise ConfigError(f"{what} needs bootstrap = \"HOST:PORT[,HOST:PORT]\"")
        cluster = Cluster(name, bootstrap, _settings_table(entry.get("settings", {}), f"{what} settings"),
                          _settings_table(entry.get("secrets", {}), f"{what} secrets"))
        cluster.check()
        clusters[name] = cluster
    return clusters


def _settings_table(table: Any, what: str, prefix: str = "") -> dict[str, object]:
    if not isinstance(table, dict):
        raise ConfigError(f"{what} must be a table of librdkafka settings")
    settings: dict[str, object] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            settings.update(_settings_table(value, what, f"{prefix}{key}."))
        elif isinstance(value, bool):
            settings[prefix + key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            settings[prefix + key] = str(value)
        else:
            raise ConfigError(f"{what}: {prefix}{key} must be a string, a number or true/false")
    return settings


def parse_clusters(definitions: tuple[str, ...], settings: tuple[str, ...], common: tuple[str, ...],
                   from_file: dict[str, Cluster] | None = None, *, settings_on_command_line: bool = False) -> Clusters:
    """Clusters from ``--cluster NAME=HOST:PORT``, ``--cluster-config NAME:KEY=VALUE`` and ``--kafka-config``.

    Flags add to and override the config file's ``from_file``. With
    ``settings_on_command_line``, a secret given as a value rather than as
    ``@env:VAR`` or ``@file:PATH`` is refused: ``ps`` shows it to every user.
    """
    by_name = {name: Cluster(c.name, c.bootstrap, dict(c.settings), dict(c.secrets))
               for name, c in (from_file or {}).items()}
    for name, bootstrap in parse_pairs(definitions, "--cluster").items():
        if not CLUSTER_NAME.match(name):
            raise ConfigError(f"--cluster {name}={bootstrap}: {name!r} is not a cluster name "
                              "(a letter, then letters, digits, '_' or '-')")
        check_bootstrap(bootstrap, f"--cluster {name}")
        if name in by_name:
            by_name[name].bootstrap = bootstrap
        else:
            by_name[name] = Cluster(name, bootstrap)
    for item in settings:
        setting, sep, value = item.partition("=")
        name, colon, key = setting.rpartition(":")
        name, key, value = name.strip(), key.strip(), value.strip()
        if not sep or not colon or not name or not key:
            raise ConfigError(f"--cluster-config {item!r} is not NAME:KEY=VALUE (e.g. rubin:sasl.username=lasair)")
        if settings_on_command_line and is_secret(key) and not is_reference(value):
            raise ConfigError(f"--cluster-config {name}:{key} is a secret on the command line, where ps shows it "
                              f"to every user of the machine: give {name}:{key}=@env:VAR or @file:PATH")
        cluster = by_name.get(name)
        if cluster is None:
            if CLUSTER_NAME.match(name):
                raise ConfigError(f"--cluster-config {name}:{key}: no cluster is named {name!r}; "
                                  f"define it with --cluster {name}=HOST:PORT")
            cluster = by_name[name] = Cluster(name, check_bootstrap(name, f"--cluster-config {name}:{key}"))
        cluster.settings[key] = value
    return Clusters(by_name=by_name, common=parse_pairs(common, "--kafka-config"))


# Config-file keys whose option is stored under another name (``in`` is a Python keyword).
_PARAMS = {"in": "input_", "out": "output", "worker": "workers", "route": "routes"}


def parse_pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """KEY=VALUE pairs, as given to a repeatable option."""
    pairs = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {item!r} is not KEY=VALUE")
        pairs[key.strip()] = value.strip()
    return pairs


def parse_routes(values: tuple[str, ...], clusters: dict[str, str] | None = None) -> dict[str, Buffer]:
    routes = {}
    for name, uri in parse_pairs(values, "--route").items():
        if name == "dead-letter":
            raise ConfigError("--route dead-letter=... is reserved: use --dead-letter")
        routes[name] = parse_buffer(uri, what=f"--route {name}", clusters=clusters)
    return routes


def default_dead_letter(input_buffer: Buffer) -> Buffer:
    """Where dead letters go when --dead-letter is not given: beside the input, named after it."""
    return Buffer(input_buffer.bootstrap, f"{input_buffer.topic}.dead-letter", cluster_name=input_buffer.cluster_name)


def default_group(input_buffer: Buffer, output: Buffer) -> str:
    """A stage's consumer group when --group is not given: one per (input, output) pair.

    Two sidecars started with the same --in and --out then share the work, as
    instances of one stage should.
    """
    return f"alert-sidecar.{input_buffer.topic}.{output.topic}"


def stats_path(value: str | None) -> Path | None:
    return Path(value) if value else None
