"""What the exported objects are called, and the labels that tie a stage's objects together."""

from __future__ import annotations

import hashlib
import re

from alert_sidecar import __version__

# Kubernetes object names and label values: at most 63 characters of
# [a-z0-9-] (RFC 1123 labels), the strictest of the kinds exported.
MAX_NAME = 63
# The label every exported object carries, and the value a PodMonitor selects on.
APP = "alert-sidecar"


def dns_name(*parts: str) -> str:
    """``three-stages-filter``: parts joined by '-', valid as any object's name.

    Pipeline and stage names may hold '_' (the file allows it); a name that
    would pass 63 characters keeps its start and gets a hash of the whole, so
    that two long names never meet.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME - 9].rstrip('-')}-{digest}"


def selector_labels(pipeline: str, stage: str | None = None) -> dict[str, str]:
    """The labels a Deployment selects its pods by (and a PodMonitor, without ``stage``)."""
    labels = {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": dns_name(pipeline)}
    if stage is not None:
        labels["app.kubernetes.io/component"] = dns_name(stage)
    return labels


def labels(pipeline: str, stage: str | None, managed_by: str) -> dict[str, str]:
    """The recommended ``app.kubernetes.io/*`` labels of one object."""
    return {**selector_labels(pipeline, stage), "app.kubernetes.io/part-of": dns_name(pipeline),
            "app.kubernetes.io/version": __version__, "app.kubernetes.io/managed-by": managed_by}
