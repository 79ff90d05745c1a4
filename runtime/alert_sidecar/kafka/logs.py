"""librdkafka's own log lines and error callbacks, through Python logging, each repeat said once.

Left to itself, librdkafka writes its log to stderr from its own threads:
against a broker that is not there, a consumer writes about 150 lines
``%3|...|FAIL|...`` in 10 s, one per connection attempt, before the sidecar's
one line that says what is wrong. Every Kafka client of the sidecar is given
a logger under ``alert_sidecar.kafka`` instead (confluent-kafka's ``logger``
setting: the lines then arrive on the thread that polls the client, in the
sidecar's own format), and its ``error_cb`` writes to the same logger.

A ``Repeats`` filter on each of these loggers lets the first line of a kind
through and holds back the lines of the same kind (the same facility and
message, timings and counts aside) for ``REPEAT_WINDOW_S``; the next one
after that says how many were held back. At most ``MAX_LINES_PER_WINDOW``
lines of any kind pass in one window, so that no storm of distinct lines
(one per partition, say) floods the log either.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError

# The same line at most once in 10 s, the stage's progress interval: a problem
# that lasts shows as one line per progress line, with a count.
REPEAT_WINDOW_S = 10.0
# Lines of any kind per window and logger: several brokers, each failing its
# own way, still show, but not one line per partition or per request.
MAX_LINES_PER_WINDOW = 20

# What differs between two lines that say the same thing: the client's name
# (rdkafka#consumer-1), the thread, timings and librdkafka's own repeat counts.
_VARYING = [
    (re.compile(r"\[thrd:[^\]]*\]:\s*"), ""),
    (re.compile(r"rdkafka#[a-z]+-\d+"), "rdkafka"),
    (re.compile(r",?\s*\d+ identical error\(s\) suppressed"), ""),
    (re.compile(r"\(after \d+ms in state [A-Z_]+\)"), ""),
    (re.compile(r"\d+(\.\d+)?\s*(ms|s)\b"), "N"),
]


def kind_of(message: str) -> str:
    """A line without what differs between repeats of it (timings, counts, the client's name)."""
    for pattern, replacement in _VARYING:
        message = pattern.sub(replacement, message)
    return message.strip()


class Repeats(logging.Filter):
    """Passes the first line of each kind, holds back its repeats for a window, then says how many."""

    def __init__(self, window: float = REPEAT_WINDOW_S, max_lines: int = MAX_LINES_PER_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.max_lines = max_lines
        self._clock = clock
        self._lock = threading.Lock()  # lines come from whichever thread polls a client
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (when it last passed, repeats held back since)
        self._window_start = float("-inf")
        self._passed = 0  # lines passed since _window_start
        self._over_limit = 0  # lines held back by the limit since the last that passed

    def filter(self, record: logging.LogRecord) -> bool:
        kind = kind_of(record.getMessage())
        now = self._clock()
        with self._lock:
            last, held = self._kinds.get(kind, (float("-inf"), 0))
            if now - last < self.window:
                self._kinds[kind] = (last, held + 1)
                return False
            if now - self._window_start >= self.window:
                self._window_start, self._passed = now, 0
            if self._passed >= self.max_lines:
                self._over_limit += 1
                return False
            self._passed += 1
            self._kinds[kind] = (now, 0)
            over_limit, self._over_limit = self._over_limit, 0
        notes = []
        if held:
            notes.append(f"{held} more like it in the last {now - last:.0f} s")
        if over_limit:
            notes.append(f"{over_limit} other Kafka lines held back")
        if notes:
            record.msg = f"{record.getMessage()} ({'; '.join(notes)})"
            record.args = None
        return True


def kafka_logger(client: str) -> logging.Logger:
    """The logger of one kind of Kafka client ("input", "output", "admin"), repeats held back.

    Given as a client's ``logger`` setting, it takes librdkafka's own lines.
    """
    logger = logging.getLogger(f"alert_sidecar.kafka.{client}")
    if not any(isinstance(f, Repeats) for f in logger.filters):
        logger.addFilter(Repeats())
    return logger


class ClientErrors:
    """A client's ``error_cb``: writes each error to the client's logger, where repeats are held back.

    It also keeps the last error that says why the cluster refused the
    client (its credentials, its TLS), which no metadata request reports:
    that reaches the user as the one line that ends the sidecar.
    """

    # librdkafka's codes for a cluster that answers but will not let the client in.
    REFUSALS = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED,
                          KafkaError.UNSUPPORTED_SASL_MECHANISM, KafkaError.ILLEGAL_SASL_STATE})

    def __init__(self, client: str) -> None:
        self.client = client
        self._logger = kafka_logger(client)
        self.refusal: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        if err.code() in self.REFUSALS:
            self.refusal = err
        # librdkafka reconnects by itself; these lines say why nothing moves meanwhile.
        self._logger.warning("kafka problem side=%s code=%s reason=%r", self.client, err.name(), err.str())

    def why_refused(self) -> str | None:
        """What to tell a user whose client the cluster refused, or None if it did not."""
        err = self.refusal
        if err is None:
            return None
        if err.code() == KafkaError._SSL:
            return (f"TLS failed: {err.str()}; check the cluster's security.protocol and ssl.ca.location "
                    "(the CA that signed the brokers' certificates)")
        return (f"the cluster refused the client's login: {err.str()}; check the cluster's sasl.mechanism, "
                "sasl.username and sasl.password")
