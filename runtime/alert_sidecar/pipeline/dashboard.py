"""``alert-pipeline dashboard``: a live page of one pipeline, served by the standard library alone.

Three things are served, all on one port:

- ``/``: the page (``dashboard.html`` beside this module, shipped as package
  data; plain JavaScript and inline SVG, nothing fetched from elsewhere, so it
  works on a machine with no way out);
- ``/api/pipeline``: the graph as the file says it (``graph``): clusters,
  buffers, stages, the edges between them, and each node's column;
- ``/api/status``: the latest snapshot (status.py's, as ``alert-pipeline
  status --json`` prints it, without the latency histograms), with a short
  history per stage for the page's plots and a ``dashboard`` block saying
  when the reply was made and when the snapshot is to be called stale.

One thread (``Sampler``) takes a snapshot every ``--interval`` seconds,
reusing its admin clients and giving status.py the previous snapshot, so the
rates and latencies are over the last interval. The request handlers only
read what it last took: a page open in ten browsers costs Kafka nothing more.
The pipeline file is read once, at start.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import click

from alert_sidecar.pipeline.model import Pipeline

PAGE = "dashboard.html"
# The plots show this much: long enough to see a change and what followed it,
# short enough that a reply stays small (300 points a series at 1 s).
HISTORY_S = 300.0
# What each stage's history keeps, as the snapshot names it.
HISTORY_FIELDS = ("rate_in", "rate_out", "lag", "lag_s", "latency_p50_s", "latency_p99_s")


def graph(pipeline: Pipeline) -> dict[str, Any]:
    """The pipeline as a graph: its nodes with their column (left to right) and its edges.

    A buffer that no stage writes is a source, in column 0; a stage is one
    column right of its input; a buffer is one right of the last stage that
    writes it. Loops are refused by ``validate``, so every column is finite.
    """
    from alert_sidecar.pipeline.status import _worker_kind

    columns: dict[str, int] = {}

    def buffer_column(name: str) -> int:
        key = f"buffer:{name}"
        if key not in columns:
            writers = pipeline.writers(name)
            columns[key] = max((stage_column(s.name) + 1 for s in writers), default=0)
        return columns[key]

    def stage_column(name: str) -> int:
        key = f"stage:{name}"
        if key not in columns:
            columns[key] = buffer_column(pipeline.stages[name].input) + 1
        return columns[key]

    edges: list[dict[str, Any]] = []
    for stage in pipeline.stages.values():
        edges.append({"from": f"buffer:{stage.input}", "to": f"stage:{stage.name}", "kind": "input"})
        roles = [(stage.output, "output", None), *((b, "route", r) for r, b in stage.routes.items()),
                 (stage.dead_letter, "dead_letter", None)]
        seen = set()
        for buffer, kind, route in roles:
            if buffer is None or buffer in seen:
                continue
            seen.add(buffer)
            edges.append({"from": f"stage:{stage.name}", "to": f"buffer:{buffer}", "kind": kind, "route": route})
    return {
        "pipeline": pipeline.name, "file": pipeline.path,
        "clusters": {name: {"local": c.is_local, "brokers": c.local_brokers, "bootstrap": c.bootstrap,
                            "line": c.line} for name, c in pipeline.clusters.items()},
        "buffers": {name: {"cluster": b.cluster, "topic": b.topic, "partitions": b.partitions, "format": b.format,
                           "column": buffer_column(name), "line": b.line} for name, b in pipeline.buffers.items()},
        "stages": {name: {"input": s.input, "outputs": s.writes(), "worker": _worker_kind(s),
                          "instances": s.instances, "ordering": s.ordering, "exactly_once": s.exactly_once,
                          "column": stage_column(name), "line": s.line} for name, s in pipeline.stages.items()},
        "edges": edges,
    }


class Sampler:
    """Takes a snapshot of the pipeline every ``interval`` seconds and keeps the last few minutes of them."""

    def __init__(self, pipeline: Pipeline, folder: Path, interval: float) -> None:
        self.pipeline = pipeline
        self.folder = folder
        self.interval = interval
        self._admins: dict = {}
        self._previous: dict | None = None  # whole, histograms and all: the next rates are measured from it
        self._latest: dict | None = None
        self._history: deque[tuple[float, dict[str, dict]]] = deque()
        self._error: str | None = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        from alert_sidecar.pipeline.cli import pipeline_status

        try:
            now = pipeline_status(self.pipeline, self.folder, self._previous, self._admins)
        except Exception as exc:  # a bug of ours: loud on stderr, said on the page, and tried again
            traceback.print_exc()
            with self._lock:
                self._error = f"the dashboard could not take a snapshot: {type(exc).__name__}: {exc}"
            return
        self._previous = now
        shown = {**now, "stages": {name: {k: v for k, v in s.items() if k != "latency_buckets"}
                                   for name, s in now["stages"].items()}}
        point = {name: {k: s[k] for k in HISTORY_FIELDS} for name, s in now["stages"].items()}
        with self._lock:
            self._latest = shown
            self._error = None
            self._history.append((now["time"], point))
            while self._history and self._history[0][0] < now["time"] - HISTORY_S:
                self._history.popleft()

    def run(self, stop: threading.Event) -> None:
        """Sample until ``stop`` is set, one snapshot starting every ``interval`` (or at once if one took longer)."""
        while not stop.is_set():
            started = time.monotonic()
            self.sample()
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    @property
    def error(self) -> str | None:
        """Why the last snapshot failed, if it did."""
        with self._lock:
            return self._error

    def reply(self) -> dict[str, Any] | None:
        """What ``/api/status`` answers; None before the first snapshot."""
        with self._lock:
            latest, history, error = self._latest, list(self._history), self._error
        about = {"served_at": time.time(), "every_s": self.interval, "history_s": HISTORY_S,
                 # A snapshot can wait on Kafka for status.TIMEOUT_S per request: one older than
                 # three intervals and that wait is no longer late but stuck.
                 "stale_after_s": 3 * self.interval + _status_timeout(), "sample_error": error}
        if latest is None:
            return None
        series = {name: {k: [p[name][k] for _t, p in history] for k in HISTORY_FIELDS} for name in latest["stages"]}
        return {**latest, "history": {"t": [t for t, _p in history], "stages": series}, "dashboard": about}


def _status_timeout() -> float:
    from alert_sidecar.pipeline.status import TIMEOUT_S

    return TIMEOUT_S


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True  # a browser that keeps a connection open never holds up the stop

    def __init__(self, address: tuple[str, int], sampler: Sampler, page: bytes, pipeline_graph: dict) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, DashboardHandler)
        self.sampler = sampler
        self.page = page
        self.graph_json = json.dumps(pipeline_graph).encode()


class DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif path == "/api/pipeline":
            self._send(HTTPStatus.OK, self.server.graph_json, "application/json")
        elif path == "/api/status":
            reply = self.server.sampler.reply()
            if reply is None:
                why = self.server.sampler.error or "no snapshot yet: the first is being taken"
                self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": why})
            else:
                self._send_json(HTTPStatus.OK, reply)
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path} (there are /, /api/pipeline "
                                                            "and /api/status)"})

    def _send_json(self, status: HTTPStatus, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Quiet: an open page asks every second; errors are still logged (log_error)."""


