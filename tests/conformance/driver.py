"""The conformance driver: the vectors through the real sidecar and a conformance worker, checked.

::

    python -m tests.conformance.driver [--bootstrap HOST:PORT] [--worker-protocol grpc|connect]
        [--worker-processes N] [--sidecar-arg=ARG ...] [--only NAME ...] [--timeout S] -- COMMAND...

creates fresh topics (the input with one partition, the default output, the
route ``side`` and the dead-letter buffer), writes every vector of
``vectors.json`` to the input, runs ``alert-sidecar ... -- COMMAND`` until the
stage has committed them all, stops it with SIGTERM (it must exit 0), reads
the three output topics, gives each record to the vector it came from (by its
``x-alert-source`` header, dead letters by ``x-dead-letter-source``) and
compares it with what the vector expects. It prints one line per vector and
exits 1 if any failed.

The Kafka cluster is ``--bootstrap``, else ``$BOOTSTRAP_SERVERS``, else a
one-broker local cluster (``alert_sidecar.kafka.local``, as the test session
starts) started for the run and stopped after it.

``run_conformance()`` does the same for ``test_conformance.py``; ``compare()``
is the check of one vector, pure, so that it can be tested without Kafka.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
VECTORS = Path(__file__).with_name("vectors.json")

ROUTE = "side"  # the one route every conformance worker declares
# Two retries keep the retry vectors short (three tries, 0.05 + 0.1 s of
# backoff) while still showing that the sidecar tries again more than once.
MAX_RETRIES = 2
RETRY_BACKOFF_S = 0.05
# From the sidecar's start to every vector committed. A JVM or R worker is
# healthy within about 10 s and the vectors take a few seconds; a minute
# leaves room on a loaded machine without hiding a stage that hangs.
DEFAULT_TIMEOUT_S = 60.0
# The sidecar drains in-flight alerts for up to --drain-timeout (30 s by
# default) on SIGTERM, then closes its clients.
STOP_TIMEOUT_S = 45.0
# A local cluster answers topic creation well under a second; a shared one may be slower.
TOPIC_TIMEOUT_S = 30.0

# Headers the sidecar writes (runtime/alert_sidecar/stage/verdicts.py).
SOURCE_HEADER = "x-alert-source"
DL_REASON = "x-dead-letter-reason"
DL_SOURCE = "x-dead-letter-source"
DL_STAGE = "x-dead-letter-stage"
DL_ATTEMPTS = "x-dead-letter-attempts"

_VECTOR_KEYS = {"name", "doc", "value", "key", "headers", "expect"}
_EXPECT_KEYS = {"out", "side", "dead_letter"}
_OUTPUT_KEYS = {"value", "json", "key", "headers"}
_DEAD_LETTER_KEYS = {"reason_contains", "attempts"}
_INPUT_FIELDS = {"value", "id", "topic", "partition", "offset"}


class VectorError(ValueError):
    """vectors.json says something the driver cannot check."""


# -- vectors -----------------------------------------------------------------


@dataclass(frozen=True)
class Vector:
    """One vector of vectors.json, its ``{"$repeat": ...}`` forms expanded."""

    name: str
    value: dict[str, Any]
    key: str | None
    headers: dict[str, str]
    expect: dict[str, Any]

    def encoded_value(self) -> bytes:
        """The input record's value: the JSON object, compact, UTF-8 (not ASCII-escaped)."""
        return json.dumps(self.value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def encoded_key(self) -> bytes | None:
        return self.key.encode("utf-8") if self.key is not None else None

    def encoded_headers(self) -> tuple[tuple[str, bytes], ...]:
        return tuple((name, value.encode("utf-8")) for name, value in self.headers.items())


def load_vectors(path: Path = VECTORS) -> list[Vector]:
    """Read and check vectors.json; raise ``VectorError`` naming the first thing wrong."""
    items = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(items, list):
        raise VectorError(f"{path} holds {type(items).__name__}, not a list of vectors")
    vectors, names = [], set()
    for number, item in enumerate(items):
        where = f"{path.name} vector {number} ({item.get('name', 'unnamed') if isinstance(item, dict) else item!r})"
        if not isinstance(item, dict) or not {"name", "value", "expect"} <= item.keys() <= _VECTOR_KEYS:
            raise VectorError(f"{where}: a vector has name, value, expect and may have doc, key, headers")
        if item["name"] in names:
            raise VectorError(f"{where}: the name is used twice")
        names.add(item["name"])
        value = _expand(item["value"])
        if not isinstance(value, dict) or "op" not in value or type(value.get("alert_id")) is not int:
            raise VectorError(f"{where}: value is a JSON object with an op and an integer alert_id")
        headers = item.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise VectorError(f"{where}: headers is an object of strings")
        expect = _expand(item["expect"])
        _check_expect(expect, where)
        vectors.append(Vector(item["name"], value, item.get("key"), headers, expect))
    return vectors


def _check_expect(expect: Any, where: str) -> None:
    if not isinstance(expect, dict) or expect.keys() != _EXPECT_KEYS:
        raise VectorError(f"{where}: expect has exactly out, side and dead_letter")
    for buffer in ("out", "side"):
        for spec in expect[buffer]:
            if not isinstance(spec, dict) or not spec.keys() <= _OUTPUT_KEYS or ("value" in spec) == ("json" in spec):
                raise VectorError(f"{where}: an expected output has value or json, and may have key and headers")
    dead = expect["dead_letter"]
    if dead is not None and (not isinstance(dead, dict) or not dead.keys() <= _DEAD_LETTER_KEYS):
        raise VectorError(f"{where}: dead_letter is null or an object with reason_contains and attempts")


def _expand(node: Any) -> Any:
    """``{"$repeat": TEXT, "times": N}`` becomes TEXT repeated N times, anywhere in ``node``."""
    if isinstance(node, dict):
        if "$repeat" in node:
            return node["$repeat"] * node["times"]
        return {name: _expand(value) for name, value in node.items()}
    if isinstance(node, list):
        return [_expand(item) for item in node]
    return node


# -- what was produced and what came back ------------------------------------------


@dataclass(frozen=True)
class Record:
    """One Kafka record: an input as produced, or an output as read back."""

    value: bytes | None
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def header_values(self, name: str) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True)
class Input:
    """Where a vector's record landed in the input buffer."""

    topic: str
    partition: int
    offset: int
    record: Record

    @property
    def id(self) -> str:
        """The alert's id in the contract (Alert.id), which the sidecar writes into x-alert-source."""
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass
class Outcome:
    """The records of one vector in each output buffer, in the order they were written."""

    out: list[Record] = field(default_factory=list)
    side: list[Record] = field(default_factory=list)
    dead_letter: list[Record] = field(default_factory=list)


