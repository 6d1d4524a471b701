"""Test in production through the real broker (issue 10): A/B split, bandit, canary rollback and rollout.

Worker and learner run as processes on the test Kafka and Redis; the streams are seeded Hyperplanes.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from river import metrics as river_metrics

from models.champion import ModelGroup
from models.routing import RoutingPlan, route
from models.spec import parse_models
from producers.publish import publish
from producers.synthetic import SyntheticStream
from streams.ops import monitoring as mon
from streams.ops import services as svc
from streams.ops.readers import read_until
from streams.runtime.connections import open_registry
from streams.settings import Settings
from tests.integration.loop_helpers import learner_url, running, wait_metric, wait_ready, with_ports
from tests.integration.test_learning import freshet_cli

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[2] / "pipelines" / "demo.toml"
EXPERIMENTS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "freshet-experiments.json"


def spec_with_models(tmp_path: Path, models_toml: str) -> Path:
    """pipelines/demo.toml's events and features with these ``[[models]]`` (and no drift reactions)."""
    base = DEMO.read_text()
    head = base[: base.index("[[models]]")]
    path = tmp_path / "spec.toml"
    path.write_text(head + models_toml + "\n[drift.concept]\ndetector = \"adwin\"\npolicy = \"alert\"\n")
    return path


def stream(n: int, entities: int, seed: int) -> list[tuple[dict[str, Any], Any]]:
    return list(SyntheticStream(kind="hyperplane", n_events=n, n_entities=entities, seed=seed,
                                start_ts=time.time() - n * 0.01, step_s=0.01))


def last_arm_metrics(s: Settings, n: int, timeout_s: float) -> dict[str, dict[str, Any]]:
    """The last ``role: "arm"`` metrics message per arm, once their counts add up to ``n``."""
    def done(records: list[Any]) -> bool:
        last: dict[str, Any] = {}
        for _, v, _ in records:
            if v.get("role") == "arm":
                last[v["name"]] = v
        return sum(m["metrics"]["n"] for m in last.values()) >= n

    records = read_until(s, "metrics", done=done, timeout_s=timeout_s)
    last: dict[str, dict[str, Any]] = {}
    for _, v, _ in records:
        if v.get("role") == "arm":
            last[v["name"]] = v
    return last


def test_split_shares_sticky_entities_and_per_arm_served_accuracy(settings: Settings, tmp_path: Path) -> None:
    spec = spec_with_models(tmp_path, '''
[[models]]
slot = "default"
[models.champion]
name = "lr"
factory = "logistic_regression"
[[models.challengers]]
name = "lr_fast"
factory = "logistic_regression"
params = { lr = 0.05 }
[models.routing]
kind = "split"
experiment = "ab-1"
shares = { lr = 0.7, lr_fast = 0.3 }
''')
    s = with_ports(settings, spec=spec, snapshot_every=1000)
    n = 10_000
    items = stream(n, entities=5000, seed=11)
    labels = {e["id"]: y for e, y in items}
    with running(s, logs=tmp_path):
        wait_ready(s, 90)
        publish(s, items, rate_per_s=800, label_delay_s=0.5)
        preds = [v for _, v, _ in read_until(s, "predictions", done=lambda r: len(r) >= n, timeout_s=240)]
        assert len(preds) == n
        wait_metric(learner_url(s), "freshet_examples_learned_total", n, 180)
        arm_msgs = last_arm_metrics(s, n, timeout_s=60)

    plan = RoutingPlan("default", "ab-1", "split", {"lr": 0.7, "lr_fast": 0.3})
    shares = Counter(p["arm"] for p in preds)
    print(f"split: {dict(shares)} of {n}")
    assert abs(shares["lr"] / n - 0.7) <= 0.02 and abs(shares["lr_fast"] / n - 0.3) <= 0.02, shares
    by_entity: dict[str, set[str]] = defaultdict(set)
    for p in preds:
        by_entity[p["entity"]].add(p["arm"])
        assert p["arm"] == route(plan, p["entity"], p["id"]), "the worker routes by the plan's hash"
        assert (p["experiment"], p["route"], p["share"]) == ("ab-1", "split", plan.share(p["arm"]))
        assert p["model"].startswith(p["arm"] + "@")
    assert all(len(arms) == 1 for arms in by_entity.values()), "one entity, one arm"
    assert len(by_entity) > 3000

    # River alone on the same routing: each prediction's arm recomputed from the plan, its served
    # prediction scored against the label with river.metrics.Accuracy.
    replay = {arm: river_metrics.Accuracy() for arm in plan.shares}
    for p in preds:
        replay[route(plan, p["entity"], p["id"])].update(labels[p["id"]], p["prediction"])
    for arm, acc in replay.items():
        got = arm_msgs[arm]
        assert got["experiment"] == "ab-1"
        assert got["metrics"]["n"] == shares[arm]
        assert got["metrics"]["accuracy"] == pytest.approx(acc.get(), abs=1e-12), (arm, got["metrics"], acc.get())




