"""What the stage and its workers agree on: the protocol, the routes, and the form each alert is given in.

A worker says in Describe what it accepts (media types), which fields of a
decoded alert it needs, and which output routes it may use. The stage checks
that once per worker, on its loop's thread, when the worker is first ready and
again whenever it comes back; from then on each input content type has one
``Treatment``: the bytes as they are, the alert decoded to the contract's JSON
form, or refused with the reason (the alert is dead-lettered with it). The
worker's ``accepts`` is in its order of preference: the first form the sidecar
can make of the input is the one it is given.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

from alert_worker.codecs import media_type
from alertsidecar.v1 import worker_pb2

from alert_sidecar.exceptions import ConfigError, WorkerError
from alert_sidecar.formats.content import AVRO_CONFLUENT, AVRO_OCF, JSON, accepted


class Plan(enum.Enum):
    PASS = "pass"  # give the worker the alert's bytes as they are
    DECODE = "decode"  # decode the alert to the JSON form (projected to the worker's fields)
    REFUSE = "refuse"  # the worker takes no form the sidecar can make of it


@dataclass(frozen=True)
class Treatment:
    plan: Plan
    reason: str = ""  # why, when refused


_PASS = Treatment(Plan.PASS)
_DECODE = Treatment(Plan.DECODE)
# What the sidecar can decode into the JSON form.
_DECODABLE = (AVRO_CONFLUENT, AVRO_OCF)


class Negotiation:
    """The stage's side of Describe: checks each worker's description and treats each content type."""

    def __init__(self, routes: Collection[str], fixed_content_type: str | None) -> None:
        self._routes = frozenset(routes)
        self._fixed_content_type = fixed_content_type  # the input's --in-format, None when sniffed
        self.accepts: list[str] = []
        self.accepts_all = True  # no content type is refused (each may still be decoded first)
        self.fields: tuple[str, ...] | None = None  # projection of the JSON form, None for all fields
        self._treatments: dict[str, Treatment] = {}

    def agree(self, address: str, description: worker_pb2.WorkerDescription) -> None:
        """Take the worker's description, or raise WorkerError / ConfigError saying what to change."""
        if description.protocol_version != worker_pb2.PROTOCOL_VERSION_1:
            raise WorkerError(
                f"worker at {address} speaks protocol version {description.protocol_version}, this sidecar "
                f"speaks {worker_pb2.PROTOCOL_VERSION_1}; upgrade one of them"
            )
        unbound = [r for r in description.routes if r not in self._routes]
        if unbound:
            raise ConfigError(
                f"worker at {address} may send outputs to route(s) {', '.join(unbound)}: bind each with "
                f"--route NAME=kafka://HOST:PORT/TOPIC"
            )
        self.accepts = list(description.accepts)
        self.accepts_all = not self.accepts or "*/*" in self.accepts
        self.fields = tuple(description.fields) or None
        self._treatments.clear()
        if self._fixed_content_type:
            treatment = self.treatment(self._fixed_content_type)
            if treatment.plan is Plan.REFUSE:
                raise ConfigError(f"worker at {address}: {treatment.reason}")

    def treatment(self, content_type: str) -> Treatment:
        found = self._treatments.get(content_type)
        if found is None:
            found = self._treatments[content_type] = self._choose(content_type)
        return found

    def _choose(self, content_type: str) -> Treatment:
        """The first form in the worker's order of preference that the sidecar can make of ``content_type``."""
        if not self.accepts:
            return _PASS
        for wanted in self.accepts:
            if accepted(content_type, [wanted]):
                return _PASS
            if media_type(wanted) == JSON and content_type in _DECODABLE:
                return _DECODE
        return Treatment(Plan.REFUSE, (
            f"the worker accepts {', '.join(self.accepts)}; the sidecar cannot make any of them from "
            f"{content_type} (set the input buffer's format if it was guessed wrongly)"))