# -- comparing ---------------------------------------------------------------


def compare(vector: Vector, source: Input, outcome: Outcome, stage: str) -> list[str]:
    """What differs between what ``vector`` expects and ``outcome``; empty when they agree.

    ``stage`` is the sidecar's consumer group, which it writes into every dead letter.
    """
    expect = _resolve(vector.expect, source)
    problems = []
    problems += _compare_outputs("out", expect["out"], outcome.out, source)
    problems += _compare_outputs(ROUTE, expect["side"], outcome.side, source)
    problems += _compare_dead_letter(expect["dead_letter"], outcome.dead_letter, source, stage)
    return problems


def _resolve(node: Any, source: Input) -> Any:
    """``{"$input": FIELD}`` becomes that field of the input as produced (value as bytes)."""
    if isinstance(node, dict):
        if "$input" in node:
            name = node["$input"]
            if name not in _INPUT_FIELDS:
                raise VectorError(f"{{'$input': {name!r}}}: the input's fields are {sorted(_INPUT_FIELDS)}")
            return source.record.value if name == "value" else getattr(source, name)
        return {name: _resolve(value, source) for name, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, source) for item in node]
    return node


def _compare_outputs(buffer: str, specs: list[dict[str, Any]], records: list[Record], source: Input) -> list[str]:
    if len(specs) != len(records):
        got = ", ".join(_show(r.value) for r in records) or "none"
        return [f"{buffer}: expected {len(specs)} record(s), got {len(records)} ({got})"]
    problems = []
    for number, (spec, record) in enumerate(zip(specs, records)):
        where = f"{buffer}[{number}]"
        if "json" in spec:
            problems += _compare_json(where, spec["json"], record.value)
        else:
            problems += _compare_bytes(f"{where} value", _utf8(spec["value"]), record.value)
        problems += _compare_bytes(f"{where} key", _utf8(spec.get("key")), record.key)
        problems += _compare_headers(where, spec.get("headers", {}), record)
        sources = record.header_values(SOURCE_HEADER)
        if sources != [source.id.encode()]:
            problems.append(f"{where} header {SOURCE_HEADER}: expected [{source.id!r}], got {sources!r}")
    return problems


