"""A local, real Apache Kafka cluster for development, tests and the demo.

Every broker is its own JVM on 127.0.0.1 in KRaft combined mode (broker and
controller in one process), with a static quorum of all nodes. The JVMs are
started in their own session, so the cluster outlives the command that started
it; what runs is recorded in ``cluster.json`` in the state directory, which is
how ``status``, ``down`` and a later ``up`` find the cluster again.

Kafka is not vendored: its jars are fetched once from Maven Central by the
machine's own ``mvn`` into a cache, or taken from the ``libs/`` of an Apache
Kafka release the user already has (``kafka_home``).

Clients connect in plaintext, or, with ``security=SaslSsl(...)``, as to
Rubin's and Lasair's brokers: SASL/SCRAM-SHA-512 over TLS, with users created
when the storage is formatted. Brokers then talk to each other and to the
controllers in plaintext on a listener of their own, on loopback as well.
"""

from __future__ import annotations

import base64
import concurrent.futures
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable, Iterator

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from alert_sidecar.exceptions import ConfigError, LocalKafkaError

# The newest Kafka 4.x release that fetched and ran here on the first try
# (4.1.1 is known to work too); 4.x because it is KRaft only, as production is.
DEFAULT_VERSION = "4.3.1"

# kafka_2.13 logs through SLF4J 1.x and brings no binding; Kafka's own releases
# ship log4j 2.24.3, so the brokers log as a release's do.
LOG4J_VERSION = "2.24.3"

# Kafka 4.x brokers are built for Java 17.
MIN_JAVA = 17

# A quarter of Kafka's own default (1 GiB): a dev cluster holds little data,
# and three brokers must fit beside the tests on a small machine.
BROKER_HEAP = "512m"

# Brokers listen on loopback only: a dev cluster is not for the network.
HOST = "127.0.0.1"

# How often to look again while a broker starts or stops.
POLL_INTERVAL_S = 0.25

# One metadata request of a readiness probe; a starting broker refuses the
# connection at once, a hung one must not hold the probe for long.
PROBE_TIMEOUT_S = 2.0

# A killed process is gone within milliseconds; one that is not after this
# is stuck in the kernel, which no retry here can fix.
KILL_TIMEOUT_S = 10.0

STATE_FILE = "cluster.json"

SCRAM_MECHANISM = "SCRAM-SHA-512"
# Kafka's least iteration count for SCRAM-SHA-512 (ScramMechanism's
# minIterations), also its default: a dev cluster's users guard nothing that
# is worth a slower login.
SCRAM_ITERATIONS = 4096
# A SCRAM user's name goes into StorageTool's SCRAM_CREDENTIAL syntax, where
# ',', '=' and brackets would be read as its own.
_SCRAM_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# For a tool that runs for a second: the quick compiler alone and the simplest
# collector halve its start on a small machine, and it never runs long enough
# to profit from the optimising compiler.
_SHORT_LIVED_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")

_POM_TEMPLATE = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by alert-sidecar: only used to fetch an Apache Kafka broker's jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.alert-sidecar</groupId>
  <artifactId>kafka-broker-{version}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-api</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2_TEMPLATE = """\
# Written by alert-sidecar: the broker logs to a file, never to the terminal
# of the command that started it.
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""


def default_cache_dir() -> Path:
    """Where fetched Kafka jars are kept: ``$ALERT_SIDECAR_CACHE`` or ``~/.cache/alert-sidecar``."""
    env = os.environ.get("ALERT_SIDECAR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "alert-sidecar"


def default_state_dir() -> Path:
    """Where the cluster lives: ``$ALERT_SIDECAR_HOME/kafka`` or ``~/.cache/alert-sidecar/cluster``."""
    env = os.environ.get("ALERT_SIDECAR_HOME")
    return Path(env) / "kafka" if env else Path.home() / ".cache" / "alert-sidecar" / "cluster"


# --- Java and Kafka's jars -------------------------------------------------------


def find_java() -> Path | None:
    """The ``java`` of ``$JAVA_HOME`` if set, else the one on ``PATH``."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return Path(java_home) / "bin" / "java"
    found = shutil.which("java")
    return Path(found) if found else None


