"""The import graph of backend/, blender_addon/ and protocol/ has no cycles (pure Python: the
files are parsed with ast, nothing is imported).

Every import counts, the ones inside functions too (a lazy import still ties two modules
together); `from pkg import name` counts as an import of pkg.name when that is a module. An
import of a module's own parent package does not count (Python imports parents first
anyway). Checked twice: between modules, and between backend's packages (pipeline/, recon/,
texture/, ...), where the stage packages depend on backend/contracts.py, never on the
orchestrator in pipeline/.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOPS = ("backend", "blender_addon", "protocol")


def _name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "gen3dface." + ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    files = {_name(p): p for top in TOPS for p in (REPO / top).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1]
                                    + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            else:
                continue
            for t in targets:
                if t in files and t != mod and not mod.startswith(t + "."):
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """backend's packages (gen3dface.backend.X) and the modules directly in backend/."""
    def pkg(m: str) -> str:
        return ".".join(m.split(".")[:3])

    out: dict[str, set[str]] = {}
    for m, targets in graph.items():
        if not m.startswith("gen3dface.backend."):
            continue
        out.setdefault(pkg(m), set()).update(pkg(t) for t in targets
                                             if t.startswith("gen3dface.backend.")
                                             and pkg(t) != pkg(m))
    for targets in list(out.values()):
        for t in targets:
            out.setdefault(t, set())
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_import_cycles():
    graph = import_graph()
    assert "gen3dface.backend.contracts" in graph and "gen3dface.blender_addon.wire" in graph
    assert cycles(graph) == []


def test_no_cycles_between_backend_packages():
    assert cycles(_packages(import_graph())) == []


def test_the_stage_contracts_depend_on_nothing_and_stages_not_on_the_orchestrator():
    graph = import_graph()
    assert graph["gen3dface.backend.contracts"] == set()
    stage_packages = ("face", "fitting", "texture", "recon", "mvdiff", "export", "headmodel",
                      "render", "data")
    for mod, targets in graph.items():
        if mod.split(".")[2:3] and mod.split(".")[2] in stage_packages:
            bad = sorted(t for t in targets if t.startswith("gen3dface.backend.pipeline"))
            assert not bad, f"{mod} imports the orchestrator: {bad}"
    # the old name is a re-export only; nothing in the repository imports it any more
    users = sorted(m for m, t in graph.items() if "gen3dface.backend.pipeline.events" in t)
    assert users == [], users
