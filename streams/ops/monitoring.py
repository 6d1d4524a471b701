"""Local Prometheus and Alertmanager without Docker, the checks of freshet's rules and dashboard on them.

Prometheus (Debian's ``prometheus``, installed with apt-get when missing, like Redis) runs on 127.0.0.1
with the repository's own ``deploy/prometheus/prometheus.yml`` rewritten for this machine: the worker and
learner targets point at ``metrics_port`` and ``metrics_port + 1`` and the rule files at absolute paths.
Alertmanager (Debian's ``prometheus-alertmanager``) is optional: started when installed, with a receiver
that only keeps the alerts (add your own in its config). Both keep their files under ``cache_dir`` and
are stopped by PID, as :mod:`streams.ops.services` does for Kafka and Redis.

The checks: ``promtool`` over the config, the rules and their unit tests (``deploy/prometheus/
alerts_test.yml``); against a running Prometheus, every dashboard panel's PromQL must return data
(:func:`check_dashboard`) and every rule must evaluate without error (:meth:`PrometheusAPI.rule_health`).

>>> config = prometheus_config(Settings(metrics_port=19108), rule_files=[Path("/r/alerts.yml")])
>>> [t["targets"] for t in config["scrape_configs"][0]["static_configs"]]
[['127.0.0.1:19108'], ['127.0.0.1:19109']]
>>> config["rule_files"]
['/r/alerts.yml']
"""
# ruff: noqa: SLF001  (Prometheus and Alertmanager run through streams.ops.services' own process helpers:
# one implementation of locks, pid files, logs and stopping for every service freshet starts)

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from streams.errors import FreshetError
from streams.ops import services as svc
from streams.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST_YML = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD_JSON = DEPLOY / "grafana" / "dashboards" / "freshet.json"
START_TIMEOUT_S = 60.0
# Which port each scrape target of the repository's config gets, by its `component` label.
_COMPONENT_PORT_OFFSET = {"worker": 0, "learner": 1}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class PrometheusError(FreshetError, RuntimeError):
    """Prometheus answered with an error (a query that does not parse, a server that is down)."""


# --- configuration ---------------------------------------------------------------------------------


def prometheus_config(
    settings: Settings,
    *,
    rule_files: Sequence[Path] | None = None,
    scrape_interval_s: float | None = None,
    evaluation_interval_s: float | None = None,
    alertmanager_port: int | None = None,
    source: Path = PROMETHEUS_YML,
) -> dict[str, Any]:
    """The repository's Prometheus config for this machine: targets on 127.0.0.1, absolute rule files.

    The worker target gets ``settings.metrics_port`` and the learner ``metrics_port + 1`` (what
    ``freshet learn`` binds by default); intervals are kept unless given (tests shorten them).
    """
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    if scrape_interval_s is not None:
        config.setdefault("global", {})["scrape_interval"] = _duration(scrape_interval_s)
        config["global"]["scrape_timeout"] = _duration(scrape_interval_s)
    if evaluation_interval_s is not None:
        config.setdefault("global", {})["evaluation_interval"] = _duration(evaluation_interval_s)
    base = source.parent
    files = rule_files if rule_files is not None else [base / f for f in config.get("rule_files", [])]
    config["rule_files"] = [str(Path(f).resolve()) for f in files]
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            component = static.get("labels", {}).get("component")
            if component not in _COMPONENT_PORT_OFFSET:
                raise PrometheusError(
                    f"{source}: a target without a known component label ({component!r}); "
                    f"label each target with one of {sorted(_COMPONENT_PORT_OFFSET)}"
                )
            static["targets"] = [f"127.0.0.1:{settings.metrics_port + _COMPONENT_PORT_OFFSET[component]}"]
    if alertmanager_port is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]}
    return config


def _duration(seconds: float) -> str:
    """A Prometheus duration.

    >>> _duration(1), _duration(0.5), _duration(600)
    ('1s', '500ms', '600s')
    """
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def duration_s(text: str) -> float:
    """Seconds in a Prometheus duration (``1h30m``, ``5m``, ``500ms``).

    >>> duration_s("1h30m"), duration_s("500ms"), duration_s("0m")
    (5400.0, 0.5, 0.0)
    """
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return float(sum(int(n) * _UNIT_S[u] for n, u in parts))


