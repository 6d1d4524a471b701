"""deploy/: the Grafana dashboard and the Prometheus alert rules use only metrics freshet defines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.runtime.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "freshet.json"
EXPERIMENTS = ROOT / "deploy" / "grafana" / "dashboards" / "freshet-experiments.json"  # routing (issue 10)
DASHBOARDS = [DASHBOARD, EXPERIMENTS]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC_NAME = re.compile(r"\bfreshet_[a-z0-9_]+\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
}


def known_series() -> set[str]:
    """Every series name the catalogue can expose (counter ``_total``, histogram ``_bucket``/...)."""
    names: set[str] = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text())


def dashboard_exprs(d: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in d["annotations"]["list"] if "expr" in a]
    exprs += [v["definition"] for v in d["templating"]["list"] if "definition" in v]
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for c in re.sub(r'"[^"]*"', '""', expr):
        if c in "([{":
            stack.append(c)
        elif c in pairs and (not stack or stack.pop() != pairs[c]):
            return False
    return not stack


def test_catalogue_names_are_collected() -> None:
    names = known_series()
    assert "freshet_events_total" in names and "freshet_event_to_prediction_seconds_bucket" in names
    assert "freshet_online_metric" in names


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_loads_and_uses_only_catalogue_metrics(path: Path) -> None:
    d = dashboard(path)
    assert d["uid"] == path.stem and d["panels"]
    known = known_series()
    exprs = dashboard_exprs(d)
    used = {name for e in exprs for name in METRIC_NAME.findall(e)}
    assert used and used <= known, f"unknown metrics in the dashboard: {sorted(used - known)}"
    assert all(balanced(e) for e in exprs)
    for e in exprs:
        if "histogram_quantile" in e:
            assert "_bucket" in e and "le" in e


def test_dashboard_covers_what_people_watch() -> None:
    text = json.dumps(dashboard())
    for needle in (
        "freshet_events_total", "freshet_predictions_total", "freshet_event_to_prediction_seconds_bucket",
        "histogram_quantile(0.5", "histogram_quantile(0.99", "freshet_feature_freshness_seconds_bucket",
        "freshet_online_metric", "freshet_drift_alerts_total", "freshet_labels_total",
        "freshet_label_delay_seconds_bucket", "freshet_dead_letters_total", "freshet_consumer_lag_messages",
        "freshet_model_version",
    ):
        assert needle in text, needle


def test_experiments_dashboard_covers_routing() -> None:
    text = json.dumps(dashboard(EXPERIMENTS))
    for needle in (
        "freshet_routed_predictions_total", "freshet_arm_share", "freshet_arm_metric", "served_rolling",
        "freshet_routing_decisions_total", "freshet_canary_rollbacks_total", "freshet_arm_predict_seconds",
    ):
        assert needle in text, needle


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_are_well_formed(path: Path) -> None:
    d = dashboard(path)
    provisioned = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == uid
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs))


def test_alert_rules_parse_and_use_only_catalogue_metrics() -> None:
    rules = alert_rules()
    known = known_series()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule.get("alert")
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", "0m")))
        used = set(METRIC_NAME.findall(rule["expr"]))
        assert used and used <= known, f"{rule['alert']}: unknown metrics {sorted(used - known)}"
        assert balanced(rule["expr"]), rule["alert"]


def test_alert_rules_cover_the_issue() -> None:
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    wanted = {
        "dead letters rising": "freshet_dead_letters_total",
        "p99 latency high": "histogram_quantile(0.99, sum by (le) (rate(freshet_event_to_prediction_seconds_bucket",
        "drift alert fired": "freshet_drift_alerts_total",
        "consumer lag high": "freshet_consumer_lag_messages",
        "online accuracy dropped": 'freshet_online_metric{metric="accuracy"',
        "no predictions": "freshet_predictions_total",
    }
    for what, needle in wanted.items():
        assert any(needle in e for e in exprs.values()), what


def test_prometheus_config_loads_the_rules() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert "alerts.yml" in config["rule_files"]
