"""The Grafana dashboard in docs/grafana asks only for series the sidecar serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from alert_sidecar.stage.metrics import Counters
from alert_sidecar.stage.prometheus import StageMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "alert-sidecar.json"
# PromQL words that are not series names.
PROMQL = {"sum", "by", "rate", "increase", "histogram_quantile", "count", "le", "stage", "state", "avg", "max"}


def served_series() -> set[str]:
    metrics = StageMetrics("g", Counters())
    metrics.answered(0.0, 0.01, 5)
    text = generate_latest(metrics.registry).decode()
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    # A family with no sample yet (lag before any partition is assigned) still says its name.
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    return samples | families


def test_every_series_the_dashboard_queries_is_served():
    dashboard = json.loads(DASHBOARD.read_text())
    served = served_series()
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = re.sub(r'\{[^}]*\}|\[[^]]*\]|"[^"]*"', "", target["expr"])
            queried |= {word for word in re.findall(r"[a-z_][a-z0-9_]*", expr) if word not in PROMQL}
    assert queried, "the dashboard queries nothing"
    assert queried <= served, f"queried but not served: {sorted(queried - served)}"


def test_series_follow_prometheus_naming():
    for name in served_series():
        assert re.fullmatch(r"alert_sidecar_[a-z0-9_]+", name), name
        if name.endswith("_total"):
            assert not name.endswith("_seconds_total")
