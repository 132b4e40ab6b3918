"""The layout stays true to docs/architecture.md: dependencies point one way and no module imports itself
back through another. Imports are read from the source (module level and inside functions alike)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each package and the tclearn packages it may import (besides the shared leaf modules below).
LEAVES = {
    "tclearn",
    "tclearn.errors",
    "tclearn.types",
    "tclearn.protocol",
    "tclearn.canonical",
    "tclearn.records",
    "tclearn.keyfile",
    "tclearn.logs",
}
ALLOWED: dict[str, set[str]] = {
    "tclearn.state": set(),
    "tclearn.config": set(),
    "tclearn.vault": {"tclearn.config", "tclearn.state", "tclearn.ledger"},
    "tclearn.ledger": {"tclearn.config", "tclearn.state"},
    "tclearn.learning": set(),
    "tclearn.he": {"tclearn.config", "tclearn.state", "tclearn.vault", "tclearn.learning", "tclearn.ledger"},
    "tclearn.audit": {"tclearn.config", "tclearn.state", "tclearn.vault", "tclearn.ledger", "tclearn.learning"},
    "tclearn.coalition": {"tclearn.vault", "tclearn.ledger", "tclearn.learning", "tclearn.he"},
    "tclearn.site": {"tclearn.coalition"},
}
ALLOWED["tclearn.site"] |= ALLOWED["tclearn.coalition"] | {"tclearn.config", "tclearn.state"}
ALLOWED["tclearn.simulation"] = ALLOWED["tclearn.site"] | {"tclearn.site", "tclearn.audit"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("tclearn", "services")}


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


GRAPH = {module_name(p): imports(p) for p in sorted((ROOT / "tclearn").rglob("*.py"))}


def test_the_library_never_imports_the_services() -> None:
    """Only the CLI's serve commands reach into `services/`: they build a service's settings and hand them to its
    app factory (and import it inside the command, so that `tclearn --help` does not load FastAPI apps)."""
    offenders = {
        m: sorted(i for i in deps if i.startswith("services"))
        for m, deps in GRAPH.items()
        if not m.startswith("tclearn.cli.")
    }
    assert not {m: d for m, d in offenders.items() if d}


def test_dependencies_point_one_way() -> None:
    wrong = []
    for module, deps in GRAPH.items():
        own = package_of(module)
        if own not in ALLOWED:
            continue  # cli wires everything
        for dep in deps:
            target = dep if dep in LEAVES else package_of(dep)
            if target != own and target not in LEAVES and target not in ALLOWED[own]:
                wrong.append(f"{module} -> {dep}")
    assert not wrong, "\n".join(wrong)


def test_leaves_import_only_leaves() -> None:
    wrong = [f"{leaf} -> {dep}" for leaf in sorted(LEAVES - {"tclearn"}) for dep in GRAPH[leaf] if dep not in LEAVES]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_modules() -> None:
    known = set(GRAPH)

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: {r for d in deps if (r := resolve(d)) and r != m and r != "tclearn"} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles
