"""The smallest worker: it keeps every alert, as it is.

Run it next to a sidecar:

    python examples/python/passthrough.py [--port 50051]

A stage with this worker copies its input buffer to its output buffer; it is
the baseline for measuring what the sidecar and gRPC cost.
"""

from __future__ import annotations

import argparse

import alert_worker


@alert_worker.worker(name="passthrough", version="1.0.0")
def passthrough(alert: alert_worker.Alert) -> bool:
    """Keep the alert: the sidecar produces the input record itself, bytes untouched."""
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1,
                        help="serve from this many processes, on consecutive ports from --port "
                             "(give the sidecar --worker HOST:FIRST-LAST)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to listen on (default: ${alert_worker.server.PORT_ENV}, else 50051)")
    args = parser.parse_args(argv)
    alert_worker.serve(passthrough, port=args.port, processes=args.processes)


if __name__ == "__main__":
    main()
