"""TLS, optionally mutual, on the link from the sidecar to its workers, with the real command and real workers.

Workers serve on loopback with certificates of the test's own CA: the Python
SDK's passthrough worker over gRPC (certificates from $ALERT_WORKER_TLS_*),
and, for Connect, workers/connect_tls.py (no SDK serves Connect over TLS: the
R SDK's httpuv is plaintext). Alerts go end to end through the session's
Kafka; every mistake ends the sidecar with one line that says what to give,
exit code 4 (2 for a flag), no traceback, and no key in what it wrote.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.certificates import Certificate, CertificateAuthority

from .stage_support import EXAMPLES, SIDECAR, Processes, free_port, produce_alerts, read_topic

pytestmark = pytest.mark.kafka

ALERTS = 300
WORKER_WAIT = "5"  # seconds: every mistake below is found within it
# The mutual-TLS worker's certificate is for this name only, so that the
# sidecar must be told it (--worker-tls-server-name) to dial 127.0.0.1.
WORKER_NAME = "alert-worker.test"


@dataclass(frozen=True)
class Certificates:
    worker: Certificate  # for 127.0.0.1 and localhost
    named_worker: Certificate  # for WORKER_NAME only
    sidecar: Certificate  # a client certificate of the same CA
    stranger: Certificate  # a client certificate of another CA
    other_ca: Path

    @property
    def keys(self) -> list[Path]:
        return [self.worker.key, self.named_worker.key, self.sidecar.key, self.stranger.key]


@dataclass(frozen=True)
class Workers:
    """Addresses of the workers the module serves, each over TLS."""

    grpc: str  # HOST:PORT
    grpc_mutual: str  # requires a client certificate; its certificate is for WORKER_NAME
    connect: str  # https://HOST:PORT


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certificates:
    folder = tmp_path_factory.mktemp("worker-tls")
    authority = CertificateAuthority(folder / "ca")
    other = CertificateAuthority(folder / "other", name="another CA")
    return Certificates(worker=authority.issue("worker", usage="serverAuth"),
                        named_worker=authority.issue("named-worker", hosts=(WORKER_NAME,), usage="serverAuth"),
                        sidecar=authority.issue("sidecar", usage="clientAuth"),
                        stranger=other.issue("stranger", usage="clientAuth"), other_ca=other.cert)


@pytest.fixture(scope="module")
def workers(certs, tmp_path_factory):
    processes = Processes(tmp_path_factory.mktemp("tls-workers"))
    ports = [free_port() for _ in range(3)]
    grpc_worker = _sdk_worker(processes, ports[0], certs.worker)
    mutual_worker = _sdk_worker(processes, ports[1], certs.named_worker, client_ca=certs.worker.ca)
    connect_worker = processes.worker("connect_tls.py", ports[2], "--tls-cert", str(certs.worker.cert),
                                      "--tls-key", str(certs.worker.key), name="connect-tls")
    try:
        grpc_worker.wait_for_line("(python/alert_worker", 30)
        mutual_worker.wait_for_line("(python/alert_worker", 30)
        connect_worker.wait_for_line("serving connect-tls", 30)
        assert ", TLS)" in grpc_worker.output, grpc_worker.output  # the SDK's serving line says how
        assert ", mutual TLS)" in mutual_worker.output, mutual_worker.output
        yield Workers(f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}", f"https://127.0.0.1:{ports[2]}")
    finally:
        processes.kill_all()


def _sdk_worker(processes: Processes, port: int, cert: Certificate, client_ca: Path | None = None):
    """The Python SDK's passthrough worker, over TLS as its environment says."""
    env = {"ALERT_WORKER_TLS_CERT": str(cert.cert), "ALERT_WORKER_TLS_KEY": str(cert.key)}
    if client_ca is not None:
        env["ALERT_WORKER_TLS_CLIENT_CA"] = str(client_ca)
    return processes.start([sys.executable, str(EXAMPLES / "passthrough.py"), "--port", str(port)],
                           f"worker-{port}", env=env)


def assert_no_key_material(text: str, certs: Certificates) -> None:
    assert "PRIVATE KEY" not in text, text[-3000:]
    for key in certs.keys:
        for line in key.read_text().splitlines():
            if not line.startswith("-----"):
                assert line not in text, f"a line of {key.name} is in the sidecar's output"


def uri(bootstrap: str, topic: str) -> str:
    return f"kafka://{bootstrap}/{topic}"


def moves_every_alert(kafka_bootstrap, new_topic, procs, certs, worker: str, *tls: str) -> str:
    """ALERTS alerts in, through ``worker``, every one out; the sidecar's output."""
    source, sink = new_topic(partitions=2), new_topic(partitions=2)
    sent = produce_alerts(kafka_bootstrap, source, ALERTS, partitions=2)
    sidecar = procs.sidecar("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
                            "--worker", worker, "--worker-wait", WORKER_WAIT, *tls)
    out = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=30)
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(30) == 0, sidecar.output[-3000:]
    assert sorted(json.loads(m.value())["diaSourceId"] for m in out) == sorted(a["diaSourceId"] for a in sent)
    assert f"worker ready address={worker}" in sidecar.output
    assert_no_key_material(sidecar.output, certs)
    return sidecar.output


