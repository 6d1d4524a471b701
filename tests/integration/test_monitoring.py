"""The repository's Prometheus config, alert rules and Grafana dashboard on a real Prometheus, scraping a
live worker and learner on the test Kafka and Redis.

One loop serves every test of this module (a module fixture). Prometheus scrapes it every second with
``deploy/prometheus/prometheus.yml`` (ports rewritten) and evaluates ``deploy/prometheus/alerts.yml`` on a
clock 30 times faster: every range window, ``offset`` and ``for:`` is divided by 30 (``for: 5m`` is 10 s),
thresholds unchanged; ``promtool test rules`` proves the durations at full length. Alertmanager receives
what fires. Events are stamped with the wall time they are sent at, and labels wait 5 s (label TTL) for
their prediction, so a label that joins nothing counts as unknown within the phase.

The phases drive the loop into each condition the rules name, in order, and check through the HTTP API
that exactly the matching alerts go pending or firing while the others stay quiet; between phases every
alert must resolve. A copy of one rule with a misspelled metric is loaded beside the real ones, and the
same check must report it: a broken rule fails the test. The dashboard check runs every panel's PromQL
over the loop's time range and a copy with two broken panels must fail it. Then ``freshet report
--screenshot`` draws the loop in headless Chromium, and ``freshet services up --with-monitoring`` starts a
Prometheus of its own on it. The panel and report tests read what the phases produced, so they run after
them (file order) and say so when run alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from PIL import Image

from producers.publish import make_producer, publish
from producers.synthetic import SyntheticStream
from streams.ops import monitoring as mon
from streams.ops import services as svc
from streams.ops.browser import check_page
from streams.ops.procs import scrape
from streams.ops.readers import TopicReader
from streams.ops.report_cli import REPORT_PARTS
from streams.settings import Settings
from tests.integration.loop_helpers import learner_url, running, wait_metric, with_ports, worker_url

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "pipelines" / "demo.toml"
SPEED_UP = 30
BROKEN_RULE = "BrokenOnPurposeDeadLettersRising"
MAX_RATE = 100.0  # events/s of the ordinary stream at most (the demo's rate)


@dataclass
class Loop:
    settings: Settings
    api: mon.PrometheusAPI
    alertmanager_url: str
    stream: Iterator[tuple[dict[str, Any], Any]]
    started: float
    rate: float = 100.0  # events/s of the ordinary stream, set from what the worker sustains (warm-up)
    seen: dict[str, set[str]] = field(default_factory=dict)  # phase → alerts seen active

    def take(self, n: int) -> list[tuple[dict[str, Any], Any]]:
        return list(islice(self.stream, n))


def monitoring_spec(tmp: Path) -> Path:
    """The demo pipeline, with late events dropped (not dead-lettered, so "no predictions" stands alone),
    a champion that cannot learn (learning rates 0), so the challenger is promoted early, concept drift
    that only alerts (a reset would hide the accuracy drop that the accuracy alert is about), and no
    prediction drift monitor: the promotion really changes the served predictions' distribution, which
    would raise a (right) prediction drift alert in the healthy phase."""
    text = SPEC.read_text()
    text = text.replace('late_policy = "dead-letter"', 'late_policy = "drop"')
    assert 'policy = "reset_and_retrain"' in text and "[drift.prediction]\n" in text
    text = text.replace('policy = "reset_and_retrain"', 'policy = "alert"')
    text = text.replace("[drift.prediction]\n", "[drift.prediction]\nenabled = false\n")
    champion = '[models.champion]\nname = "lr"\nfactory = "logistic_regression"\n'
    assert champion in text
    text = text.replace(champion, champion + "params = { lr = 0.0, intercept_lr = 0.0 }\n")
    path = tmp / "monitoring.toml"
    path.write_text(text)
    return path


def rule_files(tmp: Path) -> list[Path]:
    """The repository's rules, 30x faster, and a copy of one rule broken on purpose (a misspelled metric)."""
    doc = yaml.safe_load(mon.ALERTS_YML.read_text())
    fast = tmp / "alerts-fast.yml"
    fast.write_text(yaml.safe_dump(mon.scale_rules(doc, SPEED_UP), sort_keys=False))
    rule = next(r for g in doc["groups"] for r in g["rules"] if r["alert"] == "FreshetDeadLettersRising")
    misspelled = rule["expr"].replace("freshet_dead_letters_total", "freshet_dead_letter_total")
    broken = {**rule, "alert": BROKEN_RULE, "expr": misspelled}
    path = tmp / "alerts-broken.yml"
    path.write_text(yaml.safe_dump(mon.scale_rules({"groups": [{"name": "broken", "rules": [broken]}]}, SPEED_UP)))
    return [fast, path]