def require_java() -> Path:
    java = find_java()
    if java is None:
        raise LocalKafkaError(
            f"java not found (neither $JAVA_HOME/bin/java nor on PATH): "
            f"install a Java {MIN_JAVA}+ runtime to run a local Kafka"
        )
    major = _java_major_version(java)
    if major is not None and major < MIN_JAVA:
        raise LocalKafkaError(f"{java} is Java {major}; Kafka 4 brokers need Java {MIN_JAVA} or newer")
    return java


def _java_major_version(java: Path) -> int | None:
    """17 for 'openjdk version "17.0.15"', 8 for '"1.8.0_402"'; None if unreadable."""
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def kafka_libs(version: str = DEFAULT_VERSION, kafka_home: Path | None = None,
               progress: Callable[[str], None] | None = None) -> Path:
    """The folder of jars to run a broker from, fetching them once if needed."""
    if kafka_home is not None:
        libs = Path(kafka_home).expanduser().resolve() / "libs"
        if not list(libs.glob("kafka_*.jar")):
            raise ConfigError(
                f"--kafka-home {kafka_home} is not an Apache Kafka release: it has no libs/kafka_*.jar"
            )
        return libs
    # The version goes into a pom and a folder name: no room for anything but a version.
    if not re.fullmatch(r"[0-9][0-9A-Za-z.\-]*", version):
        raise ConfigError(f"--kafka-version {version!r} is not a version such as {DEFAULT_VERSION}")
    home = default_cache_dir() / f"kafka-{version}"
    libs = home / "libs"
    # Written last: a fetch cut short leaves no stamp and is done again.
    stamp = home / "fetched"
    if stamp.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    # Two test sessions starting at once on a fresh cache fetch once, not twice into one folder.
    with file_lock(home.parent / f"kafka-{version}.lock"):
        if not stamp.exists():
            _fetch_with_maven(version, home, libs, progress)
            stamp.write_text(f"kafka_2.13 {version}, log4j {LOG4J_VERSION}\n")
    return libs


def _fetch_with_maven(version: str, home: Path, libs: Path, progress: Callable[[str], None] | None) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError(
            "mvn not found on PATH: install Maven to fetch Kafka, "
            "or pass --kafka-home DIR to use an Apache Kafka release you already have"
        )
    if progress:
        progress(f"fetching Apache Kafka {version} with mvn into {home} (once)")
    shutil.rmtree(libs, ignore_errors=True)
    (home / "pom.xml").write_text(_POM_TEMPLATE.format(version=version, log4j=LOG4J_VERSION))
    log_file = home / "mvn.log"
    command = [mvn, "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
               f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
    with open(log_file, "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise LocalKafkaError(
            f"could not fetch Apache Kafka {version} with mvn: {_first_maven_error(log_file)} "
            f"(full output in {log_file}); check the version and the network, "
            f"or pass --kafka-home DIR to use an Apache Kafka release you already have"
        )


def _first_maven_error(log_file: Path) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_file.read_text(errors="replace"))
    for line in text.splitlines():
        if line.startswith("[ERROR]") and line[7:].strip():
            message = line[7:].strip()
            return message if len(message) <= 300 else message[:300] + "..."
    return "mvn exited with an error"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing): one fetch or build into a cache at a time."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- Security of the client listener ---------------------------------------------


