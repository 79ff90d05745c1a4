"""The R SDK's own testthat suites, and the example filter's, as `make r-test` runs them."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.r_support import R_LIB, ROOT, ensure_installed


@pytest.mark.parametrize("directory", ["sdks/r/tests/testthat", "examples/r/tests"])
def test_r_testthat_suite_passes(directory: str) -> None:
    ensure_installed()
    done = subprocess.run(
        ["Rscript", "-e", f'testthat::test_dir("{directory}", package = "alertworker", '
                          f'load_package = "installed", stop_on_failure = TRUE)'],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "R_LIBS": str(R_LIB)}, timeout=600)
    assert done.returncode == 0, f"{directory}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
