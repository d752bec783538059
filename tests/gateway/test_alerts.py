"""The shipped alert rules and dashboard only use metrics regfront exports: the gateway's and
the node agents'."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from gateway.freshness import Freshness
from gateway.gcwatch import GCWatch
from gateway.metrics import GatewayMetrics
from gateway.stores import StorePolicy, StoreSet
from gateway.syncwatch import SyncWatch
from gateway.usage import UsageRecorder
from node.agent import Status
from node.containerd import ImageSettings, plan
from node.service import StatusCollector
from registry.config import Config
from registry.store.memory import MemoryStore

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def _exported() -> set[str]:
    metrics = GatewayMetrics()
    metrics.watch_breakers(Freshness(Config().mirror_index(), None, metrics=metrics))
    SyncWatch(MemoryStore(), [], metrics)
    GCWatch(MemoryStore(), metrics)
    UsageRecorder(MemoryStore(), interval=60, max_entries=1).export(metrics)
    StoreSet([], StorePolicy(timeout=1, deadline=1, backoff=1, failures=1), metrics=metrics)
    names = {"regfront_" + name for name in metrics.registry.families}
    names |= {"regfront_" + name for name in metrics.registry.gauges}
    status = Status(version="v2.2.7", plan=plan((2, 2), ImageSettings()), probes={"hub": True})
    names |= {family.name for family in StatusCollector(lambda: status, "node-1").collect()}
    return names


def _used(text: str) -> set[str]:
    used = set()
    for name in re.findall(r"\bregfront_[a-z_]+", text):
        for suffix in SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in _exported():
                name = name.removesuffix(suffix)
        used.add(name)
    return used


def test_alert_rules_parse_and_use_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    alerts = [r for group in rules["groups"] for r in group["rules"]]
    assert {a["alert"] for a in alerts} >= {"RegfrontErrorRate", "RegfrontFallbacks",
                                            "RegfrontReplicaUnhealthy", "RegfrontUpstreamDown",
                                            "RegfrontSyncStale", "RegfrontNodeBypassesMirror",
                                            "RegfrontGCFailing", "RegfrontImagesExposed"}
    used = set().union(*(_used(a["expr"]) for a in alerts))
    assert used <= _exported(), used - _exported()


def test_dashboard_uses_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "regfront.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(_used(e) for e in exprs))
    assert "regfront_fallbacks" in used  # the count that says a fleet went to the upstream
    assert "regfront_node_ready" in used  # the nodes whose kubelet pulls bypass the gateway
    assert used <= _exported(), used - _exported()
