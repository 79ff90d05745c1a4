"""The container images the exports name, and the Dockerfile in ``deploy/docker/`` that makes each.

``alert-sidecar:VERSION`` is the sidecar (and the Python SDK it depends on);
each ``alert-worker-LANG:VERSION`` is built on it with that language's SDK
and the repository's examples, so that one image runs a worker container in
Kubernetes or a whole stage, sidecar and worker, in compose.
"""

from __future__ import annotations

from alert_sidecar import __version__

SIDECAR = "alert-sidecar"
# Image name -> its Dockerfile, from the repository root.
DOCKERFILES = {
    SIDECAR: "deploy/docker/sidecar.Dockerfile",
    "alert-worker-python": "deploy/docker/worker-python.Dockerfile",
    "alert-worker-java": "deploy/docker/worker-java.Dockerfile",
    "alert-worker-r": "deploy/docker/worker-r.Dockerfile",
}
LANGUAGES = ("python", "java", "r")


def image(name: str, tag: str = __version__, registry: str = "") -> str:
    """``[REGISTRY/]NAME:TAG``."""
    return f"{registry.rstrip('/')}/{name}:{tag}" if registry else f"{name}:{tag}"


def worker_image_name(language: str | None) -> str | None:
    """``alert-worker-LANG`` for a language with an SDK here (the loader tells it from the command), else None."""
    return f"alert-worker-{language}" if language in LANGUAGES else None