@dataclass(frozen=True)
class SaslSsl:
    """A client listener that asks for SASL/SCRAM-SHA-512 over TLS.

    ``users`` (name to password) are SCRAM-SHA-512 users, created when the
    storage is formatted. ``keystore`` is one PEM file holding the broker's
    private key (PKCS#8, unencrypted) and its certificate chain, valid for
    127.0.0.1; clients check it against the CA that signed it.
    """

    users: dict[str, str]
    keystore: Path

    def client_settings(self, user: str, ca: Path) -> dict[str, str]:
        """The librdkafka settings of a client that logs in as ``user`` and trusts ``ca``."""
        return {"security.protocol": "SASL_SSL", "sasl.mechanism": SCRAM_MECHANISM, "sasl.username": user,
                "sasl.password": self.users[user], "ssl.ca.location": str(ca)}

    def scram_credentials(self) -> list[str]:
        """StorageTool's --add-scram arguments: salted, so that no password is on a command line."""
        credentials = []
        for name, password in sorted(self.users.items()):
            if not _SCRAM_USER.match(name):
                raise ConfigError(f"SCRAM user name {name!r} must be letters, digits, '.', '_' or '-'")
            salt = os.urandom(16)
            salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
            credentials.append(
                f'{SCRAM_MECHANISM}=[name={name},iterations={SCRAM_ITERATIONS},'
                f'salt="{base64.b64encode(salt).decode()}",saltedpassword="{base64.b64encode(salted).decode()}"]')
        return credentials


# --- What is recorded about a cluster --------------------------------------------


@dataclass
class BrokerRecord:
    """One broker as recorded in the state file."""

    id: int
    port: int  # the clients' listener
    controller_port: int
    pid: int | None = None
    # The brokers' own plaintext listener when the clients' is SASL_SSL; None when clients use plaintext too.
    internal_port: int | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def plaintext_address(self) -> str:
        """Where this process reaches the broker without credentials, to see whether it is ready."""
        return f"{HOST}:{self.internal_port or self.port}"


@dataclass
class ClusterRecord:
    """The state file: enough to find, restart and stop every broker."""

    cluster_id: str
    java: str
    libs: str
    brokers: list[BrokerRecord]

    @property
    def bootstrap(self) -> str:
        return ",".join(broker.address for broker in self.brokers)

    @property
    def plaintext_bootstrap(self) -> str:
        return ",".join(broker.plaintext_address for broker in self.brokers)

    def broker(self, broker_id: int) -> BrokerRecord:
        for broker in self.brokers:
            if broker.id == broker_id:
                return broker
        known = ", ".join(str(broker.id) for broker in self.brokers)
        raise LocalKafkaError(f"there is no broker {broker_id} in this cluster (brokers: {known})")


@dataclass(frozen=True)
class BrokerStatus:
    """One broker as ``status`` sees it: ``alive`` if its recorded process still runs."""

    id: int
    port: int
    pid: int | None
    alive: bool


@dataclass(frozen=True)
class ClusterStatus:
    """Every recorded broker, and the bootstrap servers that reach them."""

    bootstrap: str
    brokers: list[BrokerStatus]

    @property
    def all_alive(self) -> bool:
        return all(broker.alive for broker in self.brokers)


# --- The cluster -----------------------------------------------------------------


