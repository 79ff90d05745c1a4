"""``alert-pipeline export helm|k8s|compose``: the pipeline file as a chart, manifests or a compose file.

An invalid file is reported exactly as ``alert-pipeline validate`` reports it
(FILE:LINE diagnostics, exit 2): the export runs ``validate`` itself then.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from alert_sidecar import __version__
from alert_sidecar.exceptions import ConfigError
from alert_sidecar.pipeline import commands
from alert_sidecar.pipeline.export import compose as compose_export
from alert_sidecar.pipeline.export import helm as helm_export
from alert_sidecar.pipeline.export import images
from alert_sidecar.pipeline.export import kubernetes
from alert_sidecar.pipeline.export.documents import dump_all
from alert_sidecar.pipeline.export.values import HelmValues, Values
from alert_sidecar.pipeline.load import PipelineError, load
from alert_sidecar.pipeline.model import Pipeline


@click.group("export")
def export_group() -> None:
    """Write what runs the pipeline elsewhere: a Helm chart, Kubernetes manifests or a compose file."""


def _image_options(command):
    command = click.option("--registry", default="", metavar="PREFIX",
                           help="Prefix of every image name (a registry and path, e.g. ghcr.io/lsst-uk).")(command)
    command = click.option("--tag", default=__version__, show_default=True, help="The images' tag.")(command)
    command = click.option("--sidecar-image", metavar="IMAGE",
                           help="The sidecar's image. [default: [REGISTRY/]alert-sidecar:TAG]")(command)
    command = click.option("--worker-image", "worker_images", multiple=True, metavar="STAGE=IMAGE",
                           help="A stage's image (its SDK's image with your code). "
                                "[default: [REGISTRY/]alert-worker-LANG:TAG]")(command)
    command = click.option("--workdir", metavar="DIR",
                           help="Where the pipeline file's folder is in the images: worker commands run there. "
                                "[default: /app/ and the folder's path from here]")(command)
    return command


def _k8s_options(command):
    command = click.option("--namespace", "-n", metavar="NAME",
                           help="The namespace of every object. [default: the pipeline's name]")(command)
    command = click.option("--keda/--no-keda", default=True, show_default=True,
                           help="A KEDA ScaledObject per stage, scaling it on its consumer group's lag.")(command)
    command = click.option("--worker-probe/--no-worker-probe", default=False, show_default=True,
                           help="A readiness probe on the worker container too (gRPC, or TCP for Connect). The "
                                "kubelet probes the pod's IP: only for workers that listen on it.")(command)
    command = click.option("--lag-threshold", type=click.IntRange(1), default=kubernetes.LAG_THRESHOLD,
                           show_default=True, help="Alerts of lag per instance before KEDA adds one.")(command)
    return command


def _export_command(name: str, out, kubernetes_options: bool = True):
    """A command of the group: FILE, ``--out``, the image options and, for Kubernetes, its own."""
    def decorate(command):
        command = click.pass_context(command)
        command = _image_options(command)
        if kubernetes_options:
            command = _k8s_options(command)
        command = out(command)
        command = click.argument("file", type=click.Path(dir_okay=False))(command)
        return export_group.command(name)(command)
    return decorate


def _load(ctx: click.Context, file: str) -> Pipeline:
    """The pipeline, or ``validate``'s own report of what is wrong and its exit status 2."""
    from alert_sidecar.pipeline.cli import validate  # the group's module imports this one

    try:
        pipeline, warnings = load(file)
    except PipelineError:
        ctx.invoke(validate, file=file)
        sys.exit(ConfigError.exit_code)  # validate exits first; this only keeps the promise if it did not
    for diagnostic in warnings:
        click.echo(diagnostic.format(), err=True)
    return pipeline


def _pairs(items: tuple[str, ...], option: str, pipeline: Pipeline) -> dict[str, str]:
    result = {}
    for item in items:
        stage, sep, value = item.partition("=")
        if not sep or not value:
            raise click.BadParameter(f"{item!r} is not STAGE=IMAGE", param_hint=option)
        if stage not in pipeline.stages:
            raise click.BadParameter(f"no stage {stage!r} in the file (stages: {', '.join(pipeline.stages)})",
                                     param_hint=option)
        result[stage] = value
    return result


