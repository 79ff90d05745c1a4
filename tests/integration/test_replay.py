"""Replaying dead letters into a fixed stage, and where a new group starts, on a real Kafka.

The sidecars and workers are real processes; `alert-sidecar replay` runs as a
user types it. Alerts are told apart by their bytes, so a record replayed
twice, changed or missing shows.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer

from .stage_support import SIDECAR, committed_offsets, count_records, free_port, read_topic

pytestmark = pytest.mark.kafka

DEAD_LETTER_PREFIX = "x-dead-letter-"


def uri(bootstrap: str, topic: str) -> str:
    return f"kafka://{bootstrap}/{topic}"


def replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SIDECAR, "replay", *args], capture_output=True, text=True, timeout=120)


def summary(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.strip().splitlines()[-1]


def produce(bootstrap: str, topic: str, records: list[dict]) -> None:
    """Write records given as dicts of value, key, headers, partition and (optionally) timestamp."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for record in records:
        producer.produce(topic, value=record["value"], key=record.get("key"), partition=record["partition"],
                         headers=record.get("headers"), timestamp=record.get("timestamp", 0))
    assert producer.flush(30) == 0


def stop(proc) -> None:
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output[-3000:]


# --- Replay -----------------------------------------------------------------------------


def test_replayed_dead_letters_come_out_of_the_fixed_stage(kafka_bootstrap, new_topic, procs):
    source, sink, dead, other, routed = (new_topic(partitions=2) for _ in range(5))
    # Keyed alerts with headers of their own: what a replay must give back as it was.
    cases = ["keep", "dead", "retry-always", "dead", "keep", "dead", "retry-always", "keep"] * 2
    sent = [{"value": json.dumps({"diaSourceId": 2**61 + i, "case": case}).encode(), "key": f"obj-{i % 5}".encode(),
             "headers": [("survey", b"lsst"), ("visit", str(1000 + i).encode()), ("empty", b"")],
             "partition": i % 2}
            for i, case in enumerate(cases)]
    produce(kafka_bootstrap, source, sent)
    failing = [r for r in sent if json.loads(r["value"])["case"] != "keep"]
    retried = [r for r in failing if json.loads(r["value"])["case"] == "retry-always"]  # "catalogue down"
    group = f"stage-{source}"
    stage = ["--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
             "--dead-letter", uri(kafka_bootstrap, dead), "--group", group]

    # Before the fix: a worker that dead-letters some alerts, two reasons among them.
    port = free_port()
    procs.worker("verdicts.py", port, name="broken-worker")
    broken = procs.sidecar(*stage, "--worker", f"127.0.0.1:{port}", "--max-retries", "0",
                           "--route", f"special={uri(kafka_bootstrap, routed)}", name="broken")
    letters = read_topic(kafka_bootstrap, dead, minimum=len(failing), timeout=60, settle=2)
    assert sorted(m.value() for m in letters) == sorted(r["value"] for r in failing)
    assert len(read_topic(kafka_bootstrap, sink, minimum=len(sent) - len(failing), timeout=30)) == 6
    stop(broken)
    assert count_records(kafka_bootstrap, source) == len(sent)
    dlq_coordinates = {f"{dead}/{m.partition()}/{m.offset()}": m for m in letters}

    replay_args = ["--from", uri(kafka_bootstrap, dead), "--to", uri(kafka_bootstrap, source)]

    # A dry run lists every dead letter, with where it came from and why, and produces nothing.
    dry = replay(*replay_args, "--dry-run")
    assert summary(dry).startswith(f"would replay {len(failing)} to {source}, skipped 0 (reason filter)")
    lines = dry.stdout.strip().splitlines()[:-1]
    assert sorted(line.split(" ")[0] for line in lines) == sorted(dlq_coordinates)
    assert any(line.endswith(": not an alert of ours") and f" from {source}/" in line for line in lines)
    assert count_records(kafka_bootstrap, source) == len(sent)
    assert set(committed_offsets(kafka_bootstrap, f"alert-sidecar.replay.{dead}.{source}", dead, 2).values()) == {-1001}
    assert summary(replay(*replay_args, "--dry-run", "--stage", "another-stage")) == (
        f"would replay 0 to {source}, skipped 0 (reason filter), {len(failing)} (stage filter), "
        "0 (not a dead letter); nothing produced or committed")
    assert summary(replay(*replay_args, "--dry-run", "--stage", group, "--reason", "not an alert")).startswith(
        f"would replay {len(failing) - len(retried)} to {source}, skipped {len(retried)} (reason filter), "
        "0 (stage filter)")

    # --reason keeps only the dead letters whose reason contains it (into another buffer, to count them).
    only = replay("--from", uri(kafka_bootstrap, dead), "--to", uri(kafka_bootstrap, other),
                  "--reason", "catalogue down")
    assert summary(only) == (f"replayed {len(retried)} to {other}, skipped {len(failing) - len(retried)} "
                             "(reason filter), 0 (stage filter), 0 (not a dead letter)")
    assert sorted(m.value() for m in read_topic(kafka_bootstrap, other, minimum=len(retried))) == \
        sorted(r["value"] for r in retried)

    # The replay into the stage's input, stopped after 4 (as if interrupted) and run again: it goes on
    # where it stopped; then a third that finds nothing left to replay.
    first = replay(*replay_args, "--limit", "4")
    assert summary(first) == (f"replayed 4 to {source}, skipped 0 (reason filter), 0 (stage filter), "
                              f"0 (not a dead letter); {len(failing) - 4} left after --limit for the next replay")
    rest = replay(*replay_args)
    assert summary(rest) == (f"replayed {len(failing) - 4} to {source}, skipped 0 (reason filter), "
                             "0 (stage filter), 0 (not a dead letter)")
    again = replay(*replay_args)
    assert summary(again).startswith(f"replayed 0 to {source}, skipped 0 (reason filter)")
    assert "had replayed" in summary(again)
    back = [m for m in read_topic(kafka_bootstrap, source, minimum=len(sent) + len(failing))
            if m.offset() >= len(sent) // 2]
    assert len(back) == len(failing)
    by_value = {r["value"]: r for r in failing}
    assert sorted((m.partition(), m.key()) for m in back) == \
        sorted((by_value[m.value()]["partition"], by_value[m.value()]["key"]) for m in back)  # where it was

    # After the fix: a worker that keeps every alert; the stage's group goes on from its commit.
    port = free_port()
    procs.worker("passthrough.py", port, name="fixed-worker")
    fixed = procs.sidecar(*stage, "--worker", f"127.0.0.1:{port}", name="fixed")
    outputs = read_topic(kafka_bootstrap, sink, minimum=len(sent), timeout=60, settle=2)
    stop(fixed)
    replayed = [m for m in outputs if any(name == "x-replayed-from" for name, _ in m.headers() or [])]
    assert len(outputs) == len(sent) and len(replayed) == len(failing)
    by_value = {r["value"]: r for r in failing}
    for message in replayed:
        original = by_value.pop(message.value())  # byte for byte, and each once
        headers = message.headers()
        assert not [name for name, _ in headers if name.startswith(DEAD_LETTER_PREFIX)], headers
        assert message.key() == original["key"]
        # Its own headers as written, then where the replay took it from, then the stage's lineage.
        assert headers[:-2] == original["headers"], headers
        (replayed_name, replayed_from), (source_name, _) = headers[-2:]
        assert (replayed_name, source_name) == ("x-replayed-from", "x-alert-source")
        letter = dlq_coordinates[replayed_from.decode()]
        assert letter.value() == message.value()
    assert not by_value, f"dead-lettered alerts that did not come out: {list(by_value)}"


def test_user_mistakes_are_one_line(kafka_bootstrap, new_topic):
    dead = new_topic()
    result = replay("--from", uri(kafka_bootstrap, dead), "--to", "localhost:9092/alerts")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "--to" in result.stderr
    result = replay("--from", uri(kafka_bootstrap, dead), "--to", uri(kafka_bootstrap, "no-such-buffer-here"))
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "does not exist" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    port = free_port()  # nothing listens there
    result = replay("--from", f"kafka://127.0.0.1:{port}/{dead}", "--to", uri(kafka_bootstrap, dead + "x"),
                    "--timeout", "2")
    assert result.returncode == 3 and "cannot reach Kafka" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- Where a new group starts -----------------------------------------------------------


def test_start_from_a_time_an_offset_and_a_commit(kafka_bootstrap, new_topic, procs):
    source = new_topic(partitions=2)
    # Ten records a partition, a second apart, an hour ago (within any retention, not in the future).
    base = (int(time.time()) - 3600) * 1000
    records = [{"value": json.dumps({"p": p, "i": i}).encode(), "partition": p, "timestamp": base + i * 1000}
               for p in range(2) for i in range(10)]
    produce(kafka_bootstrap, source, records)
    port = free_port()
    procs.worker("passthrough.py", port)

    def run_stage(start_from: str, group: str, expected: int):
        sink = new_topic(partitions=2)
        proc = procs.sidecar("--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink),
                             "--worker", f"127.0.0.1:{port}", "--group", group, "--start-from", start_from,
                             name=f"from-{start_from}")
        proc.wait_for_line("partitions start", 30)
        got = read_topic(kafka_bootstrap, sink, minimum=expected, timeout=60, settle=2)
        stop(proc)
        return sorted((json.loads(m.value())["p"], json.loads(m.value())["i"]) for m in got), proc.output

    # A time in the middle: exactly the records at or after it, in each partition.
    middle = datetime.fromtimestamp((base + 6_000) / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    got, log = run_stage(middle, f"time-{source}", 8)
    assert got == [(p, i) for p in range(2) for i in range(6, 10)]
    assert f"{source}/0 at offset 6 (the first record at or after" in log

    # An offset: the records from it on, in each partition; -N: the last N of each.
    got, _ = run_stage("7", f"offset-{source}", 6)
    assert got == [(p, i) for p in range(2) for i in range(7, 10)]
    got, _ = run_stage("-2", f"tail-{source}", 4)
    assert got == [(p, i) for p in range(2) for i in range(8, 10)]

    # A time after the last record: the end, so that only what comes next is read.
    later = datetime.fromtimestamp(base / 1000 + 60, tz=timezone.utc).isoformat()
    got, log = run_stage(later, f"late-{source}", 0)
    assert got == [] and "the end: no record at or after" in log

    # A group that has committed goes on from its commit, whatever --start-from says; also when its
    # partitions are shared between two instances (each assigned its part, in increments).
    sink = new_topic(partitions=2)
    args = ["--in", uri(kafka_bootstrap, source), "--out", uri(kafka_bootstrap, sink), "--worker",
            f"127.0.0.1:{port}", "--group", f"time-{source}", "--start-from", "0"]
    instances = [procs.sidecar(*args, name=f"committed-{n}") for n in range(2)]
    for proc in instances:
        proc.wait_for_line("partitions assigned", 60)
    produce(kafka_bootstrap, source, [{"value": json.dumps({"p": p, "i": 10}).encode(), "partition": p}
                                      for p in range(2)])
    got = read_topic(kafka_bootstrap, sink, minimum=2, timeout=60, settle=3)
    assert sorted((json.loads(m.value())["p"], json.loads(m.value())["i"]) for m in got) == [(0, 10), (1, 10)]
    for proc in instances:
        stop(proc)
    logs = "".join(proc.output for proc in instances)
    assert f"{source}/0 at its commit 10" in logs and f"{source}/1 at its commit 10" in logs
    assert " at offset " not in logs