def test_grpc_over_tls(kafka_bootstrap, new_topic, procs, certs, workers):
    moves_every_alert(kafka_bootstrap, new_topic, procs, certs, workers.grpc,
                      "--worker-tls-ca", str(certs.worker.ca))


def test_grpc_over_mutual_tls(kafka_bootstrap, new_topic, procs, certs, workers):
    moves_every_alert(kafka_bootstrap, new_topic, procs, certs, workers.grpc_mutual,
                      "--worker-tls-ca", str(certs.worker.ca), "--worker-tls-server-name", WORKER_NAME,
                      "--worker-tls-cert", str(certs.sidecar.cert), "--worker-tls-key", str(certs.sidecar.key))


def test_connect_over_tls(kafka_bootstrap, new_topic, procs, certs, workers):
    output = moves_every_alert(kafka_bootstrap, new_topic, procs, certs, workers.connect,
                               "--worker-tls-ca", str(certs.worker.ca))
    assert "sdk='tests/connect_tls'" in output


# Each mistake: the worker it is made against, the TLS flags, the exit code and
# the words its one line must say.
MISTAKES = {
    "plaintext sidecar, TLS worker": (
        "grpc", [], 4, ["the worker speaks TLS and the sidecar plaintext", "give --worker-tls-ca FILE"]),
    "CA that did not sign the worker's certificate": (
        "grpc", ["--worker-tls-ca", "{other_ca}"], 4,
        ["the worker's certificate is not trusted", "unable to get local issuer certificate",
         "check --worker-tls-ca"]),
    "mutual-TLS worker, no client certificate": (
        "grpc_mutual", ["--worker-tls-ca", "{ca}", "--worker-tls-server-name", WORKER_NAME], 4,
        ["requires a client certificate", "give --worker-tls-cert FILE and --worker-tls-key FILE"]),
    "mutual-TLS worker, client certificate of another CA": (
        "grpc_mutual", ["--worker-tls-ca", "{ca}", "--worker-tls-server-name", WORKER_NAME,
                        "--worker-tls-cert", "{stranger_cert}", "--worker-tls-key", "{stranger_key}"], 4,
        ["refuses the sidecar's client certificate", "signed by a CA the worker trusts"]),
    "client certificate without its key": (
        "grpc", ["--worker-tls-ca", "{ca}", "--worker-tls-cert", "{sidecar_cert}"], 2,
        ["--worker-tls-cert and --worker-tls-key go together"]),
    "plaintext Connect sidecar, TLS worker": (
        "connect_plaintext", [], 4, ["the worker speaks TLS and the sidecar plaintext", "https://"]),
}


@dataclass(frozen=True)
class Outcome:
    address: str
    returncode: int
    output: str
    seconds: float


@pytest.fixture(scope="module")
def mistakes(kafka_bootstrap, certs, workers) -> dict[str, Outcome]:
    """Every mistake's sidecar run at once (each waits --worker-wait and more for Kafka): its outcome, by name."""
    topic = f"test-worker-tls-mistakes-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=30)
    files = {"ca": certs.worker.ca, "other_ca": certs.other_ca, "sidecar_cert": certs.sidecar.cert,
             "stranger_cert": certs.stranger.cert, "stranger_key": certs.stranger.key}
    addresses = {"grpc": workers.grpc, "grpc_mutual": workers.grpc_mutual,
                 "connect_plaintext": workers.connect.replace("https://", "http://")}

    def run(worker: str, flags: list[str]) -> Outcome:
        started = time.monotonic()
        done = subprocess.run([*SIDECAR, "--in", uri(kafka_bootstrap, topic), "--out",
                               uri(kafka_bootstrap, f"{topic}-out"), "--worker", addresses[worker],
                               "--worker-wait", WORKER_WAIT, *[flag.format(**files) for flag in flags]],
                              capture_output=True, text=True, timeout=90)
        return Outcome(addresses[worker], done.returncode, done.stdout + done.stderr, time.monotonic() - started)

    try:
        with ThreadPoolExecutor(len(MISTAKES)) as pool:
            running = {name: pool.submit(run, worker, flags) for name, (worker, flags, _, _) in MISTAKES.items()}
            yield {name: future.result() for name, future in running.items()}
    finally:
        admin.delete_topics([topic])


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_tls_mistake_is_one_clear_line(mistakes, certs, mistake):
    _, _, code, says = MISTAKES[mistake]
    outcome = mistakes[mistake]
    assert outcome.returncode == code, outcome.output[-3000:]
    assert "Traceback" not in outcome.output, outcome.output[-3000:]
    errors = [line for line in outcome.output.splitlines() if line.startswith("alert-sidecar: error:")]
    assert len(errors) == 1, outcome.output[-3000:]
    if code == 4:
        assert f"worker at {outcome.address} is not ready after {WORKER_WAIT} s: " in errors[0], errors[0]
    for words in says:
        assert words in errors[0], errors[0]
    assert_no_key_material(outcome.output, certs)
    # Found within --worker-wait; the rest is the sidecar's start and its Kafka consumer's close.
    assert outcome.seconds < float(WORKER_WAIT) + 30, outcome
