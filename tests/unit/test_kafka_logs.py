"""The filter that holds back repeats of librdkafka's lines (kafka/logs.py)."""

from __future__ import annotations

import logging

from alert_sidecar.kafka.logs import Repeats, kind_of

FAIL = ("FAIL", "rdkafka#consumer-{n}", "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to "
        "ipv4#127.0.0.1:9 failed: Connection refused (after {ms}ms in state CONNECT{more})")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(fac: str, client: str, text: str) -> logging.LogRecord:
    # As confluent-kafka logs librdkafka's lines: logger.log(level, "%s [%s] %s", fac, name, message).
    return logging.LogRecord("alert_sidecar.kafka.input", logging.ERROR, __file__, 1, "%s [%s] %s",
                             (fac, client, text), None)


def fail(n: int = 1, ms: int = 0, more: str = "") -> logging.LogRecord:
    return record(FAIL[0], FAIL[1].format(n=n), FAIL[2].format(ms=ms, more=more))


def test_lines_that_differ_only_in_timings_and_counts_are_one_kind():
    assert kind_of(fail(1, 0).getMessage()) == kind_of(fail(2, 37, ", 4 identical error(s) suppressed").getMessage())
    assert kind_of(fail().getMessage()) != kind_of(record("FAIL", "rdkafka#consumer-1", "other").getMessage())


def test_repeats_are_held_back_for_a_window_then_counted():
    clock = Clock()
    repeats = Repeats(window=10, clock=clock)
    passed = []
    for i in range(150):  # what one consumer writes in 10 s against a port nothing listens on
        clock.now += 0.06
        line = fail(ms=i % 3)
        if repeats.filter(line):
            passed.append(line.getMessage())
    assert len(passed) == 1
    clock.now += 2
    line = fail()
    assert repeats.filter(line)
    assert line.getMessage().endswith("(149 more like it in the last 11 s)")
    assert not repeats.filter(fail())  # a new window has begun


def test_other_kinds_pass_up_to_the_limit_and_the_rest_is_counted():
    clock = Clock()
    repeats = Repeats(window=10, max_lines=3, clock=clock)
    lines = [record("FETCH", "rdkafka#consumer-1", f"partition {p} failed") for p in range(5)]
    assert [repeats.filter(line) for line in lines] == [True, True, True, False, False]
    clock.now += 10
    late = record("FETCH", "rdkafka#consumer-1", "partition 9 failed")
    assert repeats.filter(late)
    assert late.getMessage().endswith("(2 other Kafka lines held back)")


def test_a_client_remembers_why_the_cluster_refused_it():
    from confluent_kafka import KafkaError

    from alert_sidecar.kafka.logs import ClientErrors

    errors = ClientErrors("input")
    errors(KafkaError(KafkaError._TRANSPORT, "Connect to ipv4#127.0.0.1:9 failed"))
    assert errors.why_refused() is None  # a broker that is not there refuses nothing
    errors(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials"))
    assert errors.why_refused().startswith("the cluster refused the client's login: SASL authentication error")
    errors(KafkaError(KafkaError._SSL, "SSL handshake failed: certificate verify failed"))
    assert "TLS failed: SSL handshake failed" in errors.why_refused()
