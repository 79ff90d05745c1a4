"""A test worker whose catalogue is down while a file exists: it answers RETRY for every alert, then keeps all."""

import argparse
import os

import alert_worker

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
parser.add_argument("--down-while", required=True, help="the outage lasts while this file exists")
args = parser.parse_args()


@alert_worker.batch_worker(name="outage", version="1")
def outage(alerts):
    if os.path.exists(args.down_while):
        return [alert_worker.Retry("catalogue unreachable")] * len(alerts)
    return [True] * len(alerts)


alert_worker.serve(outage, port=args.port)
