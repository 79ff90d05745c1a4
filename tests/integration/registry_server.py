"""A real Confluent-compatible schema registry for the tests: Apicurio Registry 2.4.2.Final.

Apicurio Registry serves Confluent Schema Registry's REST API under
``/apis/ccompat/v7``. Maven Central has its application jar
(``io.apicurio:apicurio-registry-app``) but no runnable build of it, so
``build()`` makes one: a throwaway Maven project that depends on the published
jar and runs Quarkus's build on it, fetched by the machine's own ``mvn`` once
into a cache (as local_kafka.py fetches Kafka), with in-memory (H2) storage,
Apicurio's default.

Why this version and these lines in the project, found by trying:

- 2.4.2.Final is the newest release whose whole dependency tree is on Maven
  Central (2.6.x and 3.x need ``apicurio-registry-schema-util-provider`` builds
  that are not there; 3.x's parent POMs are not all there either).
- One of its dependencies, everit's JSON Schema validator, comes from JitPack,
  which we cannot reach: it is excluded, so JSON Schema (not Avro) support
  is missing, which these tests do not use.
- Its config-index Quarkus extension has no deployment artifact on Maven
  Central; that extension only generates at build time the list of
  properties that can be changed at run time through the admin API.
  ``ConfigListProducer`` gives an empty list in its place.
- The published jar has no Jandex index, so Quarkus is told to index it.

Quarkus 2.16 runs on Java 17, which the machine has for Kafka.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alert_sidecar.kafka.local import default_cache_dir, file_lock, find_java

APICURIO_VERSION = "2.4.2.Final"
# The Quarkus release Apicurio 2.4.2.Final is built with (its parent POM's quarkus.version).
QUARKUS_VERSION = "2.16.4.Final"
# Where Apicurio serves Confluent's API (v7: the one with schema references).
CCOMPAT_PATH = "/apis/ccompat/v7"

# Enough for an in-memory registry holding a few schemas; the JVM's default
# (a quarter of the machine's memory) would be 6 GiB here.
HEAP = "256m"

# It starts in about 5 s on this machine (2 cores); the first start after a
# build may also be slowed by a cold disk cache.
START_TIMEOUT_S = 120.0

# The first build fetches Quarkus and Apicurio's dependencies (a few hundred
# MB) once; later builds from the local Maven repository take about 20 s.
BUILD_TIMEOUT_S = 1800.0

_POM = f"""\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by alert-sidecar's tests: a runnable build of Apicurio Registry {APICURIO_VERSION}. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.alert-sidecar</groupId>
  <artifactId>apicurio-registry</artifactId>
  <version>1</version>
  <properties>
    <maven.compiler.source>17</maven.compiler.source>
    <maven.compiler.target>17</maven.compiler.target>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>io.apicurio</groupId>
        <artifactId>apicurio-registry</artifactId>
        <version>{APICURIO_VERSION}</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>io.apicurio</groupId>
      <artifactId>apicurio-registry-app</artifactId>
      <version>{APICURIO_VERSION}</version>
      <exclusions>
        <exclusion>
          <groupId>com.github.everit-org.json-schema</groupId>
          <artifactId>org.everit.json.schema</artifactId>
        </exclusion>
        <exclusion>
          <groupId>io.apicurio</groupId>
          <artifactId>apicurio-common-app-components-config-index</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>io.quarkus</groupId>
        <artifactId>quarkus-maven-plugin</artifactId>
        <version>{QUARKUS_VERSION}</version>
        <executions><execution><goals><goal>build</goal></goals></execution></executions>
      </plugin>
    </plugins>
  </build>
</project>
"""

_PRODUCER = """\
package local.alertsidecar;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.ArrayList;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/** Stands in for what the config-index extension would generate: no run-time-changeable properties. */
@ApplicationScoped
public class ConfigListProducer {
    @Produces
    @ApplicationScoped
    public DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(new ArrayList<>());
    }
}
"""

_PROPERTIES = """\
# The published application jar has no Jandex index: have Quarkus index it.
quarkus.index-dependency.registryapp.group-id=io.apicurio
quarkus.index-dependency.registryapp.artifact-id=apicurio-registry-app
"""

RUNNER = "target/apicurio-registry-1-runner.jar"


class RegistryStartError(RuntimeError):
    """The test registry could not be built or started; the message says why and where the log is."""


def build(progress=print) -> Path:
    """The runnable jar, built once into the cache (``$ALERT_SIDECAR_CACHE`` or ~/.cache/alert-sidecar)."""
    home = default_cache_dir() / f"apicurio-registry-{APICURIO_VERSION}"
    jar = home / RUNNER
    stamp = home / "built"
    if stamp.exists() and jar.exists():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RegistryStartError("mvn not found on PATH: Maven is needed to build Apicurio Registry for the tests")
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home.parent / f"apicurio-registry-{APICURIO_VERSION}.lock"):
        if stamp.exists() and jar.exists():
            return jar
        progress(f"building Apicurio Registry {APICURIO_VERSION} with mvn into {home} (once)")
        (home / "pom.xml").write_text(_POM)
        java_dir = home / "src/main/java/local/alertsidecar"
        java_dir.mkdir(parents=True, exist_ok=True)
        (java_dir / "ConfigListProducer.java").write_text(_PRODUCER)
        resources = home / "src/main/resources"
        resources.mkdir(parents=True, exist_ok=True)
        (resources / "application.properties").write_text(_PROPERTIES)
        log_file = home / "mvn.log"
        with open(log_file, "w") as log:
            done = subprocess.run([mvn, "-B", "-q", "-f", str(home / "pom.xml"), "package", "-DskipTests"],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  timeout=BUILD_TIMEOUT_S, check=False)
        if done.returncode != 0 or not jar.exists():
            raise RegistryStartError(f"mvn could not build Apicurio Registry {APICURIO_VERSION}; see {log_file}")
        stamp.write_text(f"apicurio-registry-app {APICURIO_VERSION}, quarkus {QUARKUS_VERSION}\n")
    return jar


class ApicurioRegistry:
    """One Apicurio Registry JVM on 127.0.0.1, in its own process group; ``url`` is its Confluent API root."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.log_file = Path(log_dir) / "apicurio-registry.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        jar = build()
        java = find_java()
        if java is None:
            raise RegistryStartError("java not found: a Java 17+ runtime is needed to run Apicurio Registry")
        with open(self.log_file, "w") as log:
            self.process = subprocess.Popen(
                [str(java), f"-Xmx{HEAP}", "-XX:+UseSerialGC",
                 "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={self.port}",
                 "-jar", str(jar)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RegistryStartError(f"Apicurio Registry exited with code {self.process.returncode} "
                                         f"while starting; see {self.log_file}")
            if _answers(self.url + "/subjects"):
                return self.url
            time.sleep(0.25)
        self.stop()
        raise RegistryStartError(f"Apicurio Registry did not answer within {timeout:g} s; see {self.log_file}")

    def stop(self) -> None:
        """Stop the JVM (SIGTERM to its whole process group, SIGKILL if it lingers)."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and isinstance(json.loads(response.read()), list)
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_registry(log_dir: Path) -> Iterator[str]:
    """An Apicurio Registry for the length of the block; yields its Confluent API root URL."""
    registry = ApicurioRegistry(log_dir)
    try:
        yield registry.start()
    finally:
        registry.stop()
