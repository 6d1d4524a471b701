"""The fault scenarios. Each runs freshet on fresh topics, injects its fault, and returns a :class:`Result`:
the counts every scenario prints, extra figures, and checks (each a name, whether it held, and what was seen).

``short=True`` is the version inside ``make test`` (fewer events, shorter outages).
"""

from __future__ import annotations

import pathlib
import pickle
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from models.registry import RedisRegistryStore, Registry
from streams.runtime.connections import open_registry
from streams.settings import DEV_SIGNING_KEY, Settings
from tests.faults import malformed
from tests.faults.harness import Counts, Feeder, Servers, count, freshet, send_all, wait_until


@dataclass
class Result:
    name: str
    counts: Counts | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, name: str, ok: bool, seen: Any = "") -> None:
        self.checks.append((name, bool(ok), str(seen)))

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "seconds": round(self.seconds, 1),
                "counts": self.counts.__dict__ if self.counts else None, "figures": self.figures,
                "checks": [{"check": n, "ok": ok, "seen": s} for n, ok, s in self.checks]}


def fresh(servers: Servers, name: str) -> Settings:
    tag = f"{name}-{uuid.uuid4().hex[:4]}"
    s = servers.settings
    return s.with_(topic_prefix=f"{s.topic_prefix}{tag}-", app_id=f"{s.app_id}-{tag}")


def _common_checks(r: Result, c: Counts) -> None:
    r.check("every good event predicted", c.predicted == c.events_sent, f"{c.predicted}/{c.events_sent}")
    r.check("no label lost (each predicted, labelled event became an example)", c.labels_without_example == 0,
            c.labels_without_example)
    r.check("no process exited by itself", c.restarts_needed == 0, c.exited or "none")


def _drain(s: Settings, feeder: Feeder, procs: Any, timeout_s: float) -> None:
    """Wait for the feeder, then until every event is predicted and every label learned (or the timeout)."""
    feeder.join(timeout=timeout_s)
    n = len(feeder.sent_at)
    wait_until(lambda: procs.metric("worker1", "freshet_predictions_total") >= n
               and procs.metric("learner", "freshet_examples_learned_total") >= len(feeder.labels_sent),
               timeout_s)


# --- 1. malformed inputs on every input topic ----------------------------------------------------------


def malformed_inputs(servers: Servers, logs: Path, short: bool) -> Result:
    r = Result("malformed inputs (events, labels, predictions, examples)")
    s = fresh(servers, "malformed")
    n = 300 if short else 2000
    with freshet(s, logs / "malformed") as procs:
        rss_before = procs.rss_mb("worker1")
        feeder = Feeder(s, n, rate_per_s=100, label_delay_s=0.5)
        feeder.start()
        wait_until(lambda: "good-0" in feeder.sent_at and procs.metric("worker1", "freshet_predictions_total") > 5, 60,
                   0.2)
        now = time.time()
        # Late behind the watermark of an entity the worker has already predicted for (good-0's), however few
        # good events went out before this point (a fixed entity may not have been seen yet on a quiet machine).
        bad_events = [*malformed.malformed_events(now), malformed.late_event(now, feeder.entity_of["good-0"])]
        sent = {("events", *po): kv for po, kv in send_all(s, "events", bad_events).items()}
        for topic, items in (("labels", malformed.malformed_labels(now)),
                             ("predictions", malformed.junk_predictions()),
                             ("examples", malformed.junk_examples(now))):
            sent.update({(topic, *po): kv for po, kv in send_all(s, topic, items).items()})
        _drain(s, feeder, procs, 180)
        expected_dead = sum(1 for kind, exp in sent.values() if exp is not None)
        wait_until(lambda: procs.metric("worker1", "freshet_dead_letters_total")
                   + procs.metric("learner", "freshet_dead_letters_total") >= expected_dead, 60)
        rss_after = procs.rss_mb("worker1")
        learned = procs.metric("learner", "freshet_examples_learned_total")
        c, topics = count(s, feeder, procs)
    r.counts = c
    got = {(d.get("source_topic", "").removeprefix(s.topic_prefix), d.get("source_partition"),
            d.get("source_offset")): d for d in topics["dead-letter"]}
    wrong, accepted, sizes = [], [], []
    for where, (kind, expected) in sent.items():
        dead = got.get(where)
        if expected is None:
            accepted.append(kind)
            if dead is not None:
                wrong.append(f"{kind}: accepted by design, dead-lettered {dead.get('reason')}")
            continue
        if dead is None or dead.get("reason") != expected:
            wrong.append(f"{kind}: expected {expected}, got {dead.get('reason') if dead else 'nothing'}")
        else:
            sizes.append(len(orjson.dumps(dead)))
    kinds = Counter(where[0] for where in sent)
    r.figures.update({"malformed_by_topic": dict(kinds), "accepted_by_design": accepted,
                      "largest_dead_letter_bytes": max(sizes, default=0),
                      "worker_rss_mb": [round(rss_before, 1), round(rss_after, 1)], "examples_learned": learned})
    r.check("≥ 25 kinds of malformed events and ≥ 8 of labels", kinds["events"] >= 25 and kinds["labels"] >= 8,
            dict(kinds))
    r.check("every malformed input dead-lettered with its reason (or accepted by design)", not wrong,
            "; ".join(wrong[:6]) or f"{expected_dead} dead letters as expected")
    r.check("every dead letter fits the producer limit (≤ 16 KiB)", max(sizes, default=0) <= 16_384,
            max(sizes, default=0))
    r.check("the learner went on after the poison examples", learned >= len(feeder.labels_sent),
            f"{learned} learned of {len(feeder.labels_sent)} labels")
    r.check("worker memory bounded (+< 150 MB)", rss_after - rss_before < 150, f"{rss_before:.0f} → {rss_after:.0f} MB")
    _common_checks(r, c)
    return r


