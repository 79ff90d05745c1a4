"""Where a worker is and what it speaks.

A worker is reached over gRPC (``HOST:PORT``) or over the Connect protocol,
HTTP/1.1 POSTs that R serves (``http://HOST:PORT``, ``https://HOST:PORT`` over
TLS). The protocol and the TLS it is secured with (tls.py) are fields of the
address, decided once when the address is read, never guessed again from a
prefix.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from alert_sidecar.exceptions import ConfigError
from alert_sidecar.workers.tls import WorkerTls

# A worker served by several processes on consecutive ports (serve(processes=N)):
# 256 ports is more processes than any machine the sidecar runs beside has cores.
MAX_PORT_RANGE = 256


class Protocol(enum.Enum):
    GRPC = "grpc"
    CONNECT = "connect"  # HTTP/1.1 with protobuf bodies: R workers (connectrpc.com)


@dataclass(frozen=True)
class WorkerAddress:
    host: str
    port: int
    protocol: Protocol = Protocol.GRPC
    tls: WorkerTls | None = None  # None: plaintext, as to a worker on loopback

    @property
    def target(self) -> str:
        """HOST:PORT, as a gRPC channel or a socket takes it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """http://HOST:PORT (https:// over TLS), the base of a Connect worker's calls."""
        return f"{'https' if self.tls else 'http'}://{self.target}"

    def __str__(self) -> str:
        return self.url if self.protocol is Protocol.CONNECT else self.target


def parse_worker_addresses(text: str, protocol: Protocol | None = None,
                           tls: WorkerTls | None = None) -> list[WorkerAddress]:
    """``HOST:PORT``, ``HOST:FIRST-LAST`` or ``http[s]://HOST:PORT[-LAST]`` as the addresses it names.

    ``protocol`` is --worker-protocol when given: ``http://`` and CONNECT agree,
    ``http://`` and GRPC do not. ``tls`` (the --worker-tls options) secures
    gRPC workers and ``https://`` ones; ``https://`` alone is TLS with the
    system's CAs.
    """
    scheme, has_scheme, rest = text.partition("://")
    if has_scheme and scheme not in ("http", "https"):
        raise ConfigError(f"--worker {text!r}: only http:// or https:// (a Connect worker) may come before "
                          "HOST:PORT")
    if has_scheme and protocol is Protocol.GRPC:
        raise ConfigError(f"--worker {text!r} is a Connect address, but --worker-protocol says grpc")
    if scheme == "http" and tls is not None:
        raise ConfigError(f"--worker {text!r} is plaintext, but --worker-tls options are given: write "
                          f"https://{rest} for a Connect worker over TLS")
    if scheme == "https":
        tls = tls or WorkerTls()
    host, sep, ports = (rest if has_scheme else text).rpartition(":")
    first, dash, last = ports.partition("-")
    if not sep or not host or not first.isdigit() or (dash and not last.isdigit()):
        raise ConfigError(f"--worker {text!r} is not HOST:PORT or HOST:FIRST-LAST (e.g. localhost:50051, "
                          "or http://localhost:8080 for a Connect worker)")
    if dash and not int(first) <= int(last) < int(first) + MAX_PORT_RANGE:
        raise ConfigError(f"--worker {text!r}: the port range must go up, by at most {MAX_PORT_RANGE} ports")
    ports_of = range(int(first), int(last) + 1) if dash else [int(first)]
    chosen = Protocol.CONNECT if has_scheme else (protocol or Protocol.GRPC)
    return [WorkerAddress(host, port, chosen, tls) for port in ports_of]
