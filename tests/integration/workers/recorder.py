"""A test worker that records every Alert message it receives, as the sidecar sent it, and drops the alert.

Each alert is one line of --record: the ``alertsidecar.v1.Alert`` message,
serialised and base64-encoded, so that a test can compare every field (value,
content type, source content type, schema id, key, headers, ...) byte for byte
with what ``alert_worker.testing`` builds for the same input.
"""

import argparse
import base64
import threading

import alert_worker

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
parser.add_argument("--record", required=True, help="file to append one line per alert to")
parser.add_argument("--accepts", nargs="+", default=["*/*"])
parser.add_argument("--fields", nargs="*", default=[])
args = parser.parse_args()

lock = threading.Lock()  # the sidecar may have several batches in flight


@alert_worker.batch_worker(name="recorder", version="1", accepts=args.accepts, fields=args.fields)
def record(alerts: list[alert_worker.Alert]) -> list[bool]:
    lines = [base64.b64encode(alert.to_proto().SerializeToString()).decode("ascii") + "\n" for alert in alerts]
    with lock, open(args.record, "a", encoding="ascii") as out:
        out.writelines(lines)
    return [False] * len(alerts)


alert_worker.serve(record, port=args.port)
