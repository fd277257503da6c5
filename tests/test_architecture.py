"""The layout holds: no import circle in the edge controller, the pure core imports
nothing else of the project, simulation stays out of production code, and the rooms of
the app stay small enough to read. Read from the source, so a violation fails here
before anyone reads a diff."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edge_controller"
PURE = ("edge_controller.ledger", "edge_controller.market", "edge_controller.metering")
SIMULATION = "edge_controller.simulation"
# Who may import the simulation: itself, the demo that runs on it, and the market benchmark,
# whose sellers' batteries are simulators in the benchmark's own process.
SIMULATION_USERS = (SIMULATION, "edge_controller.demo", "edge_controller.bench")
APP_FILE_LINES = 500
ASSEMBLY_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules a file imports (a `from package import name` of a submodule
    counts as that submodule)."""
    found: set[str] = set()
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_module_of_the_edge_controller_imports_itself_around_a_circle() -> None:
    assert cycles(graph()) == []


def test_ledger_market_and_metering_import_nothing_else_of_the_project() -> None:
    edges = graph()
    for package in PURE:
        outside = {
            (m, i)
            for m, imported in edges.items()
            if within(m, package)
            for i in imported
            if not within(i, package)
        }
        assert outside == set(), f"{package} reaches out of itself"


def test_only_the_simulation_and_the_demo_import_the_simulation() -> None:
    users = {
        m
        for m, imported in graph().items()
        if any(within(i, SIMULATION) for i in imported)
        and not any(within(m, allowed) for allowed in SIMULATION_USERS)
    }
    assert users == set()


def test_the_rooms_of_the_app_stay_small_enough_to_read() -> None:
    sizes = {
        p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
        for folder in ("app", "usb")
        for p in (PACKAGE / folder).rglob("*.py")
    }
    too_long = {f: n for f, n in sizes.items() if n > APP_FILE_LINES}
    assert too_long == {}
    assert sizes["edge_controller/app/home.py"] <= ASSEMBLY_LINES
