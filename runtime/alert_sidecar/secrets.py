"""Secrets in settings: where their values come from, and keeping them out of what the sidecar writes.

A setting's value may be a reference instead of the value itself, read when
the sidecar starts:

- ``@env:VAR``: the value of the environment variable VAR;
- ``@file:PATH``: the contents of the file at PATH, its trailing newline
  stripped (a Kubernetes secret mounted as a file, a Docker secret).

So a password need never be on a command line, where ``ps`` shows it to every
user of the machine. A reference that cannot be read is a ``ConfigError``
that names the variable or the path, never a value.

A setting is secret when its key is one of librdkafka's known secret keys or
contains "password" or "secret"; a front end may mark others secret too (the
``secrets`` of a cluster in a config file). ``redacted`` is what any log line
or message that shows settings must show instead of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from alert_sidecar.exceptions import ConfigError

# librdkafka's settings whose values are credentials (CONFIGURATION.md of
# librdkafka): the first four carry "password" or "secret" too, but are named
# so that a reader sees which settings are meant; the last two are a private
# key given inline and OAUTHBEARER's unsecured-JWS configuration, which may
# hold a token.
SECRET_KEYS = frozenset({
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "ssl.key.pem",
    "sasl.oauthbearer.config",
})

REDACTED = "***"

ENV_PREFIX = "@env:"
FILE_PREFIX = "@file:"
# Anything else that looks like a reference ("@flie:...", "@vault:...") is a
# mistake: sent as it is, it would be the password.
_LOOKS_LIKE_REFERENCE = re.compile(r"^@[A-Za-z]+:")


def is_secret(key: str, also: Iterable[str] = ()) -> bool:
    """Whether the setting ``key`` holds a secret (``also``: keys a front end marked secret)."""
    lowered = key.lower()
    return key in SECRET_KEYS or "password" in lowered or "secret" in lowered or key in also


def is_reference(value: object) -> bool:
    """Whether ``value`` is ``@env:VAR`` or ``@file:PATH`` rather than a value."""
    return isinstance(value, str) and value.startswith((ENV_PREFIX, FILE_PREFIX))


def resolve(value: object, what: str) -> object:
    """The value a setting stands for: read from the environment or a file if it is a reference.

    ``what`` names the setting in an error ("cluster rubin's sasl.password").
    Values that are no reference are returned as they are.
    """
    if not isinstance(value, str):
        return value
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        if not name:
            raise ConfigError(f"{what}: {value!r} names no environment variable (write @env:VAR)")
        found = os.environ.get(name)
        if found is None:
            raise ConfigError(f"{what}: the environment variable {name} is not set")
        if not found:
            raise ConfigError(f"{what}: the environment variable {name} is empty")
        return found
    if value.startswith(FILE_PREFIX):
        path = os.path.expanduser(value[len(FILE_PREFIX):])
        if not path:
            raise ConfigError(f"{what}: {value!r} names no file (write @file:PATH)")
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {path}: {exc.strerror or type(exc).__name__}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{what}: {path} is not UTF-8 text") from None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise ConfigError(f"{what}: {path} is empty")
        return text
    if _LOOKS_LIKE_REFERENCE.match(value):
        prefix = value.split(":", 1)[0]
        raise ConfigError(f"{what}: {prefix}: is not a reference the sidecar reads; write @env:VAR or @file:PATH")
    return value


def redacted(settings: Mapping[str, object], also: Iterable[str] = ()) -> dict[str, object]:
    """``settings`` fit to be shown: the value of every secret replaced by ``***``.

    A reference (``@env:VAR``, ``@file:PATH``) is shown as it is: it says where
    the secret is, not what it is. Objects such as callbacks are shown by type.
    """
    also = frozenset(also)
    shown: dict[str, object] = {}
    for key, value in settings.items():
        if callable(value) or hasattr(value, "log"):
            shown[key] = f"<{type(value).__name__}>"
        elif is_secret(key, also) and not is_reference(value):
            shown[key] = REDACTED
        else:
            shown[key] = value
    return shown
