"""The ``alert-sidecar`` command.

``alert-sidecar --in BUFFER --out BUFFER --worker HOST:PORT`` runs one stage;
``alert-sidecar kafka up|status|down`` manages a local Kafka for development.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys

import click
from click.core import ParameterSource

from alert_sidecar import __version__
from alert_sidecar.kafka.buffers import parse_buffer
from alert_sidecar.config import (CLUSTERS, ENV_PREFIX, default_dead_letter, default_group, load_config_file,
                                  parse_clusters, parse_routes, stats_path)
from alert_sidecar.exceptions import ConfigError, SidecarError
from alert_sidecar.formats.content import AUTO, FORMATS
from alert_sidecar.kafka.start import parse_start
from alert_sidecar.stage.config import Ordering, StageConfig, default_of
from alert_sidecar.stage.loop import Stage
from alert_sidecar.stage.verdicts import RetryPolicy
from alert_sidecar.workers.address import Protocol, WorkerAddress, parse_worker_addresses
from alert_sidecar.workers.tls import WorkerTls
from alert_sidecar.workers.clients import WorkerCall

log = logging.getLogger("alert_sidecar")

BUFFER = "kafka://HOST:PORT[,HOST:PORT]/TOPIC"


def _load_config(ctx: click.Context, _param, value):
    if value:
        try:
            ctx.default_map = {**(ctx.default_map or {}), **load_config_file(value)}
        except ConfigError as err:
            raise click.BadParameter(str(err)) from None
    return value


def setup_logging(level: str) -> None:
    # One line per event, UTC, key=value pairs after the message: easy to grep
    # and to ship to a log store.
    logging.Formatter.converter = __import__("time").gmtime
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    # gRPC logs a traceback when a worker's answer does not parse; the stage
    # reports that itself, in one line that says what to do.
    logging.getLogger("grpc._common").setLevel(logging.CRITICAL)


EPILOG = f"""
Buffers are Kafka topics named as {BUFFER}; each may be on its own cluster.
Every option can also be set by an environment variable {ENV_PREFIX}_<OPTION>
(e.g. {ENV_PREFIX}_IN, {ENV_PREFIX}_WORKER="host:1 host:2") or in the TOML file
given with --config.

\b
Other commands:
  alert-sidecar kafka up [--brokers N]   start a local Kafka (KRaft) for development
  alert-sidecar kafka status             show it
  alert-sidecar kafka down               stop it and delete its data
  alert-sidecar inspect SOURCE...        print alerts of a buffer or files as JSON lines
  alert-sidecar bench --in B --out B     write Rubin alerts in visit bursts, measure throughput and latency
  alert-sidecar replay --from B --to B   produce dead letters again, as they were, once their cause is fixed

