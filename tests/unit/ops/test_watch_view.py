"""freshet watch, read off the screen: models with sparklines, alerts, dead letters, throughput."""

from __future__ import annotations

from models.drift import DriftAlert
from streams.ops.watch_view import SPARK_CHARS, WatchState, render, render_text, sparkline

T0 = 1_700_000_000.0


def fed_state() -> WatchState:
    state = WatchState(history=30, max_alerts=3, clock=lambda: T0 + 100)
    for i in range(30):
        rolling = 0.92 if i < 15 else 0.62 + i * 0.005
        for model, role, delta in (("default/lr", "champion", 0.0), ("default/tree", "challenger", -0.1)):
            state.on_metrics({
                "v": 1, "model": model, "slot": "default", "role": role, "version": 3, "n": 250 * i,
                "event_ts": T0 + i, "ts": T0 + i,
                "metrics": {"accuracy_rolling": rolling + delta, "accuracy": 0.88 + delta, "log_loss": 0.31,
                            "champion": 1.0 if role == "champion" else 0.0},
            })
        state.on_throughput(900.0 + 10 * i, 4.25, 21.5)
    state.on_drift(DriftAlert(kind="concept", subject="default/lr", detector="adwin", statistic="error_mean",
                              value=0.38, threshold=0.08, event_ts=T0 + 15, offset=3787, n=3788).to_dict())
    state.on_drift(DriftAlert(kind="feature", subject="amount_mean_300s", detector="window", statistic="psi",
                              value=0.41, threshold=0.2, event_ts=T0 + 16, offset=4012).to_dict())
    for reason in ("bad_json", "bad_json", "missing_field"):
        state.on_dead_letter({"v": 1, "reason": reason, "source_topic": "events"})
    return state


def test_screen_shows_models_with_sparklines() -> None:
    screen = render_text(fed_state(), width=140)
    assert "default/lr" in screen and "default/tree" in screen
    assert "champion" in screen and "challenger" in screen
    lines = [line for line in screen.splitlines() if "default/lr" in line and "champion" in line]
    assert len(lines) == 1
    line = lines[0]
    spark = "".join(c for c in line if c in SPARK_CHARS)
    assert len(spark) == 30 and spark[0] == "█" and "▁" in spark  # the drop after the drift
    assert "7,250" in line  # examples
    assert "0.880" in line  # cumulative accuracy


def test_screen_shows_throughput_latency_and_totals() -> None:
    screen = render_text(fed_state(), width=140)
    assert "1,190 events/s" in screen
    assert "p50 4.2 ms" in screen or "p50 4.3 ms" in screen
    assert "p99 21.5 ms" in screen
    assert "dead letters 3" in screen and "drift alerts 2" in screen


def test_screen_lists_recent_alerts_newest_first() -> None:
    screen = render_text(fed_state(), width=140)
    alert_lines = [line for line in screen.splitlines() if "concept" in line or "amount_mean_300s" in line]
    assert len(alert_lines) == 2
    assert "amount_mean_300s" in alert_lines[0] and "psi=0.410" in alert_lines[0]
    assert "default/lr" in alert_lines[1] and "adwin" in alert_lines[1] and "3787" in alert_lines[1]
    assert "2023-11-14 22:13:35" in alert_lines[1]


def test_screen_counts_dead_letters_by_reason() -> None:
    screen = render_text(fed_state(), width=140)
    bad = [line for line in screen.splitlines() if "bad_json" in line]
    assert len(bad) == 1 and bad[0].rstrip(" │").endswith("2")
    assert any("missing_field" in line for line in screen.splitlines())


def test_empty_screen_says_what_it_waits_for() -> None:
    screen = render_text(WatchState(), width=100)
    assert "waiting for data" in screen
    assert "no metric snapshots yet" in screen and "no drift alerts" in screen and "no dead letters" in screen


def test_narrow_terminal_still_renders() -> None:
    screen = render_text(fed_state(), width=60)
    assert "default/lr" in screen or "default/…" in screen
    assert render(fed_state()) is not None


def test_sparkline_edges() -> None:
    assert sparkline([]) == ""
    assert sparkline([None, None]) == "  "
    assert sparkline([float("nan"), 1.0]) == " ▄"
    assert sparkline([3, 3, 3]) == "▄▄▄"
    assert sparkline([0, 10], lo=0, hi=5) == "▁█"  # clipped to the scale


def test_what_users_got_shows_beside_the_learner_with_how_stale_it_was() -> None:
    state = fed_state()
    state.on_metrics({
        "v": 1, "model": "default/served", "slot": "default", "name": "served", "role": "served", "version": 41,
        "n": 7250, "metrics": {"accuracy": 0.861, "accuracy_rolling": 0.874, "staleness_examples_mean": 3.25},
    })
    state.on_staleness(2.0, 0.04)
    screen = render_text(state, width=200)
    rows = [line for line in screen.splitlines() if "default/" in line]
    assert [r.split()[1].strip("│") for r in rows][:2] == ["default/lr", "default/served"]  # champion, then served
    served = rows[1]
    assert "0.874 / 0.861" in served and "3.2" in served and "41" in served
    assert "served model behind by 2 examples / 0.0 s" in screen
