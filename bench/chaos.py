"""The fault-injection suite: whatever fails, an alert read is in the output, the dead-letter buffer, or uncommitted.

    python bench/chaos.py --quick            # make chaos-quick: 20,000 alerts a scenario, under 6 minutes
    python bench/chaos.py                    # make chaos: 100,000 alerts a scenario
    python bench/chaos.py --scenarios 1 --alerts 3000 --kills 3

The suite starts its own local Kafka (three brokers, every topic it creates
with replication 3 and min.insync.replicas=2) and, for scenario 8, a second
one-broker cluster for the output. Each scenario gets fresh topics of 6
partitions, writes small JSON alerts with a unique id each into the input at
a steady pace, runs the real ``alert-sidecar`` command as processes with a
Python worker (examples/python/passthrough.py, or one of bench/chaos_workers/),
and does something bad to them while the alerts flow:

1. SIGKILL the sidecar ten times (a new one is started each time);
2. SIGKILL the worker a sidecar started itself (``-- COMMAND``; the sidecar
   starts it again) and an external worker (``--worker``; started again 2 s later);
3. SIGKILL the broker that leads input partition 0, and start it again later;
4. a rebalance storm: one to four sidecars of one group come and go, the
   first half with a slow worker and a small --max-buffered, so that fetching
   is paused while partitions move;
5. poison: alerts at random places that the worker answers RETRY, whose handler
   raises, or that make the worker process die; they must be dead-lettered;
6. alerts on which the worker hangs (never answers), with --worker-timeout 2;
   they must be dead-lettered, and nothing else held up for good;
7. the broker that leads input partition 0 frozen with SIGSTOP for 30 s;
8. the output cluster (output and dead-letter buffers) down for 60 s.

"1-eos", "2-eos" and "3-eos" repeat 1 to 3 with ``--exactly-once`` and must show
no duplicates; they run only if ``alert-sidecar --help`` offers the option.

When the last alert is written, the stage is given a bounded time to commit
every input offset (a stage that never gets there fails, with the reason), is
stopped with SIGTERM (it must exit 0), and a counter reads the input, output
and dead-letter buffers to their ends with isolation.level=read_committed:

- missing: alerts of the input that are in neither buffer (must be 0);
- duplicates: output and dead-letter records beyond one per alert (at least
  once allows them; the exactly-once variants must have none);
- unexpected dead letters: dead letters of alerts that are no poison;
- recovery, for each fault, from its end (the kill of a worker the sidecar
  restarts itself, the start of a replacement sidecar or worker, a broker back):
  "first output", the first record appended to either buffer after it, and
  "caught up", when every alert written before it had come out. Every topic
  is created with message.timestamp.type=LogAppendTime, so these are the
  brokers' own times of appending, on the machine's one clock.

Scenarios that fault no broker of the main cluster run side by side (and 8,
whose fault is on the other cluster), then 3 and 7 one at a time; --serial runs
everything one at a time. One line per scenario on stdout, then one JSON
object of every figure and the totals; exit 1 if any scenario failed.

To see that the checks can fail, ``--sabotage delete-outputs`` deletes the
first output records of partition 0 (AdminClient.delete_records) before
counting. (The sidecar refuses ``enable.auto.commit``, the setting that would
lose alerts for real, so that cannot be the sabotage.)
"""

from __future__ import annotations

import argparse
import bisect
import concurrent.futures
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from alert_sidecar.kafka.local import LocalKafka
from alert_sidecar.stage.verdicts import OUTPUT_SOURCE_HEADER, SOURCE_HEADER
from alert_sidecar.workers.process import free_port

ROOT = Path(__file__).resolve().parents[1]
PASSTHROUGH = ROOT / "examples" / "python" / "passthrough.py"
POISON = ROOT / "bench" / "chaos_workers" / "poison.py"
SLOW = ROOT / "bench" / "chaos_workers" / "slow.py"
_CONSOLE_SCRIPT = Path(sys.executable).with_name("alert-sidecar")
SIDECAR = [str(_CONSOLE_SCRIPT)] if _CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "alert_sidecar.cli"]

QUICK_ALERTS = 20_000
FULL_ALERTS = 100_000
PARTITIONS = 6

# The writer's pace is at most this: a passthrough stage moves about 5,000 small
# alerts/s on this project's 2-core machine (docs/performance.md), and a stage
# must have room to drain the backlog a fault leaves while new alerts arrive.
MAX_RATE = 1_500

# What a stage gets, once the last alert is written, to commit every offset:
# a minute, plus a millisecond an alert for a backlog the fault left (the
# writer's pace at most, MAX_RATE, is two thirds of that). A minute is what a
# worker that keeps dying gets to be started again four times (after 1, 2, 4
# and 8 s: workers/process.py) and still leave its poison dead-lettered.
DRAIN_BASE_S = 60.0
DRAIN_PER_ALERT_S = 0.001

# SIGTERM lets a sidecar drain for --drain-timeout (30 s) and stop its worker
# (up to 10 s); more than that is a sidecar that does not stop.
STOP_TIMEOUT_S = 60.0

# A sidecar joins its group and gets partitions in a few seconds; after a
# SIGKILL the group first waits out the dead member's session (10 s).
ASSIGN_TIMEOUT_S = 60.0

# How long the counter may take to read a buffer to its end; beyond this the
# end is held by a transaction that never ends.
COUNT_TIMEOUT_S = 120.0

# A SIGKILLed sidecar's partitions wait for its session to time out (10 s,
# kafka/consumer.py) before the new one gets them: a kill and the recovery after it.
KILL_CYCLE_S = 13.0

# Between a SIGKILLed sidecar and its replacement.
RESTART_PAUSE_S = 1.0

# The freeze and the output outage the brief of each scenario names.
FREEZE_S = 30.0
OUTPUT_DOWN_S = 60.0

# Poison and hanging alerts per 20,000 (scaled with the count, at least one
# of each). Few enough that a worker's threads are not all hung at once: each
# try of an alert the worker's code hangs on holds one of the SDK's 16 batch
# threads for good (Python cannot end a thread), four tries an alert with
# --max-retries 2 (its batch's, then three alone), so two such alerts hold 8.
POISON_RETRY, POISON_CRASH, POISON_EXIT, HANGING = 8, 8, 2, 2

# How often a scenario looks at watermarks and logs while it waits.
POLL_S = 0.25

# Set on every process the suite starts, so that teardown finds each of them
# (workers run in sessions of their own, under the sidecar's guard).
MARKER_ENV = "ALERT_SIDECAR_CHAOS_RUN"

EOS_OPTION = "--exactly-once"
# Records deleted from the start of output partition 0 by --sabotage delete-outputs.
SABOTAGE_DELETED = 100

_print_lock = threading.Lock()


def say(text: str) -> None:
    with _print_lock:
        print(text, file=sys.stderr, flush=True)