class LocalKafka:
    """A cluster of ``brokers`` local Kafka brokers whose files live in ``state_dir``.

    ``brokers``, ``kafka_home`` and ``version`` only matter when a new cluster
    is started; every other method works on the cluster recorded in
    ``state_dir``, whoever started it.
    """

    def __init__(
        self,
        state_dir: Path,
        brokers: int = 1,
        kafka_home: Path | None = None,
        version: str = DEFAULT_VERSION,
        *,
        security: SaslSsl | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if brokers < 1:
            raise ConfigError(f"--brokers must be at least 1, not {brokers}")
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.brokers = brokers
        self.kafka_home = kafka_home
        self.version = version
        self.security = security
        self._progress = progress or (lambda message: None)

    # Public API

    def up(self, timeout: float = 90) -> str:
        """Start the cluster, or find it running; return its bootstrap servers.

        ``timeout`` bounds the start of the brokers, not the one-time fetch of Kafka.
        """
        record = self._load()
        if record is not None:
            running = [broker for broker in record.brokers if self._is_running(broker)]
            if len(running) == len(record.brokers):
                self._progress(f"a {len(running)}-broker cluster is already running in {self.state_dir}")
                return record.bootstrap
            if len(record.brokers) == self.brokers:
                return self._restart(record, timeout)
            if running:
                raise LocalKafkaError(
                    f"a {len(record.brokers)}-broker cluster is partly running in {self.state_dir}; "
                    f"run `alert-sidecar kafka down` first to start one with {self.brokers}"
                )
        return self._start_new(timeout)

    def status(self) -> ClusterStatus:
        """Each recorded broker and whether its process is alive."""
        record = self._require_record()
        return ClusterStatus(
            bootstrap=record.bootstrap,
            brokers=[BrokerStatus(b.id, b.port, b.pid, self._is_running(b)) for b in record.brokers],
        )

    def down(self, timeout: float = 30) -> list[int]:
        """Stop every broker and remove the cluster's files; return the ids that were running.

        A dev cluster is disposable: its topics go with it.
        """
        record = self._load()
        running = [] if record is None else [b for b in record.brokers if self._is_running(b)]
        if record is not None:
            self._stop(record, running, timeout)
        # Also what a failed `up` left for its logs to be read.
        for folder in self.state_dir.glob("broker-*"):
            shutil.rmtree(folder, ignore_errors=True)
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        # The folder may be the caller's (a temporary folder, say) and hold other things.
        try:
            self.state_dir.rmdir()
        except OSError:
            pass
        return [broker.id for broker in running]

    def stop_broker(self, broker_id: int, timeout: float = 30, *, hard: bool = False) -> None:
        """Stop one broker, keeping its data; ``hard`` kills it at once, as a crash would."""
        record = self._require_record()
        broker = record.broker(broker_id)
        if self._is_running(broker):
            self._stop(record, [broker], 0 if hard else timeout)

    def start_broker(self, broker_id: int, timeout: float = 60) -> None:
        """Start one stopped broker again and wait until it serves and sees the whole cluster."""
        record = self._require_record()
        broker = record.broker(broker_id)
        if self._is_running(broker):
            return
        self._launch(record, broker)
        self._save(record)
        deadline = time.monotonic() + timeout
        self._wait_until_serving(record, [broker], deadline)

    # Starting

    def _start_new(self, timeout: float) -> str:
        java = require_java()
        libs = kafka_libs(self.version, self.kafka_home, self._progress)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # A cluster that was not stopped by `down` (a crashed machine, say) is
        # not worth keeping: the new one starts empty.
        for old in self.state_dir.glob("broker-*"):
            shutil.rmtree(old, ignore_errors=True)
        per_broker = 2 if self.security is None else 3  # clients, controller[, brokers]
        ports = _free_ports(per_broker * self.brokers)
        record = ClusterRecord(
            cluster_id=_new_cluster_id(),
            java=str(java),
            libs=str(libs),
            brokers=[
                BrokerRecord(id=n, port=ports[per_broker * (n - 1)], controller_port=ports[per_broker * (n - 1) + 1],
                             internal_port=ports[per_broker * (n - 1) + 2] if self.security else None)
                for n in range(1, self.brokers + 1)
            ],
        )
        for broker in record.brokers:
            self._write_config(record, broker)
        self._progress(f"formatting storage of {self.brokers} broker(s) in {self.state_dir}")
        self._format_storage(record)
        started = time.monotonic()
        try:
            for broker in record.brokers:
                self._launch(record, broker)
            # Recorded before waiting, so `down` finds brokers even if this process is interrupted.
            self._save(record)
            self._wait_until_ready(record, started + timeout)
        except BaseException:
            # Killed at once: a cluster that failed to start has nothing worth a clean shutdown.
            self._stop(record, [b for b in record.brokers if self._is_running(b)], timeout=0)
            (self.state_dir / STATE_FILE).unlink(missing_ok=True)
            raise
        self._progress(f"{self.brokers} broker(s) ready in {time.monotonic() - started:.1f} s; "
                       f"logs in {self.state_dir}/broker-*/broker.log")
        return record.bootstrap

    def _restart(self, record: ClusterRecord, timeout: float) -> str:
        stopped = [broker for broker in record.brokers if not self._is_running(broker)]
        self._progress(f"starting stopped broker(s) {', '.join(str(b.id) for b in stopped)} "
                       f"of the cluster in {self.state_dir}")
        started = time.monotonic()
        for broker in stopped:
            self._launch(record, broker)
        self._save(record)
        self._wait_until_ready(record, started + timeout)
        self._progress(f"ready in {time.monotonic() - started:.1f} s")
        return record.bootstrap

    def _write_config(self, record: ClusterRecord, broker: BrokerRecord) -> None:
        folder = self._broker_dir(broker.id)
        (folder / "data").mkdir(parents=True, exist_ok=True)
        (folder / "server.properties").write_text(_server_properties(record, broker, folder / "data", self.security))
        (folder / "log4j2.properties").write_text(_LOG4J2_TEMPLATE.format(log_file=folder / "broker.log"))

    def _format_storage(self, record: ClusterRecord) -> None:
        # One JVM per broker, run side by side: each takes a couple of seconds to start.
        runs = []
        # The same credentials for every node: whichever controller leads holds the same users.
        scram = [arg for credential in (self.security.scram_credentials() if self.security else [])
                 for arg in ("--add-scram", credential)]
        for broker in record.brokers:
            folder = self._broker_dir(broker.id)
            command = _java_command(record, folder, "kafka.tools.StorageTool",
                                    "format", "-t", record.cluster_id, "-c", str(folder / "server.properties"),
                                    *scram, jvm_options=_SHORT_LIVED_JVM)
            runs.append((broker, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, text=True)))
        outputs = [(broker, run.communicate()[0], run.returncode) for broker, run in runs]
        for broker, output, returncode in outputs:
            if returncode != 0:
                raise LocalKafkaError(
                    f"formatting the storage of broker {broker.id} failed:\n{_last_lines(output, 15)}"
                )

    def _launch(self, record: ClusterRecord, broker: BrokerRecord) -> None:
        folder = self._broker_dir(broker.id)
        command = _java_command(record, folder, "kafka.Kafka", str(folder / "server.properties"))
        # In a session of its own (setsid), as start_new_session would: the
        # broker outlives this command, and a signal to its group reaches only
        # it. Not subprocess.Popen, which warns when its object goes while the
        # process, as meant here, runs on. The JVM's own output (a crash, an
        # unknown flag) goes beside the broker's log.
        redirect = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(folder / "jvm.out"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        try:
            broker.pid = os.posix_spawn(command[0], command, dict(os.environ), file_actions=redirect, setsid=True)
        except OSError as exc:
            raise LocalKafkaError(f"cannot start broker {broker.id} with {command[0]}: {exc}") from exc

    # Waiting

    def _wait_until_ready(self, record: ClusterRecord, deadline: float) -> None:
        self._progress(f"waiting for {len(record.brokers)} broker(s) to register")
        self._wait_until_serving(record, record.brokers, deadline)
        self._round_trip(record, deadline)

    def _wait_until_serving(self, record: ClusterRecord, brokers: list[BrokerRecord], deadline: float) -> None:
        """Wait until each of ``brokers`` answers and knows every running broker of the cluster.

        Only running ones: a fault-injection test may have stopped another on purpose.
        """
        pending = list(brokers)
        while pending:
            for broker in pending:
                if not self._is_running(broker):
                    raise LocalKafkaError(
                        f"broker {broker.id} stopped while starting; from its log:\n{self._log_tail(broker)}"
                    )
            running = {b.id for b in record.brokers if self._is_running(b)}
            pending = [b for b in pending if not running <= _registered_brokers(b)]
            if not pending:
                return
            if time.monotonic() > deadline:
                waiting = ", ".join(str(b.id) for b in pending)
                raise LocalKafkaError(
                    f"broker(s) {waiting} did not register in time; "
                    f"from broker {pending[0].id}'s log:\n{self._log_tail(pending[0])}"
                )
            time.sleep(POLL_INTERVAL_S)

    def _round_trip(self, record: ClusterRecord, deadline: float) -> None:
        """Create a topic, write a record and read it back through a consumer group.

        Registered brokers can still refuse writes for a moment (no leader yet,
        consumer offsets topic not yet created); this is what a user does first.
        """
        topic = f"alert-sidecar-ready-{uuid.uuid4().hex[:12]}"
        common = {"bootstrap.servers": record.plaintext_bootstrap, "log_level": 0}
        admin = AdminClient(common)
        try:
            try:
                admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=_left(deadline))
            except (KafkaException, concurrent.futures.TimeoutError) as exc:
                raise LocalKafkaError(f"the brokers registered but cannot create a topic: {exc!r}") from exc
            producer = Producer({**common, "acks": "all", "message.timeout.ms": int(1000 * _left(deadline)) + 1})
            delivered: list = []
            producer.produce(topic, b"ready", on_delivery=lambda err, msg: delivered.append(err))
            producer.flush(_left(deadline))
            if not delivered or delivered[0] is not None:
                reason = delivered[0] if delivered else "no answer"
                raise LocalKafkaError(f"the brokers registered but a test record was not written: {reason}")
            consumer = Consumer({**common, "group.id": topic, "auto.offset.reset": "earliest",
                                 "enable.auto.commit": False})
            try:
                consumer.subscribe([topic])
                while time.monotonic() < deadline:
                    message = consumer.poll(POLL_INTERVAL_S)
                    if message is not None and message.error() is None and message.value() == b"ready":
                        return
            finally:
                consumer.close()
            raise LocalKafkaError(
                f"the brokers registered but a test record did not come back in time; "
                f"see the logs in {self.state_dir}/broker-*/broker.log"
            )
        finally:
            # Waited for briefly, or the request may die with the client; a
            # leftover topic is harmless, so its failure is not an error.
            try:
                admin.delete_topics([topic])[topic].result(timeout=5)
            except (KafkaException, concurrent.futures.TimeoutError):
                pass

    # Stopping

    def _stop(self, record: ClusterRecord, brokers: list[BrokerRecord], timeout: float) -> None:
        """SIGTERM each broker's process group, then SIGKILL what is left after ``timeout``.

        With ``timeout`` 0 the brokers are killed at once. A broker's clean
        shutdown needs a controller quorum (a majority of the nodes) to let it
        go; once too few nodes are left, as when the last of a whole cluster
        stops, the rest would only wait out the timeout, so they are killed
        then, without a word: that is the usual end of a cluster.
        """
        reason = ""
        if timeout <= 0:
            stopping = list(brokers)
        else:
            for broker in brokers:
                _signal_group(broker.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            majority = len(record.brokers) // 2 + 1
            while True:
                stopping = [broker for broker in brokers if self._is_running(broker)]
                if not stopping:
                    return
                alive = sum(1 for broker in record.brokers if self._is_running(broker))
                if alive < majority:
                    break
                if time.monotonic() > deadline:
                    reason = f"did not stop within {timeout:g} s"
                    break
                time.sleep(POLL_INTERVAL_S)
        for broker in stopping:
            if reason:
                self._progress(f"broker {broker.id} {reason}; killing it")
            _signal_group(broker.pid, signal.SIGKILL)
        if not self._wait_stopped(stopping, time.monotonic() + KILL_TIMEOUT_S):
            pids = ", ".join(str(b.pid) for b in stopping if self._is_running(b))
            raise LocalKafkaError(f"broker process(es) {pids} survived SIGKILL for {KILL_TIMEOUT_S:g} s")

    def _wait_stopped(self, brokers: list[BrokerRecord], deadline: float) -> bool:
        while any(self._is_running(b) for b in brokers):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_INTERVAL_S / 5)
        return True

    # Processes and files

    def _is_running(self, broker: BrokerRecord) -> bool:
        """Whether the recorded pid is still this broker (and not a later process that got its pid)."""
        if broker.pid is None:
            return False
        child = _child_state(broker.pid)
        if child is not None:
            return child
        return _is_process_running(broker.pid, str(self._broker_dir(broker.id) / "server.properties"))

    def _broker_dir(self, broker_id: int) -> Path:
        return self.state_dir / f"broker-{broker_id}"

    def _log_tail(self, broker: BrokerRecord) -> str:
        """What a user needs of a dead broker's logs: Kafka's last error, else the JVM's last words."""
        folder = self._broker_dir(broker.id)
        log = _read(folder / "broker.log")
        summary = _last_error(log) or "\n".join(
            part for part in (_last_lines(_read(folder / "jvm.out"), 10), _last_lines(log, 10)) if part
        )
        return f"{summary}\n(full log: {folder / 'broker.log'})"

    def _load(self) -> ClusterRecord | None:
        path = self.state_dir / STATE_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            brokers = [BrokerRecord(**broker) for broker in data.pop("brokers")]
            return ClusterRecord(brokers=brokers, **data)
        except (ValueError, TypeError, KeyError) as exc:
            raise LocalKafkaError(
                f"{path} is not a cluster state file this version understands ({exc}); "
                f"stop any brokers left running and remove {self.state_dir}"
            ) from exc

    def _require_record(self) -> ClusterRecord:
        record = self._load()
        if record is None:
            raise LocalKafkaError(
                f"no Kafka cluster is recorded in {self.state_dir}; start one with `alert-sidecar kafka up`"
            )
        return record

    def _save(self, record: ClusterRecord) -> None:
        # Written whole and then renamed, so a reader never sees half a file.
        path = self.state_dir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(record), indent=2) + "\n")
        os.replace(temporary, path)


