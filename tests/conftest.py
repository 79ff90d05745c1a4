"""Fixtures shared by every test: a real Kafka cluster and fresh topics on it.

Tests that need Kafka carry ``@pytest.mark.kafka`` and ask for
``kafka_bootstrap``. The cluster is the one named by ``BOOTSTRAP_SERVERS`` if
that is set, else a one-broker local cluster (local_kafka.py) started once for
the whole session and stopped at its end, also when the session fails.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from alert_sidecar.kafka.local import LocalKafka, LocalKafkaError

# Creating a topic on a local cluster takes well under a second; a shared
# cluster named by BOOTSTRAP_SERVERS may be slower.
TOPIC_TIMEOUT_S = 30.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the cluster is a ``kafka`` test even if its author forgot the mark.

    So ``pytest -m "not kafka"`` runs, without Java or a broker, exactly what needs neither.
    """
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real Kafka cluster for the session."""
    external = os.environ.get("BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    cluster = LocalKafka(tmp_path_factory.mktemp("kafka"))
    try:
        try:
            bootstrap = cluster.up()
        except LocalKafkaError as exc:
            pytest.fail(f"cannot start a local Kafka for the tests: {exc}\n"
                        f"(or set BOOTSTRAP_SERVERS to use a running cluster)", pytrace=False)
        yield bootstrap
    finally:
        cluster.down()


@pytest.fixture
def new_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """A factory ``new_topic(partitions=1, name=None) -> str`` of topics that exist when it returns.

    Names are unique (the test's name and a random suffix), so tests sharing
    the session's cluster never read each other's records. The topics are
    deleted after the test.
    """
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []
    # Topic names allow letters, digits, '.', '_' and '-', up to 249 characters.
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:80].strip("-")

    def make(partitions: int = 1, name: str | None = None) -> str:
        topic = name or f"test-{prefix}-{uuid.uuid4().hex[:8]}"
        # The broker's default replication factor: all of a local cluster's brokers, up to three.
        future = admin.create_topics([NewTopic(topic, partitions)], operation_timeout=TOPIC_TIMEOUT_S)[topic]
        future.result(timeout=TOPIC_TIMEOUT_S)
        created.append(topic)
        _wait_for_leaders(admin, topic, partitions)
        return topic

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            try:
                future.result(timeout=TOPIC_TIMEOUT_S)
            except KafkaException:
                pass  # a test may have deleted its topic itself


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int) -> None:
    """Creation is acknowledged by the controller; wait until the brokers serve every partition."""
    deadline = time.monotonic() + TOPIC_TIMEOUT_S
    while True:
        metadata = admin.list_topics(topic, timeout=TOPIC_TIMEOUT_S).topics.get(topic)
        if (metadata is not None and metadata.error is None and len(metadata.partitions) == partitions
                and all(p.leader >= 0 for p in metadata.partitions.values())):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no leader for every partition after {TOPIC_TIMEOUT_S:g} s")
        time.sleep(0.1)
