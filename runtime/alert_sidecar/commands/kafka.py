"""``alert-sidecar kafka up|status|down``: a local Kafka cluster from the command line.

The cluster itself is local_kafka.py; this module only turns flags into calls
and results into lines and exit codes. Progress goes to stderr, so the last
line on stdout of ``up`` and ``status`` is the bootstrap servers alone:
``BOOTSTRAP=$(alert-sidecar kafka up)`` works in a script.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

import click

from alert_sidecar.exceptions import SidecarError
from alert_sidecar.kafka.local import DEFAULT_VERSION, LocalKafka, default_state_dir

_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the cluster's data, logs and state file live "
         "[default: $ALERT_SIDECAR_HOME/kafka or ~/.cache/alert-sidecar/cluster].",
)


def _progress(message: str) -> None:
    click.echo(message, err=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """A user's error (no java, a dead broker) is one message and its exit code, not a traceback."""
    try:
        yield
    except SidecarError as exc:
        click.echo(f"alert-sidecar: error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None


@click.group(name="kafka")
def kafka_group() -> None:
    """A local Apache Kafka cluster (KRaft) for development, tests and the demo."""


@kafka_group.command()
@click.option("--brokers", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many brokers, each its own JVM on 127.0.0.1.")
@click.option("--kafka-home", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Run the Apache Kafka release in DIR (its libs/) instead of fetching one with mvn.")
@_state_dir_option
@click.option("--kafka-version", default=DEFAULT_VERSION, show_default=True,
              help="The Kafka version to fetch from Maven Central.")
@click.option("--timeout", type=click.FloatRange(min=1), default=90, show_default=True,
              help="Seconds to wait for the brokers to be ready (the one-time fetch is not counted).")
def up(brokers: int, kafka_home: Path | None, state_dir: Path | None, kafka_version: str, timeout: float) -> None:
    """Start a cluster, or find the one running; print its bootstrap servers."""
    with _user_errors():
        cluster = LocalKafka(state_dir or default_state_dir(), brokers, kafka_home, kafka_version,
                             progress=_progress)
        bootstrap = cluster.up(timeout=timeout)
    click.echo(bootstrap)


@kafka_group.command()
@_state_dir_option
def status(state_dir: Path | None) -> None:
    """Show each broker and whether it is alive; exit 1 unless all are."""
    with _user_errors():
        cluster_status = LocalKafka(state_dir or default_state_dir()).status()
    for broker in cluster_status.brokers:
        click.echo(f"broker {broker.id}  127.0.0.1:{broker.port}  pid {broker.pid}  "
                   f"{'alive' if broker.alive else 'not running'}")
    click.echo(cluster_status.bootstrap)
    if not cluster_status.all_alive:
        raise SystemExit(1)


@kafka_group.command()
@_state_dir_option
@click.option("--timeout", type=click.FloatRange(min=0), default=30, show_default=True,
              help="Seconds a broker gets to shut down cleanly before it is killed.")
def down(state_dir: Path | None, timeout: float) -> None:
    """Stop the cluster and delete its data (a dev cluster is disposable)."""
    state_dir = state_dir or default_state_dir()
    with _user_errors():
        stopped = LocalKafka(state_dir, progress=_progress).down(timeout=timeout)
    if stopped:
        click.echo(f"stopped {len(stopped)} broker(s) and removed their data in {state_dir}")
    else:
        click.echo(f"no Kafka cluster was running in {state_dir}; nothing to stop")