def serve(pipeline: Pipeline, folder: Path, host: str, port: int, interval: float) -> None:
    """Serve the dashboard until SIGINT or SIGTERM; prints its URL once it listens."""
    page = resources.files("alert_sidecar.pipeline").joinpath(PAGE).read_bytes()
    sampler = Sampler(pipeline, folder, interval)
    try:
        server = DashboardServer((host, port), sampler, page, graph(pipeline))
    except OSError as exc:
        click.echo(f"alert-pipeline: error: cannot listen on {host}:{port} ({exc.strerror or exc}): "
                   "give another --port (0 picks a free one)", err=True)
        sys.exit(1)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sampling = threading.Thread(target=sampler.run, args=(stop,), name="dashboard-sampler", daemon=True)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                               name="dashboard-server", daemon=True)
    sampling.start()
    serving.start()
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"dashboard: http://{shown_host}:{server.server_address[1]}/")
    try:
        # A timed wait: the signal handlers run in this thread, between its waits.
        while not stop.wait(0.5):
            pass
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        # A snapshot under way finishes on its own; the thread is a daemon, so it never holds up the exit.
        sampling.join(timeout=1.0)
    click.echo("dashboard: stopped")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; the page has no login, so mind who can reach it).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on; 0 picks a free one (the URL printed says which).")
@click.option("--interval", type=click.FloatRange(0.2, 60), default=1.0, show_default=True,
              help="Seconds between snapshots; rates and latencies are over one interval.")
@click.option("--state-dir", type=click.Path(file_okay=False),
              help="The state folder `up` was given (default: .alert-pipeline/NAME beside FILE).")
def dashboard_command(file: str, host: str, port: int, interval: float, state_dir: str | None) -> None:
    """Serve a live page of FILE's pipeline: its graph, rates, lag, latency and problems (Ctrl-C stops it)."""
    from alert_sidecar.pipeline.cli import _load, _state_dir

    pipeline = _load(file)
    serve(pipeline, _state_dir(pipeline, state_dir), host, port, interval)
