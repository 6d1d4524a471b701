"""deploy/prometheus on the real promtool: the config and rules load, the rules' unit tests pass, and a rule
broken on purpose fails them. promtool comes with Debian's ``prometheus`` (installed when missing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from streams.ops import monitoring as mon
from streams.settings import Settings


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    """A copy of deploy/prometheus to break on purpose."""
    dest = tmp_path / "prometheus"
    shutil.copytree(mon.ALERTS_YML.parent, dest)
    return dest


def test_promtool_passes_the_config_the_rules_and_their_unit_tests() -> None:
    results = mon.check_deploy_files()
    assert [r.what.split()[1:3] for r in results] == [["check", "config"], ["check", "rules"], ["test", "rules"]]
    for r in results:
        assert r.ok, f"{r.what}:\n{r.output}"
    assert "SUCCESS: 11 rules found" in results[1].output


def test_every_alert_has_promtool_unit_tests_on_both_sides() -> None:
    tests = yaml.safe_load(mon.ALERTS_TEST_YML.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for name in mon.alert_names():
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it stays quiet"


def test_a_threshold_broken_on_purpose_fails_the_unit_tests(deploy_copy: Path) -> None:
    rules = deploy_copy / "alerts.yml"
    text = rules.read_text()
    assert "/ clamp_min(sum(rate(freshet_events_total{stage=\"validate\"}[5m])), 1e-9) > 0.01" in text
    rules.write_text(text.replace('[5m])), 1e-9) > 0.01', '[5m])), 1e-9) > 0.05', 1))
    results = {r.what.split()[1]: r for r in mon.check_deploy_files(deploy_copy / "prometheus.yml", rules,
                                                                     deploy_copy / "alerts_test.yml")}  # fmt: skip
    assert results["check"].ok  # still valid PromQL...
    assert not results["test"].ok  # ...that no longer fires at 2% dead letters
    assert "alertname: FreshetDeadLettersRising" in results["test"].output


def test_a_for_duration_broken_on_purpose_fails_the_unit_tests(deploy_copy: Path) -> None:
    rules = deploy_copy / "alerts.yml"
    doc = yaml.safe_load(rules.read_text())
    rule = next(r for g in doc["groups"] for r in g["rules"] if r["alert"] == "FreshetConsumerLagHigh")
    rule["for"] = "0m"
    rules.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = mon.promtool("test", "rules", str(deploy_copy / "alerts_test.yml"))
    assert out.returncode != 0 and "alertname: FreshetConsumerLagHigh, time: 4m" in out.stdout + out.stderr


def test_a_rule_that_does_not_parse_fails_check_rules(deploy_copy: Path) -> None:
    rules = deploy_copy / "alerts.yml"
    rules.write_text(rules.read_text().replace("sum by (topic) (freshet_consumer_lag_messages) > 10000",
                                               "sum by (topic) (freshet_consumer_lag_messages > 10000"))  # fmt: skip
    out = mon.promtool("check", "rules", str(rules))
    assert out.returncode != 0 and "parse error" in out.stdout + out.stderr


def test_the_rewritten_config_and_the_faster_rules_pass_promtool(tmp_path: Path) -> None:
    fast = tmp_path / "alerts-fast.yml"
    fast.write_text(yaml.safe_dump(mon.scale_rules(yaml.safe_load(mon.ALERTS_YML.read_text()), 30)))
    config = mon.prometheus_config(Settings(metrics_port=19108), rule_files=[fast], scrape_interval_s=1,
                                   evaluation_interval_s=1, alertmanager_port=19094)  # fmt: skip
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(config))
    out = mon.promtool("check", "config", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    fast_rules = {r["alert"]: r for g in yaml.safe_load(fast.read_text())["groups"] for r in g["rules"]}
    assert fast_rules["FreshetLabelsNotJoining"]["for"] == "30s"
    assert "[30s]" in fast_rules["FreshetLabelsNotJoining"]["expr"]


def test_config_rewrite_keeps_components_and_refuses_unknown_targets(tmp_path: Path) -> None:
    config = mon.prometheus_config(Settings(metrics_port=19200))
    statics = config["scrape_configs"][0]["static_configs"]
    assert [(s["labels"]["component"], s["targets"]) for s in statics] == [
        ("worker", ["127.0.0.1:19200"]), ("learner", ["127.0.0.1:19201"])]  # fmt: skip
    assert config["rule_files"] == [str(mon.ALERTS_YML)]
    odd = tmp_path / "prometheus.yml"
    odd.write_text("scrape_configs: [{job_name: x, static_configs: [{targets: ['a:1']}]}]\n")
    with pytest.raises(mon.PrometheusError, match="known component label"):
        mon.prometheus_config(Settings(), source=odd)
