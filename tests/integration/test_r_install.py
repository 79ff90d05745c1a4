"""The R package installed as R users install it: `R CMD INSTALL sdks/r` into a fresh library, nothing else.

No `make r-install`, no ALERTWORKER_PROTO_DIR, no option: the package must
read the contract from the copy it ships. Every R process here sees only the
fresh library and the system's (RProtoBuf, httpuv, jsonlite), and runs outside
the repository. Then the conformance worker installed with the package passes
the vectors, and the filter sdks/r/README.md opens with keeps exactly the
alerts it says behind a real sidecar on the real Kafka (a filter of fluxes
cannot answer the vectors, which ask each alert for a verdict of its own).
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from alert_sidecar.simulate.rubin import RubinAlertFactory

from tests.conformance.driver import run_conformance
from tests.r_support import ROOT, install
from .stage_support import read_topic

pytestmark = pytest.mark.kafka

README = ROOT / "sdks" / "r" / "README.md"
# The README's filter keeps alerts whose diaSource.psfFlux is above this (AB 20, in nJy).
BRIGHT_NJY = 36300.0


@pytest.fixture(scope="module")
def fresh_library(tmp_path_factory) -> Path:
    library = tmp_path_factory.mktemp("rlib")
    install(library)
    return library


def _r_command(library: Path, cwd: Path, *argv: str) -> list[str]:
    """``argv`` with R seeing only ``library`` besides the system's, from ``cwd``, without ALERTWORKER_PROTO_DIR."""
    # R_LIBS_USER too, so that no user library of this machine can supply the package.
    return ["env", "-u", "ALERTWORKER_PROTO_DIR", "-C", str(cwd), f"R_LIBS={library}", f"R_LIBS_USER={library}",
            *argv]


def test_the_installed_package_finds_the_contract_it_ships(fresh_library, tmp_path):
    probe = ('library(alertworker)\n'
             'stopifnot(is.null(getOption("alertworker.proto_dir")), !nzchar(Sys.getenv("ALERTWORKER_PROTO_DIR")))\n'
             'cat(find.package("alertworker"), proto_dir(), sep = "\\n")\n'
             'invisible(alertworker:::contract())\n')
    done = subprocess.run(_r_command(fresh_library, tmp_path, "Rscript", "-e", probe),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    package, proto = done.stdout.split()
    assert Path(package) == fresh_library / "alertworker"
    assert Path(proto) == fresh_library / "alertworker" / "proto"
    shipped = Path(proto) / "alertsidecar" / "v1" / "worker.proto"
    assert shipped.read_bytes() == (ROOT / "proto" / "alertsidecar" / "v1" / "worker.proto").read_bytes()


def test_the_installed_conformance_worker_conforms(fresh_library, kafka_bootstrap, tmp_path):
    worker = fresh_library / "alertworker" / "conformance" / "conformance_worker.R"
    command = _r_command(fresh_library, tmp_path, "Rscript", str(worker))
    report = run_conformance(kafka_bootstrap, command, sidecar_args=["--worker-protocol", "connect"],
                             log_dir=tmp_path)
    assert report.ok, f"the freshly installed R conformance worker fails:\n{report.failure_text()}"


def _readme_filter() -> str:
    """The first R block of sdks/r/README.md, the filter a reader starts with."""
    blocks = re.findall(r"^```r\n(.*?)^```$", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert blocks and "serve(" in blocks[0], "sdks/r/README.md no longer opens with a filter that serve()s"
    assert str(int(BRIGHT_NJY)) in blocks[0].replace(",", ""), "the README's filter has a new threshold"
    return blocks[0]


def test_the_readme_filter_keeps_exactly_the_bright_alerts(fresh_library, kafka_bootstrap, new_topic, procs,
                                                           tmp_path):
    script = tmp_path / "bright.R"
    script.write_text(_readme_filter())
    source, sink = new_topic(partitions=2), new_topic(partitions=2)
    # Fluxes on both sides of the threshold, the threshold itself (not above it) and none at all.
    fluxes = [BRIGHT_NJY * 2, BRIGHT_NJY + 1, BRIGHT_NJY, BRIGHT_NJY - 1, 2_000.0, None]
    factory = RubinAlertFactory(cutouts=False, prv_sources=3, seed=21)
    values, kept_values = [], []
    for i in range(120):
        record = factory.make(i)
        flux = fluxes[i % len(fluxes)]
        record["diaSource"]["psfFlux"] = flux
        values.append(factory.encode(record))
        if flux is not None and flux > BRIGHT_NJY:
            kept_values.append(values[-1])
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(source, value=value, partition=i % 2)
    assert producer.flush(30) == 0

    sidecar = procs.sidecar("--in", f"kafka://{kafka_bootstrap}/{source}", "--out", f"kafka://{kafka_bootstrap}/{sink}",
                            "--worker-protocol", "connect", "--worker-wait", "120",
                            "--", *_r_command(fresh_library, tmp_path, "Rscript", str(script)))
    kept = read_topic(kafka_bootstrap, sink, minimum=len(kept_values), timeout=180, settle=3)
    # Forwarded alerts are the input records, byte for byte: exactly the bright ones, once each.
    assert Counter(m.value() for m in kept) == Counter(kept_values)
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(60) == 0, sidecar.output[-3000:]
    assert "dead_lettered=0" in sidecar.output
    assert "serving worker bright 1.0" in sidecar.output, sidecar.output[-3000:]
