"""What is generated from proto/ matches what `make proto` produces now.

The Python binding (sdks/python/alertsidecar) is compared byte for byte with
what tools/generate_proto.sh makes. The contract has one copy: no .proto is
tracked outside proto/, and the R package's configure script (run by `R CMD
INSTALL sdks/r`) copies proto/'s file into the package byte for byte.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON_BINDING = ROOT / "sdks" / "python" / "alertsidecar"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The script's outputs in a temporary folder: python/ and r/."""
    out = tmp_path_factory.mktemp("generated")
    subprocess.run(["bash", str(ROOT / "tools" / "generate_proto.sh"), str(out / "python")],
                   check=True, env={**os.environ, "PYTHON": sys.executable})
    return out


def _files(folder: Path, relative_to: Path) -> dict[Path, bytes]:
    return {p.relative_to(relative_to): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def _stale(fresh: dict[Path, bytes], committed: dict[Path, bytes]) -> list[str]:
    """Files that differ, or that are on one side only."""
    assert fresh, "the script generated nothing"
    return [str(name) for name in sorted(fresh.keys() | committed.keys()) if fresh.get(name) != committed.get(name)]


def test_python_binding_matches_the_proto(generated):
    fresh = _files(generated / "python" / "alertsidecar", generated / "python")
    stale = _stale(fresh, _files(PYTHON_BINDING, PYTHON_BINDING.parent))
    assert not stale, f"generated code is stale, run `make proto`: {stale}"


def test_no_proto_is_tracked_outside_proto():
    tracked = subprocess.run(["git", "ls-files", "*.proto"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked and all(name.startswith("proto/") for name in tracked), tracked


def test_r_configure_copies_the_one_proto(tmp_path):
    """The configure script, run where R runs it (the package's folder), in a copy of the layout it expects."""
    package = tmp_path / "sdks" / "r"
    package.mkdir(parents=True)
    shutil.copy(ROOT / "sdks" / "r" / "configure", package / "configure")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    subprocess.run(["sh", "configure"], cwd=package, check=True)
    copied = package / "inst" / "proto" / "alertsidecar" / "v1" / "worker.proto"
    assert copied.read_bytes() == (ROOT / "proto" / "alertsidecar" / "v1" / "worker.proto").read_bytes()
    assert not copied.is_symlink()
    # Away from the repository, with no copy made before, it says so and fails.
    (tmp_path / "proto" / "alertsidecar" / "v1" / "worker.proto").unlink()
    copied.unlink()
    failed = subprocess.run(["sh", "configure"], cwd=package, capture_output=True, text=True)
    assert failed.returncode == 1 and "no contract" in failed.stderr
