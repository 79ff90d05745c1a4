"""The Python SDK installs on its own, as a worker author installs it, and its workers work from there.

A fresh venv gets ``pip install ./sdks/python`` from PyPI, and nothing of the
sidecar: no confluent-kafka, no click, no orjson, no alert_sidecar. From that
venv the SDK's conformance worker passes the conformance vectors behind the
real sidecar (run from the project's venv), and the worker of
sdks/python/README.md serves (health SERVING, Describe) and decides on Rubin
alerts built by ``alert_worker.testing``, decoding them with the writer
schemas sent in the batch, as a sidecar sends them, since the fresh venv has
no lsst-alert-packet.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alert_worker import Verdict, codecs
from alert_worker.processing import result_from_proto
from alert_worker.testing import rubin_alert, rubin_sample
from alertsidecar.v1 import worker_pb2, worker_pb2_grpc

from .stage_support import ROOT, free_port

pytestmark = pytest.mark.kafka

# A venv, then grpcio, protobuf and fastavro from PyPI (about 15 MB) and a wheel of the SDK built here.
INSTALL_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory) -> Path:
    """The python of a fresh venv holding ``pip install ./sdks/python`` and nothing else."""
    venv = tmp_path_factory.mktemp("sdk-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                "./sdks/python"], cwd=ROOT, capture_output=True, text=True,
                               timeout=INSTALL_TIMEOUT_S)
    assert installed.returncode == 0, f"pip install ./sdks/python failed (is PyPI reachable?):\n" \
                                      f"{installed.stdout[-3000:]}{installed.stderr[-3000:]}"
    return python


def shown(python: Path, package: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", "show", "--disable-pip-version-check", package],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)
def test_the_sdk_alone_brings_nothing_of_the_sidecar(sdk_venv):
    assert shown(sdk_venv, "alert-worker").returncode == 0
    for package in ("confluent-kafka", "click", "orjson", "alert-sidecar"):
        result = shown(sdk_venv, package)
        assert result.returncode != 0 and "not found" in result.stderr, f"{package} is in the SDK's venv"
    imports = subprocess.run(
        [str(sdk_venv), "-c", "import alert_worker, alertsidecar.v1.worker_pb2, alert_worker.codecs.json_form as j\n"
                              "assert j.orjson is None\n"
                              "import importlib.util as u\n"
                              "print(u.find_spec('alert_sidecar'), u.find_spec('confluent_kafka'))"],
        cwd="/", capture_output=True, text=True, timeout=60)
    assert imports.returncode == 0, imports.stderr
    assert imports.stdout.split() == ["None", "None"]


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 600)
def test_the_conformance_worker_conforms_from_the_sdks_venv(sdk_venv, kafka_bootstrap, tmp_path):
    # The README's worker decides on Rubin alerts, not on the vectors' command
    # language: the SDK's conformance worker stands for it here, from the same venv.
    driver = subprocess.run(
        [sys.executable, "-m", "tests.conformance.driver", "--bootstrap", kafka_bootstrap, "--",
         str(sdk_venv), "tests/conformance/workers/conformance_worker.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    lines = driver.stdout.splitlines()
    assert driver.returncode == 0, f"conformance from the SDK's venv failed:\n{driver.stdout[-4000:]}" \
                                   f"{driver.stderr[-4000:]}"
    assert lines and not [line for line in lines if line.startswith("FAIL")]
    assert sum(line.startswith("ok ") for line in lines) >= 10


def readme_worker() -> str:
    """The first worker of sdks/python/README.md, as a worker author would copy it."""
    readme = (ROOT / "sdks" / "python" / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    [first] = [block for block in blocks if "alert_worker.serve(" in block][:1]
    return first


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)
def test_the_readme_worker_serves_and_decides_from_the_sdks_venv(sdk_venv, tmp_path):
    script = tmp_path / "bright.py"
    script.write_text(readme_worker())
    port = free_port()
    log = open(tmp_path / "bright.log", "wb")
    worker = subprocess.Popen([str(sdk_venv), str(script)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "ALERT_WORKER_PORT": str(port)}, start_new_session=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 30
            while health.Check(health_pb2.HealthCheckRequest(), timeout=5).status != \
                    health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, "the README's worker never said SERVING"
                time.sleep(0.1)
            stub = worker_pb2_grpc.AlertWorkerStub(channel)
            description = stub.Describe(worker_pb2.DescribeRequest(
                sidecar_protocol_version=worker_pb2.PROTOCOL_VERSION_1), timeout=10)
            assert (description.name, description.version) == ("bright", "1.0.0")
            assert list(description.accepts) == [codecs.AVRO_CONFLUENT]
            assert description.sdk.startswith("python/alert_worker ")

            fluxes = [1e6, 91_001.0, 91_000.0, 1_000.0, None]  # nJy; brighter than AB 19.0 is above 91,000
            alerts = []
            for offset, flux in enumerate(fluxes):
                record = rubin_sample("11.1")
                record["diaSource"]["psfFlux"] = flux
                alerts.append(rubin_alert(record, version="11.1", offset=offset).to_proto())
            # No lsst-alert-packet in that venv: the schema comes with the batch, as from a sidecar.
            batch = worker_pb2.AlertBatch(batch_id=1, alerts=alerts,
                                          schemas={1101: codecs.rubin_resolver().schema_text(1101)})
            answer = stub.ProcessBatch(batch, timeout=30)
    finally:
        os.killpg(worker.pid, 9)
        worker.wait(10)
        log.close()
    results = [result_from_proto(result) for result in answer.results]
    assert [r.verdict for r in results] == [Verdict.OK] * len(fluxes), (tmp_path / "bright.log").read_text()
    kept = [bool(r.outputs) and r.outputs[0].forward_input for r in results]
    assert kept == [True, True, False, False, False]
