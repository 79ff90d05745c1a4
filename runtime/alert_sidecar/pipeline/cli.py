"""``alert-pipeline``: the command for a whole pipeline file.

Verbs: ``validate``; ``plan`` and ``apply`` (the buffers' topics on their
clusters); ``up``, ``status``, ``scale``, ``logs`` and ``down`` (the stages as
local processes, supervisor.py); ``dashboard`` (a live page of the graph).

Diagnostics of the file go to stderr as ``FILE:LINE: error: ...`` and
``FILE:LINE: warning: ...``, which editors and CI logs link to the line. Exit
status: 0 done, 2 an invalid file or option (ConfigError's), 3 a cluster
unreachable, 1 anything else that failed (said in one line); never a
traceback for anything a file or a cluster can do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click

from alert_sidecar.exceptions import ConfigError, SidecarError
from alert_sidecar.pipeline.dashboard import dashboard_command
from alert_sidecar.pipeline.export.cli import export_group
from alert_sidecar.pipeline.load import PipelineError, load
from alert_sidecar.pipeline.model import Pipeline, plural

STATE_DIR_HELP = "Folder of the pipeline's processes and local clusters (default: .alert-pipeline/NAME beside FILE)."


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Work on a pipeline: stages, their buffers and clusters, all in one YAML file."""


def _load(file: str, *, quiet_warnings: bool = False) -> Pipeline:
    """The pipeline in ``file``, or its diagnostics and exit 2."""
    try:
        pipeline, warnings = load(file)
    except PipelineError as err:
        for diagnostic in [*err.warnings, *err.errors]:
            click.echo(diagnostic.format(), err=True)
        click.echo(f"{file}: invalid ({plural(len(err.errors), 'error')}"
                   f"{', ' + plural(len(err.warnings), 'warning') if err.warnings else ''})", err=True)
        sys.exit(ConfigError.exit_code)
    if not quiet_warnings:
        for diagnostic in warnings:
            click.echo(diagnostic.format(), err=True)
    pipeline.warnings = warnings
    return pipeline


def _fail(err: SidecarError) -> None:
    click.echo(f"alert-pipeline: error: {err}", err=True)
    sys.exit(err.exit_code)


def _state_dir(pipeline: Pipeline, given: str | None) -> Path:
    from alert_sidecar.pipeline.supervisor import default_state_dir

    return Path(given).resolve() if given else default_state_dir(pipeline)


def _running_state(pipeline: Pipeline, state_dir: Path) -> dict | None:
    from alert_sidecar.pipeline.supervisor import read_state, supervisor_alive

    state = read_state(state_dir)
    return state if supervisor_alive(state) else None


def _bootstraps(pipeline: Pipeline, state: dict | None) -> dict[str, str]:
    """Each cluster's bootstrap: the file's, or a local cluster's as the running `up` started it."""
    found = {name: c.bootstrap for name, c in pipeline.clusters.items() if not c.is_local}
    if state:
        found.update({k: v for k, v in state.get("clusters", {}).items() if k in pipeline.clusters})
    return found


