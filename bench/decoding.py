"""What decoding an alert costs the sidecar, per alert, and how the decoder pool scales.

    python bench/decoding.py [--alerts 1000] [--processes N]

Measures, on the same LSST-sized Rubin alerts (schema 11.1, 30 previous
sources, 3 cutouts; made by alert_sidecar.simulate.rubin) in one run:
- the baseline: handing the raw bytes on (what a worker that accepts Avro costs);
- fastavro decoding alone;
- decoding and writing the contract's JSON form (what a worker that accepts JSON costs);
- the same with a projection of a filter's few fields;
- the stage's decoding (``convert_batch`` in batches of 100 on one thread) of
  all fields and of those few, by the compiled reader that skips what is not
  asked for and by fastavro alone (the reference, as without the extension);
- the decoder pool's throughput with 1 process and with N (default: one per core).
Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from alert_sidecar.formats import avro_projection
from alert_sidecar.formats.decoding import DecoderPool, convert_batch, decode, to_json
from alert_sidecar.formats.content import AVRO_CONFLUENT
from alert_sidecar.simulate.rubin import RubinAlertFactory
from alert_sidecar.formats.schemas import RubinSchemas

FIELDS = ("diaSourceId", "diaSource.ra", "diaSource.dec", "diaSource.psfFlux", "diaSource.psfFluxErr",
          "diaSource.band", "prvDiaSources.psfFlux", "prvDiaSources.midpointMjdTai")


def per_alert_ms(function, values) -> float:
    start = time.perf_counter()
    for value in values:
        function(value)
    return (time.perf_counter() - start) / len(values) * 1000


def pool_rate(processes: int, values, source, batch: int = 100) -> float:
    pool = DecoderPool(processes, source)
    try:
        pool.submit(values[:batch], [AVRO_CONFLUENT] * batch, None).result()  # start-up and schema loading
        start = time.perf_counter()
        futures = [pool.submit(values[i:i + batch], [AVRO_CONFLUENT] * len(values[i:i + batch]), None)
                   for i in range(0, len(values), batch)]
        for future in futures:
            assert all(c.error is None for c in future.result())
        return len(values) / (time.perf_counter() - start)
    finally:
        pool.close()


def batch_rate(values, fields, source, compiled: bool, batch: int = 100) -> float:
    """Alerts/s through convert_batch on this thread, with the compiled reader or fastavro alone."""
    if compiled and not avro_projection.AVAILABLE:
        return float("nan")
    kept, avro_projection.AVAILABLE = avro_projection.AVAILABLE, compiled
    try:
        convert_batch(values[:1], [AVRO_CONFLUENT], fields, source)  # compile the reader outside the timing
        start = time.perf_counter()
        for i in range(0, len(values), batch):
            chunk = values[i:i + batch]
            assert all(c.error is None for c in convert_batch(chunk, [AVRO_CONFLUENT] * len(chunk), fields, source))
        return len(values) / (time.perf_counter() - start)
    finally:
        avro_projection.AVAILABLE = kept


def stage_rates(count: int = 1000) -> dict:
    """The stage's decoding rates of LSST-sized alerts (all fields, FIELDS), compiled and by fastavro alone."""
    values = list(RubinAlertFactory(cutouts=True, prv_sources=30, seed=1).alerts(count))
    source = RubinSchemas()
    rates = {(compiled, name): batch_rate(values, fields, source, compiled)
             for compiled in (False, True) for name, fields in (("all", None), ("fields", FIELDS))}
    return {"compiled": avro_projection.AVAILABLE, "fields": len(FIELDS), "alerts": count,
            **{f"{name}_{'compiled' if compiled else 'fastavro'}_per_s":
               round(rate) if rate == rate else None  # NaN: no compiled reader in this install
               for (compiled, name), rate in rates.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    factory = RubinAlertFactory(cutouts=True, prv_sources=30, seed=1)
    values = list(factory.alerts(args.alerts))
    source = RubinSchemas()
    decode(values[0], AVRO_CONFLUENT, source)  # load the schema once, outside the timings
    size = sum(map(len, values)) / len(values)

    baseline = per_alert_ms(bytes, values)
    decode_ms = per_alert_ms(lambda v: decode(v, AVRO_CONFLUENT, source), values)
    json_ms = per_alert_ms(lambda v: to_json(decode(v, AVRO_CONFLUENT, source)[0]), values)
    projected_ms = per_alert_ms(lambda v: to_json(decode(v, AVRO_CONFLUENT, source)[0], FIELDS), values)
    json_bytes = len(to_json(decode(values[0], AVRO_CONFLUENT, source)[0]))
    projected_bytes = len(to_json(decode(values[0], AVRO_CONFLUENT, source)[0], FIELDS))
    rates = {(compiled, name): batch_rate(values, fields, source, compiled)
             for compiled in (False, True) for name, fields in (("all", None), ("fields", FIELDS))}
    one = pool_rate(1, values, source)
    many = pool_rate(args.processes, values, source)

    print(f"{args.alerts} LSST-sized Rubin alerts of {size / 1000:.1f} KB (schema {factory.schema_version}), "
          f"{os.cpu_count()} cores")
    print(f"  pass the bytes on (baseline)     {baseline:8.4f} ms/alert")
    print(f"  fastavro decode                  {decode_ms:8.3f} ms/alert")
    print(f"  decode + JSON form               {json_ms:8.3f} ms/alert  ({json_bytes / 1000:.0f} KB of JSON)")
    print(f"  decode + JSON, {len(FIELDS)} fields        {projected_ms:8.3f} ms/alert  ({projected_bytes} B of JSON)")
    for name, label in (("all", "all fields"), ("fields", f"{len(FIELDS)} fields  ")):
        fast, slow = rates[True, name], rates[False, name]
        print(f"  stage decoding, {label}       {fast:8.0f} alerts/s compiled, {slow:.0f} with fastavro "
              f"({fast / slow:.1f}x)")
    print(f"  decoder pool, 1 process          {one:8.0f} alerts/s")
    print(f"  decoder pool, {args.processes} processes        {many:8.0f} alerts/s  ({many / one:.2f}x one)")
    print(json.dumps({
        "alerts": args.alerts, "alert_bytes": round(size), "baseline_ms": round(baseline, 5),
        "decode_ms": round(decode_ms, 3), "decode_json_ms": round(json_ms, 3),
        "decode_json_projected_ms": round(projected_ms, 3), "json_bytes": json_bytes,
        "projected_json_bytes": projected_bytes,
        "compiled": avro_projection.AVAILABLE,
        "stage_all_compiled_per_s": round(rates[True, "all"]) if avro_projection.AVAILABLE else None,
        "stage_all_fastavro_per_s": round(rates[False, "all"]),
        "stage_fields_compiled_per_s": round(rates[True, "fields"]) if avro_projection.AVAILABLE else None,
        "stage_fields_fastavro_per_s": round(rates[False, "fields"]),
        "pool_1_alerts_per_s": round(one), f"pool_{args.processes}_alerts_per_s": round(many),
        "pool_scaling": round(many / one, 2),
    }))


if __name__ == "__main__":
    main()
