"""Consuming the input buffer as a member of a consumer group.

Offsets are never committed automatically: the stage commits only what the
ledger (offsets.py) says is finished. Partitions are shared with the other
members of the group by Kafka's cooperative-sticky assignor, so a member that
joins or leaves moves only the partitions that must move.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from alert_sidecar.kafka.buffers import Buffer
from alert_sidecar.kafka.logs import ClientErrors, kafka_logger
from alert_sidecar.kafka.start import StartFrom, StartPosition, starts
from alert_sidecar.exceptions import ConfigError, KafkaUnreachable

log = logging.getLogger("alert_sidecar.consumer")

# How long to wait for the cluster's metadata before saying it is unreachable.
METADATA_TIMEOUT_S = 10.0


# Settings the input's consumer must keep off: either would let librdkafka
# commit the offset of an alert that is not finished, which a crash then loses.
_OFF_FOR_AT_LEAST_ONCE = ("enable.auto.commit", "enable.auto.offset.store")


def refuse_unsafe_input(buffer: Buffer, extra: dict) -> None:
    """Raise ConfigError if a setting of the input's cluster would break at-least-once."""
    for key in _OFF_FOR_AT_LEAST_ONCE:
        if key in extra and str(extra[key]).strip().lower() not in ("false", "0"):
            raise ConfigError(
                f"{key}={extra[key]} for the input {buffer} would commit alerts before they are finished, and a "
                "crash would lose them: the sidecar commits each offset itself once its alert is done; remove it")


def consumer_config(buffer: Buffer, group: str, start_from: str, extra: dict) -> dict:
    refuse_unsafe_input(buffer, extra)
    config = {
        "bootstrap.servers": buffer.bootstrap,
        "group.id": group,
        # The stage commits itself, only finished offsets (offsets.py).
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Where a group with no committed offset starts: "earliest" so that a
        # new stage reads the whole rolling buffer rather than skip it.
        "auto.offset.reset": start_from,
        # Move only the partitions that must move when members join or leave.
        "partition.assignment.strategy": "cooperative-sticky",
        # A member that dies loses its partitions after 10 s rather than
        # librdkafka's 45 s: a stage of a 60 s latency budget cannot wait longer.
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 3000,
        # Bounds what librdkafka prefetches (its default is 64 MB): the stage
        # holds fetched alerts itself and pauses when it holds too many.
        "queued.max.messages.kbytes": 32768,
        # librdkafka's lines and errors through the sidecar's logging, repeats held back (logs.py).
        "logger": kafka_logger("input"),
        "error_cb": ClientErrors("input"),
    }
    config.update(extra)
    return config


