"""``alert-sidecar replay``: drive a dead-letter buffer back into a stage once the cause is fixed.

A dead letter (stage/verdicts.py) is the original record, byte for byte, with
``x-dead-letter-*`` headers that say why, where from and which stage gave up.
A replay reads the dead letters, keeps those chosen, and produces each one's
original record to ``--to``: its key and value as they are, and its headers
without every ``x-dead-letter-*`` one, plus ``x-replayed-from:
<dead-letter topic>/<partition>/<offset>`` naming the dead letter (in place of
any earlier one, when a record is replayed a second time).

- **Which.** ``--reason TEXT``: those whose ``x-dead-letter-reason`` contains
  TEXT (as written: case counts); ``--stage GROUP``: those whose
  ``x-dead-letter-stage`` is GROUP; both: those that match both. A record with
  no ``x-dead-letter-reason`` is not a dead letter and is passed over.
- **Where to.** The partition it was read from (``x-dead-letter-source``), when
  ``--to`` is that topic and has that partition: the record is back among the
  alerts it came with. Otherwise a keyed record goes by its key (murmur2, as
  Kafka's Java clients and the stage's outputs do), an un-keyed one to its
  dead-letter partition mod the partitions of ``--to``. The replayed record
  gets a new timestamp: it enters the buffer now.
- **In order.** The dead letters of one partition are produced in offset
  order, by an idempotent producer with acks=all (kafka/producer.py), so each
  partition of ``--to`` receives them in that order.
- **Up to where.** Each partition's end as it was when the replay started:
  what a stage dead-letters meanwhile (a replayed alert that fails again)
  waits for the next replay instead of going round in a loop.
- **Once.** The replay's own consumer group on the dead-letter buffer (by
  default ``alert-sidecar.replay.<dead-letter topic>.<to topic>``) commits a
  dead letter's offset only after it and every one before it in its partition
  is acknowledged by ``--to`` or passed over, so a replay that is interrupted
  and run again goes on where it stopped. At least once: a crash between the
  acknowledgement and the commit replays those again (at most CHUNK records).
  The group moves past what it passes over, too: to replay other dead letters
  of the same buffer later (another ``--reason``), give another ``--group``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import click
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from alert_sidecar.config import ENV_PREFIX, parse_pairs
from alert_sidecar.exceptions import ConfigError, KafkaUnreachable, OutputFailed, SidecarError
from alert_sidecar.kafka.buffers import Buffer, parse_buffer
from alert_sidecar.kafka.producer import producer_config
from alert_sidecar.stage.verdicts import REASON_HEADER, SOURCE_HEADER, STAGE_HEADER

PROG = "alert-sidecar replay"

# Every header the sidecar adds to a dead letter starts so (stage/verdicts.py):
# a replay drops them all, those of later versions of the sidecar too.
DEAD_LETTER_PREFIX = "x-dead-letter-"
REPLAYED_FROM_HEADER = "x-replayed-from"  # "<dead-letter topic>/<partition>/<offset>" of the dead letter

# Dead letters read, produced and acknowledged before each commit: what a crash
# between acknowledgement and commit can replay twice, and one commit and one
# wait for acknowledgements per 500 records, nothing beside a dead-letter
# buffer's volume.
CHUNK = 500

# A healthy cluster acknowledges in milliseconds; 30 s rides out a leader
# election. A record not acknowledged by then counts as not written.
DELIVERY_TIMEOUT_S = 30.0


@dataclass
class Counts:
    """What a replay did with the dead letters it read."""

    replayed: int = 0
    reason_filter: int = 0  # passed over: the reason does not contain --reason
    stage_filter: int = 0  # passed over: another stage than --stage
    not_dead_letter: int = 0  # passed over: no x-dead-letter-reason
    unreadable: int = 0  # passed over: a header key that is not UTF-8, which the client cannot read
    left: int = 0  # not read, after --limit


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay."""

    reason: str | None = None
    stage: str | None = None

    def passes_over(self, headers: list[tuple[str, bytes | None]], counts: Counts) -> bool:
        """True (and counted) if a record with these headers is not to be replayed."""
        reason = _header(headers, REASON_HEADER)
        if reason is None:
            counts.not_dead_letter += 1
            return True
        if self.reason is not None and self.reason not in reason:
            counts.reason_filter += 1
            return True
        if self.stage is not None and _header(headers, STAGE_HEADER) != self.stage:
            counts.stage_filter += 1
            return True
        return False