state_dir_option = click.option("--state-dir", type=click.Path(file_okay=False), help=STATE_DIR_HELP)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check FILE: its YAML, its schema, names, loops and settings; print what is wrong with its line."""
    pipeline = _load(file)
    warnings = pipeline.warnings
    suffix = f" ({plural(len(warnings), 'warning')})" if warnings else ""
    click.echo(f"{file}: {pipeline.summary()}: valid{suffix}")


# -- plan, apply --------------------------------------------------------------

def _topics(pipeline: Pipeline, state_dir: str | None):
    from alert_sidecar.pipeline.topics import Topics

    state = _running_state(pipeline, _state_dir(pipeline, state_dir))
    bootstraps = _bootstraps(pipeline, state)
    missing = [name for name, c in pipeline.clusters.items() if name not in bootstraps]
    used = {b.cluster for b in pipeline.buffers.values()}
    if any(name in used for name in missing):
        raise ConfigError(f"cluster(s) {', '.join(n for n in missing if n in used)} are local and not running: "
                          "`alert-pipeline up FILE` starts them and makes their topics")
    return Topics(pipeline, bootstraps)


def _show_plan(changes) -> tuple[list, list]:
    from alert_sidecar.pipeline.topics import REFUSED, UNCHANGED

    for change in changes:
        click.echo(change.format())
    todo = [c for c in changes if c.kind not in (UNCHANGED, REFUSED)]
    refused = [c for c in changes if c.kind == REFUSED]
    return todo, refused


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@state_dir_option
def plan(file: str, state_dir: str | None) -> None:
    """Show what `apply` would change on the clusters (topics, partitions, retention), changing nothing."""
    pipeline = _load(file)
    try:
        todo, refused = _show_plan(_topics(pipeline, state_dir).plan())
    except SidecarError as err:
        _fail(err)
    click.echo(f"plan: {plural(len(todo), 'change')}"
               + (f", {plural(len(refused), 'refused change')}: `apply` would change nothing" if refused else ""))
    if refused:
        sys.exit(ConfigError.exit_code)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@state_dir_option
def apply(file: str, state_dir: str | None) -> None:
    """Make the buffers' topics as FILE says: create them, add partitions, set retention (the plan first)."""
    pipeline = _load(file)
    try:
        topics = _topics(pipeline, state_dir)
        todo, refused = _show_plan(topics.plan())
        if refused:
            click.echo(f"apply: refused ({plural(len(refused), 'unsafe change')}); nothing was changed", err=True)
            sys.exit(ConfigError.exit_code)
        if not todo:
            click.echo("apply: nothing to change")
            return
        topics.apply(todo)
    except SidecarError as err:
        _fail(err)
    click.echo(f"apply: {plural(len(todo), 'change')} made")


# -- up, down, scale, logs ------------------------------------------------------

@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-d", "--detach", is_flag=True, help="Return once every instance is ready; the supervisor runs on.")
@click.option("--wait", "wait_s", type=click.FloatRange(0), default=300, show_default=True,
              help="With --detach: seconds to wait for every instance to be ready.")
@state_dir_option
def up(file: str, detach: bool, wait_s: float, state_dir: str | None) -> None:
    """Run every stage of FILE here: its local clusters, topics, and each stage's sidecars and workers.

    In the foreground, Ctrl-C stops it all; with --detach, `alert-pipeline down FILE` does.
    """
    from alert_sidecar.pipeline.supervisor import STATE_FILE, Supervisor, read_state

    pipeline = _load(file)
    folder = _state_dir(pipeline, state_dir)
    state = _running_state(pipeline, folder)
    if state is not None:
        click.echo(f"{pipeline.name}: already up (supervisor pid {state['pid']}, state in {folder}); "
                   f"`alert-pipeline status {file}` shows it, `alert-pipeline down {file}` stops it")
        return
    folder.mkdir(parents=True, exist_ok=True)
    if not detach:
        sys.exit(Supervisor(pipeline, folder, progress=lambda m: click.echo(m, err=True)).run())
    (folder / STATE_FILE).unlink(missing_ok=True)
    log_path = folder / "supervisor.log"
    with open(log_path, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "alert_sidecar.pipeline.supervisor",
                                    str(Path(file).resolve()), str(folder)],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    click.echo(f"{pipeline.name}: starting (supervisor pid {process.pid}; its log: {log_path})")
    deadline = time.monotonic() + wait_s
    said = set()
    while True:
        state = read_state(folder) or {}
        if process.poll() is not None or state.get("phase") in ("failed", "stopped"):
            click.echo(f"alert-pipeline: error: {state.get('error') or 'the supervisor ended'}; "
                       f"its log:\n{_tail(log_path, 20)}", err=True)
            sys.exit(1)
        for name, bootstrap in state.get("clusters", {}).items():
            if name not in said and name in state.get("local_clusters", []):
                click.echo(f"cluster {name}: {bootstrap}")
                said.add(name)
        instances = [i for items in state.get("stages", {}).values() for i in items]
        wanted = sum(state.get("wanted", {}).values())
        ready = sum(1 for i in instances if i["ready"])
        if state.get("phase") == "running" and ready >= wanted:
            break
        if time.monotonic() > deadline:
            waiting = [f"{stage}.{i['index']} ({i['why']})" for stage, items in state.get("stages", {}).items()
                       for i in items if not i["ready"]]
            click.echo(f"alert-pipeline: {ready} of {wanted} instances ready after {wait_s:g} s; not ready: "
                       f"{', '.join(waiting) or 'the stages have not started'}; it runs on: "
                       f"`alert-pipeline logs {file} STAGE` shows why", err=True)
            sys.exit(1)
        time.sleep(0.5)
    for stage, items in state["stages"].items():
        click.echo(f"stage {stage}: {plural(len(items), 'instance')} ready "
                   f"(metrics {', '.join(str(i['metrics_port']) for i in items) or '-'})")
    click.echo(f"{pipeline.name}: up. `alert-pipeline status {file}` to watch, `alert-pipeline down {file}` to stop")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--timeout", type=click.FloatRange(1), default=180, show_default=True,
              help="Seconds to wait for the sidecars to drain and the clusters to stop.")
