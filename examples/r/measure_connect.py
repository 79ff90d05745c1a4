"""Alerts per second through an R worker over Connect, without Kafka.

Sends ProcessBatch calls of projected Rubin alerts (the JSON form the sidecar
makes, with the fields of examples/r/brightening.R) to R workers already
listening, from one thread per worker port, with the sidecar's own Connect
client, and prints one JSON line of figures:

    Rscript examples/r/noop.R 1 &              # ALERT_WORKER_PORT=50051 by default
    python examples/r/measure_connect.py --port 50051 --processes 1
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from alert_sidecar.workers.connect import ConnectChannel, health_check
from alert_sidecar.formats.decoding import to_json
from alert_sidecar.simulate.rubin import RubinAlertFactory
from alertsidecar.v1 import worker_pb2

FIELDS = [
    "diaSourceId",
    "diaSource.midpointMjdTai", "diaSource.psfFlux", "diaSource.psfFluxErr", "diaSource.band",
    "prvDiaSources.midpointMjdTai", "prvDiaSources.psfFlux", "prvDiaSources.psfFluxErr", "prvDiaSources.band",
]
PROCESS_BATCH = "/alertsidecar.v1.AlertWorker/ProcessBatch"


def batch_of(factory: RubinAlertFactory, size: int, whole: bool) -> bytes:
    batch = worker_pb2.AlertBatch(batch_id=1)
    for i in range(size):
        record = factory.make(i)
        batch.alerts.add(id=f"bench/0/{i}", topic="bench", offset=i, content_type="application/json",
                         value=to_json(record, None if whole else FIELDS),
                         source_content_type="application/vnd.apache.avro+confluent", schema_id=factory.schema_id)
    return batch.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--processes", type=int, default=1, help="worker ports port..port+N-1, one caller each")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--whole", action="store_true", help="whole alerts (no cutouts) instead of the projection")
    args = parser.parse_args()

    request = batch_of(RubinAlertFactory(cutouts=False, seed=7), args.batch_size, args.whole)
    channels = [ConnectChannel(f"http://127.0.0.1:{args.port + i}") for i in range(args.processes)]
    for channel in channels:
        assert health_check(channel, 10) == 1
        channel.call(PROCESS_BATCH, request, 30)  # warm up: the first call loads the contract's answers
    calls = [0] * len(channels)
    latencies: list[float] = []
    deadline = time.monotonic() + args.seconds

    def drive(k: int) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            channels[k].call(PROCESS_BATCH, request, 30)
            latencies.append(time.perf_counter() - started)
            calls[k] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=drive, args=(k,)) for k in range(len(channels))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    print(json.dumps({
        "processes": args.processes, "batch_size": args.batch_size, "whole": args.whole,
        "alert_bytes": round(len(request) / args.batch_size), "calls": sum(calls),
        "alerts_per_s": round(sum(calls) * args.batch_size / elapsed),
        "ms_per_call_p50": round(latencies[len(latencies) // 2] * 1000, 2),
        "ms_per_call_p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }))
    for channel in channels:
        channel.close()


if __name__ == "__main__":
    main()
