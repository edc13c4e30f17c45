"""The library's layers point one way (issue 8, DESIGN.md), checked on the source text.

Every ``import`` of a ``covid_lib`` module, at the top of a file or inside a function, may only
reach the same layer or a lower one, and the module graph (function-level imports included) has
no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from covid_lib.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "covid_lib"

#: Layer ranks, lowest first: a module may import only from its own rank or lower ones. The tree
#: reads data -> preprocess -> models -> train -> evaluate -> runs -> grid -> analysis -> report ->
#: book -> audit -> cli (issues 18, 20). ``models`` sits below ``preprocess`` because the chain loads the lung
#: U-Net; ``provenance`` asks the data layer for the data version; ``stats``, ``metrics`` and
#: ``power`` are the numeric base every layer may use.
LAYERS: list[tuple[str, ...]] = [
    ("covid_lib", "covid_lib.names", "covid_lib.paths", "covid_lib.profiles", "covid_lib.stats", "covid_lib.power",
     "covid_lib.metrics", "covid_lib.paper"),
    ("covid_lib.data",),
    ("covid_lib.provenance",),
    ("covid_lib.models",),
    ("covid_lib.preprocess",),
    ("covid_lib.train", "covid_lib.segment"),
    ("covid_lib.evaluate",),
    ("covid_lib.runs",),
    ("covid_lib.grid",),
    ("covid_lib.analysis",),
    ("covid_lib.report",),
    ("covid_lib.book",),
    ("covid_lib.audit",),
    ("covid_lib.cli", "covid_lib.__main__"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def rank(module: str) -> int:
    """The layer of ``module``: the longest matching prefix in :data:`LAYERS`."""
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    if best is None:
        raise KeyError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best


def imports_of(path: Path) -> set[str]:
    """Every covid_lib module ``path`` imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("covid_lib")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("covid_lib"):
                continue
            for alias in node.names:  # `from covid_lib.data import compose` may name a submodule
                sub = f"{base}.{alias.name}"
                found.add(sub if (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists()
                          or (PACKAGE.parent / Path(*sub.split("."))).is_dir() else base)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_reaches_a_higher_layer(module):
    mine = rank(module)
    up = sorted(t for t in imports_of(MODULES[module]) if rank(t) > mine)
    assert not up, f"{module} (layer {mine}) imports from higher layers: {up}"


def test_rank_helper():
    assert rank("covid_lib.data.compose") < rank("covid_lib.preprocess") < rank("covid_lib.train.fit")
    assert rank("covid_lib.cli.data") > rank("covid_lib.book")
    with pytest.raises(KeyError):
        rank("covid_lib_other")


def test_no_import_cycles_even_inside_functions():
    graph = {m: {t for t in imports_of(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    # a package's __init__ re-exporting its submodules is not a cycle with them; any other loop is
    for m in graph:
        if MODULES[m].name == "__init__.py":
            graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
