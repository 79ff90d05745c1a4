"""TLS on the link to workers, optionally mutual, for gRPC and Connect alike.

A worker beside its sidecar listens on loopback in plaintext. A worker
elsewhere is reached over TLS: the sidecar checks the worker's certificate
against ``--worker-tls-ca`` (else the system's CAs), for the worker's host or
``--worker-tls-server-name``, and shows its own certificate
(``--worker-tls-cert``, ``--worker-tls-key``) to a worker that asks for one.
Health checks and Describe go over the same secured channel as the alerts.

When a connection fails for a reason TLS explains (a worker that speaks TLS to
a plaintext sidecar, a certificate not signed by the CA, a worker that asks
for a client certificate the sidecar has not got), ``diagnose`` says which,
in words that say what to give; gRPC's own message would be "Socket closed".
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from alert_sidecar.exceptions import ConfigError

# What ``diagnose`` waits for a handshake, and then for a worker to refuse it:
# a worker on a network answers in milliseconds, as for its health check.
DIAGNOSE_TIMEOUT_S = 2.0

# gRPC servers expect HTTP/2 (ALPN "h2"); Connect workers speak HTTP/1.1.
_ALPN = ["h2", "http/1.1"]


@dataclass(frozen=True)
class WorkerTls:
    """How the sidecar secures its connections to workers: all None is TLS with the system's CAs."""

    ca: Path | None = None  # PEM: the CA(s) the workers' certificates are checked against
    cert: Path | None = None  # PEM: the sidecar's own certificate, for workers that require one
    key: Path | None = None  # PEM: its private key
    server_name: str | None = None  # the name the workers' certificates must be for, if not their host

    def check(self) -> WorkerTls:
        """Itself, once every file is readable and the certificate comes with its key; else ConfigError."""
        if (self.cert is None) != (self.key is None):
            raise ConfigError("--worker-tls-cert and --worker-tls-key go together: a client certificate "
                              "needs its private key")
        for option, path in (("--worker-tls-ca", self.ca), ("--worker-tls-cert", self.cert),
                             ("--worker-tls-key", self.key)):
            if path is not None:
                _read(path, option)
        return self

    @classmethod
    def given(cls, ca: str | None, cert: str | None, key: str | None, server_name: str | None) -> WorkerTls | None:
        """The TLS the --worker-tls options ask for, checked; None when none is given (plaintext)."""
        if not any((ca, cert, key, server_name)):
            return None
        return cls(Path(ca) if ca else None, Path(cert) if cert else None, Path(key) if key else None,
                   server_name or None).check()

    @property
    def mutual(self) -> bool:
        return self.cert is not None

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "--worker-tls-ca") if self.ca else None,
            private_key=_read(self.key, "--worker-tls-key") if self.key else None,
            certificate_chain=_read(self.cert, "--worker-tls-cert") if self.cert else None)

    def grpc_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that checks the worker's certificate and shows the sidecar's own, if given."""
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context


def _read(path: Path, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot read it: {exc.strerror or type(exc).__name__}") from None


def diagnose(host: str, port: int, tls: WorkerTls | None, timeout: float = DIAGNOSE_TIMEOUT_S) -> str | None:
    """Why connections to ``host:port`` fail, when TLS explains it; None when it does not.

    Opens one connection of its own and goes as far as a TLS handshake (and
    the worker's answer to it): it sends no request.
    """
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None  # not a matter of TLS: the caller's own message says what
    with raw:
        if tls is None:
            return _plaintext_against(raw, host)
        return _tls_against(raw, host, tls)


def _plaintext_against(raw: socket.socket, host: str) -> str | None:
    """A plaintext sidecar: does the worker speak TLS?"""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only whether it speaks TLS, not whom to trust
    context.set_alpn_protocols(_ALPN)
    try:
        with context.wrap_socket(raw, server_hostname=host):
            pass
    except (ssl.SSLError, OSError):
        return None
    return ("the worker speaks TLS and the sidecar plaintext: give --worker-tls-ca FILE (the CA that signed "
            "the worker's certificate), and https:// for a Connect worker")


def _tls_against(raw: socket.socket, host: str, tls: WorkerTls) -> str | None:
    try:
        context = tls.ssl_context()
    except (ssl.SSLError, OSError) as exc:
        return f"the sidecar's TLS files cannot be used: {exc}"
    context.set_alpn_protocols(_ALPN)
    try:
        secured = context.wrap_socket(raw, server_hostname=tls.server_name or host)
    except ssl.SSLCertVerificationError as exc:
        return (f"the worker's certificate is not trusted: {exc.verify_message}; check --worker-tls-ca "
                "(the CA that signed it) and --worker-tls-server-name (a name it is for)")
    except ssl.SSLError as exc:
        if exc.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                          "HTTP_REQUEST"):
            return "the worker does not speak TLS: drop the --worker-tls options, or give it a certificate"
        return _refusal(exc)
    except OSError:
        return None
    with secured:
        # In TLS 1.3 a worker checks the client's certificate after the handshake:
        # its refusal is the first thing it sends, an alert (OpenSSL), or the
        # connection closed without a word (gRPC's servers, which otherwise
        # send their HTTP/2 settings first).
        try:
            first = secured.recv(1)
        except ssl.SSLError as exc:
            return _refusal(exc)
        except OSError:
            return None
        if not first:
            return _closed_after_handshake(tls)
    return None


def _closed_after_handshake(tls: WorkerTls) -> str:
    if not tls.mutual:
        return ("the worker closed the connection after the TLS handshake, as one that requires a client "
                "certificate does: give --worker-tls-cert FILE and --worker-tls-key FILE")
    return ("the worker closed the connection after the TLS handshake, as one that refuses the sidecar's client "
            "certificate does: is --worker-tls-cert signed by a CA the worker trusts?")


def _refusal(exc: ssl.SSLError) -> str:
    reason = exc.reason or str(exc)
    if "CERTIFICATE_REQUIRED" in reason:
        return "the worker requires a client certificate: give --worker-tls-cert FILE and --worker-tls-key FILE"
    if any(word in reason for word in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return (f"the worker refused the sidecar's client certificate ({reason}): is it signed by a CA the "
                "worker trusts?")
    return f"TLS with the worker failed: {reason}"