# --- 2. junk on model-versions, a forged snapshot, the development key off loopback ---------------------


class _Touch:
    """A pickle whose loading creates a file: proof that code from Redis ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def junk_versions(servers: Servers, logs: Path, short: bool) -> Result:
    r = Result("junk on model-versions and a forged snapshot")
    s = fresh(servers, "junk")
    marker = logs / f"forged-code-ran-{uuid.uuid4().hex[:6]}"
    with freshet(s, logs / "junk") as procs:
        feeder = Feeder(s, 300 if short else 1500, rate_per_s=50, label_delay_s=0.5)
        feeder.start()
        wait_until(lambda: procs.metric("worker1", "freshet_model_version", role="predict") >= 1, 60, 0.3)
        served_before = procs.metric("worker1", "freshet_model_version", role="predict")
        junk = [
            ("non_utf8_key", b"\xff\xfe\x00", b'{"v": 1, "kind": "record"}', None),
            ("not_json", b"default", b"\x00 not json", None),
            ("tombstone", b"default", None, None),
            ("unknown_version", b"default", orjson.dumps({"v": 1, "kind": "record", "name": "default",
                                                          "version": 10**9, "examples_learned": "many"}), None),
        ]
        send_all(s, "model-versions", junk)
        # A snapshot signed with the public development key (the processes run with a key of their own),
        # made current and announced: loading it would create the marker file.
        client = redis.Redis(host=s.redis_host, port=s.redis_port)
        forger = Registry(RedisRegistryStore(client, prefix=f"{s.app_id}:registry"), DEV_SIGNING_KEY)
        forged = forger.save_blob("default", pickle.dumps(_Touch(str(marker))), slot="default", examples_learned=1,
                                  offset=0, make_current=True, champion="lr")
        send_all(s, "model-versions", [("forged", b"default", orjson.dumps(
            {"v": 1, "kind": "record", "snapshot": True, **forged.to_dict()}), None)])
        refused = {"source": "model-versions", "reason": "bad_snapshot"}
        wait_until(lambda: procs.metric("worker1", "freshet_dead_letters_total", **refused) >= 1
                   and procs.metric("learner", "freshet_dead_letters_total", **refused) >= 1, 60)
        # A version signed with the processes' own key that verifies but does not load (not a model group).
        owner = Registry(RedisRegistryStore(client, prefix=f"{s.app_id}:registry"), s.signing_key)
        unloadable = owner.save_blob("default", pickle.dumps({"not": "a model group"}), slot="default",
                                     examples_learned=1, offset=0, make_current=True, champion="lr")
        send_all(s, "model-versions", [("unloadable", b"default", orjson.dumps(
            {"v": 1, "kind": "record", "snapshot": True, **unloadable.to_dict()}), None)])
        wait_until(lambda: procs.metric("worker1", "freshet_dead_letters_total", **refused) >= 2
                   and procs.metric("learner", "freshet_dead_letters_total", **refused) >= 2, 60)
        worker_refused = procs.metric("worker1", "freshet_dead_letters_total", **refused)
        learner_refused = procs.metric("learner", "freshet_dead_letters_total", **refused)
        _drain(s, feeder, procs, 120)
        registry = open_registry(s)
        current = registry.current_version("default")
        served_after = procs.metric("worker1", "freshet_model_version", role="predict")
        c, _ = count(s, feeder, procs)
    r.counts = c
    r.figures.update({"forged_version": forged.version, "unloadable_version": unloadable.version,
                      "current_after": current,
                      "refused": {"worker": worker_refused, "learner": learner_refused},
                      "served_version": [served_before, served_after]})
    r.check("the forged snapshot and the one that does not load refused by the worker and the learner (counted)",
            worker_refused >= 2 and learner_refused >= 2, f"worker {worker_refused}, learner {learner_refused}")
    r.check("no code from Redis ran", not marker.exists(), marker.name)
    # Known limit: the forged pointer stays current until the learner's next snapshot (FRESHET_SNAPSHOT_EVERY
    # examples); until then workers keep the verified version they serve and swap in no newer record.
    r.figures["forged_pointer_replaced"] = current is not None and current > unloadable.version
    r.check("the worker never fell back to an untrained model", served_after >= served_before >= 1,
            f"{served_before} → {served_after}")
    _common_checks(r, c)
    # The development key off loopback: refused at start, in one line that names the variable.
    env_settings = s.with_(signing_key=DEV_SIGNING_KEY, redis_host="10.255.255.1")
    env = {**__import__("os").environ, **env_settings.to_env()}
    proc = subprocess.run([sys.executable, "-m", "streams", "learn"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    r.check("the development key is refused off loopback (one line naming FRESHET_SIGNING_KEY)",
            proc.returncode != 0 and any("FRESHET_SIGNING_KEY" in ln for ln in lines[-2:]),
            f"rc {proc.returncode}: {lines[-1][:160] if lines else ''}")
    return r


# --- 3. Redis stopped mid-stream ------------------------------------------------------------------------


def redis_outage(servers: Servers, logs: Path, short: bool) -> Result:
    down_s = 8.0 if short else 20.0
    r = Result(f"Redis stopped {down_s:g} s mid-stream")
    s = fresh(servers, "redis")
    rate = 50.0
    with freshet(s, logs / "redis-outage") as procs:
        feeder = Feeder(s, int(rate * (down_s + (20 if short else 30))), rate_per_s=rate, label_delay_s=0.5)
        feeder.start()
        wait_until(lambda: procs.metric("learner", "freshet_examples_learned_total") >= 50, 60, 0.3)
        version_before = procs.metric("learner", "freshet_model_version", role="learn")
        stopped = servers.stop("redis")
        during: dict[str, list[float]] = {"online_up": [], "registry_up": [], "predictions": [], "learned": []}
        while time.monotonic() - stopped < down_s:
            during["online_up"].append(procs.metric("worker1", "freshet_store_up", store="online"))
            during["registry_up"].append(procs.metric("learner", "freshet_store_up", store="registry"))
            during["predictions"].append(procs.metric("worker1", "freshet_predictions_total"))
            during["learned"].append(procs.metric("learner", "freshet_examples_learned_total"))
            time.sleep(1.0)
        back = servers.restart("redis")
        _drain(s, feeder, procs, 180)
        wait_until(lambda: procs.metric("learner", "freshet_model_version", role="learn") > version_before
                   and procs.metric("worker1", "freshet_store_up", store="online") == 1, 60)
        version_after = procs.metric("learner", "freshet_model_version", role="learn")
        online_up = procs.metric("worker1", "freshet_store_up", store="online")
        registry_up = procs.metric("learner", "freshet_store_up", store="registry")
        errors = procs.metric("worker1", "freshet_online_store_errors_total")
        dropped = procs.metric("worker1", "freshet_online_store_dropped_rows_total")
        client = redis.Redis(host=s.redis_host, port=s.redis_port)
        fresh_vectors = 0
        for key in client.scan_iter(match=f"{s.app_id}:features:f:*", count=1000):
            as_of = client.hget(key, "_as_of_s")
            if as_of is not None and float(as_of) >= time.time() - (time.monotonic() - back) - 1:
                fresh_vectors += 1
        c, _ = count(s, feeder, procs)
    r.counts = c
    preds, learned = during["predictions"], during["learned"]
    r.figures.update({"down_s": down_s, "predictions_during_outage": preds[-1] - preds[0] if preds else 0,
                      "learned_during_outage": learned[-1] - learned[0] if learned else 0,
                      "model_version": [version_before, version_after], "online_store_errors": errors,
                      "rows_dropped": dropped, "entities_written_after_restart": fresh_vectors})
    r.check("predictions continued through the outage", preds and preds[-1] - preds[0] > rate * down_s / 2,
            r.figures["predictions_during_outage"])
    r.check("the learner kept learning through the outage", learned and learned[-1] > learned[0],
            r.figures["learned_during_outage"])
    r.check("the outage showed on /metrics (freshet_store_up 0) and cleared",
            0 in during["online_up"] and 0 in during["registry_up"] and online_up == 1 and registry_up == 1,
            f"online {during['online_up']}, registry {during['registry_up']} → {online_up}, {registry_up}")
    r.check("the learner's snapshots caught up after the outage", version_after > version_before,
            f"{version_before} → {version_after}")
    r.check("the online store caught up after the outage", fresh_vectors > 0, f"{fresh_vectors} entities")
    _common_checks(r, c)
    return r


# --- 4. Redis restarted: the registry survives, no version number reused -----------------------------------


def redis_restart(servers: Servers, logs: Path, short: bool) -> Result:
    r = Result("Redis restarted mid-stream (registry durability)")
    s = fresh(servers, "restart").with_(snapshot_every=100)
    with freshet(s, logs / "redis-restart") as procs:
        first = Feeder(s, 300 if short else 1000, rate_per_s=100, label_delay_s=0.3, prefix="a")
        first.start()
        _drain(s, first, procs, 120)
        time.sleep(2.0)  # the learner publishes what it learned when it catches up
        registry = open_registry(s)
        before = _registry_state(registry)
        servers.stop("redis")
        servers.restart("redis")
        registry = open_registry(s)
        after = _registry_state(registry)
        second = Feeder(s, 300 if short else 1000, rate_per_s=100, label_delay_s=0.3, prefix="b", seed=8)
        second.start()
        second.join(timeout=120)
        wait_until(lambda: procs.metric("learner", "freshet_examples_learned_total")
                   >= len(first.labels_sent) + len(second.labels_sent), 120)
        time.sleep(2.0)
        versions = [v for v in _records(s) if v.get("kind") == "record"]
        c, _ = count(s, second, procs)
    r.counts = c
    sha_of: dict[int, set[str]] = {}
    for v in versions:
        sha_of.setdefault(int(v["version"]), set()).add(str(v.get("sha256")))
    reused = sorted(ver for ver, shas in sha_of.items() if len(shas) > 1)
    new = [ver for ver in sha_of if ver > max([*before[0], before[2] or 0])]
    r.figures.update({"snapshots_before": before[0][-5:], "current_before": before[1], "current_after": after[1],
                      "record_before": before[2], "record_after": after[2],
                      "versions_announced": len(sha_of), "new_after_restart": len(new)})
    r.check("the registry's versions, current pointer and record are as before the restart",
            before == after and before[1] is not None,
            f"current {before[1]} → {after[1]}, record {before[2]} → {after[2]}, {len(before[0])} → {len(after[0])}"
            " snapshots")
    r.check("no version number reused for a different model", not reused, reused[:5] or "none")
    r.check("the learner went on publishing after the restart", bool(new), f"{len(new)} new versions")
    _common_checks(r, c)
    return r


def _registry_state(registry: Registry) -> tuple[list[int], int | None, int | None]:
    record = registry.record_meta("default")
    return ([m.version for m in registry.versions("default")], registry.current_version("default"),
            record.version if record is not None else None)


def _records(s: Settings) -> list[dict[str, Any]]:
    from tests.faults.harness import read

    return read(s, "model-versions")


# --- 5. the broker stopped mid-stream -------------------------------------------------------------------


def broker_outage(servers: Servers, logs: Path, short: bool) -> Result:
    down_s = 20.0
    r = Result(f"Kafka broker stopped {down_s:g} s mid-stream")
    s = fresh(servers, "broker")
    rate = 50.0
    with freshet(s, logs / "broker-outage") as procs:
        feeder = Feeder(s, int(rate * 60), rate_per_s=rate, label_delay_s=0.5)
        feeder.start()
        wait_until(lambda: procs.metric("learner", "freshet_examples_learned_total") >= 50, 60, 0.3)
        stopped = servers.stop("kafka")
        time.sleep(max(0.0, down_s - (time.monotonic() - stopped)))
        t0 = time.monotonic()
        servers.restart("kafka")
        restart_s = time.monotonic() - t0
        _drain(s, feeder, procs, 300)
        suppressed = {n: procs.metric(n, "freshet_log_lines_suppressed_total") for n in ("worker1", "learner")}
        log_lines = {n: _lines(logs / "broker-outage" / f"{n}.log") for n in ("worker1", "learner")}
        c, _ = count(s, feeder, procs)
    r.counts = c
    r.figures.update({"down_s": down_s, "broker_restart_s": round(restart_s, 1), "log_lines": log_lines,
                      "log_lines_suppressed": suppressed})
    r.check("log lines rate-limited (< 2,000 per process)", all(n < 2000 for n in log_lines.values()), log_lines)
    _common_checks(r, c)
    return r


def _lines(path: Path) -> int:
    try:
        return sum(1 for _ in path.open("rb"))
    except OSError:
        return -1


# --- 6. workers SIGKILLed mid-stream -----------------------------------------------------------------------


def worker_sigkill(servers: Servers, logs: Path, short: bool) -> Result:
    n, rate, kills = (1500, 30.0, 2) if short else (10_000, 30.0, 5)
    r = Result(f"{kills} worker SIGKILLs, 2 workers, {n} events at {rate:g}/s")
    s = fresh(servers, "sigkill")
    with freshet(s, logs / "sigkill", n_workers=2) as procs:
        feeder = Feeder(s, n, rate_per_s=rate, label_delay_s=1.0)
        feeder.start()
        duration = n / rate
        killed_at = []
        for k in range(kills):
            target = f"worker{k % 2 + 1}"
            due = (k + 1) * duration / (kills + 1)
            while len(feeder.sent_at) < due * rate and feeder.is_alive():
                time.sleep(0.2)
            procs.kill(target)
            killed_at.append(round(time.time(), 1))
            time.sleep(2.0)
            threading.Thread(target=procs.start, args=(target,), kwargs={"wait": False}, daemon=True).start()
        feeder.join(timeout=duration + 300)
        drained = wait_until(lambda: procs.metric("learner", "freshet_examples_learned_total")
                             >= len(feeder.labels_sent), 180)
        time.sleep(5.0)
        r.figures["learner_caught_up_within_180_s"] = drained
        r.figures["examples_learned"] = procs.metric("learner", "freshet_examples_learned_total")
        c, _ = count(s, feeder, procs)
    r.counts = c
    r.figures.update({"kills": kills, "killed_at": killed_at, "worker_lives": dict(procs.lives)})
    _common_checks(r, c)
    r.check("no duplicate prediction differs", c.duplicates_differ == 0, c.duplicates_differ)
    r.check("no label lost", c.labels_without_example == 0, c.labels_without_example)
    r.check("every event predicted within 10 s (failover)", c.max_wait_s <= 10.0, f"{c.max_wait_s:.1f} s")
    return r


ALL = {
    "malformed": malformed_inputs,
    "junk_versions": junk_versions,
    "redis_outage": redis_outage,
    "redis_restart": redis_restart,
    "broker_outage": broker_outage,
    "worker_sigkill": worker_sigkill,
}
SHORT = ("malformed", "junk_versions", "redis_outage", "redis_restart")