# --- Pieces without state --------------------------------------------------------


def _server_properties(record: ClusterRecord, broker: BrokerRecord, data_dir: Path,
                       security: SaslSsl | None = None) -> str:
    count = len(record.brokers)
    voters = ",".join(f"{b.id}@{HOST}:{b.controller_port}" for b in record.brokers)
    # Three copies as in production, but no more copies than brokers.
    replication = min(3, count)
    # A write acknowledged by all in-sync replicas then survives losing one
    # broker; with fewer than three copies that would stop writes instead.
    min_isr = 2 if replication >= 3 else 1
    return f"""\
# Written by alert-sidecar for a local development cluster.
# Combined mode: one JVM per node is both broker and controller, which keeps a
# dev cluster small; the quorum is static because its nodes never change.
process.roles=broker,controller
node.id={broker.id}
controller.quorum.voters={voters}
controller.listener.names=CONTROLLER
{_listener_properties(broker, security)}
log.dirs={data_dir}

# A consumer group's first member starts at once instead of waiting 3 s for others:
# tests and the demo start one consumer and expect it to read.
group.initial.rebalance.delay.ms=0

# Internal topics need as many replicas as there are brokers, up to three;
# Kafka's defaults (three) would leave a one-broker cluster unable to start them.
offsets.topic.replication.factor={replication}
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={replication}
share.coordinator.state.topic.min.isr={min_isr}

# Topics created without a replication factor are replicated like the
# internal ones, so stopping one broker of three loses nothing.
default.replication.factor={replication}
min.insync.replicas={min_isr}

# Writing to a topic that does not exist creates it, as quick scripts expect;
# with one partition, as a single-consumer demo expects.
auto.create.topics.enable=true
num.partitions=1

# Consumer groups' offsets in 10 partitions, not 50: a dev cluster has a few
# groups, and creating 150 replicas on three brokers slows the first consumer.
offsets.topic.num.partitions=10

# The cleaner of compacted topics reserves 128 MiB of heap by default, a
# quarter of ours; a dev cluster's consumer offsets need far less.
log.cleaner.dedupe.buffer.size=16777216
"""