BANDIT = '''
[[models]]
slot = "default"
[models.champion]
name = "prior"
factory = "river.dummy:PriorClassifier"
[[models.challengers]]
name = "lr"
factory = "logistic_regression"
[models.routing]
kind = "bandit"
experiment = "bandit-1"
arms = ["prior", "lr"]
floor = 0.05
update_every = 25
'''


def test_bandit_moves_traffic_to_the_better_model_with_less_regret_than_a_split(
    settings: Settings, tmp_path: Path
) -> None:
    """lr (about 90% right on this Hyperplane) against the class prior (about 50%), 6,000 events."""
    s = with_ports(settings, spec=spec_with_models(tmp_path, BANDIT), snapshot_every=1000)
    n = 6_000
    items = stream(n, entities=500, seed=12)
    labels = {e["id"]: y for e, y in items}
    order = {e["id"]: i for i, (e, _) in enumerate(items)}
    with running(s, logs=tmp_path):
        wait_ready(s, 90)
        publish(s, items, rate_per_s=300, label_delay_s=0.2)
        preds = [v for _, v, _ in read_until(s, "predictions", done=lambda r: len(r) >= n, timeout_s=240)]
        wait_metric(learner_url(s), "freshet_examples_learned_total", n, 180)
        arm_msgs = last_arm_metrics(s, n, timeout_s=60)
        decisions = [v for _, v, _ in read_until(s, "metrics", done=lambda r: False, timeout_s=5)
                     if v.get("role") == "routing"]
    preds.sort(key=lambda p: order[p["id"]])
    after = preds[5_000:]
    on_lr = sum(p["arm"] == "lr" for p in after) / len(after)
    print(f"bandit: {on_lr:.3f} of events 5,000-6,000 on lr")
    assert on_lr >= 0.8, on_lr
    assert all(p["route"] == "bandit" and p["experiment"] == "bandit-1" for p in preds)
    # Regret against always serving the better arm (its served accuracy as the per-event expectation),
    # and what a fixed 50/50 split would have lost on the same arms' accuracies.
    acc = {arm: msg["metrics"]["accuracy"] for arm, msg in arm_msgs.items()}
    best = max(acc, key=lambda a: acc[a])
    assert best == "lr", acc
    reward = sum(labels[p["id"]] == p["prediction"] for p in preds)
    regret_bandit = n * acc[best] - reward
    regret_split = n * (acc[best] - acc["prior"]) / 2
    print(f"bandit regret {regret_bandit:.0f} vs a 50/50 split's {regret_split:.0f} (served accuracy {acc})")
    assert regret_bandit < regret_split, (regret_bandit, regret_split, acc)
    assert decisions and {"shares", "posteriors", "plan_version", "experiment"} <= set(decisions[-1])


def canary_spec(champion: tuple[str, str], candidate: tuple[str, str], steps: str, step_examples: int) -> str:
    return f'''
[[models]]
slot = "default"
[models.champion]
name = "{champion[0]}"
factory = "{champion[1]}"
[[models.challengers]]
name = "{candidate[0]}"
factory = "{candidate[1]}"
[models.routing]
kind = "canary"
candidate = "{candidate[0]}"
steps = {steps}
step_examples = {step_examples}
min_examples = 100
confidence = 0.99
'''