def scale_rules(doc: Mapping[str, Any], factor: float, *, min_s: float = 1.0) -> dict[str, Any]:
    """A copy of a rules file with every duration divided by ``factor``: range windows, ``offset``, ``for``
    and the seconds of an age test on a ``*_created`` series (``time() - x_created < 300``).

    The live tests run the real rules on a clock ``factor`` times faster (``for: 5m`` becomes 10 s at
    30x); thresholds stay as they are. ``promtool test rules`` proves the durations at full length.

    >>> expr = "increase(x[10m]) > 0 unless increase(x[1h] offset 10m) > 0 or time() - x_created{a='b'} < 300"
    >>> doc = {"groups": [{"name": "g", "rules": [{"alert": "A", "for": "5m", "expr": expr}]}]}
    >>> rule = scale_rules(doc, 30)["groups"][0]["rules"][0]
    >>> rule["for"], rule["expr"]
    ('10s', "increase(x[20s]) > 0 unless increase(x[120s] offset 20s) > 0 or time() - x_created{a='b'} < 10")
    """

    def scaled(text: str) -> str:
        s = duration_s(text)
        return "0s" if s == 0 else _duration(max(min_s, s / factor))

    def expr(text: str) -> str:
        text = re.sub(r"\[((?:\d+(?:ms|s|m|h|d|w|y))+)(:((?:\d+(?:ms|s|m|h|d|w|y))+))?\]",
                      lambda m: f"[{scaled(m.group(1))}" + (f":{scaled(m.group(3))}" if m.group(3) else "") + "]",
                      text)  # fmt: skip
        text = re.sub(r"\boffset\s+((?:\d+(?:ms|s|m|h|d|w|y))+)", lambda m: f"offset {scaled(m.group(1))}", text)
        return re.sub(r"(time\(\)\s*-\s*\w+_created(?:\{[^}]*\})?\s*<\s*)(\d+(?:\.\d+)?)",
                      lambda m: f"{m.group(1)}{float(m.group(2)) / factor:g}", text)  # fmt: skip

    out = json.loads(json.dumps(doc))
    for group in out.get("groups", []):
        for rule in group.get("rules", []):
            rule["expr"] = expr(str(rule["expr"]))
            if "for" in rule:
                rule["for"] = scaled(str(rule["for"]))
    return out


def alert_names(rules_path: Path = ALERTS_YML) -> list[str]:
    """The alert names of a rules file, in file order."""
    doc = yaml.safe_load(rules_path.read_text())
    return [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]


# --- promtool ----------------------------------------------------------------------------------------


def promtool(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run Debian's ``promtool`` (installed with the ``prometheus`` package when missing)."""
    tool = svc.apt_program("promtool", "prometheus")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout_s, check=False)


@dataclass(frozen=True)
class CheckResult:
    what: str
    ok: bool
    output: str


def check_deploy_files(
    config: Path = PROMETHEUS_YML, rules: Path = ALERTS_YML, rule_tests: Path = ALERTS_TEST_YML
) -> list[CheckResult]:
    """``promtool check config``, ``check rules`` and ``test rules`` over the repository's files."""
    results = []
    for what, args in (
        (f"promtool check config {config.name}", ("check", "config", str(config))),
        (f"promtool check rules {rules.name}", ("check", "rules", str(rules))),
        (f"promtool test rules {rule_tests.name}", ("test", "rules", str(rule_tests))),
    ):
        out = promtool(*args)
        results.append(CheckResult(what, out.returncode == 0, (out.stdout + out.stderr).strip()))
    return results


# --- processes ---------------------------------------------------------------------------------------


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _start(settings: Settings, name: str, cmd: list[str]) -> bool:
    port = getattr(settings, svc.SERVICE_PORTS[name])
    if svc.port_open("127.0.0.1", port):
        return False
    with svc._locked(svc._cache(settings) / "run" / f"{name}-{port}.lock"):
        if svc.port_open("127.0.0.1", port):
            return False
        home = svc.service_dir(settings, name)
        log = svc._log_file(settings, name)
        proc = svc._spawn(cmd, log, home, svc._pid_file(settings, name))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(port):
            if proc.poll() is not None:
                svc._pid_file(settings, name).unlink(missing_ok=True)
                raise svc.ServiceError(f"{name} exited with code {proc.returncode} while starting: {svc._tail(log)}")
            if time.monotonic() >= deadline:
                svc._stop(settings, name)
                raise svc.ServiceError(f"{name} was not ready within {START_TIMEOUT_S:g} s: {svc._tail(log)}")
            time.sleep(0.1)
    return True


