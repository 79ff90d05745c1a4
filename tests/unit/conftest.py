"""Fixtures of the unit tests."""

import pytest

from alert_sidecar import cli


@pytest.fixture
def captured(monkeypatch):
    """What the command line would run: ``captured["config"]`` and ``["supervisor"]``, with no stage run."""
    seen = {}

    def fake_run_stage(config, supervisor):
        seen["config"], seen["supervisor"] = config, supervisor
        return 0

    monkeypatch.setattr(cli, "_run_stage", fake_run_stage)
    return seen
