"""Exactly-once, where Kafka allows it: outputs and input offsets in one transaction.

With ``--exactly-once`` the stage's one producer is transactional, and the
stage's commit step becomes a Kafka transaction's commit:

1. wait until every record produced since the last commit is acknowledged
   (emission is in offset order, so these are exactly the records of the
   partitions' finished prefixes);
2. send each partition's next offset to the transaction with the consumer's
   group metadata (``send_offsets_to_transaction``, KIP-447: a member fenced out
   of the group by a rebalance cannot commit);
3. commit the transaction, and begin the next.

Readers that use ``isolation.level=read_committed`` (librdkafka's and the Java
client's default) then see each alert's outputs once, together with the input
offset that says it is done; an aborted transaction's records are never seen.

A transaction spans one cluster, so the input, every output and the dead-letter
buffer must share it; the command line refuses the flag otherwise. When a
transaction cannot be committed (a delivery failed inside it, the group moved
on, the broker timed it out) it is aborted, and every assigned partition is
read again from its last commit: nothing aborted is counted done.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from alert_sidecar.exceptions import ConfigError, OutputFailed
from alert_sidecar.kafka.buffers import Buffer

log = logging.getLogger("alert_sidecar.transactions")

# How long the broker keeps a transaction open before it aborts it itself. A
# sidecar killed mid-transaction holds back read_committed readers of its
# outputs for this long, unless it comes back with the same --transactional-id
# (init_transactions then aborts the old one at once). The stage commits every
# second, so 10 s leaves room for a slow flush and keeps that stall short.
TRANSACTION_TIMEOUT_MS = 10000
# What init, commit and abort may take (librdkafka retries inside it).
CALL_TIMEOUT_S = 30.0
# Between tries of init_transactions while the coordinator loads.
INIT_RETRY_S = 0.5
# Retriable errors of commit_transaction and send_offsets_to_transaction are tried this often.
RETRIES = 5


class TransactionAborted(Exception):
    """The open transaction was aborted: every partition must be read again from its last commit."""


def same_cluster(input_buffer: Buffer, outputs: dict[str, Buffer]) -> None:
    """Raise ConfigError unless the input and every output are on one cluster (a transaction spans one)."""
    def servers(buffer: Buffer) -> frozenset[str]:
        return frozenset(s.strip() for s in buffer.bootstrap.split(",") if s.strip())

    mine = servers(input_buffer)
    for name, buffer in outputs.items():
        if buffer.cluster != input_buffer.cluster and not (servers(buffer) & mine):
            what = {"": "--out", "dead-letter": "--dead-letter"}.get(name, f"route {name!r}")
            raise ConfigError(
                f"--exactly-once needs the input, the outputs and the dead-letter buffer on one Kafka cluster, as a "
                f"Kafka transaction spans one: {what} {buffer} is not on the input's cluster ({input_buffer.cluster}). "
                "Across clusters the stage is at least once (docs/reliability.md says why); drop --exactly-once, or "
                "move the buffer")


def default_transactional_id(group: str) -> str:
    """Unique to this process: two sidecars of one group on one host must never fence each other."""
    return f"alert-sidecar.{group}.{socket.gethostname()}.{os.getpid()}"


def transactional_settings(transactional_id: str) -> dict:
    return {"transactional.id": transactional_id, "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS}


class Transactions:
    """The transactions of one stage's producer."""

    def __init__(self, producer: Producer, transactional_id: str) -> None:
        self.producer = producer
        self.transactional_id = transactional_id
        self.committed = 0  # transactions committed
        self.aborted = 0  # transactions aborted

    def start(self) -> None:
        """Fence any earlier producer of the same id (aborting its open transaction), and begin one."""
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            try:
                self.producer.init_transactions(max(1.0, deadline - time.monotonic()))
                break
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                # A coordinator still loading (a cluster just started, a broker
                # just back) is retriable: librdkafka says so and leaves the retry to us.
                if isinstance(err, KafkaError) and err.retriable() and time.monotonic() < deadline:
                    log.info("transactions not started yet: %s; trying again", err.str())
                    time.sleep(INIT_RETRY_S)
                    continue
                raise OutputFailed(f"cannot start transactions as {self.transactional_id!r}: {_reason(exc)}; the "
                                   "cluster must allow transactions (3 brokers by default, or the broker's "
                                   "transaction.state.log.replication.factor lowered)") from None
        self.producer.begin_transaction()
        log.info("transactions started transactional_id=%s timeout_ms=%d", self.transactional_id,
                 TRANSACTION_TIMEOUT_MS)

    def commit(self, offsets: dict[tuple[str, int], int], group_metadata) -> None:
        """Commit the open transaction with ``offsets`` (next to read) for the group; begin the next.

        Raises TransactionAborted when it had to be aborted instead, and
        OutputFailed when the producer cannot go on (fenced by another with
        the same id, or a fatal error).
        """
        parts = [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]
        self._call(lambda: self.producer.send_offsets_to_transaction(parts, group_metadata, CALL_TIMEOUT_S),
                   "sending the offsets")
        self._call(lambda: self.producer.commit_transaction(CALL_TIMEOUT_S), "committing")
        self.committed += 1
        self.producer.begin_transaction()

    def abort(self, why: str) -> None:
        """Abort the open transaction (its records are never seen by read_committed readers); begin the next."""
        try:
            self.producer.abort_transaction(CALL_TIMEOUT_S)
        except KafkaException as exc:
            raise self._failed(exc, "aborting") from None
        self.aborted += 1
        log.warning("transaction aborted reason=%r; every partition is read again from its last commit", why)
        self.producer.begin_transaction()

    def _call(self, call, doing: str) -> None:
        for attempt in range(RETRIES + 1):
            try:
                call()
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if not isinstance(err, KafkaError) or err.fatal():
                    raise self._failed(exc, doing) from None
                if err.txn_requires_abort():
                    self.abort(f"{doing} failed: {err.str()}")
                    raise TransactionAborted(err.str()) from None
                if not err.retriable() or attempt == RETRIES:
                    raise self._failed(exc, doing) from None
                log.info("transaction %s: %s; trying again", doing, err.str())

    def _failed(self, exc: KafkaException, doing: str) -> OutputFailed:
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                                          KafkaError.INVALID_PRODUCER_EPOCH):
            return OutputFailed(
                f"transaction {doing} failed: the producer {self.transactional_id!r} was fenced ({_reason(exc)}): "
                "another instance took its transactional id, or the broker aborted its transaction after "
                f"{TRANSACTION_TIMEOUT_MS // 1000} s without a commit (the process was frozen or starved); stopping, "
                "as a fenced producer must: nothing after the last committed transaction counts, and starting the "
                "stage again resumes from it")
        return OutputFailed(f"transaction {doing} failed for good ({_reason(exc)}); stopping: nothing after the "
                            "last committed transaction counts, and starting the stage again resumes from it")


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)