def start_prometheus(settings: Settings, config: Mapping[str, Any] | None = None) -> bool:
    """Start Prometheus on ``prometheus_port`` with ``config`` (default: :func:`prometheus_config`).

    False when something already listens there. The config is written as JSON (which is YAML) to
    ``<cache_dir>/prometheus/<port>/prometheus.yml``; the data is kept for a day.
    """
    binary = svc.apt_program("prometheus", "prometheus")
    home = svc.service_dir(settings, "prometheus")
    home.mkdir(parents=True, exist_ok=True)
    path = home / "prometheus.yml"
    path.write_text(json.dumps(config if config is not None else prometheus_config(settings), indent=2) + "\n")
    cmd = [binary, f"--config.file={path}", f"--web.listen-address=127.0.0.1:{settings.prometheus_port}",
           f"--storage.tsdb.path={home / 'data'}", "--storage.tsdb.retention.time=1d",
           "--web.enable-lifecycle", "--log.level=warn"]  # fmt: skip
    return _start(settings, "prometheus", cmd)


ALERTMANAGER_CONFIG = {
    # One receiver that notifies nobody: the alerts are listed at /#/alerts and in /api/v2/alerts.
    # Add email, Slack or a webhook to `receivers` to be told.
    "route": {"receiver": "keep", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "10s"},
    "receivers": [{"name": "keep"}],
}


def start_alertmanager(settings: Settings) -> bool:
    """Start Alertmanager on ``alertmanager_port`` (no clustering); False when something listens there."""
    binary = svc.apt_program("prometheus-alertmanager", "prometheus-alertmanager")
    home = svc.service_dir(settings, "alertmanager")
    home.mkdir(parents=True, exist_ok=True)
    path = home / "alertmanager.yml"
    if not path.exists():  # the user's receivers survive a restart
        path.write_text(json.dumps(ALERTMANAGER_CONFIG, indent=2) + "\n")
    cmd = [binary, f"--config.file={path}", f"--web.listen-address=127.0.0.1:{settings.alertmanager_port}",
           f"--storage.path={home / 'data'}", "--cluster.listen-address=", "--log.level=warn"]  # fmt: skip
    return _start(settings, "alertmanager", cmd)


def monitoring_up(settings: Settings) -> list[str]:
    """Prometheus (installed when missing), and Alertmanager when installed; the names of those started."""
    started = []
    with_am = shutil.which("prometheus-alertmanager") is not None
    if with_am and start_alertmanager(settings):
        started.append("alertmanager")
    config = prometheus_config(settings, alertmanager_port=settings.alertmanager_port if with_am else None)
    if start_prometheus(settings, config):
        started.append("prometheus")
    return started


def stop_prometheus(settings: Settings) -> bool:
    """Stop the Prometheus freshet started on ``prometheus_port`` (by PID file); harmless when none runs."""
    return svc._stop(settings, "prometheus")


def stop_alertmanager(settings: Settings) -> bool:
    """Stop the Alertmanager freshet started on ``alertmanager_port``; harmless when none runs."""
    return svc._stop(settings, "alertmanager")


def monitoring_down(settings: Settings) -> list[str]:
    """Stop the Prometheus and Alertmanager freshet started; the names of those stopped."""
    stopped = ["prometheus"] if stop_prometheus(settings) else []
    return stopped + (["alertmanager"] if stop_alertmanager(settings) else [])


# --- the HTTP API --------------------------------------------------------------------------------------