def _compare_dead_letter(spec: dict[str, Any] | None, records: list[Record], source: Input, stage: str) -> list[str]:
    if spec is None:
        if records:
            reasons = [_text(r.header_values(DL_REASON)) for r in records]
            return [f"dead letter: expected none, got {len(records)} (reason {'; '.join(reasons)})"]
        return []
    if len(records) != 1:
        return [f"dead letter: expected one, got {len(records)}"]
    record = records[0]
    # A dead letter is the original record, byte for byte, with headers that say why.
    problems = _compare_bytes("dead letter value", source.record.value, record.value)
    problems += _compare_bytes("dead letter key", source.record.key, record.key)
    problems += _compare_headers("dead letter", dict(_as_text(source.record.headers)), record)
    reason = _text(record.header_values(DL_REASON))
    if "reason_contains" in spec and spec["reason_contains"] not in reason:
        problems.append(f"dead letter reason {reason!r} does not contain {spec['reason_contains']!r}")
    for name, expected in ((DL_SOURCE, source.id), (DL_STAGE, stage), (DL_ATTEMPTS, spec.get("attempts"))):
        got = record.header_values(name)
        if expected is not None and got != [expected.encode()]:
            problems.append(f"dead letter header {name}: expected [{expected!r}], got {_show_list(got)}")
    return problems


def _compare_json(where: str, expected: Any, value: bytes | None) -> list[str]:
    try:
        got = json.loads(value or b"")  # Python ints: every digit of a 64-bit id is compared
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"{where} value is not JSON ({exc}): {_show(value)}"]
    if got == expected and _same_types(got, expected):
        return []
    if isinstance(expected, dict) and isinstance(got, dict):
        differing = [f"{name}: expected {expected.get(name, '(absent)')!r}, got {got.get(name, '(absent)')!r}"
                     for name in [*expected, *(k for k in got if k not in expected)]
                     if name not in got or name not in expected or got[name] != expected[name]
                     or not _same_types(got[name], expected[name])]
        return [f"{where} json {'; '.join(differing)}"]
    return [f"{where} json: expected {expected!r}, got {got!r}"]


def _same_types(a: Any, b: Any) -> bool:
    """JSON equality that tells 1 from 1.0 and from true, which Python's == does not."""
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same_types(a[k], b[k]) for k in a if k in b)
    if isinstance(a, list) and isinstance(b, list):
        return all(_same_types(x, y) for x, y in zip(a, b))
    return type(a) is type(b)


def _compare_bytes(what: str, expected: bytes | None, got: bytes | None) -> list[str]:
    if expected == got:
        return []
    if expected is None or got is None:
        return [f"{what}: expected {_show(expected)}, got {_show(got)}"]
    at = next((i for i, (x, y) in enumerate(zip(expected, got)) if x != y), min(len(expected), len(got)))
    return [f"{what}: expected {_show(expected)} ({len(expected)} bytes), got {_show(got)} "
            f"({len(got)} bytes), first difference at byte {at}"]


def _compare_headers(where: str, expected: dict[str, str], record: Record) -> list[str]:
    """Each expected header is present with its value, and they come in the expected order."""
    problems, positions = [], []
    for name, value in expected.items():
        got = record.header_values(name)
        if value.encode("utf-8") not in got:
            problems.append(f"{where} header {name!r}: expected {value!r}, got {_show_list(got)}")
        else:
            positions.append(record.headers.index((name, value.encode("utf-8"))))
    if not problems and positions != sorted(positions):
        order = [name for name, _ in record.headers]
        problems.append(f"{where} headers out of order: expected {list(expected)} in that order, got {order}")
    return problems


def _utf8(value: str | bytes | None) -> bytes | None:
    return value.encode("utf-8") if isinstance(value, str) else value


def _as_text(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, str]]:
    return [(name, value.decode("utf-8", "replace")) for name, value in headers]


