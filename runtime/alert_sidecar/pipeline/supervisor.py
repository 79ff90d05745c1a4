"""``alert-pipeline up``: every stage of a pipeline as supervised local processes, on the clusters it names.

The supervisor is one process per pipeline. It

1. starts a local Kafka (KRaft) for each cluster the file marks ``local``,
   each in a folder of its own, so two clusters in the file are two clusters;
2. creates the buffers' topics (``topics.py``, as ``apply`` does);
3. starts ``instances`` sidecars per stage, each with its worker command (the
   sidecar starts and supervises its worker) and a metrics port of its own;
4. then watches them: an instance that exits is started again, after 1 s,
   then 2, 4... up to 30 s while it keeps failing; ``alert-pipeline scale``
   changes how many run (the newest stop first, draining as on SIGTERM);
5. on SIGTERM or SIGINT (``alert-pipeline down``, Ctrl-C) stops every
   sidecar (each drains and commits what it finished) and then the local
   clusters, whose data goes with them.

What it does is recorded in its state folder (``.alert-pipeline/NAME/``
beside the file, or ``--state-dir``): ``supervisor.json`` (the clusters'
bootstrap servers, every instance with its pid, metrics port and log), the
instances' logs under ``logs/`` (the run before's under ``logs.previous/``),
and the local clusters under ``kafka/``.
The other verbs read that file; ``scale`` writes ``desired.json``, which the
supervisor reads every half second.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from alert_sidecar.exceptions import SidecarError
from alert_sidecar.kafka.local import LocalKafka
from alert_sidecar.pipeline.commands import sidecar_args, worker_environment
from alert_sidecar.pipeline.model import Pipeline, StageSpec
from alert_sidecar.pipeline.status import readiness
from alert_sidecar.pipeline.topics import REFUSED, Topics
from alert_sidecar.stage.config import default_of

log = logging.getLogger("alert_pipeline")

STATE_FILE = "supervisor.json"
DESIRED_FILE = "desired.json"
TICK_S = 0.5
READY_EVERY_S = 2.0
FIRST_BACKOFF_S, MAX_BACKOFF_S = 1.0, 30.0
# An instance that ran this long before it exited was healthy: its next start is quick again.
HEALTHY_RUN_S = 60.0
# A sidecar drains for up to its drain timeout after SIGTERM, then flushes and commits.
STOP_GRACE_S = default_of("drain_timeout") + 15.0


def default_state_dir(pipeline: Pipeline) -> Path:
    return Path(pipeline.path).resolve().parent / ".alert-pipeline" / pipeline.name


def read_state(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def supervisor_alive(state: dict | None) -> bool:
    return bool(state) and state.get("phase") != "stopped" and pid_alive(state.get("pid", 0))


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def write_json(path: Path, data: dict) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sidecar_program() -> list[str]:
    """The ``alert-sidecar`` of this installation (beside this Python), else this Python running it."""
    beside = Path(sys.executable).parent / "alert-sidecar"
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "from alert_sidecar.cli import main; main()"]


@dataclass
class Instance:
    stage: str
    index: int
    log_path: Path
    metrics_port: int = 0
    pid: int = 0
    popen: object = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0  # monotonic; 0: now
    backoff: float = FIRST_BACKOFF_S
    stopping_since: float | None = None
    last_exit: int | None = None
    last_error: str = ""
    ready: bool = False
    why: str = "starting"
    retired: bool = False  # scaled away: stopped for good

    def record(self) -> dict:
        return {"index": self.index, "pid": self.pid if self.running else 0, "metrics_port": self.metrics_port,
                "log": str(self.log_path), "started_at": self.started_at, "restarts": self.restarts,
                "running": self.running, "ready": self.ready and self.running, "why": self.why,
                "last_exit": self.last_exit, "last_error": self.last_error}

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Supervisor:
    pipeline: Pipeline
    state_dir: Path
    progress: object = print
    instances: dict[str, list[Instance]] = field(default_factory=dict)
    bootstraps: dict[str, str] = field(default_factory=dict)
    wanted: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        self._stop = threading.Event()
        self._clusters: dict[str, LocalKafka] = {}
        self._phase = "starting"
        self._error = ""
        self._next_ready = 0.0
        self._desired_mtime = 0.0

    # -- the whole run --------------------------------------------------------

    def run(self) -> int:
        """Start everything, supervise until asked to stop, stop everything; 0, or 1 if the start failed."""
        logs = self.state_dir / "logs"
        if logs.exists():  # the last run's logs stay readable beside this run's, one run back
            previous = self.state_dir / "logs.previous"
            shutil.rmtree(previous, ignore_errors=True)
            logs.rename(previous)
        logs.mkdir(parents=True, exist_ok=True)
        (self.state_dir / DESIRED_FILE).unlink(missing_ok=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.wanted = {name: stage.instances for name, stage in self.pipeline.stages.items()}
        self._write()
        status = 0
        try:
            self._start_clusters()
            if not self._stop.is_set():
                self._create_topics()
            for stage in self.pipeline.stages.values():
                self.instances[stage.name] = []
                self._scale(stage, self.wanted[stage.name])
            self._phase = "running"
            self._write()
            self.progress(f"running: {self.pipeline.summary()}; state in {self.state_dir}")
            while not self._stop.wait(TICK_S):
                self._tick()
        except SidecarError as err:
            self._phase, self._error = "failed", str(err)
            self.progress(f"alert-pipeline: error: {err}")
            status = 1
        finally:
            if self._phase != "failed":
                self._phase = "stopping"
            self._write()
            self._stop_all()
            self._stop_clusters()
            if self._phase != "failed":
                self._phase = "stopped"
            self._write()
        return status

    def _start_clusters(self) -> None:
        for name, cluster in self.pipeline.clusters.items():
            if not cluster.is_local:
                self.bootstraps[name] = cluster.bootstrap
        local = {name: c for name, c in self.pipeline.clusters.items() if c.is_local}
        failures: dict[str, str] = {}

        def start(name: str) -> None:
            kafka = LocalKafka(self.state_dir / "kafka" / name, brokers=local[name].local_brokers)
            self._clusters[name] = kafka
            try:
                self.bootstraps[name] = kafka.up()
            except SidecarError as err:
                failures[name] = str(err)

        if local:
            self.progress(f"starting {len(local)} local Kafka cluster(s): {', '.join(local)}")
        threads = [threading.Thread(target=start, args=(name,), name=f"kafka-{name}") for name in local]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise SidecarError("; ".join(f"local cluster '{n}' did not start: {why}" for n, why in failures.items()))
        for name in local:
            self.progress(f"cluster {name}: {self.bootstraps[name]}")
        self._write()

    def _create_topics(self) -> None:
        topics = Topics(self.pipeline, self.bootstraps)
        changes = topics.plan()
        refused = [c for c in changes if c.kind == REFUSED]
        if refused:
            raise SidecarError("the buffers cannot be made as the file says: "
                               + "; ".join(c.format() for c in refused))
        todo = [c for c in changes if c.kind != "unchanged"]
        for change in todo:
            self.progress(change.format())
        topics.apply(todo)

    # -- supervision ------------------------------------------------------------

    def _tick(self) -> None:
        self._read_desired()
        now = time.monotonic()
        for stage in self.pipeline.stages.values():
            for instance in self.instances[stage.name]:
                self._watch(stage, instance, now)
            self._scale(stage, self.wanted[stage.name])
            self.instances[stage.name] = [i for i in self.instances[stage.name] if not (i.retired and not i.running)]
        if now >= self._next_ready:
            for items in self.instances.values():
                for instance in items:
                    if instance.running and instance.stopping_since is None:
                        instance.ready, instance.why = readiness(instance.metrics_port)
            self._next_ready = now + READY_EVERY_S
        self._write()

    def _watch(self, stage: StageSpec, instance: Instance, now: float) -> None:
        popen = instance.popen
        if popen is not None and popen.poll() is not None:  # it ended
            instance.last_exit = popen.returncode
            instance.popen = None
            instance.ready = False
            if instance.retired:
                self.progress(f"{stage.name}.{instance.index}: stopped (exit {popen.returncode})")
                return
            instance.last_error = _last_error(instance.log_path)
            ran = now - instance.started_at
            instance.backoff = FIRST_BACKOFF_S if ran > HEALTHY_RUN_S else min(instance.backoff * 2, MAX_BACKOFF_S)
            instance.next_start = now + instance.backoff
            instance.why = f"exited with {popen.returncode}: {instance.last_error or 'see its log'}"
            self.progress(f"{stage.name}.{instance.index}: exited with {popen.returncode}"
                          f"{': ' + instance.last_error if instance.last_error else ''}; "
                          f"starting it again in {instance.backoff:g} s")
        if instance.retired:
            draining = instance.stopping_since is not None and now - instance.stopping_since
            if instance.running and draining and draining > STOP_GRACE_S:
                _kill_tree(instance.popen.pid)
            return
        if instance.popen is None and now >= instance.next_start:
            instance.restarts += 1
            self._launch(stage, instance)

    def _scale(self, stage: StageSpec, count: int) -> None:
        items = self.instances.setdefault(stage.name, [])
        active = [i for i in items if not i.retired]
        for index in range(len(active), count):
            instance = Instance(stage.name, index, self.state_dir / "logs" / f"{stage.name}.{index}.log")
            items.append(instance)
            self._launch(stage, instance)
        for instance in sorted(active, key=lambda i: -i.index)[:max(0, len(active) - count)]:
            instance.retired = True
            instance.ready = False
            instance.why = "scaled away: draining"
            if instance.running:
                instance.stopping_since = time.monotonic()
                instance.popen.send_signal(signal.SIGTERM)

    def _launch(self, stage: StageSpec, instance: Instance) -> None:
        import subprocess

        instance.metrics_port = free_port()
        argv = [*sidecar_program(), *sidecar_args(
            self.pipeline, stage, self.bootstraps, metrics_port=instance.metrics_port,
            transactional_id=f"{self.pipeline.name}.{stage.name}.{instance.index}",
            base=Path(self.pipeline.path).resolve().parent)]
        env = {**os.environ, **worker_environment(stage), "PYTHONUNBUFFERED": "1",
               # The workers a sidecar starts find this installation's python, R and java first.
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        with open(instance.log_path, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} starting "
                      f"{stage.name}.{instance.index}: {' '.join(argv)}\n".encode())
            out.flush()
            instance.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              env=env, cwd=Path(self.pipeline.path).resolve().parent,
                                              start_new_session=True)
        instance.pid = instance.popen.pid
        instance.started_at = time.monotonic()
        instance.ready, instance.why = False, "starting"

    def _read_desired(self) -> None:
        path = self.state_dir / DESIRED_FILE
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        if mtime == self._desired_mtime:
            return
        self._desired_mtime = mtime
        try:
            desired = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        for name, count in desired.items():
            if name in self.wanted and isinstance(count, int) and count >= 0 and count != self.wanted[name]:
                self.progress(f"{name}: scaling {self.wanted[name]} -> {count} instances")
                self.wanted[name] = count

    # -- stop -------------------------------------------------------------------

    def _stop_all(self) -> None:
        everyone = [i for items in self.instances.values() for i in items if i.running]
        if everyone:
            self.progress(f"stopping {len(everyone)} sidecar(s); each drains what it holds")
        for instance in everyone:
            instance.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for instance in everyone:
            try:
                instance.popen.wait(max(0.1, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: past its grace
                self.progress(f"{instance.stage}.{instance.index}: still running after {STOP_GRACE_S:g} s: killed")
                _kill_tree(instance.popen.pid)
            instance.last_exit = instance.popen.returncode

    def _stop_clusters(self) -> None:
        for name, kafka in self._clusters.items():
            try:
                kafka.down()
                self.progress(f"cluster {name}: stopped, its data removed")
            except SidecarError as err:
                self.progress(f"cluster {name}: {err}")

    # -- the state file ---------------------------------------------------------

    def _write(self) -> None:
        write_json(self.state_dir / STATE_FILE, {
            "pid": os.getpid(), "pipeline": self.pipeline.name, "file": str(Path(self.pipeline.path).resolve()),
            "phase": self._phase, "error": self._error, "clusters": dict(self.bootstraps),
            "local_clusters": [n for n, c in self.pipeline.clusters.items() if c.is_local],
            "wanted": dict(self.wanted),
            "stages": {name: [i.record() for i in items if not i.retired or i.running]
                       for name, items in self.instances.items()}})


def _last_error(log_path: Path) -> str:
    """The sidecar's own last error line, if it wrote one."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 16384))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if "alert-sidecar: error:" in line:
            return line.split("alert-sidecar: error:", 1)[1].strip()
    return ""


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every process under it (a sidecar's workers run in groups of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    todo, seen = [pid], []
    while todo:
        current = todo.pop()
        seen.append(current)
        todo.extend(children.get(current, []))
    for victim in seen:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    """``python -m alert_sidecar.pipeline.supervisor FILE STATE_DIR``: what ``up --detach`` starts."""
    from alert_sidecar.pipeline.load import load

    file, state_dir = (argv if argv is not None else sys.argv[1:])[:2]
    pipeline, _warnings = load(file)

    def say(message: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}", flush=True)

    return Supervisor(pipeline, Path(state_dir), progress=say).run()


if __name__ == "__main__":
    sys.exit(main())