def test_canary_rolls_back_a_version_trained_on_flipped_labels(settings: Settings, tmp_path: Path) -> None:
    """Also the experiments dashboard on a real Prometheus scraping this run: every panel shows data."""
    spec = spec_with_models(tmp_path, canary_spec(("lr", "logistic_regression"),
                                                  ("flipped", "models.sabotage:flipped_labels"), "[0.1, 0.5]", 500))
    s = with_ports(settings.with_(prometheus_port=svc.free_port()), spec=spec, snapshot_every=1000)
    n = 4_000
    items = stream(n, entities=500, seed=13)
    order = {e["id"]: i for i, (e, _) in enumerate(items)}
    started = mon.start_prometheus(s, mon.prometheus_config(s, rule_files=[], scrape_interval_s=1,
                                                            evaluation_interval_s=1))
    try:
        api = mon.PrometheusAPI(f"http://127.0.0.1:{s.prometheus_port}")
        begin = time.time()
        with running(s, logs=tmp_path):
            wait_ready(s, 90)
            api.wait_targets_up(60)
            publish(s, items, rate_per_s=300, label_delay_s=0.2)
            preds = [v for _, v, _ in read_until(s, "predictions", done=lambda r: len(r) >= n, timeout_s=240)]
            wait_metric(learner_url(s), "freshet_examples_learned_total", n, 180)
            drift = [v for _, v, _ in read_until(
                s, "drift", done=lambda r: any(v.get("decision") == "rollback" for _, v, _ in r), timeout_s=30)]
            rollbacks = wait_metric(learner_url(s), "freshet_canary_rollbacks_total", 1, 10)
            versions = [(v.get("kind"), v.get("version"), v.get("parent"), v.get("snapshot"), "blob_b64" in v)
                        for _, v, _ in read_until(s, "model-versions", done=lambda r: False, timeout_s=3)]
            time.sleep(3)  # a few more scrapes
            panels = mon.check_dashboard(api, mon.load_dashboard(EXPERIMENTS), start=begin, end=time.time())
    finally:
        if started:
            mon.stop_prometheus(s)
    bad = [p.describe() for p in panels if not p.ok]
    assert panels and not bad, "experiments panels without data:\n" + "\n".join(bad)
    canary = [d for d in drift if d.get("kind") == "canary"]
    assert [d["decision"] for d in canary] == ["start", "rollback"], canary
    rollback = canary[-1]
    assert rollback["reason"] == "served_accuracy" and rollback["candidate"] == "flipped"
    assert rollback["n_candidate"] <= 2_000, rollback
    print(f"rolled back after {rollback['n_candidate']} canary outcomes, at example {rollback['offset']}")
    assert rollback["statistic"] > 0 and rollback["confidence"] == 0.99 and rollback["n_baseline"] > 0
    assert rollbacks == 1
    preds.sort(key=lambda p: order[p["id"]])
    served = [i for i, p in enumerate(preds) if p["arm"] == "flipped"]
    assert served, "the canary served some traffic"
    share = len(served) / (served[-1] + 1)
    print(f"the canary served {len(served)} predictions, {share:.3f} of those up to its last")
    assert share <= 0.1 + 0.02, share
    # In the order they were served: from the first prediction of the rolled-back plan on, lr serves all.
    by_time = sorted(preds, key=lambda p: p["produced_ts"])
    first = next((i for i, p in enumerate(by_time) if p["route"] == "rollback"), None)
    assert first is not None, (Counter((p["arm"], p["route"], p["model"]) for p in by_time[-300:]),
                               versions)
    assert all(p["arm"] == "lr" and p["route"] == "rollback" for p in by_time[first:]), "rolled back by itself"
    assert len(by_time) - first >= 500