@state_dir_option
def down(file: str, timeout: float, state_dir: str | None) -> None:
    """Stop what `up` started: every sidecar (each drains first), its workers, and the local clusters."""
    import os
    import signal

    from alert_sidecar.kafka.local import LocalKafka
    from alert_sidecar.pipeline.supervisor import pid_alive, read_state

    pipeline = _load(file, quiet_warnings=True)
    folder = _state_dir(pipeline, state_dir)
    state = read_state(folder)
    if state is None:
        click.echo(f"{pipeline.name}: not up (no state in {folder})")
        return
    pid = state.get("pid", 0)
    if pid_alive(pid) and state.get("phase") != "stopped":
        click.echo(f"{pipeline.name}: stopping (supervisor pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if pid_alive(pid):
            click.echo(f"alert-pipeline: error: the supervisor (pid {pid}) is still running after {timeout:g} s; "
                       f"its log: {folder / 'supervisor.log'}", err=True)
            sys.exit(1)
    # What a supervisor that was killed left running.
    for name in state.get("local_clusters", []):
        cluster_dir = folder / "kafka" / name
        if cluster_dir.exists():
            stopped = LocalKafka(cluster_dir).down()
            if stopped:
                click.echo(f"cluster {name}: stopped {plural(len(stopped), 'broker')} left running")
    click.echo(f"{pipeline.name}: down")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("stage")
@click.argument("count", type=click.IntRange(0, 1000))
@click.option("--timeout", type=click.FloatRange(1), default=180, show_default=True,
              help="Seconds to wait until COUNT instances are ready (and the others have drained).")
@state_dir_option
def scale(file: str, stage: str, count: int, timeout: float, state_dir: str | None) -> None:
    """Run COUNT instances of STAGE (0 pauses it); extra ones drain and commit before they stop."""
    from alert_sidecar.pipeline.load import closest
    from alert_sidecar.pipeline.supervisor import DESIRED_FILE, read_state, write_json

    pipeline = _load(file, quiet_warnings=True)
    if stage not in pipeline.stages:
        click.echo(f"alert-pipeline: error: {file} has no stage '{stage}'{closest(stage, pipeline.stages)}",
                   err=True)
        sys.exit(ConfigError.exit_code)
    folder = _state_dir(pipeline, state_dir)
    state = _running_state(pipeline, folder)
    if state is None:
        click.echo(f"alert-pipeline: error: {pipeline.name} is not up: `alert-pipeline up {file}` first", err=True)
        sys.exit(1)
    partitions = pipeline.buffers[pipeline.stages[stage].input].partitions
    if count > partitions:
        click.echo(f"warning: {stage} reads {plural(partitions, 'partition')}: {count - partitions} of {count} "
                   "instances will be idle", err=True)
    before = state["wanted"].get(stage)
    desired_path = folder / DESIRED_FILE
    try:
        desired = json.loads(desired_path.read_text())
    except (OSError, ValueError):
        desired = {}
    write_json(desired_path, {**desired, stage: count})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(folder) or {}
        items = state.get("stages", {}).get(stage, [])
        if state.get("wanted", {}).get(stage) == count and len(items) == count and all(i["ready"] for i in items):
            click.echo(f"{stage}: {before} -> {count} instances, all ready")
            return
        time.sleep(0.5)
    click.echo(f"alert-pipeline: error: {stage} is not at {count} ready instances after {timeout:g} s; "
               f"`alert-pipeline status {file}` shows why", err=True)
    sys.exit(1)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("stage")
@click.option("-f", "--follow", is_flag=True, help="Go on printing lines as they are written.")
@click.option("-n", "--tail", "lines", type=click.IntRange(0), default=50, show_default=True,
              help="Lines of each instance's log to print first.")
@state_dir_option
def logs(file: str, stage: str, follow: bool, lines: int, state_dir: str | None) -> None:
    """Print the logs of STAGE's instances (sidecar and worker), each line prefixed STAGE.N."""
    from alert_sidecar.pipeline.load import closest

    pipeline = _load(file, quiet_warnings=True)
    folder = _state_dir(pipeline, state_dir)
    if stage not in pipeline.stages and stage != "supervisor":
        click.echo(f"alert-pipeline: error: {file} has no stage '{stage}'"
                   f"{closest(stage, [*pipeline.stages, 'supervisor'])}", err=True)
        sys.exit(ConfigError.exit_code)
    paths = ([folder / "supervisor.log"] if stage == "supervisor"
             else sorted((folder / "logs").glob(f"{stage}.*.log"), key=lambda p: int(p.stem.rsplit(".", 1)[1])))
    if not paths:
        click.echo(f"{stage}: no logs in {folder} (has the pipeline been up?)", err=True)
        sys.exit(1)
    offsets = {}
    for path in paths:
        prefix = path.stem if stage != "supervisor" else "supervisor"
        for line in _tail(path, lines).splitlines():
            click.echo(f"{prefix} | {line}")
        offsets[path] = path.stat().st_size
    while follow:
        time.sleep(0.5)
        for path in sorted((folder / "logs").glob(f"{stage}.*.log")) if stage != "supervisor" else paths:
            size = path.stat().st_size
            start = offsets.get(path, 0)
            if size > start:
                with open(path, "rb") as f:
                    f.seek(start)
                    for line in f.read(size - start).decode(errors="replace").splitlines():
                        click.echo(f"{path.stem if stage != 'supervisor' else 'supervisor'} | {line}")
                offsets[path] = size


def _tail(path: Path, count: int) -> str:
    try:
        with open(path, "rb") as f:
            end = f.seek(0, 2)
            f.seek(max(0, end - 256 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-count:]) if count else ""


# -- status -----------------------------------------------------------------------

def pipeline_status(pipeline: Pipeline, folder: Path, previous: dict | None = None, admins: dict | None = None) -> dict:
    """One snapshot of ``pipeline`` (status.py), with what the running `up` records, if it runs."""
    from alert_sidecar.pipeline.status import snapshot

    state = _running_state(pipeline, folder)
    instances = None
    if state is not None:
        instances = {name: [i for i in items if i["running"]] for name, items in state.get("stages", {}).items()}
    local_data = ({name: folder / "kafka" / name for name in state.get("local_clusters", [])} if state else None)
    result = snapshot(pipeline, _bootstraps(pipeline, state), instances, state.get("wanted") if state else None,
                      previous, admins, local_data)
    if state is not None:
        for name, items in state.get("stages", {}).items():
            failing = [i for i in items if not i["running"] and i.get("last_error")]
            for item in failing:
                result["errors"].append(f"stage '{name}': instance {item['index']} {item['why']}")
    return result


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object, as the dashboard serves it.")
@click.option("--interval", type=click.FloatRange(0.2, 60), default=2.0, show_default=True,
              help="Seconds between the two readings that rates and latencies are measured over.")
@state_dir_option
def status(file: str, as_json: bool, interval: float, state_dir: str | None) -> None:
    """Per stage: instances, rates in and out, lag, dead letters, retries, latency; per buffer: size and retention."""
    pipeline = _load(file, quiet_warnings=True)
    folder = _state_dir(pipeline, state_dir)
    admins: dict = {}
    first = pipeline_status(pipeline, folder, admins=admins)
    time.sleep(interval)
    now = pipeline_status(pipeline, folder, previous=first, admins=admins)
    if as_json:
        now["stages"] = {name: {k: v for k, v in s.items() if k != "latency_buckets"}
                         for name, s in now["stages"].items()}
        click.echo(json.dumps(now, indent=2))
        return
    click.echo(format_status(now))
    if any(not c["reachable"] for c in now["clusters"].values()):
        sys.exit(3)


def _bytes(size: int | None) -> str:
    if size is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f}{unit}"
    return f"{size}B"


