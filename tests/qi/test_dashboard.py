"""The provisioned Grafana dashboard queries only metrics that the workers really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from connectors.mqtt.metrics import BridgeMetrics
from streams.audit.metrics import audit_registry
from streams.metrics import RunnerMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "qi" / "deploy" / "grafana" / "dashboards"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("_sum", "_count", "_created")}


def exported_series() -> set[str]:
    """Every sample name our workers' registries can expose."""
    class _Tree:
        tree_size, head_age_s, unsigned_leaves = 0, 0.0, 0

    registries: list[CollectorRegistry] = [RunnerMetrics().registry, BridgeMetrics().registry,
                                           audit_registry(_Tree())]
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def test_every_queried_metric_exists():
    exported = exported_series()
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, "no dashboard provisioned"
    queried = set()
    for f in files:
        dash = json.loads(f.read_text())
        for panel in dash["panels"]:
            for target in panel["targets"]:
                queried |= set(re.findall(r"\bqi_[a-z0-9_]+", target["expr"]))
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, f"queried but never exported: {sorted(queried - exported)}"