class PrometheusAPI:
    """A small client of Prometheus's HTTP API (``/api/v1``): queries, alerts, rules and targets."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
            except ValueError:
                raise PrometheusError(f"{url}: HTTP {exc.code}") from None
        except OSError as exc:
            raise PrometheusError(f"Prometheus at {self.url} is not reachable: {exc}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; the result's series (``metric``, ``value``)."""
        data = self._get("/api/v1/query", query=expr, time=at)
        return list(data["result"]) if data["resultType"] in ("vector", "matrix") else [data]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        """A range query (what a time-series panel draws); the result's series (``metric``, ``values``)."""
        data = self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step_s)
        return list(data["result"])

    def label_values(self, label: str, match: str | None = None) -> list[str]:
        return sorted(self._get(f"/api/v1/label/{label}/values", **{"match[]": match}))

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending or firing), each with ``labels`` (``alertname``...) and ``state``."""
        return list(self._get("/api/v1/alerts")["alerts"])

    def alert_states(self) -> dict[str, str]:
        """Alert name → ``firing`` or ``pending`` for every active alert (firing wins)."""
        out: dict[str, str] = {}
        for a in self.alerts():
            name = a["labels"]["alertname"]
            if out.get(name) != "firing":
                out[name] = a["state"]
        return out

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its ``health`` (ok, err, unknown) and ``lastError``."""
        return [r for g in self._get("/api/v1/rules")["groups"] for r in g["rules"]]

    def rule_health(self) -> dict[str, str]:
        """Rule name → ``ok`` or the rule's last evaluation error (``unknown`` before the first one)."""
        return {r["name"]: ("ok" if r["health"] == "ok" else r.get("lastError") or r["health"]) for r in self.rules()}

    def targets(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/targets")["activeTargets"])

    def wait_targets_up(self, timeout_s: float = 60.0) -> None:
        """Block until every scrape target is ``up`` (it was scraped successfully)."""
        deadline = time.monotonic() + timeout_s
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(PrometheusError):
                targets = self.targets()
                if targets and all(t["health"] == "up" for t in targets):
                    return
            time.sleep(0.5)
        down = [f"{t['scrapeUrl']} ({t['health']}: {t.get('lastError', '')})" for t in targets] or ["no targets"]
        raise PrometheusError(f"scrape targets not up after {timeout_s:g} s: {', '.join(down)}")


# --- the dashboard ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    """One query of one dashboard panel, with the dashboard's variables substituted."""

    panel: str  # the panel's title
    ref_id: str
    expr: str


@dataclass(frozen=True)
class PanelResult:
    query: PanelQuery
    series: int  # series with at least one finite value over the checked range
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.series > 0

    def describe(self) -> str:
        q = self.query
        why = self.error or ("no data" if not self.series else f"{self.series} series")
        return f"{q.panel!r} {q.ref_id}: {why}: {q.expr}"


# Grafana's built-in interval variables, at what a dashboard of the last hour would get.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__interval_ms": "15000"}


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Replace ``$var``, ``${var}`` and ``[[var]]`` as Grafana does before it sends a query.

    >>> substitute('x{metric=~"$metric"}[$__rate_interval] ${metric} [[metric]]', {"metric": "(a|b)"})
    'x{metric=~"(a|b)"}[1m] (a|b) (a|b)'
    """
    values = {**GRAFANA_BUILTINS, **variables}

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values.get(name, m.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


def variable_values(api: PrometheusAPI, dashboard: Mapping[str, Any]) -> dict[str, list[str]]:
    """The values of each ``label_values(metric, label)`` query variable, as Grafana would offer them."""
    out: dict[str, list[str]] = {}
    for var in dashboard.get("templating", {}).get("list", []):
        definition = var.get("definition") or (var.get("query") or {}).get("query", "")
        m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", str(definition))
        if var.get("type") == "query" and m:
            out[var["name"]] = api.label_values(m.group(2), match=m.group(1))
        elif var.get("type") == "custom":
            out[var["name"]] = [o["value"] for o in var.get("options", [])]
    return out


def all_value(values: Sequence[str]) -> str:
    """The value Grafana's "All" (or a multi-select) takes in a Prometheus regex matcher.

    >>> all_value(["accuracy", "log.loss"])
    '(accuracy|log\\\\.loss)'
    """
    return "(" + "|".join(re.escape(v) for v in values) + ")"


def dashboard_queries(dashboard: Mapping[str, Any], variables: Mapping[str, str]) -> list[PanelQuery]:
    """Every panel target's PromQL (rows' nested panels too), variables substituted."""
    out = []

    def visit(panels: Iterable[Mapping[str, Any]]) -> None:
        for p in panels:
            for t in p.get("targets", []):
                if t.get("hide"):
                    continue
                out.append(PanelQuery(str(p.get("title", p.get("id"))), str(t.get("refId", "")),
                                      substitute(str(t["expr"]), variables)))  # fmt: skip
            visit(p.get("panels", []))

    visit(dashboard.get("panels", []))
    return out


def check_dashboard(
    api: PrometheusAPI, dashboard: Mapping[str, Any], *, start: float, end: float, step_s: float = 5.0
) -> list[PanelResult]:
    """Run every panel's queries over ``[start, end]`` as Grafana would, with each variable at "All".

    A query is fine when at least one series has a finite value in the range: an error, an empty
    result or only NaN (a quantile of nothing) is a panel that would show nothing.
    """
    values = variable_values(api, dashboard)
    missing = [name for name, vals in values.items() if not vals]
    variables = {name: all_value(vals) for name, vals in values.items() if vals}
    results = []
    for q in dashboard_queries(dashboard, variables):
        if unresolved := [n for n in missing if f"${n}" in q.expr or f"${{{n}}}" in q.expr]:
            results.append(PanelResult(q, 0, f"variable ${unresolved[0]} has no values"))
            continue
        try:
            series = api.query_range(q.expr, start, end, step_s)
        except PrometheusError as exc:
            results.append(PanelResult(q, 0, str(exc)))
            continue
        finite = sum(1 for s in series if any(math.isfinite(float(v)) for _, v in s.get("values", [])))
        results.append(PanelResult(q, finite))
    return results


def load_dashboard(path: Path = DASHBOARD_JSON) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))
