"""``freshet watch``: what the live terminal view shows, as pure state and rendering (no Kafka here).

The CLI feeds a :class:`WatchState` with what it reads (``metrics`` and ``drift`` messages, dead letters,
throughput and latency it computes from the ``predictions`` topic or /metrics) and redraws
:func:`render` with ``rich.live.Live``. Tests read the screen with :func:`render_text`.

>>> state = WatchState()
>>> for n, acc in enumerate([0.9, 0.91, 0.9, 0.6, 0.7, 0.85]):
...     state.on_metrics({"v": 1, "model": "default/lr", "role": "champion", "version": 2, "n": 100 * n,
...                       "metrics": {"accuracy_rolling": acc, "accuracy": 0.85}})
>>> state.on_throughput(1250.0, 3.2, 18.5)
>>> screen = render_text(state, width=100)
>>> "default/lr" in screen and "1,250 events/s" in screen
True
>>> sparkline([0.9, 0.91, 0.9, 0.6, 0.7, 0.85])
'███▁▃▇'
"""

from __future__ import annotations

import io
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

SPARK_CHARS = "▁▂▃▄▅▆▇█"
# Which rolling metric draws a model's sparkline, in order of preference.
SPARK_METRICS = ("accuracy_rolling", "roc_auc_rolling", "f1_rolling", "r2_rolling", "mae_rolling", "rmse_rolling")
_SHOWN_METRICS = ("accuracy", "roc_auc", "f1", "log_loss", "mae", "rmse", "r2")
NA = "-"


