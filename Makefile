# The two commands a new user needs are `make demo` and `make test`.
# Everything they need is installed here, into .venv, from PyPI; Kafka's jars
# are fetched from Maven Central by `alert-sidecar kafka up` into a cache.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all setup demo test test-unit test-integration proto kafka-up kafka-down bench bench-quick clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Regenerates the Python binding of proto/ (the only copy of the contract).
proto: $(STAMP)
	PYTHON=$(abspath $(PY)) tools/generate_proto.sh

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
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
bench-quick: $(STAMP) $(QUIX_VENV)/bin/python
	QUIX_PYTHON=$(abspath $(QUIX_VENV))/bin/python $(PY) bench/compare.py --quick

bench: $(STAMP) $(QUIX_VENV)/bin/python
	QUIX_PYTHON=$(abspath $(QUIX_VENV))/bin/python $(PY) bench/compare.py

kafka-up: $(STAMP)
	$(VENV)/bin/alert-sidecar kafka up

kafka-down: $(STAMP)
	$(VENV)/bin/alert-sidecar kafka down

clean:
	rm -rf $(VENV) $(QUIX_VENV) .pytest_cache build *.egg-info