def _text(values: list[bytes]) -> str:
    return " | ".join(v.decode("utf-8", "replace") for v in values) if values else ""


def _show(value: bytes | None, limit: int = 60) -> str:
    if value is None:
        return "none"
    text = value[:limit].decode("utf-8", "replace")
    return repr(text + ("..." if len(value) > limit else ""))


def _show_list(values: list[bytes]) -> str:
    return "[" + ", ".join(_show(v) for v in values) + "]" if values else "nothing"


# -- the report ------------------------------------------------------------------


@dataclass(frozen=True)
class VectorResult:
    name: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        return f"ok   {self.name}" if self.ok else f"FAIL {self.name}: {'; '.join(self.problems)}"


@dataclass
class Report:
    """The outcome of one run: a result per vector, and problems of the run as a whole."""

    results: list[VectorResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the sidecar failed, records nobody expected, ...
    log_path: Path | None = None
    log_tail: str = ""

    @property
    def failures(self) -> list[VectorResult]:
        return [result for result in self.results if not result.ok]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failures and bool(self.results)

    def lines(self) -> list[str]:
        return [result.line() for result in self.results] + [f"FAIL (run) {problem}" for problem in self.problems]

    def __str__(self) -> str:
        return self._text(self.lines())

    def failure_text(self) -> str:
        """Only what failed, with the end of the sidecar's log: for an assertion message."""
        return self._text([r.line() for r in self.failures] + [f"FAIL (run) {p}" for p in self.problems])

    def _text(self, lines: list[str]) -> str:
        failed = len(self.failures)
        text = "\n".join([*lines, f"{len(self.results) - failed} of {len(self.results)} vectors passed"])
        if not self.ok and self.log_tail:
            text += f"\n--- end of the sidecar's log ({self.log_path}) ---\n{self.log_tail}"
        return text


# -- running -----------------------------------------------------------------------


def run_conformance(bootstrap: str, command: Sequence[str], *, sidecar_args: Sequence[str] = (),
                    timeout: float = DEFAULT_TIMEOUT_S, vectors: Sequence[Vector] | None = None,
                    log_dir: Path | None = None, keep_topics: bool = False) -> Report:
    """Run the vectors through ``alert-sidecar ... -- command`` on the cluster at ``bootstrap``."""
    vectors = list(vectors) if vectors is not None else load_vectors()
    run = uuid.uuid4().hex[:8]
    topics = {name: f"conformance-{run}-{name}" for name in ("in", "out", ROUTE, "dead-letter")}
    group = f"conformance-{run}"
    log_path = Path(log_dir or tempfile.mkdtemp(prefix="conformance-")) / f"sidecar-{run}.log"
    report = Report(log_path=log_path)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        _create_topics(admin, list(topics.values()))
        inputs = _produce(bootstrap, topics["in"], vectors)
        argv = [*_sidecar_command(), *_stage_args(bootstrap, topics, group), *sidecar_args, "--", *command]
        report.problems += _run_sidecar(argv, bootstrap, group, topics["in"], inputs, vectors, timeout, log_path)
        outcomes = {i.id: Outcome() for i in inputs}
        for buffer, topic in (("out", topics["out"]), ("side", topics[ROUTE]),
                              ("dead_letter", topics["dead-letter"])):
            source_header = DL_SOURCE if buffer == "dead_letter" else SOURCE_HEADER
            for record in _read_topic(bootstrap, topic):
                source = _text(record.header_values(source_header))
                if source not in outcomes:
                    report.problems.append(f"a record in {buffer} whose {source_header} is {source or 'missing'!r} "
                                           f"comes from no vector: {_show(record.value)}")
                    continue
                getattr(outcomes[source], buffer).append(record)
        for vector, source in zip(vectors, inputs):
            report.results.append(VectorResult(vector.name, tuple(compare(vector, source, outcomes[source.id], group))))
    finally:
        if not keep_topics:
            for future in admin.delete_topics(list(topics.values())).values():
                try:
                    future.result(timeout=TOPIC_TIMEOUT_S)
                except KafkaException:
                    pass  # never created, when the run failed early
    if log_path.exists():
        report.log_tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
    if log_dir is None and report.ok:
        shutil.rmtree(log_path.parent, ignore_errors=True)  # a log is kept only to explain a failure
        report.log_path = None
    return report


def _stage_args(bootstrap: str, topics: dict[str, str], group: str) -> list[str]:
    def buffer(name: str) -> str:
        return f"kafka://{bootstrap}/{topics[name]}"

    return ["--in", f"{buffer('in')}?format=json", "--out", buffer("out"),
            "--route", f"{ROUTE}={buffer(ROUTE)}", "--dead-letter", buffer("dead-letter"),
            "--max-retries", str(MAX_RETRIES), "--retry-backoff", str(RETRY_BACKOFF_S), "--group", group]


def _sidecar_command() -> list[str]:
    """The ``alert-sidecar`` script of the running Python's environment (the repository's .venv)."""
    script = Path(sys.executable).with_name("alert-sidecar")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "alert_sidecar.cli"]


