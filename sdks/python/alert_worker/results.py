"""What a worker answers about an alert: a ``Verdict``, its ``Output`` records, a ``Result``."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from alertsidecar.v1 import worker_pb2

from . import codecs

__all__ = ["Verdict", "Output", "Result", "HeaderValue"]

HeaderValue = bytes | str


class Verdict(enum.IntEnum):
    """The worker's decision about one alert; the values are the contract's ``Verdict``."""

    #: The alert is done: its outputs (none, one or several) are produced. OK
    #: with no outputs is how a filter drops an alert.
    OK = worker_pb2.VERDICT_OK
    #: It may succeed later: the sidecar sends it again after a backoff, up to
    #: its retry limit, then dead-letters it. Outputs are ignored.
    RETRY = worker_pb2.VERDICT_RETRY
    #: It can never be processed: the sidecar writes it to the dead-letter
    #: buffer with the error. Outputs are ignored.
    DEAD_LETTER = worker_pb2.VERDICT_DEAD_LETTER


def _as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


def _as_headers(headers: Iterable[tuple[str, HeaderValue]]) -> tuple[tuple[str, bytes], ...]:
    pairs = []
    for pair in headers:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise TypeError(f"a header is a (name, value) pair, not {pair!r}") from None
        if not isinstance(name, str):
            raise TypeError(f"a header name must be a str, not {type(name).__name__}")
        pairs.append((name, _as_bytes(value, f"the value of header {name!r}")))
    return tuple(pairs)


@dataclass(frozen=True)
class Output:
    """One record the worker asks the sidecar to produce.

    ``Output(value, key=None, content_type="application/octet-stream",
    headers=(), route="")`` produces new bytes; ``Output.forward()`` produces
    the input alert itself (its key, value, content type and headers) without
    sending its bytes back; ``Output.json(obj)`` produces a JSON document.

    ``route`` names the output buffer: ``""`` is the default one (the sidecar's
    ``--out``), any other name must be declared in the worker's ``routes``.
    A str key or header value is encoded as UTF-8.
    """

    value: bytes = b""
    key: bytes | None = None
    content_type: str = codecs.OCTET_STREAM
    headers: tuple[tuple[str, bytes], ...] = field(default=())
    route: str = ""
    forward_input: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.value, (dict, list)):
            raise TypeError("Output.value must be bytes; use Output.json(...) to produce a JSON document")
        object.__setattr__(self, "value", _as_bytes(self.value, "Output.value"))
        if self.key is not None:
            object.__setattr__(self, "key", _as_bytes(self.key, "Output.key"))
        object.__setattr__(self, "headers", _as_headers(self.headers))
        if not isinstance(self.route, str):
            raise TypeError(f"Output.route must be a str, not {type(self.route).__name__}")
        if self.forward_input and (self.value or self.key is not None):
            raise ValueError("an Output that forwards the input alert takes no value or key; "
                             "use Output.forward(headers=..., route=...)")

    @classmethod
    def forward(cls, headers: Iterable[tuple[str, HeaderValue]] = (), route: str = "") -> Output:
        """Produce the input alert itself, with ``headers`` added after its own."""
        return cls(content_type="", headers=tuple(headers), route=route,  # type: ignore[arg-type]
                   forward_input=True)

    @classmethod
    def json(cls, value: Any, *, key: bytes | str | None = None,
             headers: Iterable[tuple[str, HeaderValue]] = (), route: str = "") -> Output:
        """Produce ``value`` as a JSON document (``application/json``; integers stay exact)."""
        return cls(value=codecs.encode_json(value), key=key, content_type=codecs.JSON,  # type: ignore[arg-type]
                   headers=tuple(headers), route=route)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Result:
    """The answer about one alert: a verdict, the outputs to produce when OK, and an error otherwise.

    ``Result(Verdict.OK)`` drops the alert; ``Result(Verdict.RETRY, error="catalogue down")``
    asks for it again later. ``error`` is one line for a person: it is logged
    and written into the dead-letter record's headers.
    """

    verdict: Verdict
    outputs: tuple[Output, ...] = ()
    error: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))
        outputs = tuple(self.outputs)
        for output in outputs:
            if not isinstance(output, Output):
                raise TypeError(f"Result.outputs holds Output objects, not {type(output).__name__}")
        object.__setattr__(self, "outputs", outputs)
        if not isinstance(self.error, str):
            raise TypeError(f"Result.error must be a str, not {type(self.error).__name__}")
