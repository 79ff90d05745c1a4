"""What writing a batch of alerts for a worker costs: wire.py against the generated protobuf classes.

    python bench/wire.py

Times, per alert, the AlertBatch of 100 alerts written by
``alert_sidecar.workers.wire.BatchEncoder`` and the same batch built from
``worker_pb2.Alert`` messages and serialized, for small values and for values
of a small Rubin alert's size (10 KB). Best of 7 rounds of 200 batches each.
"""

from __future__ import annotations

import time

from alert_sidecar.workers.wire import BatchEncoder
from alertsidecar.v1 import worker_pb2

ROUNDS, BATCHES, ALERTS = 7, 200, 100


def best_us_per_alert(write) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(BATCHES):
            write()
        best = min(best, (time.perf_counter() - started) / BATCHES / ALERTS * 1e6)
    return best


def main() -> None:
    for size in (10, 10_000):
        alerts = [(f"alerts/2/{offset}", offset, 1_764_000_000_000, None, bytes(size),
                   "application/vnd.apache.avro+confluent", None, 0, "", 1101)
                  for offset in range(100_000, 100_000 + ALERTS)]
        encoder = BatchEncoder("alerts", 2)

        def generated(alerts=alerts):
            return worker_pb2.AlertBatch(batch_id=5, alerts=[
                worker_pb2.Alert(id=a[0], topic="alerts", partition=2, offset=a[1], timestamp_ms=a[2], value=a[4],
                                 content_type=a[5], schema_id=a[9]) for a in alerts]).SerializeToString()

        wire = best_us_per_alert(lambda encoder=encoder, alerts=alerts: encoder.encode(5, alerts, {}))
        pb = best_us_per_alert(generated)
        print(f"{size:>6} B values: wire.py {wire:.1f} µs/alert, generated classes {pb:.1f} µs/alert "
              f"({pb / wire:.1f}x)")


if __name__ == "__main__":
    main()