def test_canary_takes_a_better_version_to_full_traffic(settings: Settings, tmp_path: Path) -> None:
    spec = spec_with_models(tmp_path, canary_spec(("prior", "river.dummy:PriorClassifier"),
                                                  ("lr", "logistic_regression"), "[0.2, 0.6]", 300))
    s = with_ports(settings, spec=spec, snapshot_every=1000)
    n = 5_000
    items = stream(n, entities=500, seed=14)
    with running(s, logs=tmp_path):
        wait_ready(s, 90)
        publish(s, items, rate_per_s=300, label_delay_s=0.2)
        preds = [v for _, v, _ in read_until(s, "predictions", done=lambda r: len(r) >= n, timeout_s=240)]
        wait_metric(learner_url(s), "freshet_examples_learned_total", n, 180)
        drift = [v for _, v, _ in read_until(
            s, "drift", done=lambda r: any(v.get("kind") == "promotion" for _, v, _ in r), timeout_s=30)]
    canary = [d["decision"] for d in drift if d.get("kind") == "canary"]
    assert canary == ["start", "step", "promote"], canary
    promotion = next(d for d in drift if d.get("kind") == "promotion")
    assert promotion["promoted"] == "lr" and promotion["reason"] == "canary_passed"
    # In the order they were served: from the first prediction of the promoted plan on, lr serves all.
    by_time = sorted(preds, key=lambda p: p["produced_ts"])
    first = next((i for i, p in enumerate(by_time) if p["route"] == "promoted"), None)
    assert first is not None, Counter((p["arm"], p["route"], p["model"]) for p in by_time[-300:])
    after = Counter((p["arm"], p["share"], p["route"]) for p in by_time[first:])
    assert set(after) == {("lr", 1.0, "promoted")}, after
    assert len(by_time) - first >= 500, len(by_time) - first


def test_models_promote_on_a_canary_slot_canaries_the_version_and_a_broken_one_rolls_back(
    settings: Settings, tmp_path: Path
) -> None:
    """``freshet models promote default N`` where N's champion learned flipped labels: not served to
    everyone, canaried, rolled back by itself; the registry's pointer never moves to it."""
    spec = spec_with_models(tmp_path, '''
[[models]]
slot = "default"
[models.champion]
name = "lr"
factory = "logistic_regression"
[models.routing]
kind = "canary"
steps = [0.1, 0.5]
step_examples = 500
min_examples = 100
''')
    s = with_ports(settings, spec=spec, snapshot_every=500)
    n = 4_000
    items = stream(n, entities=500, seed=15)
    bad_def = parse_models([{"slot": "default",
                             "champion": {"name": "flipped", "factory": "models.sabotage:flipped_labels"}}])[0]
    bad = ModelGroup(bad_def)
    for event, label in stream(500, entities=10, seed=99):
        bad.score_and_learn({k: v for k, v in event.items() if k.startswith("x")}, label)
    with running(s, logs=tmp_path):
        wait_ready(s, 90)
        registry = open_registry(s)
        publish(s, items[:1000], rate_per_s=300, label_delay_s=0.2)
        wait_metric(learner_url(s), "freshet_examples_learned_total", 1000, 60)
        assert registry.current_version("default") is not None, "the learner's snapshots are current"
        meta = registry.save("default", bad.state(), make_current=False, champion="flipped", examples_learned=500)
        out = freshet_cli(s, "models", "promote", "default", str(meta.version))
        assert out.returncode == 0 and "goes to canary" in out.stdout, out.stdout + out.stderr
        publish(s, items[1000:], rate_per_s=300, label_delay_s=0.2)
        preds = [v for _, v, _ in read_until(s, "predictions", done=lambda r: len(r) >= n, timeout_s=240)]
        wait_metric(learner_url(s), "freshet_examples_learned_total", n, 180)
        drift = [v for _, v, _ in read_until(
            s, "drift", done=lambda r: any(v.get("decision") == "rollback" for _, v, _ in r), timeout_s=30)]
        current = registry.current_version("default")
    name = f"flipped~v{meta.version}"
    canary = [(d["decision"], d["reason"], d["candidate"]) for d in drift if d.get("kind") == "canary"]
    assert canary == [("start", "operator_promote", name), ("rollback", "served_accuracy", name)], canary
    assert current != meta.version
    by_time = sorted(preds, key=lambda p: p["produced_ts"])
    served = [i for i, p in enumerate(by_time) if p["arm"] == name]
    assert served and len(served) / (served[-1] - served[0] + 1) <= 0.1 + 0.02
    assert all(p["arm"] == "lr" for p in by_time[served[-1] + 1:])
    assert len(by_time) - served[-1] > 500
