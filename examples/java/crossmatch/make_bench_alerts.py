"""Write LSST-sized Rubin alerts to a file for the Java cross-match benchmark's decoding figure.

    .venv/bin/python examples/java/crossmatch/make_bench_alerts.py /tmp/rubin.bin --count 2000

The file: the schema id and the writer schema (as the sidecar sends it in
AlertBatch.schemas), then the alerts as Kafka holds them (Confluent wire
format); each item a 4-byte big-endian length and its bytes, the id a
4-byte integer before the schema.
"""

from __future__ import annotations

import argparse
import struct

from alert_sidecar.simulate.rubin import RubinAlertFactory
from alert_sidecar.formats.schemas import RubinSchemas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    factory = RubinAlertFactory(seed=options.seed)  # the newest schema, 30 previous sources, 3 cutouts
    schema = RubinSchemas().schema_text(factory.schema_id).encode()
    with open(options.path, "wb") as out:
        out.write(struct.pack(">II", factory.schema_id, len(schema)) + schema)
        size = 0
        for value in factory.alerts(options.count):
            out.write(struct.pack(">I", len(value)) + value)
            size += len(value)
    print(f"{options.count} alerts of schema {factory.schema_version}, {size / options.count / 1000:.1f} KB each, "
          f"in {options.path}")


if __name__ == "__main__":
    main()
