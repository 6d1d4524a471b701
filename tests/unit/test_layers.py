"""The layers of the code, read from its imports: pure stages never do I/O, and no layer imports a higher one.

Layers, lowest first: ``models`` (learning, no I/O) → ``streams`` top-level contracts (records, spec,
settings) and ``streams.features`` / ``streams.core`` (the pure stages) → ``streams.runtime`` (Faust, Kafka,
Redis) → ``streams.ops`` (operator tooling). A module may import its own layer and lower ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Top-level packages that do I/O: forbidden in the pure layers.
IO_PACKAGES = {"faust", "mode", "aiokafka", "kafka", "redis", "prometheus_client", "socket", "subprocess", "requests"}
# Pure functions of an I/O package, allowed with the reason.
ALLOWED = {
    ("streams.core.partitions", "kafka.partitioner.default"): "murmur2 is a pure function of the key",
}
RANK = {"models": 0, "streams": 1, "streams.features": 1, "streams.core": 1, "streams.runtime": 2, "streams.ops": 3,
        "producers": 3, "streams.__main__": 3}
PURE = {"models", "streams", "streams.features", "streams.core"}


def layer_of(module: str) -> str:
    """The layer a dotted module name belongs to.

    >>> layer_of("streams.core.serve"), layer_of("streams.records"), layer_of("models.drift.adwin")
    ('streams.core', 'streams', 'models')
    """
    parts = module.split(".")
    if module == "streams.__main__":
        return module
    if parts[0] == "streams" and len(parts) > 2 and f"streams.{parts[1]}" in RANK:
        return f"streams.{parts[1]}"
    return parts[0]


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out.extend(f"{node.module}.{alias.name}" for alias in node.names if node.module == "streams")
    return out


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def violations(modules: dict[str, list[str]]) -> list[str]:
    """Every import that breaks the rules, as ``importer -> imported: why``.

    >>> for line in violations({"streams.core.serve": ["faust", "streams.records"],
    ...                         "models.learner": ["streams.records"], "streams.runtime.app": ["streams.ops.cli"],
    ...                         "streams.ops.cli": ["streams.runtime.app"]}):
    ...     print(line)
    streams.core.serve -> faust: I/O in a pure layer
    models.learner -> streams.records: lower layer imports a higher one
    streams.runtime.app -> streams.ops.cli: lower layer imports a higher one
    """
    found: list[str] = []
    for importer, imported_list in modules.items():
        own = layer_of(importer)
        for imported in imported_list:
            top = imported.split(".")[0]
            if own in PURE and top in IO_PACKAGES:
                if not any(importer == a and imported.startswith(b) for a, b in ALLOWED):
                    found.append(f"{importer} -> {imported}: I/O in a pure layer")
                continue
            if top not in {"streams", "models", "producers"}:
                continue
            other = layer_of(imported)
            if RANK.get(other, 0) > RANK.get(own, 0):
                found.append(f"{importer} -> {imported}: lower layer imports a higher one")
    return found


def project_modules() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for package in ("models", "streams", "producers"):
        for path in sorted((REPO / package).rglob("*.py")):
            out[module_name(path)] = imports_of(path)
    return out


def test_the_code_keeps_its_layers() -> None:
    assert violations(project_modules()) == []


def cycles(modules: dict[str, list[str]]) -> list[list[str]]:
    """Import cycles among the project's modules (imports inside functions count: they are cycles too).

    >>> cycles({"a.x": ["a.y"], "a.y": ["a.z"], "a.z": ["a.x"], "a.w": ["a.x"]})
    [['a.x', 'a.y', 'a.z']]
    """
    graph = {m: sorted({i for i in imported if i in modules and i != m}) for m, imported in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(m: str) -> None:  # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        for n in graph[m]:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = []
            while True:
                n = stack.pop()
                component.append(n)
                if n == m:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return found


def test_no_import_cycle() -> None:
    """E.g. the CLI commands share streams.ops.cli_common instead of importing each other."""
    assert cycles(project_modules()) == []


def test_the_layers_cover_every_streams_module() -> None:
    top_level = {m for m in project_modules() if m.startswith("streams.") and m.count(".") == 1}
    assert top_level <= {"streams.records", "streams.spec", "streams.settings", "streams.__main__", "streams.errors",
                         "streams.event_time", "streams.topics", "streams.testing",
                         "streams.features", "streams.core", "streams.runtime", "streams.ops"}


@pytest.mark.parametrize(
    ("importer", "imported"),
    [("streams.core.serve", "redis"), ("streams.features.engine", "aiokafka"), ("models.learner", "streams.records"),
     ("streams.runtime.app", "streams.ops.cli"), ("streams.core.join", "streams.runtime.store")],
)
def test_a_planted_violation_is_found(importer: str, imported: str) -> None:
    modules = project_modules()
    modules[importer] = [*modules[importer], imported]
    assert violations(modules) == [violations({importer: [imported]})[0]]


def test_no_production_module_imports_the_test_doubles() -> None:
    users = [m for m, imported in project_modules().items()
             if m != "streams.runtime.testing" and any(i.startswith("streams.runtime.testing") for i in imported)]
    assert users == []
