"""One throughput run of freshet on the peer job, for development (a minute, not ``make bench``'s 20).

``python -m bench.throughput --job a --events 5000`` starts Kafka and Redis on free ports (unless
``FRESHET_KAFKA_PORT`` / ``FRESHET_REDIS_PORT`` point at running ones), preloads N events (job B: with their
labels), starts ``freshet worker`` (and ``freshet learn`` for B) exactly as ``make bench`` does
(:func:`bench.harness.run_throughput`), and prints its events/s and messages written per event as JSON.
``--py-spy out.txt`` records the worker under py-spy (``--idle``, 100 Hz, raw folded stacks) meanwhile, and
prints the leading frames of its own time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import DEMO_SPEC, PEER_SPEC, Config, FreshetSystem, run_throughput, train_model, with_run
from bench.run import bench_settings
from streams.ops.services import kafka_dir, services_down, services_up


class Profiled(FreshetSystem):
    """The same system, with py-spy attached to the worker once it is ready."""

    spy_out: Path | None = None
    spy: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float) -> None:
        super().start(timeout_s)
        if self.spy_out is not None:
            pid = str(self.procs["worker"].pid)
            cmd = ["py-spy", "record", "-p", pid, "-o", str(self.spy_out), "-f", "raw", "-r", "100", "--nonblocking"]
            self.spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(2)  # SIGINT: py-spy writes what it recorded
            self.spy.wait(timeout=30)
        super().stop()


def top_frames(raw: Path, n: int = 25) -> list[tuple[str, float]]:
    """Share of samples in which each function is the innermost frame (py-spy raw output)."""
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        own[stack.split(";")[-1]] += int(count)
    return [(frame, round(100 * c / max(1, total), 1)) for frame, c in own.most_common(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=("a", "b"), default="a")
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--spec", choices=("peer", "demo"), default="peer")
    parser.add_argument("--py-spy", type=Path, default=None, help="record the worker into this file")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    settings = bench_settings(stamp)
    run_dir = settings.cache_dir / "bench" / f"throughput-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    started = services_up(settings)
    result: dict[str, Any] = {}
    try:
        model = train_model(run_dir / "model.pkl")
        spec = PEER_SPEC if args.spec == "peer" else DEMO_SPEC
        tag = f"freshet-{args.job}-tp"
        system = Profiled(
            name="freshet", job=args.job, settings=with_run(settings, tag, spec), run_dir=run_dir / tag,
            model=model, learn_target=args.events if args.job == "b" else 0,
        )
        system.spy_out = args.py_spy
        result = run_throughput(system, settings.kafka_bootstrap, Config(n_events=args.events))
        result["notes"] = system.notes
        result["logs"] = str(run_dir / tag)
    finally:
        if started:
            services_down(settings)
            shutil.rmtree(kafka_dir(settings), ignore_errors=True)
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.py_spy is not None and args.py_spy.exists():
        for frame, pct in top_frames(args.py_spy):
            print(f"{pct:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
