"""A worker that keeps every alert, slowly: the fault-injection suite's way to make a stage fall behind.

    python bench/chaos_workers/slow.py [--delay-ms 5] [--port PORT]

With a delay per alert longer than the input's pace allows, alerts pile up
in the sidecar until it holds --max-buffered of them and pauses fetching;
bench/chaos.py adds and removes sidecars of one group while they are paused.
"""

from __future__ import annotations

import argparse
import time

import alert_worker

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--delay-ms", type=float, default=5.0, help="time spent on each alert")
parser.add_argument("--port", type=int, default=None,
                    help=f"port to listen on (default: ${alert_worker.server.PORT_ENV}, else 50051)")
args = parser.parse_args()


@alert_worker.worker(name="chaos-slow", version="1.0.0")
def slow(alert: alert_worker.Alert) -> bool:
    time.sleep(args.delay_ms / 1000)
    return True


if __name__ == "__main__":
    alert_worker.serve(slow, port=args.port)