class InputConsumer:
    """The stage's consumer of its input buffer."""

    def __init__(self, buffer: Buffer, group: str, start_from: StartPosition, extra: dict[str, str]) -> None:
        self.buffer = buffer
        self._start = start_from
        # A time or an offset is applied when partitions are assigned (start.py);
        # an offset that later falls out of range (retention deleted the records
        # meanwhile) goes back to the earliest, as a new stage's does.
        reset = start_from if isinstance(start_from, StartFrom) else StartFrom.EARLIEST
        config = consumer_config(buffer, group, reset.value, extra)
        # Under the cooperative protocols an assignment is applied in increments.
        self._incremental = ("cooperative" in str(config.get("partition.assignment.strategy", ""))
                             or str(config.get("group.protocol", "")).lower() == "consumer")
        self._errors = config.get("error_cb")
        self._consumer = Consumer(config)
        self.paused: set[tuple[str, int]] = set()
        self._closing = False

    def check_reachable(self) -> int:
        """The input topic's partition count; raise KafkaUnreachable when the cluster or topic is missing."""
        try:
            metadata = self._consumer.list_topics(self.buffer.topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            self._consumer.poll(0)  # serves librdkafka's lines and errors of why (refused, TLS, login), said once
            refused = self._errors.why_refused() if isinstance(self._errors, ClientErrors) else None
            raise KafkaUnreachable(
                f"cannot reach Kafka at {self.buffer.bootstrap} (input buffer {self.buffer}) within "
                f"{METADATA_TIMEOUT_S:g} s: " + (refused or f"{exc.args[0].str() if exc.args else exc}; is the "
                                                 "broker running? (`alert-sidecar kafka up` starts a local one)")
            ) from None
        topic = metadata.topics.get(self.buffer.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise KafkaUnreachable(
                f"input buffer {self.buffer} does not exist: create the topic first, or check --in"
            )
        return len(topic.partitions)

    def subscribe(self, on_assign: Callable, on_revoke: Callable, on_lost: Callable) -> None:
        self._consumer.subscribe(
            [self.buffer.topic],
            on_assign=lambda c, parts: self._assigned(parts, on_assign),
            on_revoke=lambda c, parts: on_revoke(parts),
            on_lost=lambda c, parts: on_lost(parts),
        )

    def _assigned(self, partitions: list[TopicPartition], on_assign: Callable) -> None:
        # confluent-kafka applies the list it handed this callback as it was,
        # offsets unset, whatever the callback changed in it (tried on a real
        # broker): start positions hold only if the callback assigns itself.
        if self._closing:  # an assignment that arrives as the consumer closes: no broker round trips for it
            positioned = partitions
        else:
            positioned = starts(self._consumer, partitions, self._start, METADATA_TIMEOUT_S)
        on_assign(positioned)
        if not positioned and self._incremental:
            return
        if self._incremental:
            self._consumer.incremental_assign(positioned)
        else:
            self._consumer.assign(positioned)

    def fetch(self, max_messages: int, timeout: float) -> list:
        """Up to ``max_messages`` alerts; errors are logged, end-of-partition events dropped."""
        messages = self._consumer.consume(num_messages=max_messages, timeout=timeout)
        alerts = []
        for message in messages:
            err = message.error()
            if err is None:
                alerts.append(message)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka problem side=input code=%s reason=%r", err.name(), err.str())
        return alerts

    def pause(self, partitions: list[tuple[str, int]]) -> None:
        todo = [p for p in partitions if p not in self.paused]
        if todo:
            self._consumer.pause([TopicPartition(t, p) for t, p in todo])
            self.paused.update(todo)

    def resume(self, partitions: list[tuple[str, int]]) -> None:
        todo = [p for p in partitions if p in self.paused]
        if todo:
            self._consumer.resume([TopicPartition(t, p) for t, p in todo])
            self.paused.difference_update(todo)

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions revoked or lost: resume them in librdkafka too before they go.

        librdkafka keeps a partition's pause flag across a revocation, so a
        partition revoked while paused would come back paused and never be
        fetched again; the set here and librdkafka's flags must not disagree.
        Called from the revoke and lost callbacks, while they are still assigned.
        """
        todo = [p for p in partitions if p in self.paused]
        if todo:
            try:
                self._consumer.resume([TopicPartition(t, p) for t, p in todo])
            except KafkaException as exc:
                log.warning("resume of revoked partitions failed reason=%r", str(exc))
        self.paused.difference_update(partitions)

    def commit(self, offsets: dict[tuple[str, int], int], asynchronous: bool) -> list[tuple[tuple[str, int], int]]:
        """Commit next-to-read offsets; return those the cluster accepted (all, when asynchronous)."""
        if not offsets:
            return []
        parts = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if asynchronous:
            self._consumer.commit(offsets=parts, asynchronous=True)
            return list(offsets.items())
        try:
            answered = self._consumer.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit failed reason=%r; the alerts after the last commit will be read again", str(exc))
            return []
        return [((tp.topic, tp.partition), tp.offset) for tp in answered or [] if tp.error is None]

    def seek(self, positions: dict[tuple[str, int], int]) -> None:
        """Read these assigned partitions again from the given offsets (after an aborted transaction)."""
        for (topic, partition), offset in positions.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def group_metadata(self):
        """The group's member and generation, for send_offsets_to_transaction (transactions.py)."""
        return self._consumer.consumer_group_metadata()

    def lag(self, positions: dict[tuple[str, int], int | None]) -> int:
        """Alerts in the buffer not yet fetched, from cached high watermarks (no broker round trip)."""
        return sum(self.lag_by_partition(positions).values())

    def lag_by_partition(self, positions: dict[tuple[str, int], int | None]) -> dict[tuple[str, int], int]:
        """Each partition's alerts not yet fetched (0 where its end or position is not known yet)."""
        lag = {}
        for (topic, partition), position in positions.items():
            try:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except KafkaException:
                high = -1
            lag[(topic, partition)] = max(0, high - position) if high >= 0 and position is not None and \
                position >= 0 else 0
        return lag

    def position(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        try:
            answered = self._consumer.position([TopicPartition(t, p) for t, p in partitions])
        except KafkaException:
            return {}
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in answered}

    def close(self) -> None:
        self._closing = True
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer close failed reason=%r", str(exc))
