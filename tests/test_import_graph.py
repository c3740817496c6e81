"""The package imports without circles: registries are leaves, packages import their modules.

Edges are every import written in backend/ and app/, at module level or deferred inside a function
(a deferred import that closes a circle is still a circle), resolved to project modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name in modules:
                found.add(name)
    return found


def import_graph() -> nx.DiGraph:
    files = [p for top in ("backend", "app") for p in (REPO / top).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for target in project_imports(path, set(modules)):
            if target != name:
                graph.add_edge(name, target)
    return graph


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert graph.number_of_edges() > 50  # the graph was really built
    cycles = list(nx.simple_cycles(graph))
    assert cycles == [], f"import cycles: {cycles[:5]}"


def test_registries_are_leaves() -> None:
    graph = import_graph()
    for leaf in ("backend.registry", "backend.labs.base", "backend.models.registry", "backend.data.registry"):
        reach = nx.descendants(graph, leaf)
        assert not any(m.startswith(("backend.labs.", "backend.models.zoo")) for m in reach - {leaf}), (
            leaf,
            sorted(reach),
        )


def test_the_detector_finds_a_planted_cycle(tmp_path: Path) -> None:
    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")])
    assert list(nx.simple_cycles(graph))
