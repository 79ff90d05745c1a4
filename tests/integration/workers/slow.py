"""A test worker that keeps every alert after a fixed delay per batch (to make runs long enough to kill)."""

import argparse
import time

import alert_worker

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
parser.add_argument("--delay-ms", type=float, default=0)
args = parser.parse_args()


@alert_worker.batch_worker(name="slow", version="1")
def slow(alerts):
    time.sleep(args.delay_ms / 1000)
    return [True] * len(alerts)


alert_worker.serve(slow, port=args.port)
