"""The package's imports point down: no circle, no module importing a layer above its own.

Every import counts, at module level or inside a function (an import inside a function still
makes the lower module depend on the higher one; it only hides the circle from the reader).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "speechsum_cli"

LAYERS: list[tuple[str, ...]] = [
    (
        "speechsum_cli",
        "speechsum_cli.errors",
        "speechsum_cli.console",
        "speechsum_cli.fs",
        "speechsum_cli.redact",
        "speechsum_cli.generation",
        "speechsum_cli.dtypes",
        "speechsum_cli.typed",
    ),
    ("speechsum_cli.manifest", "speechsum_cli.prompts"),
    ("speechsum_cli.llm",),
    ("speechsum_cli.data",),
    ("speechsum_cli.metrics",),
    ("speechsum_cli.families",),
    ("speechsum_cli.inference", "speechsum_cli.teacher"),
    ("speechsum_cli.training",),
    ("speechsum_cli.stages",),
    ("speechsum_cli.cli",),
    ("speechsum_cli.app", "speechsum_cli.__main__"),
]
"""Bottom first. A module may import its own layer and the layers below, never one above."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def owner(name: str) -> str | None:
    """The package module ``name`` refers to (``a.b.C`` -> ``a.b``), or None outside the package."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imported(module: str) -> set[str]:
    """Every package module ``module`` imports, anywhere in its body."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(filter(None, (owner(a.name) for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                target = owner(f"{base}.{alias.name}") or owner(base)
                if target:
                    found.add(target)
    found.discard(module)
    return found


GRAPH = {module: imported(module) for module in MODULES}


def layer(module: str) -> int:
    """The index of the layer ``module`` belongs to (the longest matching prefix decides)."""
    best, length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = index, len(prefix)
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best


def circles() -> list[list[str]]:
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
        for w in GRAPH[v]:
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

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


def test_no_import_circle():
    assert circles() == []


def test_no_module_imports_a_layer_above_its_own():
    upward = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets if layer(t) > layer(m))
    assert upward == []


def test_no_stage_imports_another_stage():
    def stage(module: str) -> str | None:
        parts = module.split(".")
        return parts[2] if len(parts) > 2 and parts[1] == "stages" else None

    crossing = sorted(
        f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets if stage(m) and stage(t) and stage(m) != stage(t)
    )
    assert crossing == []


def test_the_checker_sees_imports_inside_functions():
    """The graph is only as good as its parser: an import inside a function counts."""
    assert "speechsum_cli.inference.feature_cache" in GRAPH["speechsum_cli.training.run"]
    assert "speechsum_cli.families.registry" in GRAPH["speechsum_cli.families.served"]
