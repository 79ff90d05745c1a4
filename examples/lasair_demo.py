"""`make demo`: the seed's use cases as one pipeline (examples/pipelines/lasair.yaml), from start to summary.

1. runs the pipeline with ``alert-pipeline up``: two local Kafka clusters
   (the survey's, rubin, and the broker's own, lasair), the topics, and five
   stages: a mirror from one cluster to the other, the R brightening filter,
   the Java cross-match behind it, the Python watch-list trigger and the
   Python thumbnails, the last two reading the same buffer in groups of their
   own; and the dashboard;
2. writes visits of realistic Rubin alerts (the real schema, 30 previous
   sources and three FITS cutouts each) into the rubin cluster, a visit every
   ``--interval`` seconds, with alerts planted among them:
   - on watch-list targets (each must give a follow-up request), and just
     outside them (none may);
   - on catalogue sources, brightening significantly (each must pass the
     filter and be annotated with the class its place on the source gives);
   - on a target that is added to the watch list while the pipeline runs:
     one alert before the file is added (no request), one after (a request);
   - a few corrupt ones (each stage that decodes them dead-letters them);
3. waits until every stage has committed all its input, then checks each
   stage's outputs against its input, reads the trigger's latency (from an
   alert written upstream to its follow-up request, while the thumbnails are
   behind) and ends with one line per stage:
   ``STAGE: alerts in: N, out: M, filtered: F, dead-lettered: D, lost: L``.

N is the records in the stage's input buffer, M and D the distinct inputs
found in its output and dead-letter buffers (by their ``x-alert-source`` and
``x-dead-letter-source`` headers), F the stage's filtered counter. L is the
inputs in neither buffer that its counter does not account for. The demo
exits with 1 unless L is 0 for every stage and every planted alert ended
where it should.

Everything it writes is under ``--run-dir`` (default ``.demo/lasair`` at the
top of the repository): the pipeline file it runs (lasair.yaml with its paths
made absolute and the watch lists and thumbnails moved into the run folder, so
that editing a watch list does not touch the repository), the state of
``alert-pipeline up`` (logs of every instance), the thumbnails and their
gallery, and ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from alert_sidecar.commands.bench import percentile
from alert_sidecar.pipeline.cli import pipeline_status
from alert_sidecar.pipeline.load import load
from alert_sidecar.pipeline.supervisor import read_state
from alert_sidecar.simulate.rubin import RubinAlertFactory

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "examples" / "pipelines" / "lasair.yaml"
SKY = PIPELINE.parent / "lasair"
ALERT_PIPELINE = Path(sys.executable).parent / "alert-pipeline"
SEED = 2026
CORRUPT = 3

# Where a planted alert sits on its catalogue source, and the class the cross-match gives it there
# (examples/java/crossmatch/README.md): on a star or an AGN, at a galaxy's centre, or off it inside it.
PLACEMENT = {"star": (0.3, "variable-star"), "variable-star": (0.3, "variable-star"), "agn": (0.3, "agn"),
             "qso": (0.3, "agn")}
NUCLEAR = (0.2, "nuclear-transient")
OFF_CENTRE = (1.5, "supernova-candidate")


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


# -- the sky: catalogue and watch lists ----------------------------------------

def read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(line for line in f if line.strip() and not line.startswith("#")))


def offset(ra: float, dec: float, arcsec: float, angle_deg: float) -> tuple[float, float]:
    """The point ``arcsec`` from (ra, dec) at position angle ``angle_deg`` (east of north), on the sphere."""
    d, pa = math.radians(arcsec / 3600.0), math.radians(angle_deg)
    dec0, ra0 = math.radians(dec), math.radians(ra)
    dec1 = math.asin(math.sin(dec0) * math.cos(d) + math.cos(dec0) * math.sin(d) * math.cos(pa))
    ra1 = ra0 + math.atan2(math.sin(pa) * math.sin(d) * math.cos(dec0), math.cos(d) - math.sin(dec0) * math.sin(dec1))
    return math.degrees(ra1) % 360.0, math.degrees(dec1)


# -- the pipeline file the demo runs ---------------------------------------------

def relocate(run_dir: Path) -> Path:
    """lasair.yaml with its paths absolute, its watch lists and thumbnails in ``run_dir``; returns its path."""
    spec = yaml.safe_load(PIPELINE.read_text())
    base = PIPELINE.parent
    watchlists = run_dir / "watchlists"
    shutil.copytree(SKY / "watchlists", watchlists, ignore=shutil.ignore_patterns("demo-*"))
    for stage in spec["stages"].values():
        worker = stage.get("worker")
        if not isinstance(worker, dict) or "command" not in worker:
            continue
        command = worker["command"]
        for i, arg in enumerate(command):
            if i and command[i - 1] == "--watchlist":
                command[i] = str(watchlists)
            elif i and command[i - 1] == "--out-dir":
                command[i] = str(run_dir / "thumbnails")
            elif not arg.startswith("-") and (base / arg).exists():
                command[i] = str((base / arg).resolve())
        for key, value in (worker.get("env") or {}).items():
            if (base / value).exists():
                worker["env"][key] = str((base / value).resolve())
    path = run_dir / "lasair.yaml"
    path.write_text(f"# {PIPELINE.relative_to(ROOT)}, relocated by examples/lasair_demo.py: paths made absolute,\n"
                    f"# the watch lists and thumbnails in this folder.\n" + yaml.safe_dump(spec, sort_keys=False))
    return path


def pipeline_cli(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(ALERT_PIPELINE), *args], check=check, timeout=timeout, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


class Status:
    """Snapshots of the running pipeline, read here as `alert-pipeline status` reads them (pipeline/status.py).

    In this process, with its admin clients kept from one snapshot to the next,
    rather than a command started for each: that would take a core from the
    pipeline it measures. Rates are over the time since the previous snapshot.
    """

    def __init__(self, file: Path, state_dir: Path) -> None:
        self.pipeline, _ = load(file)
        self.state_dir = state_dir
        self.admins: dict = {}
        self.previous: dict | None = None

    def __call__(self) -> dict:
        self.previous = pipeline_status(self.pipeline, self.state_dir, previous=self.previous, admins=self.admins)
        return self.previous

    def close(self) -> None:
        self.admins.clear()  # their connections would outlive the clusters and complain


# -- the alerts -------------------------------------------------------------------

@dataclass
class Plan:
    """What the demo wrote and where each planted alert must end."""

    written: dict[int, float] = field(default_factory=dict)  # diaSourceId -> upstream timestamp (s)
    visit_of: dict[int, int] = field(default_factory=dict)  # diaSourceId -> its visit (planted alerts)
    watch: dict[int, str] = field(default_factory=dict)  # diaSourceId -> the target it must trigger on
    watch_misses: set[int] = field(default_factory=set)  # just outside a target: no request
    matches: dict[int, tuple[str, str]] = field(default_factory=dict)  # diaSourceId -> (source name, class)
    added_before: int | None = None  # on the target added later, written before it was added
    added_after: int | None = None  # the same place, after
    corrupt: int = 0
    bytes_written: int = 0


def brighten(record: dict) -> None:
    """Make an alert a significant brightening for the R filter: a flat light curve in its band, then a jump."""
    source = record["diaSource"]
    band, baseline, error = source["band"], 1000.0, 50.0
    previous = record["prvDiaSources"] or []
    for i, prv in enumerate(previous):
        if i < 5:
            prv["band"] = band  # at least MIN_PREVIOUS detections in the band
        if prv["band"] == band:
            prv["psfFlux"], prv["psfFluxErr"] = baseline, error
    source["psfFlux"], source["psfFluxErr"] = baseline + 40 * error, error


def place(record: dict, ra: float, dec: float) -> int:
    record["diaSource"]["ra"], record["diaSource"]["dec"] = ra, dec
    return record["diaSourceId"]


class Writer:
    """Writes visits of alerts to the upstream buffer, planting some of them."""

    def __init__(self, bootstrap: str, topic: str, visit_size: int, plan: Plan) -> None:
        self.factory = RubinAlertFactory(cutouts=True, prv_sources=30, seed=SEED)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True,
                                  "queue.buffering.max.kbytes": 512 * 1024})
        self.topic, self.visit_size, self.plan = topic, visit_size, plan
        # Connected, and its idempotent producer id granted, before the first alert: an alert's
        # timestamp is taken when it is handed to the producer, so the first visit's latency would
        # count the producer's own start otherwise.
        self.producer.list_topics(topic, timeout=30)
        time.sleep(1.0)
        self.next_index = 0
        self.errors: list[str] = []
        self.targets = read_csv(SKY / "watchlists" / "rapid-response.csv")
        self.catalog = read_csv(SKY / "catalog.csv")

    def _delivered(self, alert_id: int | None):
        def report(err, message) -> None:
            if err is not None:
                self.errors.append(str(err))
            elif alert_id is not None:
                self.plan.written[alert_id] = message.timestamp()[1] / 1000.0
        return report

    def _produce(self, value: bytes, alert_id: int | None) -> None:
        self.plan.bytes_written += len(value)
        while True:
            try:
                self.producer.produce(self.topic, value=value, on_delivery=self._delivered(alert_id))
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def visit(self, number: int, plants: list[tuple[str, Any]]) -> None:
        """One visit: ``plants`` (kind, what) first, the rest of the visit as the simulator makes it."""
        for kind, what in plants:
            i = self.next_index
            self.next_index += 1
            record = self.factory.make(i)
            if kind == "corrupt":
                value = self.factory.encode(record)
                self._produce(value[: len(value) // 3], None)  # cut short: not a whole Avro record
                self.plan.corrupt += 1
                continue
            alert_id = self._plant(kind, what, record, number)
            self.plan.visit_of[alert_id] = number
            self._produce(self.factory.encode(record), alert_id)
        rest = self.visit_size - len(plants)
        if rest > 0:
            start = self.next_index
            for k, value in enumerate(self.factory.alerts(rest, start)):
                self._produce(value, self.factory.dia_source_id(start + k))
            self.next_index += rest
        self.producer.flush(60)

    def _plant(self, kind: str, what: Any, record: dict, number: int) -> int:
        plan = self.plan
        if kind == "watch":
            target = self.targets[what % len(self.targets)]
            radius = float(target["radius_arcsec"])
            alert_id = place(record, *offset(float(target["ra"]), float(target["dec"]), 0.5 * radius, 37.0 * what))
            plan.watch[alert_id] = target["name"]
        elif kind == "watch-miss":
            target = self.targets[what % len(self.targets)]
            radius = float(target["radius_arcsec"])
            alert_id = place(record, *offset(float(target["ra"]), float(target["dec"]), 1.6 * radius + 1, 90.0))
            plan.watch_misses.add(alert_id)
        elif kind == "match":
            source = self.catalog[(what * 7919) % len(self.catalog)]
            kind_of = source["type"]
            if kind_of == "galaxy":
                arcsec, expected = NUCLEAR if what % 2 else OFF_CENTRE
            else:
                arcsec, expected = PLACEMENT.get(kind_of, (0.3, "variable-star"))
            alert_id = place(record, *offset(float(source["ra"]), float(source["dec"]), arcsec, 11.0 * what))
            brighten(record)
            plan.matches[alert_id] = (source["name"], expected)
        elif kind in ("added-before", "added-after"):
            ra, dec = what
            alert_id = place(record, ra, dec)
            setattr(plan, kind.replace("-", "_"), alert_id)
        else:
            raise ValueError(kind)
        return alert_id

    def close(self) -> None:
        if self.producer.flush(60):
            self.errors.append("not every alert was delivered within 60 s")
        self.producer = None  # its connections would outlive the clusters and complain


# -- reading the buffers back ----------------------------------------------------

def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic``, from its start to its end now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lasair-demo-reader",
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or not metadata.partitions:
            return []
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in metadata.partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        found, done = [], {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + 120
        while len(done) < len(ends) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1):
                if message.error():
                    continue
                found.append(message)
                if message.offset() + 1 >= ends[message.partition()]:
                    done.add(message.partition())
        return found
    finally:
        consumer.close()


def header(message, name: str) -> str | None:
    values = [v for k, v in (message.headers() or []) if k == name]
    return values[-1].decode() if values else None


def account(inputs: list, outputs: list, dead: list, filtered: int | None, input_topic: str) -> dict:
    """A stage's summary from its buffers: in, out, filtered, dead-lettered, lost."""
    keys = {f"{input_topic}/{m.partition()}/{m.offset()}" for m in inputs}
    out = {header(m, "x-alert-source") for m in outputs} & keys
    dead_keys = {header(m, "x-dead-letter-source") for m in dead} & keys
    absent = len(keys - out - dead_keys)
    filtered = filtered or 0
    return {"in": len(keys), "out": len(out), "filtered": filtered, "dead_lettered": len(dead_keys),
            "lost": abs(absent - filtered), "duplicates": len(outputs) - len(out),
            "strays": len({header(m, "x-alert-source") for m in outputs} - keys)}


