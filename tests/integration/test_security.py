"""The sidecar on a Kafka cluster that asks for SASL/SCRAM-SHA-512 over TLS, as Rubin's and Lasair's do.

A broker of the test's own (LocalKafka with a SASL_SSL client listener, a CA
and a certificate the test makes) and the session's plaintext cluster: the
real sidecar reads and writes on the first with a password read from a file,
and between the two, where the plaintext cluster's clients get none of the
first's settings. Every test searches what the sidecar wrote for the secrets.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from alert_sidecar.kafka.local import LocalKafka, LocalKafkaError, SaslSsl
from tests.certificates import CertificateAuthority

from .stage_support import SIDECAR, produce_alerts, read_topic

pytestmark = pytest.mark.kafka

USER = "alice"
PASSWORD = "alice-scram-5b2e9d41"
WRONG_PASSWORD = "not-alices-7c1f03aa"
PASSTHROUGH = ["--", sys.executable, "examples/python/passthrough.py"]


@dataclass(frozen=True)
class ScramKafka:
    bootstrap: str
    client: dict[str, str]  # what a test's own clients connect with
    ca: Path
    folder: Path

    def password_file(self, password: str = PASSWORD) -> Path:
        path = self.folder / f"password-{uuid.uuid4().hex[:8]}"
        path.write_text(password + "\n")  # as `echo` writes it: the newline is not part of the password
        return path

    def flags(self, name: str, password_file: Path, ca: Path | None = None) -> list[str]:
        """The sidecar's options for this cluster: the password from a file, the CA from a file."""
        settings = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": USER,
                    "sasl.password": f"@file:{password_file}", "ssl.ca.location": str(ca or self.ca)}
        return ["--cluster", f"{name}={self.bootstrap}",
                *[arg for key, value in settings.items() for arg in ("--cluster-config", f"{name}:{key}={value}")]]

    def new_topic(self, partitions: int) -> str:
        topic = f"secure-{uuid.uuid4().hex[:10]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap, **self.client})
        admin.create_topics([NewTopic(topic, partitions)])[topic].result(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = admin.list_topics(topic, timeout=10).topics.get(topic)
            if found is not None and found.error is None and all(p.leader >= 0 for p in found.partitions.values()):
                return topic
            time.sleep(0.1)
        raise TimeoutError(f"topic {topic} has no leaders after 30 s")


@pytest.fixture(scope="module")
def scram_kafka(tmp_path_factory) -> ScramKafka:
    folder = tmp_path_factory.mktemp("scram-kafka")
    authority = CertificateAuthority(folder / "tls")
    broker = authority.issue("broker")
    security = SaslSsl({USER: PASSWORD}, broker.chain_and_key)
    cluster = LocalKafka(folder / "cluster", security=security)
    try:
        try:
            bootstrap = cluster.up()
        except LocalKafkaError as exc:
            pytest.fail(f"cannot start a local Kafka with SASL_SSL: {exc}", pytrace=False)
        yield ScramKafka(bootstrap, security.client_settings(USER, authority.cert), authority.cert, folder)
    finally:
        cluster.down()


def assert_no_secret(text: str) -> None:
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in text, f"a password is in the sidecar's output:\n{text[-2000:]}"


def test_a_stage_reads_and_writes_over_sasl_ssl(scram_kafka, procs):
    source, sink = scram_kafka.new_topic(3), scram_kafka.new_topic(3)
    sent = produce_alerts(scram_kafka.bootstrap, source, 600, partitions=3, config=scram_kafka.client)
    sidecar = procs.sidecar(*scram_kafka.flags("rubin", scram_kafka.password_file()),
                            "--in", f"kafka://rubin/{source}", "--out", f"kafka://rubin/{sink}",
                            "--log-level", "debug", *PASSTHROUGH)
    out = read_topic(scram_kafka.bootstrap, sink, minimum=len(sent), timeout=90, config=scram_kafka.client)
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(30) == 0, sidecar.output[-3000:]
    assert sorted(json.loads(m.value())["diaSourceId"] for m in out) == sorted(a["diaSourceId"] for a in sent)
    assert f"in=kafka://rubin/{source}" in sidecar.output  # the stage names the cluster, not its credentials
    assert_no_secret(sidecar.output)


def test_between_a_scram_cluster_and_a_plaintext_one(scram_kafka, kafka_bootstrap, new_topic, procs):
    """In on the SCRAM cluster, out and dead letters on the plaintext one, whose clients get no credentials.

    Given the first cluster's security.protocol, the second's producer could not
    connect at all; given its password, it would be in that client's settings.
    """
    source = scram_kafka.new_topic(2)
    sink, dead = new_topic(partitions=2), new_topic(partitions=2)
    sent = produce_alerts(scram_kafka.bootstrap, source, 400, partitions=2, config=scram_kafka.client)
    sidecar = procs.sidecar(*scram_kafka.flags("rubin", scram_kafka.password_file()),
                            "--in", f"kafka://rubin/{source}", "--out", f"kafka://{kafka_bootstrap}/{sink}",
                            "--dead-letter", f"kafka://{kafka_bootstrap}/{dead}", *PASSTHROUGH)
    out = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=90)
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(30) == 0, sidecar.output[-3000:]
    assert {json.loads(m.value())["diaSourceId"] for m in out} == {a["diaSourceId"] for a in sent}
    assert_no_secret(sidecar.output)


@pytest.mark.parametrize("mistake, says", [
    ("wrong password", "the cluster refused the client's login"),
    ("another CA", "TLS failed"),
])
def test_a_refused_login_is_one_line_without_the_password(scram_kafka, tmp_path, mistake, says):
    source = scram_kafka.new_topic(1)
    if mistake == "wrong password":
        flags = scram_kafka.flags("rubin", scram_kafka.password_file(WRONG_PASSWORD))
    else:
        flags = scram_kafka.flags("rubin", scram_kafka.password_file(),
                                  ca=CertificateAuthority(tmp_path / "other", name="another CA").cert)
    result = subprocess.run([*SIDECAR, *flags, "--in", f"kafka://rubin/{source}", "--out", f"kafka://rubin/{source}.out",
                             "--worker", "127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("alert-sidecar: error:")]
    assert len(errors) == 1, result.stderr
    assert f"cannot reach Kafka at {scram_kafka.bootstrap} (input buffer kafka://rubin/{source})" in errors[0]
    assert says in errors[0], errors[0]
    assert len(result.stderr.splitlines()) <= 8, result.stderr  # librdkafka's retries are said once
    assert_no_secret(result.stderr)
