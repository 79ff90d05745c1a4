"""A test worker that keeps every alert after a delay per batch (to make runs long enough to kill).

--record writes, after the delay, the alerts of each batch in the order the
worker finished them, so a test can see what ran out of order.

--jitter-ms adds a random extra delay per batch, so that batches in flight
together finish out of order. The worker prints a line each time the number of
batches it holds at once reaches a new maximum ("concurrent batches: N").
"""

import argparse
import os
import random
import threading
import time

import alert_worker

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
parser.add_argument("--delay-ms", type=float, default=0)
parser.add_argument("--jitter-ms", type=float, default=0)
parser.add_argument("--processes", type=int, default=1)
parser.add_argument("--record", help="append 'key seq' per alert, in the order the worker takes them")
args = parser.parse_args()
lock = threading.Lock()
state = {"now": 0, "max": 0}


@alert_worker.batch_worker(name="slow", version="1")
def slow(alerts):
    with lock:
        state["now"] += 1
        if state["now"] > state["max"]:
            state["max"] = state["now"]
            print(f"concurrent batches: {state['max']} pid {os.getpid()}", flush=True)
    try:
        time.sleep((args.delay_ms + random.uniform(0, args.jitter_ms)) / 1000)
        if args.record:
            with lock, open(args.record, "a") as log:
                for alert in alerts:
                    log.write(f"{(alert.key or b'-').decode()} {alert.json()['seq']}\n")
        return [True] * len(alerts)
    finally:
        with lock:
            state["now"] -= 1


alert_worker.serve(slow, port=args.port, processes=args.processes)
