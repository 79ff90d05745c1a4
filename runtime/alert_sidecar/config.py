"""Turning flags, environment variables and a config file into a StageConfig.

Every option can come from three places, in this order of precedence: the
command line, an environment variable ``ALERT_SIDECAR_<OPTION>`` (``--in`` is
``ALERT_SIDECAR_IN``; repeated options take space-separated values), and a TOML
config file given with ``--config`` whose keys are the option names
(``in = "kafka://..."``, ``kafka-config = ["security.protocol=SSL"]``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from alert_sidecar.kafka.buffers import Buffer, parse_buffer
from alert_sidecar.exceptions import ConfigError

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
    return {_PARAMS.get(key, key.replace("-", "_")): value for key, value in data.items()}


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


def parse_routes(values: tuple[str, ...]) -> dict[str, Buffer]:
    routes = {}
    for name, uri in parse_pairs(values, "--route").items():
        if name == "dead-letter":
            raise ConfigError("--route dead-letter=... is reserved: use --dead-letter")
        routes[name] = parse_buffer(uri, what=f"--route {name}")
    return routes


def default_dead_letter(input_buffer: Buffer) -> Buffer:
    """Where dead letters go when --dead-letter is not given: beside the input, named after it."""
    return Buffer(input_buffer.bootstrap, f"{input_buffer.topic}.dead-letter")


def default_group(input_buffer: Buffer, output: Buffer) -> str:
    """A stage's consumer group when --group is not given: one per (input, output) pair.

    Two sidecars started with the same --in and --out then share the work, as
    instances of one stage should.
    """
    return f"alert-sidecar.{input_buffer.topic}.{output.topic}"


def stats_path(value: str | None) -> Path | None:
    return Path(value) if value else None
