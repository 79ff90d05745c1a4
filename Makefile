# The two commands a new user needs are `make demo` and `make test`.
# Everything they need is installed here, into .venv, from PyPI; Kafka's jars
# are fetched from Maven Central by `alert-sidecar kafka up` into a cache.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all setup demo test test-unit test-integration proto kafka-up kafka-down clean

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

kafka-up: $(STAMP)
	$(VENV)/bin/alert-sidecar kafka up

kafka-down: $(STAMP)
	$(VENV)/bin/alert-sidecar kafka down

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