@pytest.fixture(scope="module")
def loop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    services: Settings = request.getfixturevalue("services")
    tmp = tmp_path_factory.mktemp("monitoring")
    tag = uuid.uuid4().hex[:6]
    s = with_ports(
        services.with_(topic_prefix=f"{services.topic_prefix}mon-{tag}-", app_id=f"{services.app_id}-mon-{tag}",
                       prometheus_port=svc.free_port(), alertmanager_port=svc.free_port()),
        spec=monitoring_spec(tmp), snapshot_every=500, label_ttl_s=5.0, rolling_window=500,
    )  # fmt: skip
    config = mon.prometheus_config(s, rule_files=rule_files(tmp), scrape_interval_s=1, evaluation_interval_s=1,
                                   alertmanager_port=s.alertmanager_port)  # fmt: skip
    stops = []
    try:
        if mon.start_alertmanager(s):
            stops.append(mon.stop_alertmanager)
        if mon.start_prometheus(s, config):
            stops.append(mon.stop_prometheus)
        api = mon.PrometheusAPI(f"http://127.0.0.1:{s.prometheus_port}")
        stream = iter(SyntheticStream(kind="hyperplane", n_events=400_000, n_entities=50, seed=5,
                                      start_ts=time.time(), step_s=1.0 / MAX_RATE, drift_at=[]))  # fmt: skip
        with running(s, logs=tmp / "logs"):
            api.wait_targets_up(60)
            yield Loop(s, api, f"http://127.0.0.1:{s.alertmanager_port}", stream, time.time())
    finally:
        for stop in reversed(stops):
            stop(s)


# --- checking alerts ----------------------------------------------------------------------------------


def phase_problems(must: set[str], allowed: set[str], seen: set[str]) -> list[str]:
    """What is wrong with the alerts seen in a phase: a matching one that never went active, or another one.

    >>> phase_problems({"A"}, {"B"}, {"A", "B"}), phase_problems({"A"}, set(), {"C"})
    ([], ['A never went pending or firing', 'C went active but should stay quiet'])
    """
    out = [f"{name} never went pending or firing" for name in sorted(must - seen)]
    out += [f"{name} went active but should stay quiet" for name in sorted(seen - must - allowed)]
    return out


# The alerts a worker starved of CPU raises. They are right when the worker is measurably slow: a phase
# tolerates them only when the predictions it published say so (p99 latency above the rule's 0.5 s in one of
# the rule's windows), and the healthy phase, which must be quiet, is tried again on a quieter stretch.
SLOW_ALERTS = frozenset({"FreshetPredictionLatencyHigh", "FreshetFeaturesStale"})
SLOW_P99_MS = 500.0


