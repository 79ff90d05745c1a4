"""What is generated from proto/ matches what `make proto` produces now.

The Python binding (sdks/python/alertsidecar) is compared byte for byte with
what tools/generate_proto.sh makes; the contract the R package ships
(sdks/r/inst/proto, which `R CMD INSTALL sdks/r` installs with it) must be a
link to proto/, the contract's one copy, and nothing else.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON_BINDING = ROOT / "sdks" / "python" / "alertsidecar"
R_COPY = ROOT / "sdks" / "r" / "inst" / "proto"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The script's outputs in a temporary folder: python/ and r/."""
    out = tmp_path_factory.mktemp("generated")
    subprocess.run(["bash", str(ROOT / "tools" / "generate_proto.sh"), str(out / "python"), str(out / "r")],
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


def test_r_package_ships_a_link_to_the_one_proto(generated):
    contract = ROOT / "proto" / "alertsidecar" / "v1" / "worker.proto"
    shipped = [p for p in R_COPY.rglob("*") if p.is_file() or p.is_symlink()]
    assert shipped == [R_COPY / "alertsidecar" / "v1" / "worker.proto"], shipped
    assert shipped[0].is_symlink() and shipped[0].resolve() == contract.resolve(), (
        "sdks/r/inst/proto must link to proto/, not copy it: run `make proto`")
    made = generated / "r" / "alertsidecar" / "v1" / "worker.proto"
    assert made.is_symlink() and made.resolve() == contract.resolve()
