"""The Python conformance worker: the command language of tests/conformance/README.md.

Written only with the public ``alert_worker`` API, as a user would write a
worker. Each alert is a JSON object whose ``op`` says what to answer; the
driver (``tests/conformance/driver.py``) checks what the sidecar made of it.

Run by the sidecar as ``alert-sidecar ... -- python conformance_worker.py``;
it listens on ``$ALERT_WORKER_PORT``.
"""

from __future__ import annotations

from typing import Any

import alert_worker
from alert_worker import Alert, DeadLetter, Output, Retry


def _emit(outputs: list[dict[str, Any]]) -> list[Output]:
    return [
        Output(
            value=item["value"],  # a str: the SDK sends its UTF-8 bytes
            key=item.get("key"),
            content_type=item.get("content_type", "application/octet-stream"),
            headers=tuple(item.get("headers", {}).items()),
            route=item.get("route", ""),
        )
        for item in outputs
    ]


def _retry(alert: Alert, until_attempt: int | None) -> bool:
    if until_attempt is None or alert.attempt < until_attempt:
        raise Retry("retry requested")
    return True


def _echo(alert: Alert, command: dict[str, Any]) -> Output:
    # The metadata as this worker received it. json() keeps integers exact,
    # so alert_id survives whatever its size (Output.json writes it in full).
    return Output.json({
        "id": alert.id,
        "topic": alert.topic,
        "partition": alert.partition,
        "offset": alert.offset,
        "key": alert.key.decode("utf-8") if alert.key is not None else None,
        "headers": {name: value.decode("utf-8") for name, value in alert.headers},
        "attempt": alert.attempt,
        "alert_id": command["alert_id"],
    })


@alert_worker.worker(name="conformance", version="1.0.0", accepts=["application/json"], routes=["side"])
def conformance(alert: Alert) -> Any:
    command = alert.record()
    op = command.get("op")
    if op == "forward":
        return True
    if op == "drop":
        return False
    if op == "emit":
        return _emit(command["outputs"])
    if op == "retry":
        return _retry(alert, command.get("until_attempt"))
    if op == "dead_letter":
        raise DeadLetter(command["reason"])
    if op == "fail":
        raise RuntimeError(command["message"])  # an ordinary error: the SDK answers RETRY
    if op == "echo":
        return _echo(alert, command)
    if op == "large":
        return Output(value=b"x" * command["size"])
    raise DeadLetter(f"unknown op: {op}")


if __name__ == "__main__":
    alert_worker.serve(conformance)
