"""The peer benchmark in one run: each system's jobs A and B (throughput, then latency), the learner alone.

Order: ceiling, quix, bytewax, freshet, freshet_demo_spec (one at a time, so they never share the cores
with each other), each job's latency right after its throughput (the half-own-max rate needs it). A run
that fails is recorded with a note and the others go on.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import measure
from bench.harness import (
    DEMO_SPEC,
    PEER_SPEC,
    Config,
    FreshetSystem,
    PeerSystem,
    System,
    Topics,
    run_latency,
    run_learner_alone,
    run_throughput,
    train_model,
    with_run,
    write_items,
)
from bench.peers_env import ensure_peers_venv
from streams.settings import Settings

SYSTEM_PARTS = ("ceiling", "quix", "bytewax", "freshet", "freshet_demo_spec")
PARTS = ("legacy", *SYSTEM_PARTS, "learner")
LATENCY_RATE = 200.0


def make_system(
    name: str, job: str, phase: str, settings: Settings, run_dir: Path, model: Path, python: Path, learn: int
) -> System:
    tag = f"{name}-{job}-{phase}"
    if name in ("freshet", "freshet_demo_spec"):
        spec = PEER_SPEC if name == "freshet" else DEMO_SPEC
        return FreshetSystem(
            name=name, job=job, settings=with_run(settings, tag, spec), run_dir=run_dir / tag, model=model,
            learn_target=learn,
        )
    prefix = f"{settings.topic_prefix}{tag}-"
    return PeerSystem(
        name=name,
        job=job,
        topics=Topics(f"{prefix}events", f"{prefix}labels" if job == "b" else None, f"{prefix}output"),
        run_dir=run_dir / tag,
        bootstrap=settings.kafka_bootstrap,
        python=python,
        model=model,
        learn_target=learn,
    )


def run_job(
    name: str, job: str, settings: Settings, cfg: Config, run_dir: Path, model: Path, python: Path
) -> dict[str, Any]:
    """Throughput, then latency at 200/s and at half the throughput just measured (each rate in a fresh
    process on fresh topics)."""
    entry: dict[str, Any] = {"notes": []}
    boot = settings.kafka_bootstrap
    t0 = time.monotonic()
    tp_sys = make_system(name, job, "tp", settings, run_dir, model, python, cfg.n_events if job == "b" else 0)
    try:
        tp = run_throughput(tp_sys, boot, cfg)
    except Exception as exc:  # a system that fails gets a note, the bench goes on
        traceback.print_exc()
        tp = {}
        entry["notes"].append(f"throughput failed: {exc}")
    entry["notes"].extend(tp_sys.notes)
    entry["events_per_s"] = tp.get("events_per_s")
    if job == "b":
        entry["loop_events_per_s"] = tp.get("loop_events_per_s")
    entry["throughput"] = tp
    rates = {"at_200": LATENCY_RATE}
    if entry["events_per_s"]:
        rates["at_half"] = round(entry["events_per_s"] / 2, 1)
        entry["half_rate"] = rates["at_half"]
    lat: dict[str, Any] = {}
    for phase, rate_per_s in rates.items():
        # A fresh process on fresh topics per rate, as the note did: no backlog carries over.
        lat_sys = make_system(name, job, phase.replace("_", ""), settings, run_dir, model, python, 0)
        try:
            lat.update(run_latency(lat_sys, boot, cfg, {phase: rate_per_s}, python, run_dir / "latency-items.jsonl"))
        except Exception as exc:
            traceback.print_exc()
            entry["notes"].append(f"latency {phase} failed: {exc}")
        entry["notes"].extend(lat_sys.notes)
    for phase in ("at_200", "at_half"):
        got = lat.get(phase, {})
        entry[f"p50_ms_{phase}"] = got.get("p50_ms")
        entry[f"p99_ms_{phase}"] = got.get("p99_ms")
    entry["latency"] = lat
    entry["seconds"] = round(time.monotonic() - t0, 1)
    print(
        f"bench: {name} {job.upper()}: {entry['events_per_s']} events/s"
        + (f", loop {entry.get('loop_events_per_s')}/s" if job == "b" else "")
        + f", p50/p99 @200 {entry['p50_ms_at_200']}/{entry['p99_ms_at_200']} ms, "
        f"@half {entry['p50_ms_at_half']}/{entry['p99_ms_at_half']} ms ({entry['seconds']} s)"
        + (f"; notes: {'; '.join(entry['notes'])}" if entry["notes"] else ""),
        flush=True,
    )
    return entry


def run_peer_bench(settings: Settings, cfg: Config, parts: list[str], run_dir: Path) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    model = train_model(run_dir / "model.pkl")
    systems_wanted = [name for name in SYSTEM_PARTS if name in parts]
    # The peers' venv also holds the latency runs' load generator (confluent-kafka).
    python = ensure_peers_venv() if systems_wanted else Path(sys.executable)
    if systems_wanted:
        write_items(run_dir / "latency-items.jsonl", cfg.latency_cap)
    systems: dict[str, dict[str, Any]] = {}
    for name in systems_wanted:
        jobs = ("a",) if name == "ceiling" else ("a", "b")
        systems[name] = {job: run_job(name, job, settings, cfg, run_dir, model, python) for job in jobs}
    out: dict[str, Any] = {"peer_n_events": cfg.n_events, "peer_latency_s": cfg.latency_s}
    if systems:
        out["systems"] = systems
        out["peer_ratios"] = measure.add_ratios(systems)
    if "learner" in parts:
        try:
            out.update(run_learner_alone(settings, run_dir, model, cfg))
        except Exception as exc:
            traceback.print_exc()
            out["learner_examples_per_s"] = None
            out["learner_note"] = f"failed: {exc}"
    return out
