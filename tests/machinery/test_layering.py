"""Layering: posegate/ is the generic machinery and never imports the model folders, and its modules
import one another without cycles. Read from the source with ``ast`` (function-level imports count:
a lazy import hides a dependency, it does not remove it); the checker is shown to catch planted faults.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

STAGE = "weights"
pytestmark = pytest.mark.stage

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = "models"
# Cycles known on this branch and broken on another (the lint part of issue 14 moves Score out of the
# metrics package); an entry that no longer matches a cycle fails, so it is deleted once that lands.
EXEMPT: set[frozenset[str]] = set()


def module_name(rel: Path) -> str:
    return ".".join(rel.with_suffix("").parts).removesuffix(".__init__")


def sources(root: Path = REPO, package: str = "posegate") -> dict[str, str]:
    """{dotted module name: source} of every .py file under ``root/package``."""
    return {module_name(p.relative_to(root)): p.read_text() for p in sorted((root / package).rglob("*.py"))}


def imported(module: str, source: str, is_package: bool = False) -> set[str]:
    """Every module name ``source`` imports, relative imports resolved against ``module``."""
    names = set()
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return names


def graph(modules: dict[str, str], packages: set[str] = frozenset()) -> dict[str, set[str]]:
    """Edges between the given modules (an import of pkg.mod.name lands on the longest known prefix)."""
    edges = {m: set() for m in modules}
    for m, src in modules.items():
        for name in imported(m, src, m in packages):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != m:
                edges[m].add(name)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def problems(modules: dict[str, str], packages: set[str] = frozenset(), exempt=frozenset()) -> list[str]:
    """Every import of ``models`` from the given modules, and every import cycle among them."""
    out = []
    for m, src in sorted(modules.items()):
        bad = sorted(n for n in imported(m, src, m in packages) if n.split(".")[0] == FORBIDDEN)
        if bad:
            out.append(f"{m} imports {bad[0]}: posegate must not import models/ (take it from the spec)")
    found = cycles(graph(modules, packages))
    out += [f"import cycle: {' <-> '.join(sorted(c))}" for c in found if c not in exempt]
    out += [f"exempted cycle {' <-> '.join(sorted(c))} is gone: delete it from EXEMPT" for c in exempt
            if c not in found]
    return out


def _packages(root: Path = REPO, package: str = "posegate") -> set[str]:
    return {module_name(p.relative_to(root)) for p in (root / package).rglob("__init__.py")}


def test_posegate_never_imports_models_and_has_no_import_cycle():
    modules = sources()
    assert len(modules) > 50, "the checker found too few modules to mean anything"
    assert problems(modules, _packages(), EXEMPT) == []


# ---- the checker catches planted faults ---------------------------------------------------------

CLEAN = {"posegate.a": "from posegate import b\n", "posegate.b": "import numpy\n"}


@pytest.mark.parametrize("planted, expected", [
    ({"posegate.c": "from models import MODELS\n"}, "posegate.c imports models"),
    ({"posegate.c": "import models.mspn_2xstg.codec as codec\n"}, "posegate.c imports models"),
    ({"posegate.c": "def f():\n    from models.lightweight_openpose import codec\n    return codec\n"},
     "posegate.c imports models"),
    ({"posegate.b": "from posegate.a import thing\n"}, "import cycle: posegate.a <-> posegate.b"),
    ({"posegate.b": "def f():\n    from posegate import a\n"}, "import cycle: posegate.a <-> posegate.b"),
    ({"posegate.b": "from . import a\n"}, "import cycle: posegate.a <-> posegate.b"),
], ids=["from-import", "dotted-import", "lazy-import", "cycle", "lazy-cycle", "relative-cycle"])
def test_checker_catches_a_planted_fault(planted, expected):
    assert problems(CLEAN) == []
    found = problems({**CLEAN, **planted})
    assert len(found) == 1 and found[0].startswith(expected), found


def test_checker_passes_look_alikes():
    # a module merely named like the package, or a string mentioning it, is no import
    look_alikes = {**CLEAN, "posegate.c": "import models_extra\nNAME = 'models'\nfrom posegate.b import models\n"}
    assert problems(look_alikes) == []


def test_a_stale_exemption_fails():
    assert problems(CLEAN, exempt={frozenset({"posegate.a", "posegate.b"})}) == \
        ["exempted cycle posegate.a <-> posegate.b is gone: delete it from EXEMPT"]
