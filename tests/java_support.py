"""Building and starting the Java workers (the SDK in sdks/java, the examples in examples/java) for tests.

``java_worker_command(main_class, *args)`` returns a command that starts a
Java worker, ``["java", "-cp", CLASSPATH, main_class, *args]``, for
``alert-sidecar ... -- COMMAND`` or a test's own process. The jars are built
with Maven the first time, and again whenever a source, a POM or the contract
in proto/ is newer than them; a file lock keeps tests that run at once (pytest
-n, several sessions) from building twice at the same time.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "sdks" / "java"
EXAMPLES = ROOT / "examples" / "java"

#: The jars whose manifests put their dependencies (copied to target/lib) on the class path.
JARS = (
    SDK / "conformance-worker" / "target" / "conformance-worker.jar",
    EXAMPLES / "crossmatch" / "target" / "crossmatch.jar",
    EXAMPLES / "passthrough" / "target" / "passthrough.jar",
)
#: What the jars are built from.
SOURCES = (SDK, EXAMPLES, ROOT / "proto")
#: How to build them by hand, for the error message.
JAVA_BUILD_TARGET = "make java"

# A cold build downloads gRPC, protobuf and Avro into ~/.m2 and compiles two
# Maven projects: about a minute on this project's 2-core machine, a few
# minutes on a slow network.
BUILD_TIMEOUT_S = 900

CONFORMANCE_WORKER = "org.alertsidecar.conformance.ConformanceWorker"
CROSSMATCH_WORKER = "org.alertsidecar.examples.crossmatch.CrossmatchWorker"
PASSTHROUGH_WORKER = "org.alertsidecar.examples.passthrough.PassthroughWorker"


class JavaBuildError(RuntimeError):
    """The Java workers could not be built; the message says what to run to see why."""


def java_worker_command(main_class: str, *args: str) -> list[str]:
    """A command that starts the Java worker ``main_class`` with ``args``, building the jars if they are stale."""
    ensure_built()
    return ["java", "-cp", os.pathsep.join(str(jar) for jar in JARS), main_class, *args]


def ensure_built() -> None:
    """Build the SDK and the examples unless every jar is newer than every source."""
    if not _stale():
        return
    lock_path = SDK / "target" / ".build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test may be building: wait, then look again
        if _stale():
            _build()


def _stale() -> bool:
    try:
        built = min(jar.stat().st_mtime for jar in JARS)
    except FileNotFoundError:
        return True
    return _newest(SOURCES) > built


def _newest(roots: Iterable[Path]) -> float:
    newest = 0.0
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "target" and not d.startswith(".")]
            for name in filenames:
                if name.endswith((".java", ".xml", ".proto", ".properties")):
                    newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
    return newest


def _build() -> None:
    mvn = shutil.which("mvn")
    if mvn is None or shutil.which("java") is None:
        raise JavaBuildError(f"the Java workers need Java 17 and Maven (mvn) on the PATH; install them, then run "
                             f"`{JAVA_BUILD_TARGET}`")
    steps = (
        [mvn, "-q", "-B", "-f", str(SDK / "pom.xml"), "install", "-DskipTests"],
        [mvn, "-q", "-B", "-f", str(EXAMPLES / "pom.xml"), "package", "-DskipTests"],
    )
    for step in steps:
        try:
            done = subprocess.run(step, cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise JavaBuildError(f"building the Java workers took over {BUILD_TIMEOUT_S} s ({' '.join(step)}); "
                                 f"run `{JAVA_BUILD_TARGET}` to see where it stops") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-4000:]
            raise JavaBuildError(f"building the Java workers failed ({' '.join(step)}, exit {done.returncode}); "
                                 f"run `{JAVA_BUILD_TARGET}` to see it again:\n{output}")
    for jar in JARS:
        # Maven leaves a jar it finds up to date as it was, older than a source saved again unchanged:
        # without this every test would run Maven again.
        jar.touch()