def format_status(now: dict) -> str:
    from alert_sidecar.pipeline.load import format_duration, format_size

    def show(value, unit: str = "") -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.1f}{unit}"
        return f"{value:,}{unit}"

    out = [f"pipeline {now['pipeline']} ({now['file']}): "
           + ("up" if now["up"] else "not up here (figures from Kafka only)")]
    out.append("")
    out.append(f"{'CLUSTER':<14} {'BOOTSTRAP':<32} STATE")
    for name, c in now["clusters"].items():
        state = ("reachable" if c["reachable"] else c["error"] or "unreachable") + (" (local)" if c["local"] else "")
        out.append(f"{name:<14} {c['bootstrap'] or '-':<32} {state}")
    out.append("")
    out.append(f"{'STAGE':<14} {'READY':>7} {'IN/s':>9} {'OUT/s':>9} {'LAG':>9} {'BEHIND':>8} {'DEAD':>7} "
               f"{'RETRIED':>8} {'RESTARTS':>8} {'CALL p99':>9}")
    for name, s in now["stages"].items():
        inst = s["instances"]
        ready = f"{inst['ready']}/{inst['wanted']}" if inst["wanted"] is not None else "-"
        p99 = f"{s['latency_p99_s'] * 1000:.1f}ms" if s["latency_p99_s"] is not None else "-"
        behind = (f"{s['lag_s']:g}s" if s["lag_s"] is not None
                  else "stalled" if s["lag"] and s["rate_done"] == 0 else "-")
        mark = " <- rate-limiting" if name == now["rate_limiting"] else ""
        out.append(f"{name:<14} {ready:>7} {show(s['rate_in']):>9} {show(s['rate_out']):>9} {show(s['lag']):>9} "
                   f"{behind:>8} {show(s['dead_lettered']):>7} {show(s['retried']):>8} "
                   f"{show(inst['restarts'] if inst['wanted'] is not None else None):>8} {p99:>9}{mark}")
    out.append("")
    out.append(f"{'BUFFER':<14} {'CLUSTER':<12} {'TOPIC':<22} {'PARTS':>5} {'ALERTS':>10} {'ON DISK':>9}  RETENTION")
    for name, b in now["buffers"].items():
        if b["exists"] is None:
            retention = "(unknown: its cluster is unreachable)"
        elif not b["exists"]:
            retention = "(missing: `alert-pipeline apply` makes it)"
        else:
            time_part = ("unlimited" if b["retention_ms"] == -1 else format_duration(b["retention_ms"])
                         if b["retention_ms"] is not None else "-")
            bytes_part = ("unlimited" if b["retention_bytes"] == -1 else format_size(b["retention_bytes"])
                          if b["retention_bytes"] is not None else "-")
            retention = f"{time_part}, {bytes_part}"
        on_disk = _bytes(b.get("bytes_on_disk"))
        out.append(f"{name:<14} {b['cluster']:<12} {b['topic']:<22} {show(b['partitions']):>5} "
                   f"{show(b['alerts']):>10} {on_disk:>9}  {retention}")
    if now["rate_limiting"]:
        s = now["stages"][now["rate_limiting"]]
        out.append("")
        out.append(f"rate-limiting stage: {now['rate_limiting']} ({s['lag']:,} alerts behind"
                   + (f", {s['lag_s']:g} s at {s['rate_done']:,.0f} finished/s)" if s["lag_s"] else ")"))
    for error in now["errors"]:
        out.append(f"problem: {error}")
    return "\n".join(out)


main.add_command(export_group, "export")


main.add_command(dashboard_command, "dashboard")
