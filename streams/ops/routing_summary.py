"""What the experiments of routed slots did, as summary lines (``freshet demo``, issue 10).

For each slot whose predictions carry an ``arm``: the traffic each arm served over the whole run and over
its last fifth, the canary decisions (start, steps, rollback or promotion, with the example and the
outcomes they were decided on) and, for a bandit, its last plan's shares.

>>> preds = [{"slot": "s", "arm": "a" if i % 4 else "b", "route": "bandit", "produced_ts": i} for i in range(100)]
>>> drift = [{"kind": "canary", "slot": "c", "decision": "rollback", "candidate": "x", "baseline": "lr",
...           "reason": "served_accuracy", "offset": 1500, "n_candidate": 100, "n_baseline": 1400, "share": 0.0}]
>>> for line in routing_lines(preds, drift, []):
...     print(line)
s (bandit): traffic a 75.0%, b 25.0%; last fifth a 75.0%, b 25.0%
c: canary x rolled back at example 1500 (served_accuracy, 100 vs 1400 outcomes); lr serves all
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

__all__ = ["experiments_html", "routing_lines"]


def _shares(preds: list[dict[str, Any]]) -> str:
    counts = Counter(p["arm"] for p in preds)
    total = sum(counts.values()) or 1
    return ", ".join(f"{arm} {100 * n / total:.1f}%" for arm, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def routing_lines(
    predictions: list[dict[str, Any]], drift: list[dict[str, Any]], metrics: list[dict[str, Any]]
) -> list[str]:
    """Summary lines of every routed slot (none when no prediction was routed)."""
    by_slot: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in predictions:
        if isinstance(p, dict) and p.get("arm") is not None:
            by_slot[str(p.get("slot"))].append(p)
    lines = []
    for slot, preds in sorted(by_slot.items()):
        preds.sort(key=lambda p: p.get("produced_ts") or 0.0)
        kinds = Counter(p.get("route") for p in preds)
        kind = "bandit" if kinds.get("bandit") else ("split" if kinds.get("split") else "canary")
        tail = preds[-max(1, len(preds) // 5):]
        lines.append(f"{slot} ({kind}): traffic {_shares(preds)}; last fifth {_shares(tail)}")
    for d in drift:
        if not isinstance(d, dict) or d.get("kind") not in ("canary", "promotion"):
            continue
        slot, at = str(d.get("slot")), d.get("offset")
        if d.get("kind") == "promotion":
            if d.get("reason") == "canary_passed":
                lines.append(f"{slot}: {d.get('promoted')} promoted over {d.get('demoted')} at example {at} "
                             "(canary passed): full traffic")
            continue
        decision = d.get("decision")
        if decision == "start":
            lines.append(f"{slot}: canary {d.get('candidate')} started at {100 * float(d.get('share') or 0):.0f}% "
                         f"({d.get('reason')})")
        elif decision == "step":
            lines.append(f"{slot}: canary {d.get('candidate')} stepped to {100 * float(d.get('share') or 0):.0f}% "
                         f"at example {at} ({d.get('n_candidate')} vs {d.get('n_baseline')} outcomes, guards held)")
        elif decision == "rollback":
            lines.append(f"{slot}: canary {d.get('candidate')} rolled back at example {at} ({d.get('reason')}, "
                         f"{d.get('n_candidate')} vs {d.get('n_baseline')} outcomes); {d.get('baseline')} serves all")
    last_plan: dict[str, dict[str, Any]] = {}
    for m in metrics:
        if isinstance(m, dict) and m.get("role") == "routing" and m.get("shares"):
            last_plan[str(m.get("slot"))] = m
    for slot, m in sorted(last_plan.items()):
        shares = ", ".join(f"{a} {100 * float(s):.0f}%" for a, s in m["shares"].items())
        lines.append(f"{slot}: bandit's last plan {shares} (plan {m.get('plan_version')})")
    return lines


def experiments_html(snaps: list[Mapping[str, Any]], drift: list[Mapping[str, Any]]) -> str:
    """``freshet report``'s "Experiments" section: served metrics per arm, and the routing decisions.

    >>> arm = {"model": "s/arm/lr", "role": "arm", "slot": "s", "name": "lr", "experiment": "ab", "share": 0.7,
    ...        "metrics": {"n": 700, "accuracy": 0.9, "accuracy_rolling": 0.92, "log_loss": 0.3}}
    >>> page = experiments_html([arm], [])
    >>> "Experiments" in page and "0.92" in page, experiments_html([], [])
    (True, '')
    """
    e = html.escape
    last: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for s in snaps:
        if s.get("role") == "arm":
            last[(str(s.get("slot")), str(s.get("experiment")), str(s.get("name")))] = s
    decisions = [d for d in drift if d.get("kind") == "canary"]
    if not last and not decisions:
        return ""

    def num(v: Any, digits: int = 3) -> str:
        return f"{v:.{digits}f}" if isinstance(v, int | float) and not isinstance(v, bool) else ""

    rows = "".join(
        f"<tr><td>{e(slot)}</td><td>{e(exp)}</td><td>{e(arm)}</td><td>{num(s.get('share'), 2)}</td>"
        f"<td>{int((s.get('metrics') or {}).get('n') or 0):,}</td>"
        f"<td>{num((s.get('metrics') or {}).get('accuracy'))}</td>"
        f"<td>{num((s.get('metrics') or {}).get('accuracy_rolling'))}</td>"
        f"<td>{num((s.get('metrics') or {}).get('log_loss'))}</td></tr>"
        for (slot, exp, arm), s in sorted(last.items())
    )
    steps = "".join(
        f"<tr><td>{e(str(d.get('slot')))}</td><td>{e(str(d.get('experiment')))}</td>"
        f"<td>{e(str(d.get('decision')))}</td><td>{e(str(d.get('reason')))}</td><td>{e(str(d.get('candidate')))}</td>"
        f"<td>{num(d.get('share'), 2)}</td><td>{e(str(d.get('offset')))}</td><td>{num(d.get('statistic'), 4)}</td>"
        f"<td>{num(d.get('confidence'), 3)}</td><td>{e(str(d.get('n_candidate')))} / {e(str(d.get('n_baseline')))}</td>"
        "</tr>"
        for d in decisions
    )
    return (
        "<h2>Experiments (routed slots)</h2><p>What each arm served, scored on the joined labels (per "
        "experiment), and the canary decisions with their statistic, confidence and outcomes.</p>"
        "<table><tr><th>slot</th><th>experiment</th><th>arm</th><th>share now</th><th>served</th>"
        "<th>accuracy</th><th>rolling</th><th>log loss</th></tr>" + rows + "</table>"
        + ("<table><tr><th>slot</th><th>experiment</th><th>decision</th><th>reason</th><th>candidate</th>"
           "<th>share</th><th>example</th><th>statistic</th><th>confidence</th><th>candidate / baseline</th></tr>"
           + steps + "</table>" if steps else "")
    )
