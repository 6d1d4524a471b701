"""Seeded synthetic event streams with known drift points, shaped as freshet events.

Each item is ``(event, label)``: ``event`` is the JSON-ready dict a user would publish to ``events``
(``id``, ``entity``, ``ts`` and the generator's fields), ``label`` its true outcome. Drifts are abrupt
switches between River generators at the given event indices (DESIGN.md: River's ConceptDriftStream
overflows far into a stream, so we switch by hand).

>>> s = SyntheticStream(kind="sea", n_events=3, n_entities=2, seed=7, start_ts=1.7e9, step_s=0.5)
>>> [(e["id"], e["entity"], e["ts"]) for e, _ in s]
[('sea-7-0', 'u1', 1700000000.0), ('sea-7-1', 'u0', 1700000000.5), ('sea-7-2', 'u1', 1700000001.0)]
>>> sorted(next(iter(s))[0])
['entity', 'id', 'ts', 'x1', 'x2', 'x3']
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from river import datasets
from river.datasets import synth

KINDS = ("sea", "agrawal", "hyperplane", "phishing")

# Field names each kind emits, and their spec types (pipelines/*.toml declare the same).
FIELDS: dict[str, dict[str, str]] = {
    "sea": {"x1": "float", "x2": "float", "x3": "float"},
    "agrawal": {
        "salary": "float",
        "commission": "float",
        "age": "float",
        "elevel": "float",
        "car": "float",
        "zipcode": "float",
        "hvalue": "float",
        "hyears": "float",
        "loan": "float",
    },
    "hyperplane": {f"x{i}": "float" for i in range(1, 6)},
    "phishing": {
        "empty_server_form_handler": "float",
        "popup_window": "float",
        "https": "float",
        "request_from_other_domain": "float",
        "anchor_from_other_domain": "float",
        "is_popular": "float",
        "long_url": "float",
        "age_of_domain": "float",
        "ip_in_url": "float",
    },
}


def _generator(kind: str, concept: int, seed: int) -> Iterator[tuple[dict[Any, Any], Any]]:
    """The River generator for one concept (0, 1, 2, ...) of a kind."""
    if kind == "sea":
        return iter(synth.SEA(variant=concept % 4, seed=seed + concept))
    if kind == "agrawal":
        functions = (0, 4, 7, 2, 1, 3, 5, 6, 8, 9)
        return iter(synth.Agrawal(classification_function=functions[concept % 10], seed=seed + concept))
    if kind == "hyperplane":
        # A new concept is a new random hyperplane (another seed) and, on odd concepts, the classes swap
        # sides: an abrupt drift no model can ride out without noticing.
        plane = iter(synth.Hyperplane(seed=seed + 1000 * concept, n_features=5, noise_percentage=0.05))
        if concept % 2:
            return ((x, 1 - y) for x, y in plane)
        return plane
    if kind == "phishing":
        if concept:
            raise ValueError("the phishing replay has no drift points")
        return iter(datasets.Phishing())
    raise ValueError(f"unknown stream kind {kind!r}; choose one of {', '.join(KINDS)}")


def _field_name(kind: str, key: Any) -> str:
    if kind in ("sea", "hyperplane"):
        return f"x{int(key) + 1}"
    return str(key)


@dataclass
class SyntheticStream:
    """A finite, seeded stream; iterate it as many times as you like (same items each time).

    ``drift_at`` lists the event indices where the concept changes. Event time starts at ``start_ts``
    and advances ``step_s`` per event; entities are drawn uniformly from ``n_entities`` with the seed.
    """

    kind: str = "sea"
    n_events: int = 10_000
    n_entities: int = 100
    seed: int = 42
    start_ts: float = 1_700_000_000.0
    step_s: float = 0.1
    drift_at: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown stream kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.n_entities < 1 or self.n_events < 0:
            raise ValueError("n_entities must be >= 1 and n_events >= 0")
        if self.kind == "phishing":
            self.n_events = min(self.n_events, datasets.Phishing().n_samples)
        if sorted(self.drift_at) != list(self.drift_at):
            raise ValueError(f"drift_at must be increasing, got {self.drift_at}")

    @property
    def fields(self) -> dict[str, str]:
        return FIELDS[self.kind]

    def __iter__(self) -> Iterator[tuple[dict[str, Any], Any]]:
        rng = random.Random(self.seed)
        concept = 0
        gen = _generator(self.kind, concept, self.seed)
        drifts = list(self.drift_at)
        for i in range(self.n_events):
            while drifts and i >= drifts[0]:
                drifts.pop(0)
                concept += 1
                gen = _generator(self.kind, concept, self.seed)
            x, y = next(gen)
            event: dict[str, Any] = {
                "id": f"{self.kind}-{self.seed}-{i}",
                "entity": f"u{rng.randrange(self.n_entities)}",
                "ts": round(self.start_ts + i * self.step_s, 6),
            }
            for key, value in x.items():
                event[_field_name(self.kind, key)] = float(value)
            # Every kind here is a binary classification; labels go out as JSON booleans.
            yield event, bool(y)
