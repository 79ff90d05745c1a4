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
from confluent_kafka.admin import AdminClient, NewTopic

from alert_sidecar.kafka.buffers import Buffer
from alert_sidecar.exceptions import KafkaUnreachable

log = logging.getLogger("alert_sidecar.producer")

METADATA_TIMEOUT_S = 10.0


def producer_config(bootstrap: str, extra: dict[str, str]) -> dict:
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
        "error_cb": _log_kafka_error,
    }
    config.update(extra)
    return config


def _log_kafka_error(err: KafkaError) -> None:
    log.warning("kafka problem side=output code=%s reason=%r", err.name(), err.str())


@dataclass
class OutputBuffer:
    """A named output of the stage: "" (--out), a route, or "dead-letter"."""

    name: str
    buffer: Buffer
    producer: Producer
    partitions: int = 1


class Outputs:
    """Every output buffer of a stage and the producers that write them."""

    def __init__(self, buffers: dict[str, Buffer], extra: dict[str, str]) -> None:
        self._extra = extra
        self._producers: dict[str, Producer] = {}
        self.buffers: dict[str, OutputBuffer] = {}
        for name, buffer in buffers.items():
            producer = self._producers.get(buffer.bootstrap)
            if producer is None:
                producer = Producer(producer_config(buffer.bootstrap, extra))
                self._producers[buffer.bootstrap] = producer
            self.buffers[name] = OutputBuffer(name, buffer, producer)

    def prepare(self, create_missing: bool, partitions: int) -> None:
        """Check every output topic exists (creating it if allowed) and learn its partition count."""
        for output in self.buffers.values():
            output.partitions = self._partitions_of(output, create_missing, partitions)

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
        replication = min(3, len(metadata.brokers))
        admin = AdminClient({"bootstrap.servers": buffer.bootstrap, **self._extra})
        future = admin.create_topics([NewTopic(buffer.topic, partitions, replication)])[buffer.topic]
        try:
            future.result(timeout=METADATA_TIMEOUT_S)
            log.info("created topic buffer=%s partitions=%d replication=%d", buffer, partitions, replication)
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
            raise KafkaUnreachable(
                f"cannot reach Kafka at {output.buffer.bootstrap} ({what} {output.buffer}) within "
                f"{METADATA_TIMEOUT_S:g} s: {exc.args[0].str() if exc.args else exc}; is the broker running?"
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
        output = self.buffers[name]
        # -1 leaves a keyed record to the partitioner (same key, same partition).
        partition = input_partition % output.partitions if key is None else -1
        while True:
            try:
                output.producer.produce(output.buffer.topic, value, key, partition,
                                        on_delivery=on_delivery, headers=headers)
                return
            except BufferError:
                # librdkafka's local queue is full: serve delivery reports until it has room.
                output.producer.poll(0.05)

    def poll(self) -> None:
        for producer in self._producers.values():
            producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Wait for outstanding records; return how many are still not acknowledged."""
        return sum(producer.flush(timeout) for producer in self._producers.values())

