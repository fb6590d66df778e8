"""The house's rules, read off the source (issue 21): data flows one way — no import cycle, a shallow import graph —
and no module reaches into another module's private names.

Every import counts, also those inside functions (they run too). A package's ``__init__`` counts as imported by
each module that imports one of its submodules."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "kernelscope"

#: The longest chain of imports (modules on it, the importer and _arrays included). Before issue 21: 17.
MAX_DEPTH = 12


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


MODULES = _modules()


def _target(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return package + ("." + node.module if node.module else "")


def _imports(module: str) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import statement of ``module``."""
    out = []
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name.startswith("kernelscope")]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            target = _target(module, node)
            if target.startswith("kernelscope"):
                out += [(target, a.name) for a in node.names]
    return out


@functools.cache
def _graph() -> dict[str, frozenset[str]]:
    graph = {}
    for m in MODULES:
        deps = set()
        for target, name in _imports(m):
            sub = f"{target}.{name}" if name else None
            if sub in MODULES:
                deps.add(sub)
            elif target in MODULES:
                deps.add(target)
        for d in list(deps):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            parts = d.split(".")
            deps.update(".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in MODULES)
        deps -= {m}
        deps = {d for d in deps if not m.startswith(d + ".")}  # a submodule's own packages are already running
        graph[m] = frozenset(deps)
    return graph


def _cycle() -> list[str] | None:
    graph, state, stack = _graph(), {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_import_graph_is_shallow():
    assert _cycle() is None
    graph = _graph()

    @functools.cache
    def chain(m: str) -> tuple[str, ...]:
        longest = max((chain(d) for d in graph[m]), key=len, default=())
        return (m, *longest)

    longest = max((chain(m) for m in graph), key=len)
    assert len(longest) <= MAX_DEPTH, f"{len(longest)} levels: " + " -> ".join(longest)


def test_no_module_reaches_into_another_modules_privates():
    """``from kernelscope.x import _y`` and ``x._y`` across modules are refused; the package-private modules
    (``_arrays``, ``_model``, ...) are shared ground floors whose public names everyone may use."""
    offences = []
    for m, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = {}  # local name -> kernelscope module it is bound to
        for target, name in _imports(m):
            if name and name.startswith("_") and not name.startswith("__") and f"{target}.{name}" not in MODULES:
                offences.append(f"{m}: from {target} import {name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                target = _target(m, node)
                for a in node.names:
                    if f"{target}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{target}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in MODULES and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and aliases[node.value.id] != m):
                offences.append(f"{m}: {aliases[node.value.id]}.{node.attr}")
    assert not offences, "\n".join(sorted(set(offences)))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_reads_in_a_few_hundred_lines(module):
    """STYLE.md: a module should read top to bottom in a few hundred lines; split by concept when it grows."""
    assert len(MODULES[module].read_text().splitlines()) <= 900