def slowest_p99_ms(predictions: list[dict[str, Any]], window_s: float) -> float:
    """The highest p99 of event→prediction latency (ms) over consecutive ``window_s`` windows of publication.

    >>> preds = [{"produced_ts": 100.0 + i, "ingest_ts": 100.0 + i - (0.9 if i == 15 else 0.01)} for i in range(20)]
    >>> slowest_p99_ms(preds, 10.0)
    900.0
    >>> slowest_p99_ms([], 10.0)
    0.0
    """
    windows: dict[int, list[float]] = {}
    for p in predictions:
        if p.get("ingest_ts") is not None:
            windows.setdefault(int(float(p["produced_ts"]) // window_s), []).append(
                round((float(p["produced_ts"]) - float(p["ingest_ts"])) * 1000.0, 1))  # fmt: skip
    worst = 0.0
    for values in windows.values():
        values.sort()
        worst = max(worst, values[max(0, -(-99 * len(values) // 100) - 1)])
    return worst


@dataclass
class Phase:
    name: str
    states: dict[str, set[str]]  # pending, firing, alertmanager → alert names
    slowest_p99_ms: float
    problems: list[str]

    @property
    def seen(self) -> set[str]:
        return self.states["pending"] | self.states["firing"]


def run_phase(
    loop: Loop,
    name: str,
    action: Callable[[], None],
    *,
    must: set[str],
    allowed: frozenset[str] = frozenset(),
    firing: set[str] = frozenset(),  # type: ignore[assignment]
    timeout_s: float = 60.0,
    quiet_timeout_s: float = 90.0,
    tolerate_slow: bool = True,
    check: bool = True,
) -> Phase:
    """Run ``action`` (it publishes) while watching the alerts and the predictions; then wait until every
    alert resolves.

    Fails (or, without ``check``, lists the problems) when a ``must`` alert never went active (``firing``
    ones: never fired) or an alert outside ``must | allowed`` did, during the phase or while resolving.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    predictions: list[dict[str, Any]] = []
    with TopicReader(loop.settings, "predictions", from_end=True) as reader:
        reader.poll(0.5)  # assigned and at the end before the phase publishes
        worker = threading.Thread(target=run, name=f"phase-{name}", daemon=True)
        worker.start()
        states: dict[str, set[str]] = {"pending": set(), "firing": set(), "alertmanager": set()}
        deadline = time.monotonic() + timeout_s
        while True:
            for alert, state in loop.api.alert_states().items():
                states[state].add(alert)
            states["alertmanager"] |= alertmanager_alerts(loop)
            predictions += [v for _, v, _ in reader.poll(0.1) if isinstance(v, dict)]
            active = states["pending"] | states["firing"]
            if not worker.is_alive() and (
                (must <= active and firing <= states["firing"]) or time.monotonic() > deadline
            ):
                break
            time.sleep(0.3)
        assert not errors, f"phase {name}: publishing failed: {errors[0]!r}"
        quiet_deadline = time.monotonic() + quiet_timeout_s
        while (now := loop.api.alert_states()) and time.monotonic() < quiet_deadline:
            for alert, state in now.items():
                states[state].add(alert)
            predictions += [v for _, v, _ in reader.poll(0.1) if isinstance(v, dict)]
            time.sleep(0.3)
    slowest = slowest_p99_ms(predictions, mon.duration_s("5m") / SPEED_UP)
    if tolerate_slow and slowest > SLOW_P99_MS:
        allowed = allowed | SLOW_ALERTS
    phase = Phase(name, states, slowest, [])
    loop.seen[name] = phase.seen
    phase.problems = phase_problems(must, set(allowed), phase.seen)
    phase.problems += [f"{a} never fired (only pending)" for a in sorted(firing - states["firing"])]
    if quiet_timeout_s and now:
        phase.problems.append(f"alerts still active {quiet_timeout_s:g} s after the phase: {now}")
    if check:
        assert not phase.problems, (
            f"phase {name}: {'; '.join(phase.problems)} (seen {states}; slowest p99 {slowest:.0f} ms)"
        )
    return phase


def alertmanager_alerts(loop: Loop) -> set[str]:
    """Names of the alerts Alertmanager holds now (what Prometheus sent it while they fire)."""
    with urllib.request.urlopen(f"{loop.alertmanager_url}/api/v2/alerts", timeout=10) as resp:
        return {a["labels"]["alertname"] for a in json.loads(resp.read())}


def send(loop: Loop, items: list[tuple[dict[str, Any], Any]], *, shift_s: float = 0.0, **kwargs: Any) -> None:
    """Publish at ``loop.rate`` (or ``rate``), each event stamped with the wall time it is sent at (plus
    ``shift_s``): event time keeps pace with the clock, so the label TTL means seconds."""

    def stamped() -> Iterator[tuple[dict[str, Any], Any]]:
        for event, label in items:
            yield {**event, "ts": time.time() + shift_s}, label

    stats = publish(loop.settings, stamped(), rate_per_s=kwargs.pop("rate", loop.rate), **kwargs)
    assert stats.events == len(items)


# --- the tests -----------------------------------------------------------------------------------------


def test_every_rule_is_loaded_and_healthy(loop: Loop) -> None:
    names = set(mon.alert_names())
    deadline = time.monotonic() + 20
    while (health := loop.api.rule_health()) and any(v == "unknown" for v in health.values()):
        assert time.monotonic() < deadline, health
        time.sleep(0.5)
    assert names | {BROKEN_RULE} == set(health), health
    assert all(v == "ok" for v in health.values()), health
    targets = {t["labels"]["component"]: t["health"] for t in loop.api.targets()}
    assert targets == {"worker": "up", "learner": "up"}


def validated(s: Settings) -> float:
    return scrape(worker_url(s)).get('freshet_events_total{stage="validate"}', 0.0)


@pytest.mark.timeout(900)  # 4 to 8 minutes: six phases, each waiting for its alerts to resolve
def test_alerts_fire_for_their_condition_and_only_then(loop: Loop) -> None:
    s = loop.settings
    # Warm-up: the models learn, the challenger is promoted over the champion that cannot learn, the drift
    # detectors fill their reference windows. Alerts of a system starting from nothing may fire here.
    # It also measures what the worker sustains on this machine: the ordinary stream runs at a quarter of
    # that (at most the demo's 100 events/s), so "healthy" means a stream the worker keeps up with.
    start, before = time.monotonic(), validated(s)
    send(loop, loop.take(3000), rate=0.0)
    assert wait_metric(learner_url(s), "freshet_examples_learned_total", 3000, 300) >= 3000
    capacity = (validated(s) - before) / (time.monotonic() - start)
    loop.rate = max(10.0, min(MAX_RATE, capacity / 4))
    assert wait_metric(learner_url(s), "freshet_promotions_total", 1, 30) >= 1
    deadline = time.monotonic() + 180
    while (active := loop.api.alert_states()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not active, f"alerts of the warm-up did not resolve: {active}"
    rate = loop.rate

    # A healthy stream: nothing fires, not even pending. On a machine shared with other work the worker can
    # stall for seconds; then the latency alerts are right, the stretch was not healthy, and it is tried again.
    tries = []
    for _ in range(3):
        healthy = run_phase(loop, "healthy", lambda: send(loop, loop.take(int(rate * 20))), must=set(),
                            tolerate_slow=False, check=False)  # fmt: skip
        tries.append(healthy)
        if not healthy.problems:
            break
        assert healthy.seen <= SLOW_ALERTS and healthy.slowest_p99_ms > SLOW_P99_MS, (
            f"healthy stream: {'; '.join(healthy.problems)} (seen {healthy.states}; "
            f"slowest p99 {healthy.slowest_p99_ms:.0f} ms)"
        )
    assert not tries[-1].problems, "no healthy stretch in 3 tries; the worker's slowest p99 latencies: " + ", ".join(
        f"{t.slowest_p99_ms:.0f} ms" for t in tries)  # fmt: skip

    # 5% of messages malformed: the dead-letter ratio and a new reason. The broken copy of the ratio rule
    # must be reported by the same check that passes the real one.
    def dead_letters() -> None:
        send(loop, loop.take(int(rate * 15)), bad_every=20)

    dead = {"FreshetDeadLettersRising", "FreshetDeadLetterReasonNew"}
    phase = run_phase(loop, "dead letters", dead_letters, must=dead, firing={"FreshetDeadLettersRising"})
    assert phase_problems({BROKEN_RULE}, dead | SLOW_ALERTS, phase.seen) == [
        f"{BROKEN_RULE} never went pending or firing"
    ]
    assert "FreshetDeadLettersRising" in phase.states["alertmanager"], phase.states  # sent while it fired

    # Labels for ids that were never predicted.
    # They wait for their prediction (labels may come first) and count as unknown after the label TTL.
    def unknown_labels() -> None:
        items = loop.take(int(rate * 45))
        producer = make_producer(s)
        for i, (event, label) in enumerate(items):
            value = orjson.dumps({"id": f"ghost-{event['id']}", "label": label, "ts": time.time()})
            producer.send(s.topic("labels"), key=f"ghost-{i}".encode(), value=value)
            if i % 10 == 0:
                producer.flush()
                time.sleep(10 / rate)
        producer.flush()
        producer.close()
        # Labelled events again: their event time moves the join's watermark past the last ghost label's
        # wait, so every ghost is counted within this phase.
        send(loop, loop.take(int(rate * 10)))

    run_phase(loop, "labels not joining", unknown_labels, must={"FreshetLabelsNotJoining"})

    # Events keep arriving, but all behind the watermark (a replay of an hour ago): validated, no prediction.
    run_phase(loop, "no predictions", lambda: send(loop, loop.take(int(rate * 20)), shift_s=-3600, send_labels=False),
              must={"FreshetNoPredictions"})  # fmt: skip

    # The concept changes (the labels flip): the error stream drifts (concept drift at once) and the rolling
    # accuracy falls under the cumulative one (the policy here only alerts, so the model relearns by itself).
    # The flipped concept goes on until the models have relearnt it and the accuracy alert resolved.
    accuracy = "FreshetOnlineAccuracyDropped"

    def flip() -> None:
        send(loop, loop.take(300))
        seen: set[str] = set()
        for _ in range(60):  # at most 6,000 flipped events
            send(loop, [(e, not y if isinstance(y, bool) else 1 - y) for e, y in loop.take(100)])
            active = set(loop.api.alert_states())
            seen |= active
            if {"FreshetConceptDrift", accuracy} <= seen and accuracy not in active:
                return

    run_phase(loop, "concept drift", flip, must={"FreshetConceptDrift", accuracy},
              allowed=frozenset({"FreshetDataDrift"}), timeout_s=120, quiet_timeout_s=120)  # fmt: skip

    # Last, as it leaves a backlog behind: a burst far faster than the worker consumes. The lag climbs, and
    # with it the latency and the features' age; the burst's predictions, never labelled, expire after the
    # label TTL. Nothing else fires.
    burst = int(min(200_000, 20_000 + 30 * capacity))

    def lag() -> None:
        send(loop, loop.take(burst), rate=0.0, send_labels=False)

    behind = SLOW_ALERTS | {"FreshetLabelsNotJoining"}
    run_phase(loop, "consumer lag", lag, must={"FreshetConsumerLagHigh"}, allowed=behind, quiet_timeout_s=0)


def test_every_dashboard_panel_returns_data(loop: Loop) -> None:
    # After the phases, so every condition a panel shows has happened within the loop's time range.
    if "concept drift" not in loop.seen:
        pytest.fail("runs after test_alerts_fire_for_their_condition_and_only_then (the phases feed the panels)")
    dashboard = mon.load_dashboard()
    end = time.time()
    results = mon.check_dashboard(loop.api, dashboard, start=loop.started, end=end)
    queries = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(results) == len(queries) > 0
    bad = [r.describe() for r in results if not r.ok]
    assert not bad, "panels without data:\n" + "\n".join(bad)
    # Each value the dashboard's variable offers, on its own, shows in at least one of its panels (a value
    # may belong to one scope only, e.g. promotion_accuracy_window is cumulative).
    for value in loop.api.label_values("metric", match="freshet_online_metric"):
        using = [q for q in mon.dashboard_queries(dashboard, {"metric": value}) if "freshet_online_metric" in q.expr]
        shown = [q.panel for q in using if loop.api.query_range(q.expr, loop.started, end, 5.0)]
        assert using and shown, f"metric={value}: no panel shows it ({[q.expr for q in using]})"

    # Broken on purpose: a misspelled metric and a query that does not parse fail the check.
    broken = json.loads(json.dumps(dashboard))
    panels = {p["title"]: p for p in broken["panels"]}
    panels["Events/s by stage"]["targets"][0]["expr"] = "sum by (stage) (rate(freshet_event_total[1m]))"
    panels["Model version"]["targets"][0]["expr"] = "max by (model, role) (freshet_model_version"
    failing = {r.query.panel: r for r in mon.check_dashboard(loop.api, broken, start=loop.started, end=end) if not r.ok}
    assert set(failing) == {"Events/s by stage", "Model version"}
    assert failing["Events/s by stage"].error is None and failing["Events/s by stage"].series == 0
    assert "parse error" in (failing["Model version"].error or "")


def freshet(s: Settings, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **s.to_env()}
    return subprocess.run([sys.executable, "-m", "streams", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout_s)  # fmt: skip


def test_the_report_of_the_loop_opens_in_chromium(loop: Loop, tmp_path: Path) -> None:
    if "concept drift" not in loop.seen:
        pytest.fail("runs after test_alerts_fire_for_their_condition_and_only_then (the phases feed the report)")
    out, shot = tmp_path / "report", tmp_path / "report.png"
    rep = freshet(loop.settings, "report", "--out", str(out), "--screenshot", str(shot), "--timeout-s", "60")
    assert rep.returncode == 0, rep.stderr
    assert {str(out / n) for n in ("report.html", "metrics_examples.png", "metrics_time.png", "latency.png")} | {
        str(shot)} <= set(rep.stdout.splitlines()), rep.stdout  # fmt: skip
    assert rep.stderr == "", "progress goes to a terminal only; the screenshot check found nothing wrong"
    check = check_page(out / "report.html")
    assert check.problems(REPORT_PARTS) == []
    assert len(check.images) == 3 and all(i["width"] > 600 for i in check.images)
    # The headline: served against shadow, the versions, the drifts and the promotion the phases caused.
    assert "served default/lr_fast" in check.text and "shadow" in check.text
    assert "workers serve lr_fast@" in check.text
    assert re.search(r"[1-9]\d* concept drift\(s\)", check.text) and re.search(r"[1-9]\d* promotion\(s\)", check.text)
    with Image.open(shot) as img:
        assert img.width >= 1280 and img.height > 1500  # the whole page, wider when a table is


def test_services_up_with_monitoring_starts_prometheus_beside_kafka_and_redis(loop: Loop, tmp_path: Path) -> None:
    # Kafka and Redis already run (the session's): only Prometheus and Alertmanager start. A cache folder of
    # its own, so `services down` stops only what this command started.
    s = loop.settings.with_(cache_dir=tmp_path / "cache", prometheus_port=svc.free_port(),
                            alertmanager_port=svc.free_port())  # fmt: skip
    up = freshet(s, "services", "up", "--with-monitoring")
    try:
        assert up.returncode == 0, up.stderr
        assert "started: alertmanager, prometheus" in up.stdout
        assert f"Prometheus UI: http://127.0.0.1:{s.prometheus_port}" in up.stdout
        api = mon.PrometheusAPI(f"http://127.0.0.1:{s.prometheus_port}")
        api.wait_targets_up(60)  # the loop's worker and learner, from the repository's config
        assert {t["labels"]["component"] for t in api.targets()} == {"worker", "learner"}
        assert set(mon.alert_names()) == set(api.rule_health())
        status = freshet(s, "services", "status")
        assert re.search(rf"prometheus\s+127\.0\.0\.1:{s.prometheus_port} running \(pid \d+, started by freshet\)",
                         status.stdout), status.stdout  # fmt: skip
        assert re.search(r"kafka\s+\S+ running\n", status.stdout), status.stdout  # not ours: no pid
    finally:
        down = freshet(s, "services", "down")
    assert down.returncode == 0 and "stopped: prometheus, alertmanager" in down.stdout, down.stdout + down.stderr
    assert not svc.port_open("127.0.0.1", s.prometheus_port) and not svc.port_open("127.0.0.1", s.alertmanager_port)
    assert svc.port_open(s.kafka_host, s.kafka_port)  # the session's broker is untouched