def _listener_properties(broker: BrokerRecord, security: SaslSsl | None) -> str:
    """The listeners: clients in plaintext, or with ``security`` in SASL_SSL beside the brokers' own."""
    if security is None:
        return f"""\
listeners=PLAINTEXT://{HOST}:{broker.port},CONTROLLER://{HOST}:{broker.controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{broker.port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"""
    return f"""\
# Clients log in with SASL/SCRAM-SHA-512 over TLS, as to Rubin's and Lasair's
# brokers; brokers and controllers talk in plaintext among themselves, on loopback.
listeners=SASL_SSL://{HOST}:{broker.port},INTERNAL://{HOST}:{broker.internal_port},\
CONTROLLER://{HOST}:{broker.controller_port}
advertised.listeners=SASL_SSL://{HOST}:{broker.port},INTERNAL://{HOST}:{broker.internal_port}
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms={SCRAM_MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location={security.keystore}"""


def _java_command(record: ClusterRecord, folder: Path, main_class: str, *args: str,
                  jvm_options: tuple[str, ...] = ()) -> list[str]:
    return [
        record.java,
        f"-Xmx{BROKER_HEAP}",
        *jvm_options,
        # A broker out of memory should die visibly rather than limp on.
        "-XX:+ExitOnOutOfMemoryError",
        f"-XX:ErrorFile={folder}/hs_err_pid%p.log",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={folder / 'log4j2.properties'}",
        "-cp", f"{record.libs}/*",
        main_class, *args,
    ]


