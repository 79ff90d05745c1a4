# The two commands a new user needs are `make demo` and `make test`.
# Everything they need is installed here: Python packages into .venv from PyPI;
# Kafka's jars, gRPC-Java and Avro from Maven Central into caches; R and its
# packages from Debian (sdks/r/r.mk, as root).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all setup demo demo-stage lint tools-setup chromium-setup helm test test-unit test-integration proto kafka-up kafka-down bench bench-quick chaos chaos-quick seed-evaluation clean

# The Java SDK and examples (Maven), and the R SDK (R and its packages from Debian).
include sdks/java/java.mk
include sdks/r/r.mk

all: test

# setup.py and the .pyx: the compiled decoder is built by the install, so a
# change to its source installs again.
$(STAMP): pyproject.toml sdks/python/pyproject.toml setup.py runtime/alert_sidecar/formats/_avro_projection.pyx
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./sdks/python
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Regenerates what is made from proto/ (the contract's one copy): the Python
# binding (the R package copies the .proto itself when installed).
proto: $(STAMP)
	PYTHON=$(abspath $(PY)) tools/generate_proto.sh

# The seed's use cases as one pipeline (examples/pipelines/lasair.yaml) on two
# local clusters, with its dashboard: examples/lasair_demo.py. Needs the Java
# cross-match and the R filter built.
demo: $(STAMP) java r-setup r-install
	$(PY) examples/lasair_demo.py

# One stage: the brightness filter behind one sidecar on one local Kafka.
demo-stage: $(STAMP)
	$(PY) examples/demo.py

# ruff, configured in pyproject.toml (generated code excluded).
lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Debian's kcat: the tests write records with header bytes no Python client
# writes (keys that are not UTF-8), as operators do with it.
tools-setup:
	@command -v kcat >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kcat; }

# Debian's Chromium: the dashboard test (tests/integration/test_dashboard.py)
# loads the page in a real headless browser, driven over the DevTools protocol.
# Debian's own build, as root like kcat: no test framework's browser download.
chromium-setup:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

# helm, for the chart tests (tests/unit/test_export_helm.py): built from the Go
# module proxy with the Go toolchain into a cache shared by every checkout, as
# Maven's ~/.m2 is; v4 as the Helm project now recommends. About 3.5 minutes
# on an empty Go cache on this 2-core machine, a second when it is built.
HELM_VERSION := v4.3.2
HELM_DIR := $(HOME)/.cache/alert-sidecar/tools/helm-$(HELM_VERSION)
HELM := $(HELM_DIR)/helm
$(HELM):
	GOBIN=$(HELM_DIR) GOFLAGS=-buildvcs=false go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

helm: $(HELM)

# Everything: the Java SDK's JUnit tests, then every Python, integration and
# conformance test (which start the Java and R workers built here; the R
# package's testthat tests run from tests/integration/test_r_sdk.py).
test: $(STAMP) lint tools-setup chromium-setup helm java-test r-setup r-install
	$(PY) -m pytest -q -ra

test-unit: $(STAMP)
	$(PY) -m pytest -q -ra tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest -q -ra tests/integration

# Quix Streams pins an older confluent-kafka than ours, so the peer it is
# compared with lives in a venv of its own.
QUIX_VENV := .venv-quix
$(QUIX_VENV)/bin/python:
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install --quiet 'quixstreams>=3,<4'

# The comparison suite (raw confluent-kafka loop, Quix Streams, alert-sidecar)
# on one local Kafka; the last line is one JSON object of the figures.
bench-quick: $(STAMP) $(QUIX_VENV)/bin/python java r-setup r-install
	QUIX_PYTHON=$(abspath $(QUIX_VENV))/bin/python $(PY) bench/compare.py --quick

bench: $(STAMP) $(QUIX_VENV)/bin/python java r-setup r-install
	QUIX_PYTHON=$(abspath $(QUIX_VENV))/bin/python $(PY) bench/compare.py

# The fault-injection suite (bench/chaos.py): sidecars, workers and brokers
# killed, frozen and stopped on local clusters of its own, and every alert
# looked for in the output and dead-letter buffers; one line per scenario,
# then one JSON object of the figures; exit 1 if an alert is missing.
# Quick: 20,000 alerts a scenario, under 6 minutes; full: 100,000.
# The seed's evaluation (bench/seed_evaluation.py): examples/pipelines/seed-evaluation.yaml
# through `alert-pipeline up` on a 4-broker local cluster at 16, 32, 64 and
# 128 partitions, against a raw loop, measured with `alert-sidecar bench`.
seed-evaluation: $(STAMP)
	$(PY) bench/seed_evaluation.py

chaos-quick: $(STAMP)
	$(PY) bench/chaos.py --quick

chaos: $(STAMP)
	$(PY) bench/chaos.py

kafka-up: $(STAMP)
	$(VENV)/bin/alert-sidecar kafka up

kafka-down: $(STAMP)
	$(VENV)/bin/alert-sidecar kafka down

clean:
	rm -rf $(VENV) $(QUIX_VENV) .pytest_cache build *.egg-info .rlib sdks/python/build sdks/python/*.egg-info
	-$(MVN) $(MVN_FLAGS) -q -f sdks/java/pom.xml clean
	-$(MVN) $(MVN_FLAGS) -q -f examples/java/pom.xml clean
