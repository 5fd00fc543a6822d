"""The package's structure, read with `ast` so it stays true: few top-level modules, no import cycles (imports
inside functions included), no private names across modules, ray only under autoft/search/, no paddle where
DESIGN.md says the code must run without it."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path


import autoft

ROOT = Path(autoft.__file__).parent
PADDLE_FREE = ("autoft.config", "autoft.run", "autoft.cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(module: str) -> Iterator[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import statement anywhere in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                yield base, alias.name


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, name in _imports(module):
            full = f"{target}.{name}" if name else target
            hit = full if full in MODULES else target if target in MODULES else None
            if hit is not None and hit != module:
                edges[module].add(hit)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), packages importing their own parts aside."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return [c for c in found if len(c) > 1 and not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]


def test_at_most_six_modules_sit_directly_in_the_package() -> None:
    flat = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(flat) <= 6, flat


def test_no_import_cycles_even_through_imports_inside_functions() -> None:
    assert _cycles(_edges()) == []


def test_no_private_name_is_imported_from_another_module() -> None:
    private = [f"{m} <- {target}.{name}" for m in MODULES for target, name in _imports(m)
               if name and name.startswith("_") and not name.startswith("__") and target.startswith("autoft")
               and target != m]
    assert private == []


def test_only_the_search_package_imports_ray() -> None:
    outside = sorted(m for m in MODULES if not m.startswith("autoft.search")
                     and any(t.split(".")[0] == "ray" for t, _ in _imports(m)))
    assert outside == []


def test_config_run_and_cli_never_import_paddle() -> None:
    offenders = sorted(m for m in MODULES if m.startswith(PADDLE_FREE)
                       and any(t.split(".")[0] == "paddle" for t, _ in _imports(m)))
    assert offenders == []


def test_the_checks_see_what_they_look_for() -> None:
    """The rules above would pass on a parser that finds nothing: it must find the imports the code does have."""
    edges = _edges()
    assert "autoft.search.trial" in {m for m, targets in edges.items() for t in targets} | set(edges)
    assert any(t.split(".")[0] == "ray" for t, _ in _imports("autoft.search.tuner"))
    assert "autoft.run.records" in edges["autoft.run.leaderboard"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