def _new_cluster_id() -> str:
    """16 random bytes, base64url without padding: Kafka's own Uuid text form."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka's tools read an id starting with '-' as a flag; Kafka never makes one.
        if not cluster_id.startswith("-"):
            return cluster_id


def _free_ports(count: int) -> list[int]:
    """Ports free now: all held open together, so no two are the same."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _registered_brokers(broker: BrokerRecord) -> set[int]:
    """The ids ``broker`` itself lists as registered, or none if it does not answer yet."""
    # A new client knows only this one broker, so the answer comes from it;
    # log_level 0 because refused connections are expected while it starts.
    admin = AdminClient({"bootstrap.servers": broker.plaintext_address, "log_level": 0})
    try:
        return set(admin.list_topics(timeout=PROBE_TIMEOUT_S).brokers)
    except KafkaException:
        return set()


def _signal_group(pid: int | None, sig: signal.Signals) -> None:
    # The broker leads its own process group (setsid at launch), so this reaches all of it.
    if pid is None:
        return
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _child_state(pid: int) -> bool | None:
    """For a broker this process started: True while it runs, False once it ended.

    An ended child is collected here, or it would stay a zombie of a
    long-lived process such as pytest. None if ``pid`` is not a child of this
    process. A child counts as running until collected, so its pid cannot have
    gone to another process meanwhile.
    """
    try:
        collected, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return collected == 0


def _is_process_running(pid: int, marker: str) -> bool:
    """Whether ``pid`` is a live process whose command line contains ``marker``."""
    proc = Path("/proc")
    if not proc.is_dir():
        # No /proc (macOS): trust the pid.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc / str(pid) / "stat").read_text()
        cmdline = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker.encode() in cmdline


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-count:])


def _last_error(log: str) -> str:
    """The last ERROR of a Kafka log with its exception and causes, without the stack frames."""
    lines = log.rstrip().splitlines()
    starts = [n for n, line in enumerate(lines) if line.startswith("[") and (" ERROR " in line or " FATAL " in line)]
    if not starts:
        return ""
    block = [lines[starts[-1]]]
    for line in lines[starts[-1] + 1:]:
        if line.startswith("["):
            break  # the next log entry
        if not line.startswith(("\tat ", "\t...")):
            block.append(line)
    return "\n".join(block)