# --- Kafka ------------------------------------------------------------------------


class Cluster:
    """A local cluster the suite started, and what scenarios do to it."""

    def __init__(self, name: str, state_dir: Path, brokers: int) -> None:
        self.name = name
        self.local = LocalKafka(state_dir, brokers=brokers, progress=lambda line: say(f"[kafka {name}] {line}"))
        self.brokers = brokers
        self.replication = min(3, brokers)
        # acks=all then survives one broker down; one broker can only ask for itself.
        self.min_isr = 2 if brokers >= 3 else 1
        self.bootstrap = ""
        self.frozen: set[int] = set()
        self.started = False
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start the cluster in the background; ``wait_up`` waits for it."""
        self.started = True
        threading.Thread(target=self._up, name=f"kafka-{self.name}", daemon=True).start()

    def _up(self) -> None:
        try:
            self.bootstrap = self.local.up(timeout=180)
        except BaseException as exc:  # noqa: BLE001 - raised by wait_up, in the scenario that needs the cluster
            self._error = exc
        finally:
            self._ready.set()

    def wait_up(self) -> None:
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError(f"the {self.name} cluster did not start: {self._error}") from self._error

    def down(self) -> None:
        if not self.started:
            return
        self._ready.wait()
        for broker in list(self.frozen):
            self.thaw(broker)
        self.local.down()

    def create_topics(self, names: list[str]) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        config = {"min.insync.replicas": str(self.min_isr),
                  # The broker's time of appending, so recovery times need no producer's clock.
                  "message.timestamp.type": "LogAppendTime"}
        futures = admin.create_topics([NewTopic(n, PARTITIONS, self.replication, config=config) for n in names],
                                      operation_timeout=30)
        for future in futures.values():
            future.result(60)
        # Every broker must know them before a sidecar asks: with --no-create-topics it
        # stops at once if the broker it asks has not heard of a topic yet.
        deadline = time.monotonic() + 60
        for broker in self.local.status().brokers:
            alone = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.port}", "log_level": 0})
            for name in names:
                while True:
                    try:
                        found = alone.list_topics(name, timeout=10).topics.get(name)
                    except KafkaException:
                        found = None
                    if found and found.error is None and len(found.partitions) == PARTITIONS and all(
                            p.leader >= 0 for p in found.partitions.values()):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"broker {broker.id} does not serve every partition of {name} after 60 s")
                    time.sleep(0.1)

    def leader_of(self, topic: str, partition: int) -> int:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return admin.list_topics(topic, timeout=10).topics[topic].partitions[partition].leader

    def broker_pid(self, broker: int) -> int:
        for status in self.local.status().brokers:
            if status.id == broker and status.pid:
                return status.pid
        raise RuntimeError(f"broker {broker} of the {self.name} cluster is not running")

    def freeze(self, broker: int) -> None:
        os.killpg(self.broker_pid(broker), signal.SIGSTOP)
        self.frozen.add(broker)

    def thaw(self, broker: int) -> None:
        try:
            os.killpg(self.broker_pid(broker), signal.SIGCONT)
        finally:
            self.frozen.discard(broker)


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)


class Marks:
    """High watermarks and a group's committed offsets, for one scenario's thread."""

    def __init__(self, bootstrap: str, group: str | None = None) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"chaos-marks-{uuid.uuid4()}",
                                  "enable.auto.commit": False, "log_level": 0})

    def ends(self, topic: str) -> list[int]:
        return [high for _low, high in watermarks(self.consumer, topic)]

    def total(self, topics: list[str]) -> int | None:
        """Records in ``topics`` now; None while a broker does not answer."""
        try:
            return sum(sum(self.ends(topic)) for topic in topics)
        except KafkaException:
            return None

    def committed(self, topic: str) -> list[int]:
        answered = self.consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return [max(tp.offset, 0) for tp in sorted(answered, key=lambda tp: tp.partition)]

    def close(self) -> None:
        self.consumer.close()


# Answers of a cluster that is moving leaders (after a broker fault, or brokers
# slowed down by a loaded machine): asked again, they go away.
_PASSING_ERRORS = frozenset({KafkaError._UNKNOWN_PARTITION, KafkaError.NOT_LEADER_FOR_PARTITION,
                             KafkaError.LEADER_NOT_AVAILABLE, KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
                             KafkaError.REQUEST_TIMED_OUT})


def watermarks(consumer: Consumer, topic: str) -> list[tuple[int, int]]:
    """(low, high) of each partition; a new client first learns the topic, or it calls the partitions unknown."""
    for attempt in range(40):
        try:
            consumer.list_topics(topic, timeout=10)
            return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(PARTITIONS)]
        except KafkaException as exc:
            if exc.args[0].code() not in _PASSING_ERRORS or attempt == 39:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


@dataclass
class Record:
    partition: int
    offset: int
    ts_ms: int
    value: bytes | None
    headers: dict[str, bytes]


def read_to_end(bootstrap: str, topic: str, timeout: float = COUNT_TIMEOUT_S) -> list[Record]:
    """Every record of ``topic`` up to its end now, as a downstream stage reading committed data sees them.

    read_committed: records of aborted transactions are skipped, and the end
    of a partition is its last stable offset. A partition that does not reach
    its high watermark within ``timeout`` (a transaction left open) is an error.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-counter-{uuid.uuid4()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True, "auto.offset.reset": "earliest", "log_level": 0})
    # The ends are the high watermarks, asked read_uncommitted: asked by a
    # read_committed client they are the last stable offsets, which stop
    # short at a transaction still open (one a killed sidecar left, until
    # the broker aborts it), and what follows it would go uncounted.
    ender = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-counter-{uuid.uuid4()}",
                      "enable.auto.commit": False, "isolation.level": "read_uncommitted", "log_level": 0})
    try:
        try:
            ends = {p: high for p, (low, high) in enumerate(watermarks(ender, topic)) if high > low}
        finally:
            ender.close()
        consumer.assign([TopicPartition(topic, p, 0) for p in ends] or [])
        # Offset 0 may be gone (deleted records): then the earliest is read.
        records: list[Record] = []
        position = {p: 0 for p in ends}
        deadline = time.monotonic() + timeout
        while any(position[p] < ends[p] for p in ends):
            if time.monotonic() > deadline:
                short = {p: f"{position[p]}<{ends[p]}" for p in ends if position[p] < ends[p]}
                raise RuntimeError(f"could not read {topic} to its end within {timeout:g} s "
                                   f"(partition: position<end {short}); a transaction left open?")
            for message in consumer.consume(1000, timeout=0.5):
                err = message.error()
                p = message.partition()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        position[p] = max(position[p], message.offset())
                        continue
                    raise KafkaException(err)
                position[p] = max(position[p], message.offset() + 1)
                records.append(Record(p, message.offset(), message.timestamp()[1], message.value(),
                                      dict(message.headers() or [])))
        return records
    finally:
        consumer.close()


