"""Producing outputs and dead letters to their buffers.

One idempotent producer per Kafka cluster (acks=all): a record is acknowledged
only when every in-sync replica has it, and the broker drops the duplicates
that librdkafka's own retries would otherwise write. The stage commits an input
offset only after these acknowledgements (offsets.py).

Records without a key go to the output partition ``input partition mod output
partitions``: every output of one input partition then lands in one output
partition, in order, so the order the ledger keeps survives into the output
buffer. Keyed records follow Kafka's usual murmur2 hashing of the key.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from alert_sidecar.kafka.buffers import Buffer
from alert_sidecar.kafka.logs import ClientErrors, kafka_logger
from alert_sidecar.exceptions import ConfigError, KafkaUnreachable, OutputFailed

log = logging.getLogger("alert_sidecar.producer")

METADATA_TIMEOUT_S = 10.0
# Kafka's default max.message.bytes for a topic (broker message.max.bytes):
# 1 MB, also librdkafka's own default for message.max.bytes.
DEFAULT_MAX_MESSAGE_BYTES = 1048588
# What a record costs in its batch beyond key, value and headers (record and
# batch headers, varints); a record within a topic's limit less this fits.
RECORD_OVERHEAD_BYTES = 512
# Replication that gives acks=all its meaning: with 3 replicas and
# min.insync.replicas 2, an acknowledged record survives the loss of a broker
# and the cluster still takes writes while one is down.
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2


class RecordTooLarge(Exception):
    """The record is larger than its output buffer takes (the topic's max.message.bytes)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes, and its topic takes at most {limit}")
        self.size = size
        self.limit = limit


class QueueFull(Exception):
    """librdkafka's local queue is full: produce again after serving delivery reports."""


class AbortNeeded(Exception):
    """The transactional producer refuses records until its transaction is aborted (transactions.py)."""


def refuse_unsafe_output(cluster: str, extra: dict) -> None:
    """Raise ConfigError if a setting of an output cluster would break at-least-once or order."""
    for key in ("acks", "request.required.acks"):  # librdkafka's two names of one setting
        acks = extra.get(key, "all")
        if str(acks).strip().lower() not in ("all", "-1"):
            raise ConfigError(
                f"{key}={acks} for the outputs on {cluster} would count a record as written before every "
                "in-sync replica has it, and its input is committed then: losing a broker would lose it; "
                "remove it (acks=all)")
    idempotence = extra.get("enable.idempotence", "true")
    if str(idempotence).strip().lower() in ("false", "0"):
        raise ConfigError(
            f"enable.idempotence={idempotence} for the outputs on {cluster} would let librdkafka's retries "
            "write duplicates and reorder a partition's outputs; remove it")


def producer_config(bootstrap: str, extra: dict) -> dict:
    refuse_unsafe_output(bootstrap, extra)
    config = {
        "bootstrap.servers": bootstrap,
        # At-least-once needs every in-sync replica to hold a record before
        # its input is committed; idempotence drops the retries' duplicates and
        # keeps order per partition with up to 5 requests in flight.
        "enable.idempotence": True,
        "acks": "all",
        # Gather records for 5 ms into one request: small against a 60 s
        # latency budget, large enough to batch a visit's burst.
        "linger.ms": 5,
        # The same key lands in the same partition as with Kafka's Java clients.
        "partitioner": "murmur2_random",
        # Only prepare() creates topics, with the partition count it chose; a
        # broker's auto-creation would give them its own default instead.
        "allow.auto.create.topics": False,
        # librdkafka's lines and errors through the sidecar's logging, repeats held back (logs.py).
        "logger": kafka_logger("output"),
        "error_cb": ClientErrors("output"),
    }
    config.update(extra)
    return config


@dataclass
class OutputBuffer:
    """A named output of the stage: "" (--out), a route, or "dead-letter"."""

    name: str
    buffer: Buffer
    producer: Producer
    partitions: int = 1
    max_record_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # the topic's max.message.bytes


class Outputs:
    """Every output buffer of a stage and the producers that write them."""

    def __init__(self, buffers: dict[str, Buffer], settings_of: Callable[[Buffer], dict],
                 transactional: dict | None = None) -> None:
        # Each cluster's producer and admin client get that cluster's settings only (clusters.py).
        # ``transactional`` (--exactly-once, one cluster only) makes the producer transactional.
        self._settings_of = settings_of
        self.transactional = transactional is not None
        self.failed = False  # a producer had a fatal error (poll and flush raise it ever after)
        self._producers: dict[str, Producer] = {}
        self._configs: dict[str, dict] = {}  # each cluster's producer settings
        self._admins: dict[str, AdminClient] = {}
        self.buffers: dict[str, OutputBuffer] = {}
        for name, buffer in buffers.items():
            producer = self._producers.get(buffer.cluster)
            if producer is None:
                config = self._configs[buffer.cluster] = producer_config(buffer.bootstrap, settings_of(buffer))
                config.update(transactional or {})
                producer = Producer(config)
                self._producers[buffer.cluster] = producer
            self.buffers[name] = OutputBuffer(name, buffer, producer)

    def prepare(self, create_missing: bool, partitions: int) -> None:
        """Check every output topic exists (creating it if allowed); learn its partitions and its record limit.

        A producer is then sized to the largest record its cluster's output
        topics take (librdkafka refuses larger records than its own
        message.max.bytes, 1 MB by default, whatever the topic allows).
        """
        for output in self.buffers.values():
            output.partitions = self._partitions_of(output, create_missing, partitions)
            output.max_record_bytes = self._max_message_bytes(output)
        for cluster, producer in list(self._producers.items()):
            needed = max(o.max_record_bytes for o in self.buffers.values() if o.producer is producer)
            config = self._configs[cluster]
            if needed > int(config.get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES)):
                sized = Producer({**config, "message.max.bytes": needed + RECORD_OVERHEAD_BYTES})
                self._producers[cluster] = sized
                for output in self.buffers.values():
                    if output.producer is producer:
                        output.producer = sized
                log.info("producer sized cluster=%s message_max_bytes=%d", cluster, needed + RECORD_OVERHEAD_BYTES)

    @property
    def producers(self) -> list[Producer]:
        """The producers, one per cluster (after prepare(), which may replace them)."""
        return list(self._producers.values())

    def _max_message_bytes(self, output: OutputBuffer) -> int:
        """The topic's max.message.bytes, or Kafka's default when the cluster does not say."""
        resource = ConfigResource(ConfigResource.Type.TOPIC, output.buffer.topic)
        try:
            described = self._admin(output.buffer).describe_configs([resource])[resource].result(
                timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("topic config unreadable buffer=%s reason=%r; taking Kafka's default record limit",
                        output.buffer, exc.args[0].str() if exc.args else str(exc))
            return DEFAULT_MAX_MESSAGE_BYTES
        entry = described.get("max.message.bytes")
        return int(entry.value) if entry is not None and entry.value else DEFAULT_MAX_MESSAGE_BYTES

    def _admin(self, buffer: Buffer) -> AdminClient:
        admin = self._admins.get(buffer.cluster)
        if admin is None:
            admin = self._admins[buffer.cluster] = AdminClient(
                {"bootstrap.servers": buffer.bootstrap, **self._settings_of(buffer), "logger": kafka_logger("admin"),
                 "error_cb": ClientErrors("admin")})
        return admin

    def _partitions_of(self, output: OutputBuffer, create_missing: bool, partitions: int) -> int:
        buffer = output.buffer
        what = "dead-letter buffer" if output.name == "dead-letter" else (
            f"route {output.name!r}" if output.name else "output buffer")
        metadata = self._metadata(output, what)
        topic = metadata.topics.get(buffer.topic)
        if topic is not None and topic.partitions:
            return len(topic.partitions)
        if not create_missing:
            raise KafkaUnreachable(f"{what} {buffer} does not exist: create it, or drop --no-create-topics")
        replication = min(REPLICATION_FACTOR, len(metadata.brokers))
        min_insync = MIN_INSYNC_REPLICAS if replication >= REPLICATION_FACTOR else 1
        new = NewTopic(buffer.topic, partitions, replication, config={"min.insync.replicas": str(min_insync)})
        future = self._admin(buffer).create_topics([new])[buffer.topic]
        try:
            future.result(timeout=METADATA_TIMEOUT_S)
            log.info("created topic buffer=%s partitions=%d replication=%d min_insync_replicas=%d%s", buffer,
                     partitions, replication, min_insync,
                     "" if replication >= REPLICATION_FACTOR else
                     f" (the cluster has {len(metadata.brokers)} broker(s), so a record is on {replication} only)")
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another instance of the stage made it first
                raise KafkaUnreachable(f"{what} {buffer} does not exist and creating it failed: {err.str()}") from None
        # Wait until this producer's own metadata knows the topic, so that the
        # first record does not meet an unknown partition.
        deadline = time.monotonic() + METADATA_TIMEOUT_S
        while time.monotonic() < deadline:
            topic = self._metadata(output, what).topics.get(buffer.topic)
            if topic is not None and topic.partitions and topic.error is None:
                return len(topic.partitions)
            time.sleep(0.1)
        raise KafkaUnreachable(f"{what} {buffer} was created but its partitions have no leader yet; try again")

    def _metadata(self, output: OutputBuffer, what: str):
        try:
            return output.producer.list_topics(output.buffer.topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            output.producer.poll(0)  # serves librdkafka's lines and errors of why (refused, TLS, login), said once
            errors = self._configs.get(output.buffer.cluster, {}).get("error_cb")
            refused = errors.why_refused() if isinstance(errors, ClientErrors) else None
            raise KafkaUnreachable(
                f"cannot reach Kafka at {output.buffer.bootstrap} ({what} {output.buffer}) within "
                f"{METADATA_TIMEOUT_S:g} s: "
                + (refused or f"{exc.args[0].str() if exc.args else exc}; is the broker running?")
            ) from None

    def produce(
        self,
        name: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        input_partition: int,
        on_delivery: Callable,
    ) -> None:
        """Hand one record to its buffer's producer; its delivery report comes to ``on_delivery``.

        Raises QueueFull when librdkafka's queue has no room (produce it again
        later, in order), RecordTooLarge when the buffer cannot take it, and
        OutputFailed when the buffer cannot be written at all (its topic is
        gone, or the producer has a fatal error). Never blocks.
        """
        output = self.buffers[name]
        size = record_size(value, key, headers)
        if size + RECORD_OVERHEAD_BYTES > output.max_record_bytes:
            raise RecordTooLarge(size, output.max_record_bytes - RECORD_OVERHEAD_BYTES)
        # -1 leaves a keyed record to the partitioner (same key, same partition).
        partition = input_partition % output.partitions if key is None else -1
        try:
            output.producer.produce(output.buffer.topic, value, key, partition,
                                    on_delivery=on_delivery, headers=headers)
        except BufferError:
            raise QueueFull() from None
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code == KafkaError.MSG_SIZE_TOO_LARGE:
                raise RecordTooLarge(size, output.max_record_bytes - RECORD_OVERHEAD_BYTES) from None
            reason = err.str() if isinstance(err, KafkaError) else str(exc)
            if isinstance(err, KafkaError) and err.txn_requires_abort():
                raise AbortNeeded(reason) from None
            if code in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART):
                raise OutputFailed(f"{output.buffer} no longer exists ({reason}); recreate the topic and start "
                                   "the stage again: nothing after its last finished alert is committed") from None
            if code == KafkaError._UNKNOWN_PARTITION:
                raise OutputFailed(f"{output.buffer} has fewer partitions than when the stage started ({reason}); "
                                   "start the stage again") from None
            raise OutputFailed(f"cannot produce to {output.buffer}: {reason}; stopping so that nothing is "
                               "committed past it") from None

    def poll(self, timeout: float = 0) -> None:
        for producer in self._producers.values():
            try:
                producer.poll(timeout)
            except KafkaException as exc:  # a fatal error (a fenced transactional producer): its stage stops
                self._fatal(exc)

    def flush(self, timeout: float) -> int:
        """Wait for outstanding records; return how many are still not acknowledged."""
        left = 0
        for producer in self._producers.values():
            try:
                left += producer.flush(timeout)
            except KafkaException as exc:
                self._fatal(exc)
                left += len(producer)
        return left

    def _fatal(self, exc: KafkaException) -> None:
        # confluent-kafka raises a producer's fatal error from every later poll
        # and flush; the stage has the error already (a delivery report or the
        # transaction's call), so it is said once and the stop goes on.
        if not self.failed:
            err = exc.args[0] if exc.args else None
            log.error("producer failed for good reason=%r", err.str() if isinstance(err, KafkaError) else str(exc))
        self.failed = True


def record_size(value: bytes | None, key: bytes | None, headers) -> int:
    """Bytes of a record's key, value and headers, as a topic's limit counts them (before compression)."""
    size = (len(value) if value else 0) + (len(key) if key else 0)
    for name, data in headers or ():
        size += len(name.encode() if isinstance(name, str) else name) + (len(data) if data else 0)
    return size