def original_headers(headers: list[tuple[str, bytes | None]], replayed_from: str) -> list[tuple[str, bytes | None]]:
    """A dead letter's headers as its record had them, and ``x-replayed-from``: what a replay produces."""
    kept = [(name, value) for name, value in headers
            if not name.startswith(DEAD_LETTER_PREFIX) and name != REPLAYED_FROM_HEADER]
    return [*kept, (REPLAYED_FROM_HEADER, replayed_from.encode())]


def source_of(headers: list[tuple[str, bytes | None]]) -> tuple[str, int, int] | None:
    """The topic, partition and offset a dead letter was read from (``x-dead-letter-source``), if it says."""
    source = _header(headers, SOURCE_HEADER)
    if source is None:
        return None
    topic, _, rest = source.rpartition("/")
    topic, _, partition = topic.rpartition("/")
    if not topic or not partition.isdigit() or not rest.isdigit():
        return None
    return topic, int(partition), int(rest)


def _header(headers: list[tuple[str, bytes | None]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("utf-8", errors="replace") if value is not None else ""
    return None


@click.command(
    name="replay",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 done; 2 bad option; 3 Kafka unreachable, a topic missing, or the dead letters or the "
           "group's commits could not be read; 5 --to refused a record (nothing is committed past it: run the "
           "same replay again once --to takes it).",
)
@click.option("--from", "source", required=True, metavar="BUFFER",
              help="The dead-letter buffer, kafka://HOST:PORT/TOPIC (a stage's --dead-letter, by default "
                   "<in topic>.dead-letter).")
@click.option("--to", "target", required=True, metavar="BUFFER",
              help="Where the records go, kafka://HOST:PORT/TOPIC: usually the --in of the stage that gave up. "
                   "The topic must exist.")
@click.option("--reason", metavar="TEXT",
              help="Only dead letters whose x-dead-letter-reason contains TEXT (case counts).")
@click.option("--stage", metavar="GROUP",
              help="Only dead letters of the stage with this consumer group (x-dead-letter-stage).")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Replay at most N; the rest wait for the next replay of the group.")
@click.option("--dry-run", is_flag=True,
              help="Print the dead letters that would be replayed, one line each (dead letter, where it was read "
                   "from, reason), and the summary; produce and commit nothing.")
@click.option("--group", metavar="NAME",
              help="The replay's consumer group on the dead-letter buffer, which remembers what was replayed. "
                   "[default: alert-sidecar.replay.<from topic>.<to topic>]")
@click.option("--kafka-config", "kafka_config", multiple=True, envvar=f"{ENV_PREFIX}_KAFKA_CONFIG",
              metavar="KEY=VALUE", help="librdkafka setting for both clusters (e.g. security.protocol=SASL_SSL); "
                                        "repeatable.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, metavar="S",
              help="Seconds to wait for Kafka to answer, and for the next dead letter while some are left to read.")
def replay_command(source, target, reason, stage, limit, dry_run, group, kafka_config, timeout) -> None:
    """Produce the dead letters of --from again to --to, as they were before they were dead-lettered.

    Each replayed record has its original key and value, byte for byte, and
    its headers without the x-dead-letter-* ones and with x-replayed-from:
    TOPIC/PARTITION/OFFSET of its dead letter; it goes back to the partition
    it was read from when --to is that topic, with a new timestamp. The dead
    letters of a partition are replayed in order, up to where the buffer ends
    when the replay starts, by an idempotent producer (acks=all).

    The replay's group commits a dead letter only once it is acknowledged (or
    passed over by --reason or --stage), so a replay run again goes on where
    the last one stopped and replays nothing twice, but for a crash between
    the acknowledgement and the commit, which replays up to 500 again (at
    least once). As the group moves past what it passed over, replaying other
    dead letters of the same buffer later takes another --group. Prints one
    summary line. Examples:

    \b
      alert-sidecar replay --from kafka://localhost:9092/alerts.dead-letter \\
          --to kafka://localhost:9092/alerts --reason "schema id 42" --dry-run
      alert-sidecar replay --from kafka://localhost:9092/alerts.dead-letter \\
          --to kafka://localhost:9092/alerts --stage alert-sidecar.alerts.bright
    """
    try:
        source_buffer = parse_buffer(source, what="--from")
        target_buffer = parse_buffer(target, what="--to")
        if (source_buffer.bootstrap, source_buffer.topic) == (target_buffer.bootstrap, target_buffer.topic):
            raise ConfigError(f"--from and --to are both {source_buffer}: the dead letters would be replayed into "
                              "their own buffer; --to is the input buffer of the stage that gave up")
        if reason is not None and not reason:
            raise ConfigError("--reason is empty: give text the reasons to replay contain, or leave it out")
        extra = parse_pairs(kafka_config, "--kafka-config")
        replay = Replay(source_buffer, target_buffer, Selection(reason, stage),
                        group or f"alert-sidecar.replay.{source_buffer.topic}.{target_buffer.topic}",
                        limit, dry_run, timeout, extra, click.echo)
        counts = replay.run()
    except SidecarError as err:
        click.echo(f"alert-sidecar: error: {err}", err=True)
        raise SystemExit(err.exit_code) from None
    click.echo(replay.summary(counts))


@dataclass
class Replay:
    """One replay of a dead-letter buffer into a buffer."""

    source: Buffer
    target: Buffer
    selection: Selection
    group: str
    limit: int | None
    dry_run: bool
    timeout: float
    extra: dict[str, str]
    say: Callable[[str], None]  # the dry run's lines
    _problems: list[str] = field(default_factory=list)  # librdkafka's errors, named when something fails
    _already_read: bool = False  # the group had read the whole buffer before this replay

    def run(self) -> Counts:
        counts = Counts()
        consumer = Consumer({
            "bootstrap.servers": self.source.bootstrap,
            "group.id": self.group,
            # Commits are made here, only of what is acknowledged.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "error_cb": self._problem,
            # librdkafka's own log lines would mix with the summary; its errors
            # reach error_cb and are said when they matter.
            "log_level": 0,
            **self.extra,
        })
        producer = None
        try:
            partitions = self._partitions(
                consumer, self.source, f"dead-letter buffer {self.source} does not exist: check --from (a stage's "
                "dead letters go to <in topic>.dead-letter unless --dead-letter says where)")
            admin = AdminClient({"bootstrap.servers": self.target.bootstrap, "error_cb": self._problem,
                                 "log_level": 0,
                                 # Asking for a missing topic must not create it (the broker may allow that).
                                 "allow.auto.create.topics": False, **self.extra})
            target_partitions = len(self._partitions(
                admin, self.target, f"buffer {self.target} does not exist: check --to, the input buffer of the "
                "stage the dead letters are for"))
            ranges = self._ranges(consumer, partitions)
            if not self.dry_run:
                producer = Producer(producer_config(self.target.bootstrap, {
                    "error_cb": self._problem,
                    "log_level": 0,
                    # Delivery reports by DELIVERY_TIMEOUT_S, then flush returns.
                    "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
                    **self.extra,
                }))
            self._replay(consumer, producer, ranges, target_partitions, counts)
        finally:
            if producer is not None:
                producer.flush(DELIVERY_TIMEOUT_S)
            consumer.close()
        return counts

    def summary(self, counts: Counts) -> str:
        done = "would replay" if self.dry_run else "replayed"
        line = (f"{done} {counts.replayed} to {self.target.topic}, skipped {counts.reason_filter} (reason filter), "
                f"{counts.stage_filter} (stage filter), {counts.not_dead_letter} (not a dead letter)")
        if counts.unreadable:
            line += f", {counts.unreadable} (header keys not UTF-8)"
        if self.dry_run:
            line += "; nothing produced or committed"
        elif counts.left:
            line += f"; {counts.left} left after --limit for the next replay"
        if self._already_read:
            line += (f"; group {self.group} had replayed {self.source.topic} to its end already "
                     "(--group NAME reads it from its start)")
        return line

    # -- before reading ----------------------------------------------------------------

    def _partitions(self, client: Consumer | AdminClient, buffer: Buffer, missing: str) -> list[int]:
        """The partitions of ``buffer``'s topic; KafkaUnreachable saying ``missing`` if it does not exist."""
        try:
            metadata = client.list_topics(buffer.topic, timeout=self.timeout)
        except KafkaException as exc:
            raise self._unreachable(buffer, exc) from None
        topic = metadata.topics.get(buffer.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise KafkaUnreachable(missing)
        return sorted(topic.partitions)

    def _ranges(self, consumer: Consumer, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """Each partition's first offset to read (the group's commit, else its start) and its end now."""
        topic = self.source.topic
        try:
            committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=self.timeout)
            ranges = {}
            for tp in committed:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=self.timeout)
                ranges[tp.partition] = (max(tp.offset, low) if tp.offset >= 0 else low, high)
        except KafkaException as exc:
            raise KafkaUnreachable(f"cannot read where group {self.group} is in {self.source}: "
                                   f"{_reason(exc)}") from None
        self._already_read = any(tp.offset >= 0 for tp in committed) and all(
            start >= end for start, end in ranges.values()) and any(end > 0 for _, end in ranges.values())
        return ranges

    # -- reading, producing, committing ----------------------------------------------

    def _replay(self, consumer: Consumer, producer: Producer | None, ranges: dict[int, tuple[int, int]],
                target_partitions: int, counts: Counts) -> None:
        topic = self.source.topic
        ends = {p: end for p, (start, end) in ranges.items() if start < end}
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in ends])
        position = {p: ranges[p][0] for p in ends}  # the next offset to handle, in each partition
        last_read = time.monotonic()
        full = False
        while ends and not full:
            messages = consumer.consume(CHUNK, timeout=min(self.timeout, 1.0))
            chunk: list[_Handled] = []
            for message in messages:
                error = message.error()
                if error is not None:
                    self._fetch_error(error)
                    continue
                partition, offset = message.partition(), message.offset()
                if partition not in ends or offset >= ends[partition]:
                    self._finished(consumer, ends, partition)  # written since the replay started
                    continue
                if self.limit is not None and counts.replayed + sum(h.record is not None for h in chunk) >= self.limit:
                    full = True
                    break
                chunk.append(self._handle(message, target_partitions, counts))
                position[partition] = offset + 1
                if offset + 1 >= ends[partition]:
                    self._finished(consumer, ends, partition)
            if messages:
                last_read = time.monotonic()
            elif ends:
                self._finish_gaps(consumer, ends)
                if ends and time.monotonic() - last_read > self.timeout:
                    left = ", ".join(f"partition {p} up to offset {o}" for p, o in sorted(ends.items()))
                    raise self._unreachable(self.source, None, f"no dead letter came within {self.timeout:g} s "
                                                               f"although the buffer holds more ({left})")
            if chunk:
                self._settle(consumer, producer, chunk, counts)
        if full:
            counts.left = sum(end - position[p] for p, (_, end) in ranges.items() if p in position)

    def _handle(self, message, target_partitions: int, counts: Counts) -> _Handled:
        """What becomes of one dead letter: passed over, or the record to produce."""
        coordinates = f"{message.topic()}/{message.partition()}/{message.offset()}"
        try:
            headers = list(message.headers() or [])
        except (SystemError, UnicodeDecodeError):
            counts.unreadable += 1
            return _Handled(message.partition(), message.offset())
        if self.selection.passes_over(headers, counts):
            return _Handled(message.partition(), message.offset())
        key = message.key()
        source = source_of(headers)
        if source is not None and source[0] == self.target.topic and source[1] < target_partitions:
            partition = source[1]  # back where it was read from
        elif key is not None:
            partition = -1  # the partitioner's, by key
        else:
            partition = message.partition() % target_partitions
        if self.dry_run:
            came_from = "/".join(map(str, source)) if source else "an unknown source"
            reason = (_header(headers, REASON_HEADER) or "").replace("\n", " ")
            self.say(f"{coordinates} from {came_from}: {reason}")
        record = _Record(message.value(), key, original_headers(headers, coordinates), partition)
        return _Handled(message.partition(), message.offset(), record)

    def _settle(self, consumer: Consumer, producer: Producer | None, chunk: list[_Handled], counts: Counts) -> None:
        """Produce the chunk's records, wait for their acknowledgements, commit what is done; raise if not all is."""
        if producer is None:  # a dry run
            counts.replayed += sum(h.record is not None for h in chunk)
            return
        for handled in chunk:
            if handled.record is not None:
                self._produce(producer, handled)
        waiting = producer.flush(DELIVERY_TIMEOUT_S + 5)
        commit: dict[int, int] = {}
        blocked: set[int] = set()
        failure = None
        for handled in chunk:
            if handled.partition in blocked:
                continue
            if handled.record is not None and not handled.acknowledged:
                blocked.add(handled.partition)
                failure = failure or handled.error
                continue
            commit[handled.partition] = handled.offset + 1
            counts.replayed += handled.record is not None
        self._commit(consumer, commit)
        if blocked:
            why = failure or f"{waiting} records not acknowledged within {DELIVERY_TIMEOUT_S:g} s"
            raise OutputFailed(f"{self.target} did not take a replayed record ({why}); the dead letters from it on "
                               f"are not committed: run the same replay again once {self.target.topic} takes it")

    def _produce(self, producer: Producer, handled: _Handled) -> None:
        record = handled.record
        assert record is not None

        def delivered(err, _message) -> None:
            if err is None:
                handled.acknowledged = True
            else:
                handled.error = err.str()

        while True:
            try:
                producer.produce(self.target.topic, record.value, record.key, record.partition,
                                 on_delivery=delivered, headers=record.headers)
                return
            except BufferError:  # librdkafka's queue is full: let deliveries make room
                producer.poll(0.1)
            except KafkaException as exc:
                raise OutputFailed(f"cannot produce to {self.target}: {_reason(exc)}; nothing is committed past "
                                   "that dead letter: run the same replay again once it is fixed") from None

    def _commit(self, consumer: Consumer, offsets: dict[int, int]) -> None:
        if not offsets:
            return
        parts = [TopicPartition(self.source.topic, p, o) for p, o in offsets.items()]
        try:
            answered = consumer.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            raise self._commit_failed(_reason(exc)) from None
        refused = [tp for tp in answered or [] if tp.error is not None]
        if refused:
            raise self._commit_failed(refused[0].error.str())

    def _commit_failed(self, reason: str) -> KafkaUnreachable:
        return KafkaUnreachable(f"replayed, but group {self.group} could not commit it in {self.source} ({reason}): "
                                "run again and the last replayed are replayed twice; a group other consumers are "
                                "members of cannot be committed to, so give the replay its own --group")

    def _finished(self, consumer: Consumer, ends: dict[int, int], partition: int) -> None:
        """A partition read to where it ended when the replay started: fetch no more of it."""
        if ends.pop(partition, None) is not None:
            consumer.pause([TopicPartition(self.source.topic, partition)])

    def _finish_gaps(self, consumer: Consumer, ends: dict[int, int]) -> None:
        """Partitions whose position passed their end with no record left to read (a transaction's marker)."""
        try:
            positions = consumer.position([TopicPartition(self.source.topic, p) for p in ends])
        except KafkaException:
            return
        for tp in positions:
            if tp.offset >= 0 and tp.offset >= ends.get(tp.partition, tp.offset + 1):
                self._finished(consumer, ends, tp.partition)

    def _fetch_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal() or error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                                             KafkaError.TOPIC_AUTHORIZATION_FAILED):
            raise KafkaUnreachable(f"cannot read {self.source}: {error.str()}")
        self._problems.append(error.str())  # librdkafka retries by itself; said if it never recovers

    def _problem(self, error: KafkaError) -> None:
        self._problems.append(error.str())

    def _unreachable(self, buffer: Buffer, exc: KafkaException | None, what: str | None = None) -> KafkaUnreachable:
        last = f" ({self._problems[-1]})" if self._problems else ""
        if what is None:
            what = f"cannot reach Kafka at {buffer.bootstrap} ({buffer}) within {self.timeout:g} s: {_reason(exc)}"
        return KafkaUnreachable(f"{what}{last}; is the broker running? (`alert-sidecar kafka up` starts a local one)")


@dataclass
class _Record:
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes | None]]
    partition: int  # -1: the partitioner's


@dataclass
class _Handled:
    """One dead letter read: passed over (no record), or replayed once its record is acknowledged."""

    partition: int
    offset: int
    record: _Record | None = None
    acknowledged: bool = False
    error: str | None = None


def _reason(exc: KafkaException | None) -> str:
    if exc is None:
        return "no answer"
    err = exc.args[0] if exc.args else exc
    return err.str() if isinstance(err, KafkaError) else str(err)
