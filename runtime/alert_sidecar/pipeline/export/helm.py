"""``export helm``: a chart whose templates, with its default values, render the objects of ``export k8s``.

The templates are not written by hand: ``kubernetes.manifests`` builds the
objects with ``HelmValues``, which turns each setting a user may change
(images, replicas, resources, KEDA, bootstraps, the secrets' keys) into a
value of values.yaml, documented there and in the chart's README.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alert_sidecar import __version__
from alert_sidecar.pipeline.export.kubernetes import Manifest, file_name
from alert_sidecar.pipeline.export.naming import dns_name
from alert_sidecar.pipeline.export.values import HelmValues, Setting
from alert_sidecar.pipeline.model import Pipeline

HELPERS = """{{/*
The namespace every object of the chart is in: the release's.
*/}}
{{- define "alert-pipeline.namespace" -}}
{{ .Release.Namespace }}
{{- end }}
"""


def write_chart(pipeline: Pipeline, manifests: list[Manifest], values: HelmValues, out: Path) -> list[Path]:
    """Write the chart into ``out`` (made if missing); return the files written."""
    name = dns_name(pipeline.name)
    templates = out / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    for old in templates.glob("*.yaml"):  # a chart exported again must not keep objects no longer in the file
        old.unlink()
    files = {
        out / "Chart.yaml": yaml.safe_dump({
            "apiVersion": "v2", "name": name, "type": "application", "version": __version__,
            "appVersion": __version__,
            "description": f"The alert pipeline {pipeline.name} ({pipeline.summary()}), exported by alert-pipeline",
        }, sort_keys=False),
        templates / "_helpers.tpl": HELPERS,
        templates / "NOTES.txt": _notes(pipeline, manifests),
    }
    for index, manifest in enumerate(manifests):
        text = values.template(manifest.obj)
        if manifest.toggle is not None:
            path, default, doc = manifest.toggle
            text = f"{{{{- if {values.condition(path, default, doc)} }}}}\n{text}{{{{- end }}}}\n"
        files[templates / file_name(index, manifest.obj)] = text
    files[out / "values.yaml"] = _values_yaml(pipeline, values)
    files[out / "README.md"] = _readme(pipeline, values)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)


def _values_yaml(pipeline: Pipeline, values: HelmValues) -> str:
    """values.yaml with a comment on every key."""
    lines = [f"# Values of the {pipeline.name} pipeline's chart. Each default is what `alert-pipeline export k8s`",
             "# writes; every key is described above it and in README.md."]
    docs = {setting.path: setting.doc for setting in values.settings.values()}

    def write(node: dict[str, Any], path: tuple[str, ...], indent: int) -> None:
        for key, value in node.items():
            here = (*path, key)
            pad = "  " * indent
            if isinstance(value, dict):
                lines.append(f"{pad}{_key(key)}:")
                write(value, here, indent + 1)
            else:
                lines.append(f"{pad}# {docs[here]}")
                lines.append(f"{pad}{_key(key)}: {_scalar(value)}")

    write(values.tree(), (), 0)
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return yaml.safe_dump(key).strip().removesuffix("...").strip()


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _readme(pipeline: Pipeline, values: HelmValues) -> str:
    rows = "\n".join(f"| `{'.'.join(setting.path)}` | `{_scalar(setting.default)}` | {setting.doc} |"
                     for setting in sorted(values.settings.values(), key=_order))
    return f"""# {dns_name(pipeline.name)}

The alert pipeline `{pipeline.name}` ({pipeline.summary()}), exported from
`{pipeline.path}` by `alert-pipeline export helm`. Export it again after
changing the pipeline file; change these values for what the file does not
say. It needs the Strimzi, KEDA and Prometheus operators' custom resource
definitions in the cluster (see "Beyond one machine" in docs/pipelines.md).

```sh
helm install {dns_name(pipeline.name)} DIR --namespace NAMESPACE --create-namespace
```

## Values

| key | default | what it is |
| --- | --- | --- |
{rows}
"""


def _order(setting: Setting) -> tuple[str, ...]:
    return setting.path


def _notes(pipeline: Pipeline, manifests: list[Manifest]) -> str:
    deployments = [m.name for m in manifests if m.kind == "Deployment"]
    secrets = [m.name for m in manifests if m.kind == "Secret"]
    lines = [f"The pipeline {pipeline.name} is installed in {{{{ .Release.Namespace }}}}: "
             f"{len(deployments)} stage(s).", "",
             "Each stage is ready when its sidecar's /ready answers 200 (its loop runs and its worker is healthy):",
             f"  kubectl -n {{{{ .Release.Namespace }}}} get deployments {' '.join(deployments)}"]
    if secrets:
        lines += ["", "These Secrets were made empty: fill in their keys before the stages can log in:",
                  *(f"  kubectl -n {{{{ .Release.Namespace }}}} edit secret {name}" for name in secrets)]
    return "\n".join(lines) + "\n"
