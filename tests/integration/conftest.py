import pytest

from .stage_support import Processes


@pytest.fixture
def procs(tmp_path):
    processes = Processes(tmp_path)
    yield processes
    processes.kill_all()
