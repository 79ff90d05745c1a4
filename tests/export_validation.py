"""Offline validation of exported objects against real schemas (tests/data/schemas/README.md says whence).

Kubernetes' own kinds are checked by kubernetes-validate (the upstream
OpenAPI schemas it bundles, strict: an unknown field is an error); the
Strimzi, KEDA and Prometheus-operator kinds by the JSON schemas of their
CRDs, vendored here; compose files by the compose-spec's JSON schema.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

SCHEMAS = Path(__file__).parent / "data" / "schemas"
# The Kubernetes version the manifests are checked against: the oldest with
# every field they use (the preStop sleep action is beta and on from 1.30).
KUBERNETES_VERSION = "1.30.0"
# (apiVersion, kind) -> the vendored JSON schema of that custom resource.
CRD_SCHEMAS = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): "crds/kafka.strimzi.io/kafka_v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): "crds/kafka.strimzi.io/kafkanodepool_v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "crds/kafka.strimzi.io/kafkatopic_v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): "crds/kafka.strimzi.io/kafkauser_v1beta2.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "crds/keda.sh/scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "crds/keda.sh/triggerauthentication_v1alpha1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "crds/monitoring.coreos.com/podmonitor_v1.json",
}
COMPOSE_SCHEMA = "compose/compose-spec.json"


@cache
def _schema(relative: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / relative).read_text(encoding="utf-8"))


def problems(obj: dict[str, Any]) -> list[str]:
    """What is wrong with one exported object; empty when it is valid."""
    where = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_SCHEMAS:
        validator = jsonschema.Draft7Validator(_schema(CRD_SCHEMAS[key]))
        found = [f"{where}: {'.'.join(map(str, error.absolute_path))}: {error.message}"
                 for error in validator.iter_errors(obj)]
        # The CRDs' schemas leave metadata to the API server: check what it would.
        name = obj.get("metadata", {}).get("name", "")
        if not name or len(name) > 253:
            found.append(f"{where}: metadata.name is missing or too long")
        return found
    if str(key[0]).endswith((".io/v1beta2", ".sh/v1alpha1", "coreos.com/v1")) or key[0] is None:
        return [f"{where}: no vendored schema for {key}"]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{where}: {'.'.join(map(str, err.path))}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [f"{where}: no Kubernetes schema: {err}"]
    return []


def compose_problems(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema(COMPOSE_SCHEMA))
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]
