"""Running R workers in tests: the R SDK installed into .rlib/, and the command that starts a worker.

``r_worker_command("examples/r/brightening.R")`` is a command for
``alert-sidecar ... -- COMMAND`` (or ``Popen``) that runs the script with the
package from the repository's own library ``.rlib/``, (re)installing it first
when it is missing or older than its sources, as ``make r-install`` does.
``install(library)`` is the plain ``R CMD INSTALL sdks/r`` into another library.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
R_SDK = ROOT / "sdks" / "r"
R_LIB = ROOT / ".rlib"
# The contract's copy the package ships (made from proto/ by `make proto`).
PROTO = R_SDK / "inst" / "proto" / "alertsidecar" / "v1" / "worker.proto"
# What R CMD INSTALL writes last; its age says which sources it was made from.
INSTALLED = R_LIB / "alertworker" / "DESCRIPTION"


class RNotInstalled(RuntimeError):
    """R, or a package the SDK needs, is not on this machine."""


def r_worker_command(script: str, *args: str) -> list[str]:
    """``env R_LIBS=<repo>/.rlib Rscript SCRIPT ARGS...``, with the package installed and current."""
    ensure_installed()
    path = Path(script)
    if not path.is_absolute():
        path = ROOT / path
    return ["env", f"R_LIBS={R_LIB}", "Rscript", str(path), *args]


def ensure_installed() -> None:
    """Install sdks/r into .rlib/ unless it is there and newer than every source (one installer at a time)."""
    if shutil.which("Rscript") is None or shutil.which("R") is None:
        raise RNotInstalled("R is not installed: run `make r-setup` (needs root for apt-get)")
    R_LIB.mkdir(exist_ok=True)
    with open(R_LIB / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent tests: one installs, the others wait and find it done
        try:
            if not _stale():
                return
            install(R_LIB, "--no-multiarch")
            INSTALLED.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install(library: Path, *options: str) -> None:
    """``R CMD INSTALL [OPTIONS] --library=LIBRARY sdks/r``, as an R user installs the package."""
    if shutil.which("R") is None:
        raise RNotInstalled("R is not installed: run `make r-setup` (needs root for apt-get)")
    done = subprocess.run(["R", "CMD", "INSTALL", *options, f"--library={library}", str(R_SDK)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        missing = "there is no package called" in done.stderr or "are not available" in done.stderr
        hint = " (run `make r-setup`, needs root for apt-get)" if missing else ""
        raise RNotInstalled(f"R CMD INSTALL of sdks/r failed{hint}:\n{done.stderr[-3000:]}")


def _stale() -> bool:
    if not INSTALLED.exists():
        return True
    installed_at = INSTALLED.stat().st_mtime
    sources = [PROTO, R_SDK / "DESCRIPTION", R_SDK / "NAMESPACE", *R_SDK.glob("R/*.R"),
               *R_SDK.glob("inst/conformance/*")]
    return any(source.stat().st_mtime > installed_at for source in sources)