def json_values(messages: list) -> list[dict]:
    values = []
    for message in messages:
        try:
            values.append(json.loads(message.value()))
        except (TypeError, ValueError):
            values.append({})
    return values


# -- the run ---------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict:
    """Run the pipeline on the alerts, check it, return the report (also written to run_dir/report.json)."""
    run_dir = Path(args.run_dir).resolve()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    state_dir = run_dir / "state"
    file = relocate(run_dir)
    watchlists = run_dir / "watchlists"
    thumbnails = run_dir / "thumbnails"
    started = time.monotonic()
    say(f"starting the pipeline ({file}): 2 local Kafka clusters, 10 buffers, 5 stages; "
        f"the first run fetches Apache Kafka from Maven Central, once")
    up = subprocess.run([str(ALERT_PIPELINE), "up", str(file), "--detach", "--state-dir", str(state_dir),
                         "--wait", "300"], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=420)
    for line in up.stdout.strip().splitlines():
        say(f"  {line}")
    if up.returncode != 0:
        raise RuntimeError(f"alert-pipeline up failed (exit {up.returncode}); logs in {state_dir}")
    dashboard = None
    status = Status(file, state_dir)
    report: dict[str, Any] = {"run_dir": str(run_dir), "pipeline": str(file)}
    try:
        dashboard, address = start_dashboard(file, state_dir, run_dir, args.dashboard_port)
        report["dashboard"], report["dashboard_pid"] = address, dashboard.pid
        say(f"dashboard: {address}")
        say(f"thumbnails gallery: {thumbnails / 'index.html'}")
        bootstraps = read_state(state_dir)["clusters"]
        spec = yaml.safe_load(file.read_text())
        topic_of = {name: b.get("topic", name) for name, b in spec["buffers"].items()}
        plan = Plan()
        writer = Writer(bootstraps["rubin"], topic_of["rubin-alerts"], args.visit_size, plan)
        say(f"writing {args.visits} visits of {args.visit_size} Rubin alerts, one every {args.interval} s")
        lag_seen = write_visits(writer, args, watchlists, status, report)
        writer.close()
        if writer.errors:
            raise RuntimeError(f"alerts not written upstream: {writer.errors[:3]}")
        say(f"wrote {len(plan.written) + plan.corrupt} alerts ({plan.bytes_written / 1e6:.0f} MB): "
            f"{len(plan.watch)} on watch-list targets, {len(plan.watch_misses)} just outside them, "
            f"{len(plan.matches)} brightening on catalogue sources, {plan.corrupt} corrupt")
        snapshot = wait_drained(status, timeout=args.timeout)
        report["drained_s"] = round(time.monotonic() - started, 1)
        report.update(check(plan, spec, bootstraps, topic_of, snapshot, thumbnails))
        report["thumbnails_max_lag"] = lag_seen
    finally:
        status.close()
        if dashboard is not None and not args.keep:
            os.killpg(dashboard.pid, signal.SIGTERM)
            dashboard.wait(30)
        if not args.keep:
            down = pipeline_cli("down", str(file), "--state-dir", str(state_dir), check=False)
            say("pipeline stopped" if down.returncode == 0 else f"alert-pipeline down: {down.stdout.strip()[-300:]}")
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def start_dashboard(file: Path, state_dir: Path, run_dir: Path, port: int) -> tuple[subprocess.Popen, str]:
    """`alert-pipeline dashboard` in the background, and its address; on any free port if ``port`` is taken."""
    log = run_dir / "dashboard.log"
    for attempt in (port, 0):
        with open(log, "wb") as out:
            process = subprocess.Popen([str(ALERT_PIPELINE), "dashboard", str(file), "--state-dir", str(state_dir),
                                        "--port", str(attempt)], stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            for word in text.split():
                if word.startswith("http://"):
                    return process, word.rstrip(".,")
            if process.poll() is not None:
                if "Address already in use" in text and attempt:
                    say(f"port {attempt} is taken: the dashboard listens on a free one")
                    break
                raise RuntimeError(f"the dashboard stopped: {text.strip()[-500:]}")
            time.sleep(0.2)
        else:
            process.kill()
            raise RuntimeError("the dashboard printed no address within 60 s")
    raise RuntimeError("the dashboard could not listen")


def write_visits(writer: Writer, args, watchlists: Path, status: Status, report: dict) -> dict:
    """Write the visits at their pace; add a watch-list target half-way. Returns the thumbnails' largest lag."""
    added = offset(float(writer.catalog[0]["ra"]), float(writer.catalog[0]["dec"]), 600.0, 0.0)
    half = args.visits // 2
    lag = {"alerts": 0, "seconds": None}
    next_at = time.monotonic()
    for number in range(args.visits):
        plants: list[tuple[str, Any]] = []
        for k in range(args.plant_watch):
            plants.append(("watch", number * args.plant_watch + k))
        plants.append(("watch-miss", number))
        for k in range(args.plant_match):
            plants.append(("match", number * args.plant_match + k + 1))
        if number < CORRUPT:
            plants.append(("corrupt", None))
        if number == max(0, half - 1):
            plants.append(("added-before", added))
        if number == half + 1 or (half + 1 >= args.visits and number == args.visits - 1):
            plants.append(("added-after", added))
        writer.visit(number, plants)
        if number == max(0, half - 1):
            # A new watch list while the pipeline runs: the trigger reads it without a restart.
            time.sleep(1.0)  # the alert before it is through the trigger by then
            target = watchlists / "demo-added.csv"
            target.write_text("name,ra,dec,radius_arcsec\n" f"added while running,{added[0]:.6f},{added[1]:.6f},5\n")
            report["watchlist_added_at"] = time.time()
            say(f"added {target.name} to the watch lists (the trigger picks it up without a restart)")
            time.sleep(1.5)
        snapshot = status()
        thumbs = snapshot["stages"].get("thumbnails", {})
        if (thumbs.get("lag") or 0) > lag["alerts"]:
            lag = {"alerts": thumbs.get("lag"), "seconds": thumbs.get("lag_s")}
        say(f"visit {number + 1}/{args.visits} written; lag per stage: "
            + ", ".join(f"{name} {s.get('lag')}" for name, s in snapshot["stages"].items()))
        next_at += args.interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return lag


def wait_drained(status: Status, timeout: float) -> dict:
    """Wait until every stage has committed all of its input; return the status then."""
    deadline = time.monotonic() + timeout
    last_print = 0.0
    while True:
        snapshot = status()
        stages = snapshot["stages"]
        behind = {name: s.get("lag") for name, s in stages.items() if s.get("lag") != 0}
        if stages and not behind:
            return snapshot
        if time.monotonic() > deadline:
            raise RuntimeError(f"stages still behind after {timeout:.0f} s: {behind}; "
                               f"problems: {snapshot.get('errors')}")
        if time.monotonic() - last_print > 5:
            say(f"waiting for the stages to finish: still to do {behind}")
            last_print = time.monotonic()
        time.sleep(1)


def check(plan: Plan, spec: dict, bootstraps: dict, topic_of: dict, snapshot: dict, thumbnails: Path) -> dict:
    """Each stage's summary from its buffers, and where every planted alert ended."""
    def records(buffer: str) -> list:
        return read_topic(bootstraps[spec["buffers"][buffer]["cluster"]], topic_of[buffer])

    cache: dict[str, list] = {}

    def of(buffer: str | None) -> list:
        if buffer is None:
            return []
        if buffer not in cache:
            cache[buffer] = records(buffer)
        return cache[buffer]

    summaries = {}
    for name, stage in spec["stages"].items():
        summaries[name] = account(of(stage["input"]), of(stage.get("output")), of(stage.get("dead_letter")),
                                  snapshot["stages"][name].get("filtered"), topic_of[stage["input"]])
    problems: list[str] = []
    followups, by_alert = {}, {}  # diaSourceId -> the request, and its seconds from the write upstream
    for message, value in zip(of("followup"), json_values(of("followup"))):
        alert_id = value.get("diaSourceId")
        followups[alert_id] = value
        if alert_id in plan.written:
            by_alert[alert_id] = message.timestamp()[1] / 1000.0 - plan.written[alert_id]
    annotated = {v.get("diaSourceId"): v for v in json_values(of("annotated"))}
    missed = sorted(set(plan.watch) - set(followups))
    if missed:
        problems.append(f"{len(missed)} alerts on watch-list targets gave no follow-up request: {missed[:5]}")
    wrong_target = [i for i, name in plan.watch.items()
                    if i in followups and name not in [m.get("name") for m in followups[i].get("matches", [])]]
    if wrong_target:
        problems.append(f"{len(wrong_target)} follow-up requests name the wrong target: {wrong_target[:5]}")
    false = sorted(plan.watch_misses & set(followups))
    if false:
        problems.append(f"{len(false)} alerts outside every target gave a follow-up request: {false[:5]}")
    if plan.added_before in followups:
        problems.append("an alert on the added target triggered before its watch list was added")
    if plan.added_after is not None and plan.added_after not in followups:
        problems.append("an alert on the target added while running gave no follow-up request")
    unannotated = sorted(set(plan.matches) - set(annotated))
    if unannotated:
        problems.append(f"{len(unannotated)} brightening alerts on catalogue sources were not annotated: "
                        f"{unannotated[:5]}")
    misclassed = {i: (annotated[i].get("classification"), want) for i, (_, want) in plan.matches.items()
                  if i in annotated and annotated[i].get("classification") != want}
    if misclassed:
        problems.append(f"{len(misclassed)} annotations with another class than planted: "
                        f"{list(misclassed.items())[:5]}")
    unnamed = [i for i, (source, _) in plan.matches.items()
               if i in annotated and source not in [m.get("name") for m in annotated[i].get("matches", [])]]
    if unnamed:
        problems.append(f"{len(unnamed)} annotations do not list the planted source: {unnamed[:5]}")
    # Thumbnails: three PNGs for every alert that decodes, and a gallery.
    pngs = sorted(thumbnails.rglob("*.png"))
    bad = [p for p in pngs if p.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n"]
    if bad:
        problems.append(f"{len(bad)} thumbnails are not PNG files: {[str(p) for p in bad[:3]]}")
    expected_pngs = 3 * len(plan.written)
    if len(pngs) < expected_pngs:
        problems.append(f"{len(pngs)} thumbnails for {len(plan.written)} alerts (3 each expected)")
    if not (thumbnails / "index.html").is_file():
        problems.append("no gallery (index.html) in the thumbnails folder")
    latencies = list(by_alert.values())
    ordered = sorted(latencies)
    by_visit: dict[int, float] = {}
    for alert_id, seconds in by_alert.items():
        visit = plan.visit_of.get(alert_id, -1)
        by_visit[visit] = round(max(by_visit.get(visit, 0.0), seconds), 3)
    for name, s in summaries.items():
        if s["lost"]:
            problems.append(f"stage {name}: {s['lost']} alerts lost")
    return {"stages": summaries, "problems": problems,
            "planted": {"watch": len(plan.watch), "watch_misses": len(plan.watch_misses),
                        "matches": len(plan.matches), "corrupt": plan.corrupt,
                        "classes": dict(Counter(want for _, want in plan.matches.values()))},
            # What each planted alert gave, for a test to hold against the plan on its own.
            "plan": {"watch": plan.watch, "watch_misses": sorted(plan.watch_misses), "matches": plan.matches,
                     "added_before": plan.added_before, "added_after": plan.added_after},
            "outputs": {"followups": {i: [m.get("name") for m in v.get("matches", [])] for i, v in followups.items()},
                        "annotations": {i: (v.get("classification"), [m.get("name") for m in v.get("matches", [])])
                                        for i, v in annotated.items()}},
            "followups": len(followups), "annotated": len(annotated), "thumbnails": len(pngs),
            "alerts_written": len(plan.written) + plan.corrupt, "bytes_written": plan.bytes_written,
            "trigger_latency_s": {"count": len(latencies), "p50": percentile(ordered, 50),
                                  "p99": percentile(ordered, 99), "max": max(latencies, default=None),
                                  "mean": statistics.fmean(latencies) if latencies else None,
                                  "all": [round(x, 3) for x in ordered],
                                  "worst_by_visit": dict(sorted(by_visit.items()))}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=16, help="visits to write (default 16)")
    parser.add_argument("--visit-size", type=int, default=250, help="alerts a visit (default 250)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between visits (default 2)")
    parser.add_argument("--plant-watch", type=int, default=8, help="alerts on watch-list targets a visit")
    parser.add_argument("--plant-match", type=int, default=4, help="brightening alerts on catalogue sources a visit")
    parser.add_argument("--run-dir", default=str(ROOT / ".demo" / "lasair"), help="where everything is written")
    parser.add_argument("--dashboard-port", type=int, default=8080, help="the dashboard's port (0: any free one)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the stages to finish")
    parser.add_argument("--keep", action="store_true",
                        help="leave the pipeline and dashboard running (`alert-pipeline down FILE` stops them)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        report = run(args)
    except KeyboardInterrupt:
        say("interrupted: the pipeline is stopped")
        return 130
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        say(f"failed: {exc}")
        return 1
    latency = report["trigger_latency_s"]
    lag = report["thumbnails_max_lag"]
    say(f"{report['alerts_written']} alerts through the pipeline in {time.monotonic() - started:.0f} s; "
        f"{report['followups']} follow-up requests, {report['annotated']} alerts annotated, "
        f"{report['thumbnails']} thumbnails in {report['run_dir']}/thumbnails (gallery: index.html)")
    if latency["count"]:
        say(f"trigger latency, alert written upstream to follow-up request out, over {latency['count']} requests: "
            f"p50 {latency['p50'] * 1000:.0f} ms, p99 {latency['p99'] * 1000:.0f} ms, "
            f"while the thumbnails were up to {lag['alerts']} alerts behind")
        worst = latency["worst_by_visit"]
        later = [seconds for visit, seconds in worst.items() if visit not in (0, -1)]
        if 0 in worst and later:
            say(f"slowest request of the first visit {worst[0] * 1000:.0f} ms (each stage's first batch), "
                f"of the other {len(later)} visits {max(later) * 1000:.0f} ms")
    if not args.keep:
        say("the pipeline and its dashboard are stopped; the thumbnails and report.json stay in "
            f"{report['run_dir']} (run with --keep to leave the pipeline and dashboard running)")
    else:
        say(f"still running: the dashboard at {report.get('dashboard')} (process {report.get('dashboard_pid')}) and "
            f"the pipeline; stop them with `kill {report.get('dashboard_pid')}` and "
            f"`alert-pipeline down {report['pipeline']} --state-dir {report['run_dir']}/state`")
    for problem in report["problems"]:
        say(f"MISMATCH: {problem}")
    for name, s in report["stages"].items():
        print(f"{name}: alerts in: {s['in']}, out: {s['out']}, filtered: {s['filtered']}, "
              f"dead-lettered: {s['dead_lettered']}, lost: {s['lost']}", flush=True)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