def sparkline(values: Iterable[float | None], lo: float | None = None, hi: float | None = None) -> str:
    """One character per value, ``▁`` (lowest) to ``█`` (highest); missing values are blanks.

    The scale is the values' own range unless ``lo``/``hi`` are given; a flat series is drawn mid-height.

    >>> sparkline([1, 2, 3, 4, 5, 6, 7, 8])
    '▁▂▃▄▅▆▇█'
    >>> sparkline([0.5, None, 0.5])
    '▄ ▄'
    >>> sparkline([0.0, 2.0, 4.0], lo=0.0, hi=8.0)
    '▁▃▅'
    """
    vals = [None if v is None or not math.isfinite(v) else float(v) for v in values]
    finite = [v for v in vals if v is not None]
    if not finite:
        return " " * len(vals)
    low = min(finite) if lo is None else lo
    high = max(finite) if hi is None else hi
    top = len(SPARK_CHARS) - 1
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif high <= low:
            out.append(SPARK_CHARS[top // 2])
        else:
            i = round((min(max(v, low), high) - low) / (high - low) * top)
            out.append(SPARK_CHARS[i])
    return "".join(out)


class WatchState:
    """Everything the watch view shows, updated message by message.

    ``history`` is how many points each sparkline keeps; ``max_alerts`` how many recent drift alerts are
    listed (newest first). ``clock`` (epoch seconds) stamps the header.

    >>> s = WatchState(max_alerts=2)
    >>> for i in range(3):
    ...     s.on_drift({"kind": "feature", "subject": f"f{i}", "detector": "window", "statistic": "psi",
    ...                 "value": 0.3, "threshold": 0.2, "event_ts": 0.0, "offset": i, "level": "drift"})
    >>> [a["subject"] for a in s.alerts], s.alert_counts["feature"]
    (['f2', 'f1'], 3)
    >>> s.on_dead_letter({"reason": "bad_json", "source_topic": "events"})
    >>> s.dead_letters
    Counter({'bad_json': 1})
    """

    def __init__(self, history: int = 40, max_alerts: int = 8, clock: Callable[[], float] = time.time) -> None:
        self.history = history
        self.max_alerts = max_alerts
        self.clock = clock
        self.models: dict[str, dict[str, Any]] = {}
        self.spark: dict[str, deque[float | None]] = {}
        self.spark_metric: dict[str, str] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=max_alerts)
        self.alert_counts: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.dead_letter_sources: Counter[str] = Counter()
        self.events_per_s: float | None = None
        self.p50_ms: float | None = None
        self.p99_ms: float | None = None
        self.throughput: deque[float | None] = deque(maxlen=history)
        self.n_metrics = 0
        self.last_update: float | None = None
        self.staleness_examples: float | None = None
        self.staleness_s: float | None = None
        self.plans: dict[str, dict[str, float]] = {}  # routed slot -> its bandit's last shares

    def on_metrics(self, d: Mapping[str, Any]) -> None:
        """A ``metrics`` snapshot (see :mod:`streams.ops.report` for its shape); others are ignored."""
        if not isinstance(d, Mapping) or d.get("model") is None:
            return
        if d.get("role") == "routing":  # a bandit's new plan: its shares show on the slot's arm rows
            self.plans[str(d.get("slot"))] = dict(d.get("shares") or {})
            return
        model = str(d["model"])
        self.models[model] = dict(d)
        metrics = d.get("metrics") or {}
        name = self.spark_metric.get(model) or next((m for m in SPARK_METRICS if m in metrics), None)
        if name is None:
            name = next((str(m) for m in metrics if str(m).endswith("_rolling")), None)
        if name is not None:
            self.spark_metric[model] = name
            value = metrics.get(name)
            series = self.spark.setdefault(model, deque(maxlen=self.history))
            series.append(float(value) if isinstance(value, int | float) else None)
        self.n_metrics += 1
        self.last_update = self.clock()

    def on_drift(self, d: Mapping[str, Any]) -> None:
        """A ``drift`` message (a :class:`models.drift.DriftAlert` dict)."""
        if not isinstance(d, Mapping):
            return
        self.alerts.appendleft(dict(d))
        self.alert_counts[str(d.get("kind", "?"))] += 1
        self.last_update = self.clock()

    def on_dead_letter(self, d: Mapping[str, Any]) -> None:
        """A ``dead-letter`` message: counted by reason (and by source topic)."""
        reason = str(d.get("reason", "unknown")) if isinstance(d, Mapping) else "unknown"
        self.dead_letters[reason] += 1
        if isinstance(d, Mapping) and d.get("source_topic"):
            self.dead_letter_sources[str(d["source_topic"])] += 1
        self.last_update = self.clock()

    def on_throughput(self, events_per_s: float, p50_ms: float | None, p99_ms: float | None) -> None:
        """The latest rate (events/s) and event-to-prediction latency percentiles (ms)."""
        self.events_per_s = events_per_s
        self.p50_ms = p50_ms
        self.p99_ms = p99_ms
        self.throughput.append(events_per_s)
        self.last_update = self.clock()

    def on_staleness(self, examples: float | None, seconds: float | None) -> None:
        """How far the served model is behind the learner, as the worker knows it (the worst slot)."""
        self.staleness_examples = examples
        self.staleness_s = seconds


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return NA
    return f"{value:.{digits}f}"


def _ts(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return NA
    return datetime.fromtimestamp(float(value), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _header(state: WatchState) -> Panel:
    rate = NA if state.events_per_s is None else f"{state.events_per_s:,.0f} events/s"
    text = Text()
    text.append("throughput ", style="bold")
    text.append(rate)
    if len(state.throughput) > 1:
        text.append("  " + sparkline(state.throughput), style="cyan")
    text.append("   latency ", style="bold")
    text.append(f"p50 {_fmt(state.p50_ms, 1)} ms  p99 {_fmt(state.p99_ms, 1)} ms")
    total_dead = sum(state.dead_letters.values())
    text.append("   dead letters ", style="bold")
    text.append(str(total_dead), style="red" if total_dead else "")
    text.append("   drift alerts ", style="bold")
    text.append(str(sum(state.alert_counts.values())), style="yellow" if state.alert_counts else "")
    if state.staleness_examples is not None:
        text.append("   served model behind by ", style="bold")
        text.append(f"{state.staleness_examples:,.0f} examples / {_fmt(state.staleness_s, 1)} s")
    updated = "waiting for data" if state.last_update is None else f"updated {_ts(state.last_update)} UTC"
    return Panel(text, title="freshet watch", subtitle=updated, expand=True)


def _models_table(state: WatchState) -> RenderableType:
    if not state.models:
        return Panel(Text("no metric snapshots yet (the metrics topic fills as models learn)"), title="Models")
    present = {
        str(k).removesuffix("_rolling") for d in state.models.values() for k in (d.get("metrics") or {})
    }
    shown = [m for m in _SHOWN_METRICS if m in present][:3]
    table = Table(
        title="Models: test-then-train metrics of the learner's models, and what users were served "
        "(role served: served predictions scored on joined labels) (rolling / cumulative)",
        expand=True,
    )
    table.add_column("model", no_wrap=True)
    table.add_column("role")
    table.add_column("ver", justify="right")
    table.add_column("examples", justify="right")
    for m in shown:
        table.add_column(m, justify="right", no_wrap=True)
    table.add_column("behind", justify="right")
    table.add_column(f"trend ({state.history} snapshots)", no_wrap=True)
    rank = {"champion": 0, "served": 1, "arm": 2}
    ordered = sorted(state.models.items(), key=lambda kv: (rank.get(str(kv[1].get("role")), 2), kv[0]))
    for model, d in ordered:
        metrics = d.get("metrics") or {}
        cells = [f"{_fmt(metrics.get(m + '_rolling'))} / {_fmt(metrics.get(m))}" for m in shown]
        series = list(state.spark.get(model, []))
        finite = [v for v in series if v is not None]
        trend = sparkline(series)
        if finite:
            trend += f" {min(finite):.2f}..{max(finite):.2f}"
        role = str(d.get("role", ""))
        # Served rows: how many examples the serving version was behind the learner, on average.
        behind = metrics.get("staleness_examples_mean") if role == "served" else None
        n = d.get("n")
        if role == "arm":  # a routed slot's arm: what it served (issue 10), its share now, the experiment
            share = state.plans.get(str(d.get("slot")), {}).get(str(d.get("name")), d.get("share"))
            role = f"arm {_fmt(100 * share, 0) if isinstance(share, int | float) else NA}% {d.get('experiment', '')}"
            n = int(metrics["n"]) if isinstance(metrics.get("n"), int | float) else None
        table.add_row(
            Text(model, style="bold" if role == "champion" else ""), role, str(d.get("version", NA)),
            f"{n:,}" if isinstance(n, int) else NA, *cells, _fmt(behind, 1),
            Text(trend, style="green"),
        )
    return table


def _alerts_table(state: WatchState) -> RenderableType:
    if not state.alerts:
        return Panel(Text("no drift alerts"), title="Recent drift alerts")
    table = Table(title="Recent drift alerts (newest first)", expand=True)
    for col in ("event time (UTC)", "kind", "level", "subject", "detector", "statistic", "offset"):
        table.add_column(col, no_wrap=col in ("event time (UTC)", "subject"))
    for a in state.alerts:
        level = str(a.get("level", "drift"))
        stat = f"{a.get('statistic', '?')}={_fmt(a.get('value'))} (thr {_fmt(a.get('threshold'))})"
        table.add_row(
            _ts(a.get("event_ts")), str(a.get("kind", "?")),
            Text(level, style="red" if level == "drift" else "yellow"), str(a.get("subject", "?")),
            str(a.get("detector", "?")), stat, str(a.get("offset", NA)),
        )
    return table


def _dead_letters_table(state: WatchState) -> RenderableType:
    if not state.dead_letters:
        return Panel(Text("no dead letters"), title="Dead letters")
    table = Table(title="Dead letters by reason")
    table.add_column("reason")
    table.add_column("count", justify="right")
    for reason, count in state.dead_letters.most_common():
        table.add_row(reason, str(count))
    return table


def render(state: WatchState) -> RenderableType:
    """The whole screen: header (throughput, latency, totals), models, recent drift alerts, dead letters."""
    return Group(_header(state), _models_table(state), _alerts_table(state), _dead_letters_table(state))


def render_text(state: WatchState, width: int = 120) -> str:
    """The screen as plain text, ``width`` columns wide (for tests and logs)."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None, force_terminal=False)
    console.print(render(state))
    return console.export_text()
