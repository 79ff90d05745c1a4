"""Certificates for tests of TLS: a CA of the test's own and certificates it signs, made with ``openssl``.

Every file is PEM; private keys are unencrypted PKCS#8 (``BEGIN PRIVATE
KEY``), which Kafka's PEM key stores, gRPC and Python's ssl all read. Keys are
EC P-256: quick to make, and taken by all three.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# Two days: a test's certificates need only outlive the test run.
VALID_DAYS = 2


@dataclass(frozen=True)
class Certificate:
    """A certificate and its private key, and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path

    @property
    def chain_and_key(self) -> Path:
        """One file with the key and the certificate (Kafka's ssl.keystore.type=PEM location)."""
        path = self.cert.with_suffix(".keystore.pem")
        path.write_text(self.key.read_text() + self.cert.read_text())
        return path


class CertificateAuthority:
    """A certificate authority in ``folder`` that signs server and client certificates."""

    def __init__(self, folder: Path, name: str = "alert-sidecar test CA") -> None:
        if shutil.which("openssl") is None:
            pytest.fail("openssl is not on PATH: the TLS tests make their certificates with it", pytrace=False)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cert = self.folder / "ca.pem"
        self.key = self.folder / "ca.key"
        _openssl("req", "-x509", "-new", *_NEW_KEY, "-keyout", self.key, "-out", self.cert,
                 "-days", str(VALID_DAYS), "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
              usage: str = "serverAuth,clientAuth") -> Certificate:
        """A certificate named ``name`` for ``hosts`` (IP addresses or DNS names), signed by this CA."""
        key, csr, cert = (self.folder / f"{name}.{suffix}" for suffix in ("key", "csr", "pem"))
        _openssl("req", "-new", *_NEW_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
        extensions = self.folder / f"{name}.ext"
        extensions.write_text(f"subjectAltName={names}\nextendedKeyUsage={usage}\n"
                              "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-CAcreateserial",
                 "-out", cert, "-days", str(VALID_DAYS), "-extfile", extensions)
        return Certificate(cert, key, self.cert)


_NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


def _openssl(*args: object) -> None:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")
