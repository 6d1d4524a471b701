"""``python -m tests.faults``: freshet's fault suite (``make faults``).

Starts its own Kafka broker and Redis server on free loopback ports, runs every scenario of
:mod:`tests.faults.scenarios` (or those named) against freshet's real processes, prints each one's counts
and checks, writes them to ``reports/faults/latest.json`` and exits 1 when a check failed::

    python -m tests.faults                     # every scenario (about 17 minutes)
    python -m tests.faults --short             # the short version (what make test runs, about 2 minutes)
    python -m tests.faults redis_outage junk_versions
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from tests.faults.harness import REPO, Servers
from tests.faults.scenarios import ALL, SHORT, Result


def report(result: Result) -> str:
    lines = [f"== {result.name} ({result.seconds:.0f} s): {'ok' if result.ok else 'FAILED'}"]
    if result.counts is not None:
        lines.append("   " + result.counts.line())
    for name, value in result.figures.items():
        lines.append(f"   {name}: {value}")
    for name, ok, seen in result.checks:
        lines.append(f"   [{'ok' if ok else 'FAIL'}] {name}: {seen}")
    return "\n".join(lines)


def run(names: list[str], short: bool, logs: Path, out: Path | None) -> list[Result]:
    results: list[Result] = []
    with Servers.start() as servers:
        for name in names:
            started = time.monotonic()
            try:
                result = ALL[name](servers, logs, short)
            except Exception as exc:
                result = Result(name)
                result.check("the scenario ran to the end", False, f"{exc!r}: {traceback.format_exc(limit=3)}")
            result.seconds = time.monotonic() - started
            results.append(result)
            print(report(result), flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"short": short, "ts": time.time(), "scenarios": [r.to_dict() for r in results]},
                                  indent=2, default=str))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"among {', '.join(ALL)} (default: all)")
    parser.add_argument("--short", action="store_true", help=f"the short version ({', '.join(SHORT)})")
    parser.add_argument("--logs", type=Path, default=REPO / "reports" / "faults" / "logs")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "faults" / "latest.json")
    args = parser.parse_args(argv)
    names = args.scenarios or (list(SHORT) if args.short else list(ALL))
    if unknown := [n for n in names if n not in ALL]:
        parser.error(f"unknown scenario(s) {unknown}; choose among {', '.join(ALL)}")
    results = run(names, args.short, args.logs, args.out)
    failed = [r.name for r in results if not r.ok]
    tail = f"; failed: {failed}" if failed else ""
    print(f"\n{len(results) - len(failed)} of {len(results)} scenarios held{tail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