def _create_topics(admin: AdminClient, names: list[str]) -> None:
    # One partition each: the input's alerts are one ordered stream, and the
    # sidecar writes an alert's outputs to the partition of its input.
    futures = admin.create_topics([NewTopic(name, 1) for name in names], operation_timeout=TOPIC_TIMEOUT_S)
    for future in futures.values():
        future.result(timeout=TOPIC_TIMEOUT_S)
    deadline = time.monotonic() + TOPIC_TIMEOUT_S
    for name in names:
        while True:
            metadata = admin.list_topics(name, timeout=TOPIC_TIMEOUT_S).topics.get(name)
            if metadata is not None and metadata.error is None and metadata.partitions and all(
                    p.leader >= 0 for p in metadata.partitions.values()):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} has no leader after {TOPIC_TIMEOUT_S:g} s")
            time.sleep(0.1)


def _produce(bootstrap: str, topic: str, vectors: Sequence[Vector]) -> list[Input]:
    # Offsets come from the delivery reports, so the vectors need not land in
    # file order; nothing asks for idempotence (and its start-up noise).
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    delivered: dict[int, Input] = {}
    errors: list[str] = []

    def on_delivery(number: int, record: Record, err, message) -> None:
        if err is not None:
            errors.append(f"vector {vectors[number].name}: {err.str()}")
        else:
            delivered[number] = Input(message.topic(), message.partition(), message.offset(), record)

    for number, vector in enumerate(vectors):
        record = Record(vector.encoded_value(), vector.encoded_key(), vector.encoded_headers())
        producer.produce(topic, value=record.value, key=record.key, headers=list(record.headers), partition=0,
                         on_delivery=lambda err, msg, n=number, r=record: on_delivery(n, r, err, msg))
        producer.poll(0)
    left = producer.flush(TOPIC_TIMEOUT_S)
    if errors or left:
        raise RuntimeError(f"cannot write the vectors to {topic}: {'; '.join(errors) or f'{left} not acknowledged'}")
    return [delivered[number] for number in range(len(vectors))]


def _run_sidecar(argv: list[str], bootstrap: str, group: str, topic: str, inputs: list[Input],
                 vectors: Sequence[Vector], timeout: float, log_path: Path) -> list[str]:
    """Run the sidecar until the vectors are committed, stop it; return what went wrong."""
    problems = []
    target = max(i.offset for i in inputs) + 1
    with open(log_path, "wb") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
        sidecar = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            committed = _wait_committed(sidecar, bootstrap, group, topic, target, timeout)
            if sidecar.poll() is not None:
                problems.append(f"the sidecar exited with code {sidecar.returncode} before it committed every vector")
            elif committed < target:
                unfinished = [v.name for v, i in zip(vectors, inputs) if i.offset >= committed]
                problems.append(f"after {timeout:g} s the stage had committed {max(committed, 0)} of {target} "
                                f"alerts; not finished: {', '.join(unfinished)}")
            if sidecar.poll() is None:
                sidecar.send_signal(signal.SIGTERM)
                try:
                    code = sidecar.wait(STOP_TIMEOUT_S)
                    if code != 0:
                        problems.append(f"the sidecar exited with code {code} on SIGTERM, not 0")
                except subprocess.TimeoutExpired:
                    problems.append(f"the sidecar did not stop within {STOP_TIMEOUT_S:g} s of SIGTERM")
        finally:
            _kill(sidecar)
    return problems