# --- Alerts in --------------------------------------------------------------------


class AlertWriter(threading.Thread):
    """Writes ``count`` alerts at a steady pace over ``window`` seconds, round-robin over the partitions.

    Each alert is JSON with a unique id and its "case" (what the poison worker
    does with it). The delivery report of each says where it went and when
    the broker appended it.

    A scenario whose faults take as long as the stage needs to recover (a
    sidecar's replacement waits out its predecessor's session) holds the
    writer back with ``hold(n)``, so that each fault meets alerts still
    flowing however slow the machine is: the writer stops before alert ``n``
    until ``allow`` lets it go on, at the same pace, with nothing made up.
    """

    def __init__(self, bootstrap: str, topic: str, key: str, count: int, window: float,
                 cases: dict[int, str]) -> None:
        super().__init__(name=f"chaos-writer-{key}", daemon=True)
        self.topic = topic
        self.key = key
        self.count = count
        self.window = window
        self.cases = cases
        self.allowed = count
        self.delivered: list[tuple[int, int, int] | None] = [None] * count  # (partition, offset, ts_ms)
        self.failed: list[str] = []
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            # As an alert producer upstream would: every replica acknowledges,
            # and librdkafka's retries write nothing twice.
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            # librdkafka's default of 300 s outlasts every fault here, so an
            # alert written during a broker fault waits rather than fails.
            "message.timeout.ms": 300_000,
            "log_level": 0,
        })

    def hold(self, before: int) -> None:
        self.allowed = min(self.count, before)

    def allow(self, before: int) -> None:
        self.allowed = max(self.allowed, min(self.count, before))

    def alert_id(self, index: int) -> str:
        return f"{self.key}-{index:06d}"

    def value(self, index: int) -> bytes:
        return json.dumps({"id": self.alert_id(index), "seq": index,
                           "case": self.cases.get(index, "ok")}).encode()

    def run(self) -> None:
        try:
            self._write()
        except BaseException as exc:  # noqa: BLE001 - the scenario reports it
            self.error = exc
        finally:
            self.done.set()

    def _write(self) -> None:
        rate = self.count / self.window
        index = 0
        credit = 1.0  # alerts the pace allows now
        last = time.monotonic()
        while index < self.count:
            now = time.monotonic()
            # While held, no credit piles up: the pace goes on where it stopped.
            credit = credit + (now - last) * rate if index < self.allowed else 1.0
            last = now
            while index < self.allowed and credit >= 1:
                def on_delivery(err, message, index=index):
                    if err is not None:
                        self.failed.append(f"{self.alert_id(index)}: {err.str()}")
                    else:
                        self.delivered[index] = (message.partition(), message.offset(), message.timestamp()[1])
                try:
                    self.producer.produce(self.topic, self.value(index), partition=index % PARTITIONS,
                                          on_delivery=on_delivery)
                except BufferError:
                    self.producer.poll(0.05)
                    continue
                index += 1
                credit -= 1
            self.producer.poll(0.02)
        left = self.producer.flush(300)
        if left:
            self.failed.append(f"{left} alerts not acknowledged by the input cluster within 300 s")


# --- Processes --------------------------------------------------------------------


class Proc:
    """A process the suite started, in a session of its own, its output in a log file."""

    def __init__(self, argv: list[str], log_path: Path, marker: str) -> None:
        self.argv = argv
        self.log_path = log_path
        self.marker = marker
        self.log = open(log_path, "ab")
        self.start()

    def start(self) -> None:
        """Start (or start again, once it has ended) the process, its output appended to the same log."""
        self.popen = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env={**os.environ, MARKER_ENV: self.marker}, cwd=ROOT, start_new_session=True)
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.alive:
            self.kill()
        self.log.close()


def processes_marked(marker: str) -> list[int]:
    """Pids of live processes whose environment carries the suite's marker."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_marked(marker: str) -> None:
    """SIGKILL the process group of every process the suite started, whoever's child it is now."""
    own = os.getpgid(0)
    for pid in processes_marked(marker):
        try:
            group = os.getpgid(pid)
            if group != own:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


# --- A scenario's run -------------------------------------------------------------


@dataclass
class Fault:
    label: str
    start: float  # time.time()
    end: float  # when the fault is over: see the module docstring


@dataclass
class Spec:
    key: str
    title: str
    body: Callable[[Run], None]
    window: Callable[[Suite], float]  # seconds of writing, before the count's own pace
    poison: dict[str, int] = field(default_factory=dict)  # case -> alerts per 20,000
    sidecar_options: tuple[str, ...] = ()
    output_cluster: bool = False  # output and dead-letter buffers on the second cluster
    faults_brokers: bool = False  # kills or freezes brokers: on a cluster of its own, one such fault at a time
    exactly_once: bool = False


