"""The layers of the code, enforced: every import (at module level, inside functions, under
TYPE_CHECKING) goes down the layer order or stays within a layer, and no module imports itself
back through others. docs/design.md draws the same order.

    capture (standalone) | base -> model and formats -> sources (cluster) -> graph -> planner
    -> policy IR -> dialects -> evaluator -> targets -> analysis -> views -> pipeline
    -> monitor -> notebook and facade -> cli
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]

# (layer, module prefixes); a module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("segmenter.errors", "segmenter.fileio", "segmenter.documents", "segmenter.gcpause",
              "segmenter.k8s", "segmenter.compliance", "segmenter.version")),
    ("model and formats", ("segmenter.model", "segmenter.render", "segmenter.flowfile",
                           "segmenter.config")),
    ("sources", ("segmenter.cluster",)),
    ("graph", ("segmenter.graph",)),
    ("planner", ("segmenter.planner",)),
    ("policy IR", ("segmenter.policy",)),
    ("dialects", ("segmenter.dialects",)),
    ("evaluator", ("segmenter.evaluate",)),
    ("targets", ("segmenter.targets",)),
    ("analysis", ("segmenter.analysis", "segmenter.apply")),
    ("views", ("segmenter.views",)),
    ("pipeline", ("segmenter.pipeline", "segmenter.synthetic")),
    ("monitor", ("segmenter.monitor",)),
    ("notebook and facade", ("segmenter.notebook", "segmenter")),
    ("cli", ("segmenter.cli",)),
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The layer of a project module (None for capture, which stands alone)."""
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                    best is None or len(prefix) > best[0]):
                best = (len(prefix), name)
    return best[1] if best else None


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in ("segmenter", "capture")
            for p in (REPO / package).rglob("*.py")}


def imports(path: Path, modules: set[str]) -> set[str]:
    """Every project module ``path`` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from segmenter import pipeline` imports the module segmenter.pipeline (not the
            # facade); `from segmenter.model import Flow` imports segmenter.model.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                     else node.module for a in node.names]
        else:
            continue
        for name in names:
            module = name
            while module and module not in modules:
                module = module.rpartition(".")[0]
            if module:
                found.add(module)
    return found


@pytest.fixture(scope="module")
def dependency_graph() -> nx.DiGraph:
    modules = project_modules()
    graph = nx.DiGraph()
    for module, path in modules.items():
        graph.add_node(module)
        for target in imports(path, set(modules)):
            if target != module:
                graph.add_edge(module, target)
    return graph


def test_every_segmenter_module_has_a_layer(dependency_graph: nx.DiGraph) -> None:
    unplaced = sorted(m for m in dependency_graph if m.startswith("segmenter")
                      and layer_of(m) is None)
    assert unplaced == []


def test_no_import_cycles(dependency_graph: nx.DiGraph) -> None:
    cycles = [sorted(c) for c in nx.strongly_connected_components(dependency_graph)
              if len(c) > 1]
    assert cycles == []


def test_imports_follow_the_layer_order(dependency_graph: nx.DiGraph) -> None:
    against = []
    for source, target in dependency_graph.edges:
        if source.startswith("capture"):
            if target.startswith("segmenter"):
                against.append(f"{source} -> {target} (capture stands alone)")
            continue
        src, dst = layer_of(source), layer_of(target)
        if src is not None and dst is not None and RANK[dst] > RANK[src]:
            against.append(f"{source} ({src}) -> {target} ({dst})")
    assert sorted(against) == []


def test_nothing_imports_the_cli(dependency_graph: nx.DiGraph) -> None:
    importers = sorted(s for s, t in dependency_graph.edges
                       if layer_of(t) == "cli" and layer_of(s) != "cli")
    assert importers == []


def test_no_module_over_800_lines() -> None:
    """The C ingest loop aside: modules are split along their seams before they grow past
    this (a reader holds one in mind)."""
    long = sorted(f"{module} ({n} lines)" for module, path in project_modules().items()
                  if (n := len(path.read_text(encoding="utf-8").splitlines())) > 800)
    assert long == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The layer check can fail: a planner that imported the CLI would be reported."""
    bad = tmp_path / "planner.py"
    bad.write_text("def f():\n    from segmenter.cli import main\n    return main\n")
    modules = set(project_modules())
    found = imports(bad, modules)
    assert found == {"segmenter.cli"}
    assert RANK[layer_of("segmenter.cli") or ""] > RANK[layer_of("segmenter.planner") or ""]
