"""A test worker whose verdict is named by the alert itself (its "case" field)."""

import argparse

import alert_worker
from alert_worker import Output

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
args = parser.parse_args()
seen: set[str] = set()


@alert_worker.worker(name="verdicts", version="1", routes=["special"])
def verdicts(alert: alert_worker.Alert):
    case = alert.json()["case"]
    if case == "keep":
        return True
    if case == "drop":
        return False
    if case == "twice":
        return [Output(value=alert.value, content_type="application/json"), Output.forward()]
    if case == "route":
        return Output.forward(route="special", headers=[("note", b"routed")])
    if case == "retry-once":
        if alert.id in seen:
            return True
        seen.add(alert.id)
        raise alert_worker.Retry("not yet")
    if case == "retry-always":
        raise alert_worker.Retry("catalogue down")
    if case == "dead":
        raise alert_worker.DeadLetter("not an alert of ours")
    if case == "bad-route":
        return Output.forward(route="nowhere")
    if case == "crash":
        return 1 / 0
    raise AssertionError(case)


alert_worker.serve(verdicts, port=args.port)