class Run:
    """One scenario: its topics, alerts, processes and faults."""

    def __init__(self, spec: Spec, suite: Suite) -> None:
        self.spec = spec
        self.key = spec.key
        self.suite = suite
        token = uuid.uuid4().hex[:6]
        self.main = suite.faults if spec.faults_brokers else suite.main  # the input's cluster
        self.out_cluster = suite.output if spec.output_cluster else self.main
        self.input = f"chaos-{self.key}-{token}"
        self.output = f"{self.input}.out"
        self.dead_letter = f"{self.input}.dead-letter"
        self.group = f"chaos-{self.key}-{token}"
        self.log_dir = suite.log_dir / self.key
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(f"{suite.seed}-{self.key}")
        self.count = suite.alerts
        self.window = max(spec.window(suite), self.count / MAX_RATE)
        self.cases = self._place_poison()
        self.expected_dead = {index for index, case in self.cases.items()}
        self.writer = AlertWriter(self.main.bootstrap, self.input, self.key, self.count, self.window, self.cases)
        self.procs: list[Proc] = []
        self.sidecars: list[Proc] = []
        self.faults: list[Fault] = []
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.started = time.time()
        self.started_writing: float | None = None
        self.group_number = 0  # of the scenarios run together (Suite.shared)
        self.out_marks = Marks(self.out_cluster.bootstrap)

    def _place_poison(self) -> dict[int, str]:
        cases: dict[int, str] = {}
        scale = self.count / QUICK_ALERTS
        # Away from the very start and end: poison among ordinary alerts, in every part of the run.
        span = range(self.count // 20, self.count - self.count // 20)
        for case, per_quick in self.spec.poison.items():
            wanted = max(1, round(per_quick * scale))
            while wanted:
                index = self.rng.choice(span)
                if index not in cases:
                    cases[index] = case
                    wanted -= 1
        return cases

    def say(self, text: str) -> None:
        say(f"[{self.key}] {text}")

    def uri(self, cluster: Cluster, topic: str) -> str:
        return f"kafka://{cluster.bootstrap}/{topic}"

    # processes

    def start_sidecar(self, *options: str, worker: list[str] | None = None, name: str = "sidecar") -> Proc:
        argv = [*SIDECAR, "--in", self.uri(self.main, self.input), "--out", self.uri(self.out_cluster, self.output),
                "--dead-letter", self.uri(self.out_cluster, self.dead_letter), "--group", self.group,
                "--no-create-topics", "--progress-interval", "2", *self.spec.sidecar_options, *options,
                *self.suite.sidecar_extra]
        if self.spec.exactly_once:
            # A stable id per role, as a StatefulSet's pod name is: a replacement
            # aborts the transaction its killed predecessor left open at once.
            argv += [EOS_OPTION, "--transactional-id", f"{self.group}.{name}"]
        if worker is not None:
            argv += ["--", *worker]
        proc = self.start(argv, name)
        self.sidecars.append(proc)
        return proc

    def start(self, argv: list[str], name: str) -> Proc:
        proc = Proc(argv, self.log_dir / f"{name}-{len(self.procs)}.log", self.suite.marker)
        self.procs.append(proc)
        return proc

    def wait_assigned(self, sidecar: Proc, timeout: float = ASSIGN_TIMEOUT_S, again: bool = True) -> None:
        if not wait_for(lambda: "partitions assigned" in sidecar.text() or not sidecar.alive, timeout):
            raise ScenarioError(f"sidecar {sidecar.log_path.name} had no partitions after {timeout:g} s:\n"
                                f"{tail(sidecar.text())}")
        said = tail(sidecar.text(), 1)
        if again and not sidecar.alive and sidecar.popen.returncode == 3 and "does not exist" in said:
            # Seen on a loaded machine while clusters start beside it: the topic exists (every
            # broker listed it before the sidecar started), but one metadata answer said otherwise.
            self.notes.append(f"{sidecar.log_path.name} exited 3 at start, saying an existing topic does not "
                              f"exist ({said}); started again")
            sidecar.start()
            self.wait_assigned(sidecar, timeout, again=False)
            return
        if not sidecar.alive:
            raise ScenarioError(f"sidecar {sidecar.log_path.name} exited with {sidecar.popen.returncode}:\n"
                                f"{tail(sidecar.text())}")

    def wait_output_grows(self, timeout: float) -> bool:
        """Wait until a record is appended to the output or dead-letter buffer after now."""
        topics = [self.output, self.dead_letter]
        before = None
        deadline = time.monotonic() + timeout
        while before is None and time.monotonic() < deadline:
            before = self.out_marks.total(topics)
        return wait_for(lambda: (self.out_marks.total(topics) or 0) > (before or 0),
                        max(0.0, deadline - time.monotonic()))

    def managed_worker_pid(self, sidecar: Proc) -> int | None:
        """The worker a sidecar started itself: the child of the guard its log names last."""
        guards = re.findall(r"worker process started index=\d+ pid=(\d+)", sidecar.text())
        if not guards:
            return None
        children = children_of(int(guards[-1]))
        return children[0] if children else None

    def fault(self, label: str, start: float, end: float | None = None) -> None:
        self.faults.append(Fault(label, start, end if end is not None else time.time()))
        self.say(f"fault: {label}")

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def at(self, fraction: float) -> None:
        """Sleep until ``fraction`` of the writing window has passed."""
        self.sleep(self.started_writing + fraction * self.window - time.time())

    def begin_writing(self) -> None:
        self.started_writing = time.time()
        self.writer.start()

    def close(self) -> None:
        for proc in self.procs:
            proc.close()
        self.out_marks.close()


class ScenarioError(Exception):
    """The scenario could not go on; its message says what was seen."""


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --- The scenarios ----------------------------------------------------------------


def sidecar_kills(run: Run) -> None:
    kills = run.suite.kills
    chunk = run.count // (kills + 1)  # written before the first kill, and after each
    sidecar = run.start_sidecar(worker=[sys.executable, str(PASSTHROUGH)])
    run.wait_assigned(sidecar)
    run.writer.hold(chunk)
    run.begin_writing()
    for n in range(kills):
        # Kill it while it works: once it has its partitions and its outputs arrive,
        # with the next alerts being written.
        run.wait_assigned(sidecar)
        run.wait_output_grows(20)
        run.writer.allow((n + 2) * chunk)
        run.sleep(run.rng.uniform(0.5, 2.0))
        killed = time.time()
        sidecar.kill()
        # As a supervisor would, a moment later; and so every record appended after the
        # restart is the replacement's, not one the killed sidecar had on the wire.
        run.sleep(RESTART_PAUSE_S)
        sidecar = run.start_sidecar(worker=[sys.executable, str(PASSTHROUGH)])
        run.fault(f"SIGKILL sidecar ({n + 1} of {kills}), replacement started {RESTART_PAUSE_S:g} s later", killed)
    run.writer.allow(run.count)
    run.wait_assigned(sidecar)


def worker_kills(run: Run) -> None:
    port = free_port()
    external_argv = [sys.executable, str(PASSTHROUGH), "--port", str(port)]
    external = run.start(external_argv, "external-worker")
    managed = run.start_sidecar(worker=[sys.executable, str(PASSTHROUGH)], name="sidecar-managed")
    remote = run.start_sidecar("--worker", f"127.0.0.1:{port}", name="sidecar-external")
    run.wait_assigned(managed)
    run.wait_assigned(remote)
    run.begin_writing()
    kills = 6
    for n in range(kills):
        run.at((n + 1) / (kills + 1))
        killed = time.time()
        if n % 2 == 0:
            pid = run.managed_worker_pid(managed)
            if pid is None:
                raise ScenarioError(f"no worker process of {managed.log_path.name} to kill:\n{tail(managed.text())}")
            os.kill(pid, signal.SIGKILL)
            run.fault(f"SIGKILL worker pid {pid} started by the sidecar (it starts it again)", killed)
        else:
            external.kill()
            run.sleep(2.0)
            external = run.start(external_argv, "external-worker")
            run.fault("SIGKILL external worker, started again 2 s later", killed)


def leader_kill(run: Run) -> None:
    sidecar = run.start_sidecar(worker=[sys.executable, str(PASSTHROUGH)])
    run.wait_assigned(sidecar)
    # The last fifth waits for the broker to be back, however long it takes to start.
    run.writer.hold(run.count * 4 // 5)
    run.begin_writing()
    run.at(0.25)

    def kill() -> tuple[int, float, float]:
        leader = run.main.leader_of(run.input, 0)
        killed = time.time()
        run.main.local.stop_broker(leader, hard=True)
        return leader, killed, time.time()

    leader, killed, end = run.suite.shared(run, "kill the leader", kill)
    run.fault(f"SIGKILL broker {leader} (leader of input partition 0)", killed, end)
    run.at(0.6)

    def restart() -> tuple[float, float]:
        started = time.time()
        run.main.local.start_broker(leader, timeout=120)
        return started, time.time()

    started, end = run.suite.shared(run, "start it again", restart)
    run.writer.allow(run.count)
    run.fault(f"broker {leader} started again (serving)", started, end)


def rebalance_storm(run: Run) -> None:
    instances: list[tuple[Proc, bool]] = []  # (sidecar, slow)
    stopping: list[Proc] = []

    def add(slow: bool) -> Proc:
        if slow:
            proc = run.start_sidecar("--max-buffered", "100",
                                     worker=[sys.executable, str(SLOW), "--delay-ms", "10"], name="sidecar-slow")
        else:
            proc = run.start_sidecar(worker=[sys.executable, str(PASSTHROUGH)], name="sidecar")
        instances.append((proc, slow))
        return proc

    run.wait_assigned(add(True))
    run.begin_writing()
    changes = 16
    removals = 0
    for n in range(changes):
        run.at((n + 1) / (changes + 2))
        slow_half = n < changes // 2
        # A member that has partitions can lose them; one still joining is no rebalance
        # to speak of (and a sidecar that has not started dies of SIGTERM: that is no stop).
        working = [i for i, (proc, _) in enumerate(instances) if "partitions assigned" in proc.text()]
        grow = len(instances) < 4 and (len(working) <= 1 or run.rng.random() < 0.5)
        changed = time.time()
        if grow:
            proc = add(slow_half)
            run.fault(f"instance added ({len(instances)} now, {'slow' if slow_half else 'passthrough'})", changed)
            # The next change once this one has moved partitions (or could not within the bound).
            wait_for(lambda proc=proc: "partitions assigned" in proc.text() or not proc.alive, 30)
            continue
        if not working:
            continue
        # In the slow half, a sidecar whose fetching is paused goes first; after it, the slow ones.
        paused = [i for i in working if is_paused(instances[i][0].text())]
        slow_ones = [i for i in working if instances[i][1]]
        proc, _ = instances.pop(run.rng.choice((paused if slow_half else slow_ones) or working))
        removals += 1
        if removals % 4 == 0:
            proc.kill()
            how = "SIGKILL"
        else:
            proc.signal(signal.SIGTERM)
            stopping.append(proc)
            how = "SIGTERM"
        run.fault(f"instance removed by {how}{' while paused' if is_paused(proc.text()) else ''} "
                  f"({len(instances)} left)", changed)
    for proc in stopping:
        try:
            code = proc.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            run.failures.append(f"{proc.log_path.name}, stopped by SIGTERM mid-storm, exited with {code} "
                                f"(0 expected):\n{tail(proc.text(), 8)}")
    texts = [proc.text() for proc in run.sidecars]
    pauses = sum(text.count("pausing fetch") for text in texts)
    revoked = sum(text.count("partitions revoked") for text in texts)
    revoked_paused = sum(revocations_while_paused(text) for text in texts)
    run.notes.append(f"fetching paused by backpressure {pauses} times; {revoked} revocations, "
                     f"{revoked_paused} of them from a sidecar whose fetching was paused")
    if not revoked_paused:
        run.failures.append("no partition was taken from a sidecar while its fetching was paused: "
                            "the storm did not test what it says")


def is_paused(log: str) -> bool:
    """Whether a sidecar's last word on backpressure was that it paused fetching."""
    return log.rfind("pausing fetch") > log.rfind("resuming fetch")


def revocations_while_paused(log: str) -> int:
    paused, count = False, 0
    for line in log.splitlines():
        if "pausing fetch" in line:
            paused = True
        elif "resuming fetch" in line:
            paused = False
        elif "partitions revoked" in line and paused:
            count += 1
    return count


def poison(run: Run) -> None:
    sidecar = run.start_sidecar(worker=[sys.executable, str(POISON)])
    run.wait_assigned(sidecar)
    run.begin_writing()


def hanging(run: Run) -> None:
    sidecar = run.start_sidecar(worker=[sys.executable, str(POISON)])
    run.wait_assigned(sidecar)
    run.begin_writing()


def broker_freeze(run: Run) -> None:
    sidecar = run.start_sidecar(worker=[sys.executable, str(PASSTHROUGH)])
    run.wait_assigned(sidecar)
    run.begin_writing()
    run.at(0.15)

    def freeze() -> tuple[int, float, float]:
        leader = run.main.leader_of(run.input, 0)
        frozen = time.time()
        run.main.freeze(leader)
        run.say(f"broker {leader} frozen (SIGSTOP)")
        time.sleep(FREEZE_S)
        run.main.thaw(leader)
        return leader, frozen, time.time()

    leader, frozen, end = run.suite.shared(run, "freeze the leader", freeze)
    run.fault(f"broker {leader} (leader of input partition 0) frozen by SIGSTOP for {FREEZE_S:g} s", frozen, end)


def output_outage(run: Run) -> None:
    sidecar = run.start_sidecar(worker=[sys.executable, str(PASSTHROUGH)])
    run.wait_assigned(sidecar)
    # The last fifth waits for the output cluster to be back, however long it takes to start.
    run.writer.hold(run.count * 4 // 5)
    run.begin_writing()
    run.at(0.1)
    cluster = run.out_cluster
    broker = cluster.local.status().brokers[0].id
    stopped = time.time()
    cluster.local.stop_broker(broker, hard=True)
    run.say(f"output cluster down (broker {broker} SIGKILLed) for {OUTPUT_DOWN_S:g} s")
    run.sleep(OUTPUT_DOWN_S)
    cluster.local.start_broker(broker, timeout=120)
    run.writer.allow(run.count)
    run.fault(f"output cluster down {time.time() - stopped:.0f} s, serving again", stopped)


def _kill_window(suite: Suite) -> float:
    return suite.kills * KILL_CYCLE_S + 4


SPECS = [
    Spec("1", "sidecar SIGKILL x{kills}", sidecar_kills, _kill_window),
    Spec("2", "worker SIGKILL x6 (3 started by the sidecar, 3 external)", worker_kills, lambda s: 45),
    Spec("3", "SIGKILL the leader broker, start it again", leader_kill, lambda s: 45, faults_brokers=True),
    Spec("4", "rebalance storm, 1-4 instances, 16 changes, half paused by backpressure", rebalance_storm,
         lambda s: 60),
    Spec("5", "poison: RETRY, raising handler, worker os._exit", poison, lambda s: 40,
         poison={"retry": POISON_RETRY, "crash": POISON_CRASH, "exit": POISON_EXIT},
         sidecar_options=("--max-retries", "2", "--retry-backoff", "0.1")),
    Spec("6", "worker hangs on some alerts, --worker-timeout 2", hanging, lambda s: 40,
         poison={"hang": HANGING},
         sidecar_options=("--worker-timeout", "2", "--max-retries", "2", "--retry-backoff", "0.2")),
    Spec("7", f"leader broker frozen by SIGSTOP for {FREEZE_S:g} s", broker_freeze, lambda s: 50,
         faults_brokers=True),
    Spec("8", f"output cluster down for {OUTPUT_DOWN_S:g} s", output_outage, lambda s: 85, output_cluster=True),
    Spec("1-eos", "sidecar SIGKILL x{kills}, --exactly-once", sidecar_kills, _kill_window, exactly_once=True),
    Spec("2-eos", "worker SIGKILL x6, --exactly-once", worker_kills, lambda s: 45, exactly_once=True),
    Spec("3-eos", "SIGKILL the leader broker, --exactly-once", leader_kill, lambda s: 45,
         faults_brokers=True, exactly_once=True),
]


# --- Running and counting a scenario ----------------------------------------------


def execute(spec: Spec, suite: Suite, group_number: int = 0) -> dict:
    title = spec.title.format(kills=suite.kills)
    if spec.exactly_once and not suite.has_exactly_once:
        why = f"alert-sidecar --help does not list {EOS_OPTION}"
        say(f"[{spec.key}] not run: {why}")
        return {"scenario": spec.key, "title": title, "ran": False, "why": why}
    for cluster in {id(c): c for c in suite.clusters_of(spec)}.values():
        cluster.wait_up()
    run = Run(spec, suite)
    run.group_number = group_number
    run.say(f"{title}: {run.count} alerts over {run.window:.0f} s into {run.input}")
    run.main.create_topics([run.input] + ([] if spec.output_cluster else [run.output, run.dead_letter]))
    if spec.output_cluster:
        run.out_cluster.create_topics([run.output, run.dead_letter])
    try:
        try:
            spec.body(run)
        except ScenarioError as exc:
            run.failures.append(str(exc))
        run.writer.allow(run.count)  # a body that stopped early must not leave the writer held
        if run.writer.is_alive() or run.writer.done.is_set():
            run.writer.join()
            written_at = time.time()
            drained = drain(run, written_at)
        else:
            drained = False
        stop_stage(run)
        return count(run, drained)
    finally:
        run.close()


def drain(run: Run, written_at: float) -> bool:
    """Wait until the group has committed every input offset; a failure says how far it got."""
    marks = Marks(run.main.bootstrap, run.group)
    try:
        ends = marks.ends(run.input)
        state = {"committed": [0] * PARTITIONS}

        def caught_up() -> bool:
            try:
                state["committed"] = marks.committed(run.input)
            except KafkaException:
                return False
            return all(c >= e for c, e in zip(state["committed"], ends))

        timeout = DRAIN_BASE_S + DRAIN_PER_ALERT_S * run.count
        if wait_for(caught_up, timeout):
            run.notes.append(f"every offset committed {time.time() - written_at:.1f} s after the last alert "
                             f"was written")
            return True
        lag = sum(e - c for c, e in zip(state["committed"], ends))
        evidence = "\n".join(f"  {proc.log_path.name}: {tail(proc.text(), 3)}" for proc in run.sidecars if proc.alive)
        run.failures.append(f"the stage did not commit every offset within {timeout:g} s of the last alert "
                            f"written: {lag} uncommitted (committed {state['committed']}, ends {ends}); "
                            f"last lines of the live sidecars:\n{evidence}")
        return False
    finally:
        marks.close()


def stop_stage(run: Run) -> None:
    """SIGTERM every live sidecar; each must exit 0 (the README's graceful stop)."""
    live = [proc for proc in run.sidecars if proc.alive]
    for proc in live:
        # Not before it handles the signal (it logs "stage started" after): a sidecar
        # stopped while it starts dies of the signal, which says nothing of its stop.
        wait_for(lambda proc=proc: "stage started" in proc.text() or not proc.alive, ASSIGN_TIMEOUT_S)
        proc.signal(signal.SIGTERM)
    for proc in live:
        try:
            code = proc.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            how = f"still running after {STOP_TIMEOUT_S:g} s" if code is None else f"exit {code}"
            run.failures.append(f"{proc.log_path.name} did not stop cleanly on SIGTERM ({how}):\n"
                                f"{tail(proc.text(), 8)}")


def count(run: Run, drained: bool) -> dict:
    writer = run.writer
    if writer.error is not None:
        run.failures.append(f"the writer failed: {writer.error!r}")
    if writer.failed:
        run.failures.append(f"{len(writer.failed)} alerts could not be written: {writer.failed[:3]}")
    if run.suite.sabotage == "delete-outputs":
        admin = AdminClient({"bootstrap.servers": run.out_cluster.bootstrap})
        admin.delete_records([TopicPartition(run.output, 0, SABOTAGE_DELETED)])[
            TopicPartition(run.output, 0, SABOTAGE_DELETED)].result(30)
        run.notes.append(f"sabotage: deleted the first {SABOTAGE_DELETED} records of output partition 0")
    inputs = read_to_end(run.main.bootstrap, run.input)
    outputs = read_to_end(run.out_cluster.bootstrap, run.output)
    dead = read_to_end(run.out_cluster.bootstrap, run.dead_letter)
    marks = Marks(run.main.bootstrap, run.group)
    try:
        committed = marks.committed(run.input)
    finally:
        marks.close()
    figures = tally(run, inputs, outputs, dead, committed)
    figures["drained"] = drained
    return figures


def alert_id_of(value: bytes | None) -> str | None:
    try:
        return json.loads(value)["id"]
    except (TypeError, ValueError, KeyError):
        return None


def tally(run: Run, inputs: list[Record], outputs: list[Record], dead: list[Record], committed: list[int]) -> dict:
    """The scenario's figures from what the three buffers hold; failures for every broken promise."""
    writer = run.writer
    # What the stage could read: the input buffer itself, checked against what the writer was told.
    by_place: dict[tuple[int, int], str] = {}
    written_ts: dict[str, int] = {}
    place_of: dict[str, tuple[int, int]] = {}
    for record in inputs:
        alert = alert_id_of(record.value)
        by_place[(record.partition, record.offset)] = alert
        written_ts[alert] = record.ts_ms
        place_of[alert] = (record.partition, record.offset)
    acknowledged = {writer.alert_id(i) for i, d in enumerate(writer.delivered) if d is not None}
    lost_by_input = acknowledged - written_ts.keys()
    if lost_by_input:
        run.failures.append(f"{len(lost_by_input)} alerts acknowledged to the writer are not in the input buffer "
                            f"(lost by the input cluster, not the stage): {sorted(lost_by_input)[:5]}")
    expected_dead = {writer.alert_id(i) for i in run.expected_dead}
    first_out: dict[str, int] = {}
    records_of: dict[str, int] = {}
    out_ids: set[str] = set()
    dead_ids: set[str] = set()
    mislabelled = []
    for kind, records, header in (("output", outputs, OUTPUT_SOURCE_HEADER), ("dead letter", dead, SOURCE_HEADER)):
        for record in records:
            alert = alert_id_of(record.value)
            source = record.headers.get(header, b"").decode(errors="replace")
            try:
                _topic, partition, offset = source.rsplit("/", 2)
                named = by_place.get((int(partition), int(offset)))
            except ValueError:
                named = None
            if alert is None or named != alert:
                mislabelled.append(f"{kind} {record.partition}/{record.offset}: {header}={source!r} value id {alert}")
                continue
            (out_ids if kind == "output" else dead_ids).add(alert)
            records_of[alert] = records_of.get(alert, 0) + 1
            first_out[alert] = min(first_out.get(alert, record.ts_ms), record.ts_ms)
    if mislabelled:
        run.failures.append(f"{len(mislabelled)} records whose source header does not name their alert: "
                            f"{mislabelled[:3]}")
    missing = sorted(written_ts.keys() - first_out.keys())
    uncommitted = [a for a in missing if place_of[a][1] >= committed[place_of[a][0]]]
    if missing:
        run.failures.append(f"{len(missing)} alerts in neither the output nor the dead-letter buffer "
                            f"({len(missing) - len(uncommitted)} of them committed): {missing[:5]}")
    unexpected_dead = sorted(dead_ids - expected_dead)
    if unexpected_dead:
        reasons = {}
        for record in dead:
            alert = alert_id_of(record.value)
            if alert in unexpected_dead:
                reason = record.headers.get("x-dead-letter-reason", b"").decode(errors="replace")
                reasons[reason] = reasons.get(reason, 0) + 1
        top = sorted(reasons.items(), key=lambda item: -item[1])[:3]
        run.failures.append(f"{len(unexpected_dead)} unexpected dead letters ({unexpected_dead[:3]}...); "
                            f"reasons: {top}")
    misplaced = sorted((expected_dead & out_ids) | ((expected_dead & written_ts.keys()) - dead_ids))
    if misplaced:
        run.failures.append(f"{len(misplaced)} poison alerts not (only) dead-lettered: {misplaced[:5]}")
    duplicates = sum(records_of.values()) - len(records_of)
    if run.spec.exactly_once and duplicates:
        run.failures.append(f"{duplicates} duplicates with {EOS_OPTION}")

    # Recovery, per fault: from its end to the first record appended after it, and until
    # every alert written before its end had come out (poison aside: it has its own figure).
    appended = sorted(record.ts_ms for record in outputs + dead)
    ordinary = sorted((ts, first_out[a]) for a, ts in written_ts.items() if a in first_out and a not in expected_dead)
    written_sorted = [ts for ts, _ in ordinary]
    latest_out = []
    for _, out_ts in ordinary:
        latest_out.append(max(out_ts, latest_out[-1]) if latest_out else out_ts)
    faults = []
    for fault in run.faults:
        end_ms = int(fault.end * 1000)
        later = bisect.bisect_left(appended, end_ms)
        first_output_s = (appended[later] - end_ms) / 1000 if later < len(appended) else None
        before = bisect.bisect_left(written_sorted, end_ms)
        caught_up_s = max(0, latest_out[before - 1] - end_ms) / 1000 if before else 0.0
        faults.append({"fault": fault.label, "at_s": round(fault.start - (run.started_writing or run.started), 1),
                       "lasted_s": round(fault.end - fault.start, 1),
                       "first_output_s": _round(first_output_s), "caught_up_s": _round(caught_up_s)})
    latencies = [(first_out[a] - ts) / 1000 for a, ts in written_ts.items() if a in first_out]
    others = [(first_out[a] - written_ts[a]) / 1000 for a in first_out if a not in expected_dead]
    poison_latency = [(first_out[a] - written_ts[a]) / 1000 for a in expected_dead & dead_ids]
    figures = {
        "scenario": run.key,
        "title": run.spec.title.format(kills=run.suite.kills),
        "ran": True,
        "alerts_in": len(written_ts),
        "out": len(out_ids),
        "dead_lettered": len(dead_ids),
        "missing": len(missing),
        "missing_uncommitted": len(uncommitted),
        "duplicates": duplicates,
        "unexpected_dead_letters": len(unexpected_dead),
        "expected_dead_letters": len(expected_dead),
        "poison_misplaced": len(misplaced),
        "first_output_s": _max([f["first_output_s"] for f in faults]),
        "caught_up_s": _max([f["caught_up_s"] for f in faults]),
        "latency_max_s": _round(max(latencies) if latencies else None),
        "others_latency_max_s": _round(max(others) if others else None),
        "dead_letter_latency_max_s": _round(max(poison_latency) if poison_latency else None),
        "faults": faults,
        "window_s": round(run.window, 1),
        "elapsed_s": round(time.time() - run.started, 1),
        "notes": run.notes,
        "failures": run.failures,
    }
    figures["ok"] = not run.failures
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _max(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def line_of(figures: dict) -> str:
    key = figures["scenario"]
    if not figures.get("ran"):
        return f"scenario {key:<6} {figures['title']}: did not run ({figures['why']})"
    parts = [f"in {figures['alerts_in']}", f"out {figures['out']}", f"dead-lettered {figures['dead_lettered']}",
             f"missing {figures['missing']}", f"duplicates {figures['duplicates']}"]
    if figures["unexpected_dead_letters"]:
        parts.append(f"unexpected dead letters {figures['unexpected_dead_letters']}")
    if figures["faults"]:
        parts.append(f"recovery (max of {len(figures['faults'])} faults, from the end of each): first output "
                     f"{_seconds(figures['first_output_s'])}, caught up {_seconds(figures['caught_up_s'])}")
    if figures["expected_dead_letters"]:
        parts.append(f"poison {figures['expected_dead_letters']} dead-lettered within "
                     f"{_seconds(figures['dead_letter_latency_max_s'])} of writing, other alerts out within "
                     f"{_seconds(figures['others_latency_max_s'])}")
    verdict = "ok" if figures["ok"] else "FAILED"
    return f"scenario {key:<6} {figures['title']}: {', '.join(parts)}; {figures['elapsed_s']:.0f} s {verdict}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


# --- The suite --------------------------------------------------------------------


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.alerts = args.alerts or (QUICK_ALERTS if args.quick else FULL_ALERTS)
        self.kills = args.kills
        self.seed = args.seed
        self.serial = args.serial
        self.sabotage = args.sabotage
        self.sidecar_extra: list[str] = []
        self.marker = uuid.uuid4().hex
        self.workdir = Path(tempfile.mkdtemp(prefix="alert-sidecar-chaos-"))
        self.log_dir = self.workdir / "logs"
        self.log_dir.mkdir()
        self.main = Cluster("main", self.workdir / "kafka-main", 3)
        # Broker faults on a cluster of their own, so that they run beside the
        # other scenarios without being faults of theirs too.
        self.faults = self.main if args.serial else Cluster("faults", self.workdir / "kafka-faults", 3)
        self.output = Cluster("output", self.workdir / "kafka-output", 1)
        self.has_exactly_once = EOS_OPTION in subprocess.run([*SIDECAR, "--help"], capture_output=True, text=True,
                                                             cwd=ROOT).stdout
        self._shared: dict[tuple[int, str], tuple[threading.Event, list]] = {}
        self._shared_lock = threading.Lock()

    def clusters_of(self, spec: Spec) -> list[Cluster]:
        return [self.faults if spec.faults_brokers else self.main] + ([self.output] if spec.output_cluster else [])

    def shared(self, run: Run, name: str, action: Callable[[], object]):
        """Do a fault once for the scenarios run together: the first to ask does it, the others wait for it."""
        with self._shared_lock:
            entry = self._shared.get((run.group_number, name))
            owner = entry is None
            if owner:
                entry = self._shared[(run.group_number, name)] = (threading.Event(), [])
        done, result = entry
        if owner:
            try:
                result.append(action())
            finally:
                done.set()
        else:
            run.say(f"sharing the fault {name!r} of a scenario beside it")
            done.wait()
        if not result:
            raise ScenarioError(f"the shared fault {name!r} failed in the scenario that did it")
        return result[0]


def lanes(specs: list[Spec], serial: bool) -> list[list[list[Spec]]]:
    """Lanes run side by side, each a sequence of groups whose scenarios run side by side.

    One lane holds every scenario that faults no broker (scenario 8's broker is
    of a cluster of its own), all at once; the other the broker faults, one at
    a time on the fault cluster, each with its exactly-once variant, which
    shares its fault (Suite.shared).
    """
    if serial:
        return [[[spec] for spec in specs]]
    together = [spec for spec in specs if not spec.faults_brokers]
    by_fault: dict[Callable, list[Spec]] = {}
    for spec in specs:
        if spec.faults_brokers:
            by_fault.setdefault(spec.body, []).append(spec)
    return [lane for lane in ([together] if together else [], list(by_fault.values())) if lane]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ALERTS} alerts a scenario "
                                                              f"instead of {FULL_ALERTS}")
    parser.add_argument("--alerts", type=int, default=None, help="alerts a scenario (overrides --quick)")
    parser.add_argument("--scenarios", default=",".join(spec.key for spec in SPECS),
                        help="comma-separated scenarios to run (default: all)")
    parser.add_argument("--kills", type=int, default=10, help="sidecar kills in scenario 1")
    parser.add_argument("--seed", default="20240901", help="places of the poison and the storm's choices")
    parser.add_argument("--serial", action="store_true", help="run every scenario alone")
    parser.add_argument("--sabotage", choices=["delete-outputs"], default=None,
                        help="break the stage on purpose, to see the checks fail")
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs even if every scenario passed")
    args = parser.parse_args(argv)
    wanted = [key.strip() for key in args.scenarios.split(",") if key.strip()]
    known = {spec.key: spec for spec in SPECS}
    unknown = [key for key in wanted if key not in known]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    specs = [known[key] for key in wanted]

    suite = Suite(args)
    started = time.monotonic()
    results: dict[str, dict] = {}
    kafka_start_s = None
    try:
        # The main cluster first, alone: every scenario but the broker faults needs
        # it, and seven JVMs starting at once on two cores take three times as long.
        suite.main.start()
        suite.main.wait_up()
        kafka_start_s = round(time.monotonic() - started, 1)
        say(f"main cluster ready in {time.monotonic() - started:.1f} s; logs in {suite.log_dir}; "
            f"{EOS_OPTION} {'offered' if suite.has_exactly_once else 'not offered'} by alert-sidecar")
        for cluster in {id(c): c for spec in specs for c in suite.clusters_of(spec)}.values():
            if not cluster.started:
                cluster.start()
        groups = itertools.count()

        def run_lane(lane: list[list[Spec]]) -> None:
            for group in lane:
                number = next(groups)
                with concurrent.futures.ThreadPoolExecutor(len(group)) as pool:
                    futures = {pool.submit(execute, spec, suite, number): spec for spec in group}
                    for future in concurrent.futures.as_completed(futures):
                        report(futures[future], future)

        def report(spec: Spec, future: concurrent.futures.Future) -> None:
            try:
                figures = future.result()
            except Exception:  # noqa: BLE001 - the suite's own failure: loud, and the scenario fails
                say(f"[{spec.key}] the suite failed:\n{traceback.format_exc()}")
                figures = {"scenario": spec.key, "title": spec.title.format(kills=suite.kills), "ran": True,
                           "ok": False, "failures": [traceback.format_exc(limit=3)], "alerts_in": 0, "out": 0,
                           "dead_lettered": 0, "missing": 0, "duplicates": 0, "unexpected_dead_letters": 0,
                           "expected_dead_letters": 0, "faults": [], "elapsed_s": 0.0}
            results[spec.key] = figures
            with _print_lock:
                print(line_of(figures), flush=True)
            for failure in figures.get("failures", []):
                say(f"[{spec.key}] FAILED: {failure}")

        planned = lanes(specs, suite.serial)
        with concurrent.futures.ThreadPoolExecutor(len(planned)) as pool:
            for future in [pool.submit(run_lane, lane) for lane in planned]:
                future.result()
    finally:
        kill_marked(suite.marker)
        for cluster in {id(c): c for c in (suite.main, suite.faults, suite.output)}.values():
            try:
                cluster.down()
            except Exception as exc:  # noqa: BLE001 - teardown goes on; the cause is printed
                say(f"[kafka {cluster.name}] could not stop: {exc}")
    ran = [results[spec.key] for spec in specs if spec.key in results and results[spec.key].get("ran")]
    failed = [f["scenario"] for f in ran if not f["ok"]]
    totals = {name: sum(f.get(name, 0) for f in ran)
              for name in ("alerts_in", "out", "dead_lettered", "missing", "duplicates", "unexpected_dead_letters")}
    summary = {
        "suite": "chaos",
        "alerts_per_scenario": suite.alerts,
        "sabotage": suite.sabotage,
        "scenarios": {spec.key: results.get(spec.key) for spec in specs},
        "totals": {**totals, "scenarios_run": len(ran), "failed": failed,
                   "not_run": [spec.key for spec in specs if not results.get(spec.key, {}).get("ran")]},
        "kafka_start_s": kafka_start_s,
        "elapsed_s": round(time.monotonic() - started, 1),
        "ok": not failed,
    }
    if failed or args.keep_logs:
        say(f"logs kept in {suite.log_dir}")
    else:
        shutil.rmtree(suite.workdir, ignore_errors=True)
    print(json.dumps(summary), flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
