"""The generated Python binding of proto/ matches what `make proto` produces now."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "sdks" / "python" / "alertsidecar"


def test_generated_code_matches_the_proto(tmp_path):
    subprocess.run(["bash", str(ROOT / "tools" / "generate_proto.sh"), str(tmp_path)], check=True,
                   env={**os.environ, "PYTHON": sys.executable})
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "alertsidecar").rglob("*") if p.is_file()}
    committed = {p.relative_to(GENERATED.parent): p.read_bytes() for p in GENERATED.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
    assert fresh.keys() == committed.keys()
    stale = [str(name) for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"generated code is stale, run `make proto`: {stale}"