def _wait_committed(sidecar: subprocess.Popen, bootstrap: str, group: str, topic: str, target: int,
                    timeout: float) -> int:
    """The group's committed offset of ``topic``/0 once it reaches ``target``, or when time or the sidecar ends."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    committed = -1
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and sidecar.poll() is None:
            try:
                committed = consumer.committed([TopicPartition(topic, 0)], timeout=5)[0].offset
            except KafkaException:
                pass  # the group coordinator is not ready yet: ask again
            if committed >= target:
                break
            time.sleep(0.2)
    finally:
        consumer.close()
    return committed


def _kill(process: subprocess.Popen) -> None:
    """Kill a sidecar that is still running, and the worker processes it started (each in its own group)."""
    if process.poll() is not None:
        return
    children = []
    for task in Path(f"/proc/{process.pid}/task").glob("*/children"):
        children += [int(pid) for pid in task.read_text().split()]
    for pid in [process.pid, *children]:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    process.wait(10)


def _read_topic(bootstrap: str, topic: str) -> list[Record]:
    """Every record of ``topic``, in partition and offset order (the sidecar has stopped: nothing more comes)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"conformance-reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        records = []
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            deadline = time.monotonic() + 30
            last = low - 1
            while last < high - 1 and time.monotonic() < deadline:
                for message in consumer.consume(500, timeout=0.5):
                    if message.error() is not None:
                        continue
                    last = message.offset()
                    records.append(Record(message.value(), message.key(),
                                          tuple((k, v if v is not None else b"") for k, v in message.headers() or [])))
        return records
    finally:
        consumer.close()


# -- the command ----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" in args:
        split = args.index("--")
        args, command = args[:split], args[split + 1:]
    else:
        command = []
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance.driver",
        usage="%(prog)s [options] -- COMMAND...",
        description="Run the conformance vectors through alert-sidecar against the worker that COMMAND starts "
                    "(it listens on $ALERT_WORKER_PORT) and print one line per vector.",
        epilog="Exit codes: 0 every vector passed; 1 some failed; 2 bad options or vectors.")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers [default: $BOOTSTRAP_SERVERS, else a local "
                                            "one-broker cluster started for the run]")
    parser.add_argument("--worker-protocol", choices=["grpc", "connect"],
                        help="passed to the sidecar as --worker-protocol (R workers serve Connect)")
    parser.add_argument("--worker-processes", type=int, help="passed to the sidecar: copies of the worker to start")
    parser.add_argument("--sidecar-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for the sidecar, e.g. --sidecar-arg=--worker-wait=60; repeatable")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this vector; repeatable")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="seconds for the stage to commit every vector [default: %(default)g]")
    parser.add_argument("--vectors", type=Path, default=VECTORS, help="the vectors file [default: %(default)s]")
    options = parser.parse_args(args)
    if not command:
        parser.error("no worker command: give it after --, "
                     "e.g. -- python tests/conformance/workers/conformance_worker.py")
    try:
        vectors = load_vectors(options.vectors)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot use the vectors: {exc}")
    if options.only:
        unknown = set(options.only) - {v.name for v in vectors}
        if unknown:
            parser.error(f"no vector named {', '.join(sorted(unknown))}")
        vectors = [v for v in vectors if v.name in options.only]
    sidecar_args = list(options.sidecar_arg)
    if options.worker_protocol:
        sidecar_args += ["--worker-protocol", options.worker_protocol]
    if options.worker_processes:
        sidecar_args += ["--worker-processes", str(options.worker_processes)]

    bootstrap = options.bootstrap or os.environ.get("BOOTSTRAP_SERVERS")
    cluster = None
    if not bootstrap:
        from alert_sidecar.kafka.local import LocalKafka, LocalKafkaError

        cluster = LocalKafka(Path(tempfile.mkdtemp(prefix="conformance-kafka-")))
        try:
            bootstrap = cluster.up()
        except LocalKafkaError as exc:
            print(f"cannot start a local Kafka: {exc}\n(or give --bootstrap / set BOOTSTRAP_SERVERS)",
                  file=sys.stderr)
            return 2
    try:
        report = run_conformance(bootstrap, command, sidecar_args=sidecar_args, timeout=options.timeout,
                                 vectors=vectors)
    finally:
        if cluster is not None:
            cluster.down()
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
