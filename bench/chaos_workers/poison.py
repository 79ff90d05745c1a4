"""A worker that fails on purpose on the alerts that say so: the poison of the fault-injection suite.

    python bench/chaos_workers/poison.py [--port PORT]     # else $ALERT_WORKER_PORT, as the sidecar sets it

Every alert bench/chaos.py writes is a small JSON object with a "case"; this
worker keeps the alert unless the case says otherwise, and does so every time
it meets the alert, as real poison does:

- ``retry``: answers RETRY (raises ``alert_worker.Retry``), so the sidecar
  dead-letters it after --max-retries;
- ``crash``: the handler raises (a ZeroDivisionError), which the SDK answers
  as RETRY with the error, so it is dead-lettered the same way;
- ``exit``: the worker process dies on the spot (``os._exit``), taking every
  batch in flight with it;
- ``hang``: never answered; the handler blocks for good, so only the
  sidecar's --worker-timeout ends the call.
"""

from __future__ import annotations

import argparse
import os
import threading

import alert_worker

# A worker that dies on an alert exits with a code of its own, so that its
# sidecar's log tells the poison from other deaths.
EXIT_CODE = 17


@alert_worker.worker(name="chaos-poison", version="1.0.0")
def poison(alert: alert_worker.Alert) -> bool:
    case = alert.json().get("case", "ok")
    if case == "retry":
        raise alert_worker.Retry("poison: this alert is answered RETRY every time")
    if case == "crash":
        return 1 / 0
    if case == "exit":
        os._exit(EXIT_CODE)
    if case == "hang":
        threading.Event().wait()  # never set: the call never returns
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to listen on (default: ${alert_worker.server.PORT_ENV}, else 50051)")
    args = parser.parse_args()
    alert_worker.serve(poison, port=args.port)


if __name__ == "__main__":
    main()