\b
Exit codes: 0 stopped cleanly; 2 bad option or config; 3 Kafka unreachable or
topic missing; 4 worker unreachable, incompatible or broke the contract;
5 an output could not be written.
"""


@click.command(
    context_settings={"auto_envvar_prefix": ENV_PREFIX, "help_option_names": ["-h", "--help"],
                      "max_content_width": 100},
    epilog=EPILOG,
)
@click.option("--config", type=click.Path(dir_okay=False), callback=_load_config, is_eager=True, expose_value=False,
              help="TOML file with any of these options as keys (lower precedence than flags and environment).")
@click.option("--in", "input_", required=True, envvar=f"{ENV_PREFIX}_IN", metavar="BUFFER", help=f"Input buffer, {BUFFER}.")
@click.option("--out", "output", required=True, envvar=f"{ENV_PREFIX}_OUT", metavar="BUFFER", help="Default output buffer for the worker's outputs.")
@click.option("--worker", "workers", multiple=True, envvar=f"{ENV_PREFIX}_WORKER", metavar="HOST:PORT",
              help="Address of a worker: HOST:PORT for gRPC, http://HOST:PORT for Connect (R workers); repeat to "
                   "share the load over several, or give HOST:FIRST-LAST for a worker served by several processes "
                   "on consecutive ports. Not needed with -- COMMAND.")
@click.option("--group", metavar="NAME",
              help="Consumer group. Instances with the same group share the input's partitions. "
                   "[default: alert-sidecar.<in topic>.<out topic>]")
@click.option("--dead-letter", metavar="BUFFER",
              help="Buffer for alerts that cannot be processed, with the reason in headers. "
                   "[default: <in topic>.dead-letter on the input cluster]")
@click.option("--route", "routes", multiple=True, envvar=f"{ENV_PREFIX}_ROUTE", metavar="NAME=BUFFER",
              help="Bind an output route the worker names to a buffer; repeatable.")
@click.option("--cluster", "cluster", multiple=True, envvar=f"{ENV_PREFIX}_CLUSTER", metavar="NAME=HOST:PORT[,HOST:PORT]",
              help="Name a Kafka cluster, for buffers kafka://NAME/TOPIC and settings of its own; repeatable.")
@click.option("--cluster-config", "cluster_config", multiple=True, envvar=f"{ENV_PREFIX}_CLUSTER_CONFIG",
              metavar="NAME:KEY=VALUE",
              help="librdkafka setting for the clients of one cluster only, NAME a --cluster or a buffer's "
                   "HOST:PORT[,HOST:PORT] (e.g. rubin:sasl.username=lasair); repeatable. Secrets as "
                   "rubin:sasl.password=@file:PATH or =@env:VAR, read at start, never on the command line.")
@click.option("--kafka-config", "kafka_config", multiple=True, metavar="KEY=VALUE",
              help="librdkafka setting for every cluster's clients (e.g. client.id=lasair); repeatable. "
                   "No secrets: they go with --cluster-config to their own cluster.")
@click.option("--in-format", type=click.Choice([AUTO, *FORMATS]), default=AUTO, show_default=True,
              help="What input alerts are (same as ?format= on --in); 'auto' tells Avro container (ZTF), Confluent "
                   "wire format (Rubin) and JSON apart by their first bytes.")
@click.option("--schema-registry", metavar="URL",
              help="Confluent-compatible schema registry for Avro schema ids (cached); Rubin's ids are known without one.")
@click.option("--schema-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Folder of Avro schemas named <id>.avsc, looked up before Rubin's.")
@click.option("--decoders", type=click.IntRange(0, 256), default=None,
              help="Processes decoding alerts for workers that ask for JSON (0: on the main thread). "
                   "[default: 0 with the compiled decoder, else one per core]")
@click.option("--start-from", default=default_of("start_from"), show_default=True,
              metavar="earliest|latest|TIME|OFFSET",
              help="Where the group starts on a partition it has no committed offset for (a partition it has "
                   "committed goes on from its commit): its first record, its end, the first record at or after "
                   "TIME (ISO 8601, e.g. 2026-12-01T00:00Z; without a zone it is UTC, and a date alone is its "
                   "00:00 UTC; the end if every record is older), or OFFSET on every partition (-N: N records "
                   "before each partition's end). The log says which partition starts where.")
@click.option("--batch-size", type=click.IntRange(1, 100000), default=default_of("batch_size"), show_default=True,
              help="Most alerts per call to a worker (a worker may ask for fewer).")
@click.option("--batch-linger-ms", type=click.FloatRange(0), default=default_of("batch_linger") * 1000,
              show_default=True,
              help="How long a partition's batch may wait to fill before it is sent short.")
@click.option("--ordering", type=click.Choice([o.value for o in Ordering]), default=default_of("ordering"),
              show_default=True,
              help="What the worker may see out of order: 'partition' keeps each partition in order (one batch in "
                   "flight per partition); 'key' keeps each record key in order; 'none' lets batches of a partition "
                   "run concurrently. Outputs keep offset order and commits never pass an unfinished alert.")
@click.option("--max-in-flight", type=click.IntRange(1, 1000), default=default_of("max_in_flight"), show_default=True,
              help="Most batches in flight per worker.")
@click.option("--max-buffered", type=click.IntRange(1), default=default_of("max_buffered_alerts"), show_default=True,
              help="Alerts held in memory before fetching pauses.")
@click.option("--max-buffered-mb", type=click.IntRange(1), default=default_of("max_buffered_bytes") // 2**20,
              show_default=True,
              help="Megabytes of alerts held in memory before fetching pauses.")
@click.option("--max-retries", type=click.IntRange(0), default=default_of("max_retries"), show_default=True,
              help="Retries of an alert answered RETRY before it is dead-lettered.")
@click.option("--retry-backoff", type=click.FloatRange(0), default=default_of("base_backoff_s"), show_default=True,
              help=f"Seconds before the first retry; doubles each time, at most {default_of('max_backoff_s'):g} s.")
@click.option("--worker-timeout", type=click.FloatRange(0.1), default=default_of("worker_timeout"), show_default=True,
              help="Seconds a worker has to answer one batch before the call counts as failed.")
@click.option("--worker-wait", type=click.FloatRange(0), default=default_of("worker_wait"), show_default=True,
              help="Seconds to wait at start for the workers to be healthy before giving up.")
@click.option("--drain-timeout", type=click.FloatRange(0), default=default_of("drain_timeout"), show_default=True,
              help="Seconds to finish in-flight alerts on SIGTERM/SIGINT before committing and exiting.")
@click.option("--worker-protocol", type=click.Choice([p.value for p in Protocol]), default=None,
              envvar=f"{ENV_PREFIX}_WORKER_PROTOCOL",
              help="What the workers speak: gRPC (the default for HOST:PORT), or Connect over HTTP/1.1 (R "
                   "workers; the default for http://HOST:PORT and https://HOST:PORT).")
@click.option("--worker-tls-ca", type=click.Path(dir_okay=False), metavar="FILE",
              help="Reach the workers over TLS and check their certificates against the CA(s) in FILE (PEM). Any "
                   "--worker-tls option turns TLS on for gRPC workers; a Connect worker over TLS is https://HOST:PORT "
                   "(with the system's CAs if this is not given).")
@click.option("--worker-tls-cert", type=click.Path(dir_okay=False), metavar="FILE",
              help="The sidecar's own certificate (PEM), for workers that require one (mutual TLS); with "
                   "--worker-tls-key.")
@click.option("--worker-tls-key", type=click.Path(dir_okay=False), metavar="FILE",
              help="The private key of --worker-tls-cert (PEM, unencrypted).")
@click.option("--worker-tls-server-name", metavar="NAME",
              help="The name the workers' certificates must be for, when it is not the host dialled "
                   "(e.g. workers reached by IP address).")
@click.option("--worker-call", type=click.Choice([c.value for c in WorkerCall]), default=default_of("worker_call"),
              show_default=True,
              envvar=f"{ENV_PREFIX}_WORKER_CALL",
              help="How batches reach a gRPC worker: over one ProcessStream call per worker, or one ProcessBatch "
                   "call per batch.")
@click.option("--worker-processes", type=click.IntRange(1, 256), default=1, show_default=True,
              help="With -- COMMAND: how many copies of the worker to start, each on its own port.")
@click.option("--mirror", is_flag=True, default=False, envvar=f"{ENV_PREFIX}_MIRROR",
              help="No worker: copy every alert of --in to --out as it is (key, value, headers), e.g. an upstream "
                   "stream into a local rolling buffer. Commits, dead letters and metrics work as for any stage.")
@click.option("--exactly-once", is_flag=True, default=False, envvar=f"{ENV_PREFIX}_EXACTLY_ONCE",
              help="Write outputs and input offsets in one Kafka transaction, so that readers with "
                   "isolation.level=read_committed see each alert's outputs once. Needs the input, outputs and "
                   "dead-letter buffer on one cluster.")
@click.option("--transactional-id", metavar="ID", envvar=f"{ENV_PREFIX}_TRANSACTIONAL_ID",
              help="With --exactly-once, the producer's transactional.id. Give each instance a stable one (a pod "
                   "name) so that a restart aborts what it left open at once. Default: unique to the process.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, envvar=f"{ENV_PREFIX}_METRICS_PORT",
              metavar="PORT", help="Serve Prometheus metrics on http://0.0.0.0:PORT/metrics (0: a free port, logged). "
                                   "[default: not served]")
@click.option("--create-topics/--no-create-topics", default=True, show_default=True,
              help="Create missing output and dead-letter topics, with the input's partition count.")
@click.option("--progress-interval", type=click.FloatRange(0.1), default=default_of("progress_interval"),
              show_default=True,
              help="Seconds between progress lines.")
@click.option("--stats-file", type=click.Path(dir_okay=False), default=None,
              help="Write the final counters to this JSON file on exit.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="Least important log lines to print (on stderr, one line per event).")
@click.version_option(__version__, prog_name="alert-sidecar")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND...]")
def run(input_, output, workers, group, dead_letter, routes, cluster, cluster_config, kafka_config, in_format,
        schema_registry, schema_dir,
        decoders, start_from, batch_size, batch_linger_ms, ordering,
        max_in_flight, max_buffered, max_buffered_mb, max_retries, retry_backoff, worker_timeout, worker_wait,
        drain_timeout, worker_protocol, worker_tls_ca, worker_tls_cert, worker_tls_key, worker_tls_server_name,
        worker_call, worker_processes, mirror, exactly_once, transactional_id, metrics_port, create_topics, progress_interval, stats_file,
        log_level, command):
    """Run one stage: consume BUFFER --in, call the worker, produce to --out.

    Alerts are committed only once every output (or their dead letter) is
    acknowledged by Kafka: at least once, never lost.

    After --, a command that starts the worker: the sidecar runs it (with
    ALERT_WORKER_PORT set to a free port), waits until it is healthy, restarts
    it if it dies, and stops it on exit. Example:

      alert-sidecar --in kafka://localhost:9092/alerts --out kafka://localhost:9092/bright -- python filter.py
    """
    setup_logging(log_level)
    try:
        context = click.get_current_context()
        kafka_clusters = parse_clusters(
            cluster, cluster_config, kafka_config, (context.default_map or {}).get(CLUSTERS),
            settings_on_command_line=context.get_parameter_source("cluster_config") is ParameterSource.COMMANDLINE)
        names = kafka_clusters.bootstraps()
        in_buffer = parse_buffer(input_, what="--in", clusters=names)
        if in_format != AUTO:
            in_buffer = dataclasses.replace(in_buffer, format=in_format)
        out_buffer = parse_buffer(output, what="--out", clusters=names)
        if mirror and (command or workers):
            raise ConfigError("--mirror has no worker: give --mirror, or a worker (--worker or a command after --), "
                              "not both")
        if command and workers:
            raise ConfigError("give either --worker addresses or a worker command after --, not both")
        if not command and not workers and not mirror:
            raise ConfigError("no worker: give --worker HOST:PORT, or a command after -- that starts one "
                              "(or --mirror to copy --in to --out as it is)")
        protocol = Protocol(worker_protocol) if worker_protocol else None
        if transactional_id and not exactly_once:
            raise ConfigError("--transactional-id is for --exactly-once; give both, or neither")
        worker_tls = WorkerTls.given(worker_tls_ca, worker_tls_cert, worker_tls_key, worker_tls_server_name)
        config = StageConfig(
            input=in_buffer,
            output=out_buffer,
            group=group or default_group(in_buffer, out_buffer),
            workers=[address for w in workers for address in parse_worker_addresses(w, protocol, worker_tls)],
            dead_letter=(parse_buffer(dead_letter, what="--dead-letter", clusters=names) if dead_letter
                         else default_dead_letter(in_buffer)),
            routes=parse_routes(routes, names),
            mirror=mirror,
            clusters=kafka_clusters,
            schema_registry=schema_registry,
            schema_dir=schema_dir,
            decoders=decoders if decoders is not None else default_of("decoders"),
            batch_size=batch_size,
            ordering=Ordering(ordering),
            batch_linger=batch_linger_ms / 1000,
            max_in_flight=max_in_flight,
            max_buffered_alerts=max_buffered,
            max_buffered_bytes=max_buffered_mb * 1024 * 1024,
            retry=RetryPolicy(max_retries=max_retries, base_backoff_s=retry_backoff),
            worker_timeout=worker_timeout,
            worker_wait=worker_wait,
            worker_call=WorkerCall(worker_call),
            drain_timeout=drain_timeout,
            start_from=parse_start(start_from),
            create_topics=create_topics,
            exactly_once=exactly_once,
            transactional_id=transactional_id,
            metrics_port=metrics_port,
            progress_interval=progress_interval,
            stats_file=stats_path(stats_file),
        )
        kafka_clusters.check([config.input, *config.outputs.values()])  # reads every secret: a missing one stops here
        supervisor = None
        if command:
            from alert_sidecar.workers.process import Supervisor

            supervisor = Supervisor(list(command), worker_processes)
            config.workers = [WorkerAddress("127.0.0.1", port, protocol or Protocol.GRPC, worker_tls)
                              for port in supervisor.ports]
        sys.exit(_run_stage(config, supervisor))
    except SidecarError as err:
        click.echo(f"alert-sidecar: error: {err}", err=True)
        sys.exit(err.exit_code)


def _run_stage(config: StageConfig, supervisor) -> int:
    stage = Stage(config, supervisor=supervisor)
    interrupted = []

    def on_signal(signum, _frame):
        if interrupted:
            log.warning("second signal: exiting now; unfinished alerts stay uncommitted")
            os._exit(130)
        interrupted.append(signum)
        log.info("stopping signal=%s; draining in-flight alerts (up to %g s)",
                 signal.Signals(signum).name, config.drain_timeout)
        stage.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if supervisor is not None:
            supervisor.start()
        stage.run()
    finally:
        if supervisor is not None:
            supervisor.stop()
    return 0


SUBCOMMANDS = {}


def _subcommands() -> dict[str, click.Command]:
    if not SUBCOMMANDS:
        from alert_sidecar.commands.bench import bench_command
        from alert_sidecar.commands.inspect import inspect_command
        from alert_sidecar.commands.kafka import kafka_group
        from alert_sidecar.commands.replay import replay_command

        SUBCOMMANDS["kafka"] = kafka_group
        SUBCOMMANDS["inspect"] = inspect_command
        SUBCOMMANDS["bench"] = bench_command
        SUBCOMMANDS["replay"] = replay_command
    return SUBCOMMANDS


def main(argv: list[str] | None = None) -> None:
    """Entry point: a subcommand by name, else the stage itself."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("kafka", "inspect", "bench", "replay"):
        command = _subcommands()[args[0]]
        command.main(args=args[1:], prog_name=f"alert-sidecar {args[0]}")
    else:
        run.main(args=args, prog_name="alert-sidecar")


if __name__ == "__main__":
    main()