def _workdir(pipeline: Pipeline, workdir: str | None) -> str:
    if workdir:
        return workdir
    folder = os.path.relpath(Path(pipeline.path).resolve().parent, Path.cwd())
    if folder.startswith(".."):
        raise ConfigError(f"{pipeline.path} is not below this folder: give --workdir, the place of its folder "
                          "in the images")
    return kubernetes.WORKDIR if folder == "." else f"{kubernetes.WORKDIR}/{Path(folder).as_posix()}"


def _options(pipeline: Pipeline, namespace, keda, worker_probe, lag_threshold, registry, tag, sidecar_image,
             worker_images, workdir) -> kubernetes.Options:
    overrides = _pairs(worker_images, "--worker-image", pipeline)
    return kubernetes.Options(
        namespace=namespace or kubernetes.dns_name(pipeline.name),
        sidecar_image=sidecar_image or images.image(images.SIDECAR, tag, registry),
        worker_images=kubernetes.worker_images(pipeline, tag, registry, overrides),
        keda=keda, worker_probe=worker_probe, lag_threshold=lag_threshold,
        workdir=_workdir(pipeline, workdir))


def _fail(err: ConfigError) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(err.exit_code)


@_export_command("k8s", click.option(
    "--out", "-o", required=True, metavar="FILE_OR_DIR",
    help="A .yaml file for one stream of objects, '-' for stdout, else a folder of one file per object."))
def k8s(ctx: click.Context, file: str, out: str, **options) -> None:
    """Kubernetes manifests of FILE: Deployments, Strimzi resources, KEDA ScaledObjects, a PodMonitor."""
    pipeline = _load(ctx, file)
    try:
        objects = [m.obj for m in kubernetes.manifests(pipeline, _options(pipeline, **options), Values())]
    except ConfigError as err:
        _fail(err)
    if out == "-":
        click.echo(dump_all(objects), nl=False)
        return
    target = Path(out)
    if target.suffix in (".yaml", ".yml"):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dump_all(objects), encoding="utf-8")
    else:
        target.mkdir(parents=True, exist_ok=True)
        for index, obj in enumerate(objects):
            (target / kubernetes.file_name(index, obj)).write_text(dump_all([obj]), encoding="utf-8")
    click.echo(f"{file}: {len(objects)} objects written to {out}")


@_export_command("helm", click.option(
    "--out", "-o", required=True, type=click.Path(file_okay=False), metavar="DIR",
    help="The chart's folder (made if missing; its templates are replaced)."))
def helm(ctx: click.Context, file: str, out: str, **options) -> None:
    """A Helm chart of FILE: with its default values it renders what `export k8s` writes."""
    pipeline = _load(ctx, file)
    values = HelmValues()
    try:
        manifests = kubernetes.manifests(pipeline, _options(pipeline, **options), values)
        written = helm_export.write_chart(pipeline, manifests, values, Path(out))
    except ConfigError as err:
        _fail(err)
    click.echo(f"{file}: a chart of {len(manifests)} objects in {out} ({len(written)} files)")


@_export_command("compose", click.option(
    "--out", "-o", required=True, type=click.Path(dir_okay=False), metavar="FILE",
    help="The compose file to write ('-' for stdout)."), kubernetes_options=False)
def compose(ctx: click.Context, file: str, out: str, registry: str, tag: str, sidecar_image: str | None,
            worker_images: tuple[str, ...], workdir: str | None) -> None:
    """A compose file of FILE: Kafka in containers for its local clusters, a service per stage."""
    pipeline = _load(ctx, file)
    out_dir = Path.cwd() if out == "-" else Path(out).parent
    try:
        stage_images = kubernetes.worker_images(pipeline, tag, registry, _pairs(worker_images, "--worker-image",
                                                                                pipeline))
        text = compose_export.render(pipeline, stage_images, sidecar_image or images.image(images.SIDECAR, tag,
                                                                                           registry),
                                     _workdir(pipeline, workdir), out_dir)
    except ConfigError as err:
        _fail(err)
    if out == "-":
        click.echo(text, nl=False)
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text, encoding="utf-8")
    stages = [stage for stage in pipeline.stages.values() if commands.worker_container_command(stage) is not None]
    click.echo(f"{file}: {len(pipeline.stages)} stages ({len(stages)} with a worker) written to {out}")
