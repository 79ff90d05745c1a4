"""``alert-pipeline``: the command for a whole pipeline file (``validate`` for now).

Diagnostics go to stderr as ``FILE:LINE: error: ...`` and ``FILE:LINE:
warning: ...``, which editors and CI logs link to the line; the summary goes
to stdout. Exit status: 0 valid, 2 invalid (ConfigError's), and never a
traceback for anything a file can hold.
"""

from __future__ import annotations

import sys

import click

from alert_sidecar.exceptions import ConfigError
from alert_sidecar.pipeline.load import PipelineError, load
from alert_sidecar.pipeline.model import plural


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Work on a pipeline: stages, their buffers and clusters, all in one YAML file."""


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check FILE: its YAML, its schema, names, loops and settings; print what is wrong with its line."""
    try:
        pipeline, warnings = load(file)
    except PipelineError as err:
        for diagnostic in [*err.warnings, *err.errors]:
            click.echo(diagnostic.format(), err=True)
        click.echo(f"{file}: invalid ({plural(len(err.errors), 'error')}"
                   f"{', ' + plural(len(err.warnings), 'warning') if err.warnings else ''})", err=True)
        sys.exit(ConfigError.exit_code)
    for diagnostic in warnings:
        click.echo(diagnostic.format(), err=True)
    suffix = f" ({plural(len(warnings), 'warning')})" if warnings else ""
    click.echo(f"{file}: {pipeline.summary()}: valid{suffix}")
