"""Layering: posegate/ is the generic machinery and never imports the model folders, and its modules
import one another without cycles. Read from the source with ``ast`` (function-level imports count:
a lazy import hides a dependency, it does not remove it); the checker is shown to catch planted faults.

At the package level ("rooms": posegate's sub-packages, and each root module as a room of its own) the
graph has no cycle either, and every arrow runs down a declared order of layers (``LAYERS``).
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


# The rooms, lowest first; a room imports only rooms of its own layer or below. Read from the code (the
# order it has), not wished on it: each layer names what it is for.
LAYERS = (
    ("posegate", "compat", "storage", "cli_options"),  # version shims, bytes on disk, option names: no posegate
    ("weights", "flows", "golden"),  # checkpoints; how a task's data moves; upstream-output comparisons
    ("datasets",),  # data folders, validated (digests from storage, file digests from weights)
    ("metrics",),  # AP, MPJPE, parity arithmetic over datasets
    ("spec", "export", "port"),  # a model's declaration; ONNX/TorchScript export; the audit of a team's files
    ("backends", "artifacts"),  # engines; a supplied converted model bound to its contract
    ("registry", "context"),  # the one dict of specs; what a run found (data, weights, artifacts)
    ("cases",),  # test cases generated from the registries
    ("pipeline",),  # the stages as cached artifacts: builds, sessions, batches, predictions, shards
    ("training",),  # seed 003's training; validates through the pipeline's progress line
    ("gate", "diagnosis"),  # judging results (baselines, throughput, report); localising and reducing failures
    ("startup_checks", "pytest_plugin"),  # the session's entry: option and input checks, the option plugin
)


def room(module: str, package: str = "posegate") -> str:
    """``posegate.gate.baseline`` -> ``gate``; a root module is its own room; the package's __init__ is
    ``posegate``."""
    parts = module.split(".")
    return package if len(parts) == 1 else parts[1]


def room_graph(edges: dict[str, set[str]]) -> dict[str, dict[str, list[str]]]:
    """{room: {room it imports: the module arrows that make it}}, arrows within a room left out."""
    rooms = {room(m): {} for m in edges}
    for m, targets in sorted(edges.items()):
        for t in sorted(targets):
            if room(m) != room(t):
                rooms[room(m)].setdefault(room(t), []).append(f"{m} -> {t}")
    return rooms


def room_problems(modules: dict[str, str], packages: set[str] = frozenset(), layers=LAYERS) -> list[str]:
    """Rooms no layer declares, cycles between rooms, and every arrow that runs up the layers."""
    rooms = room_graph(graph(modules, packages))
    level = {r: i for i, layer in enumerate(layers) for r in layer}
    out = [f"room {r} is in no layer: add it to LAYERS where its imports put it" for r in sorted(rooms)
           if r not in level]
    found = cycles({r: set(arrows) for r, arrows in rooms.items()})
    out += [f"package cycle: {' <-> '.join(sorted(c))}" for c in found]
    for r, arrows in sorted(rooms.items()):
        for t, via in sorted(arrows.items()):
            if r in level and t in level and level[t] > level[r]:
                out.append(f"{r} -> {t} runs up (layer {level[r]} imports layer {level[t]}): {via[0]}")
    return out


def _packages(root: Path = REPO, package: str = "posegate") -> set[str]:
    return {module_name(p.relative_to(root)) for p in (root / package).rglob("__init__.py")}


def test_rooms_have_no_cycle_and_no_arrow_runs_up():
    modules = sources()
    rooms = room_graph(graph(modules, _packages()))
    assert len(rooms) >= 20, f"the checker found too few rooms to mean anything: {sorted(rooms)}"
    found = room_problems(modules, _packages())
    assert not found, "\n".join(found)
    declared = {r for layer in LAYERS for r in layer}
    assert declared == set(rooms), f"LAYERS names rooms that do not exist: {sorted(declared - set(rooms))}"


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


# ---- the room checker catches planted faults -------------------------------------------------------

ROOMS = {"posegate.storage.cache": "import os\n", "posegate.gate.report": "from posegate.storage import cache\n",
         "posegate.metrics": "from posegate.storage.cache import Cache\n", "posegate.spec": "import numpy\n"}
PLANT_LAYERS = (("storage",), ("metrics", "spec"), ("gate",))


@pytest.mark.parametrize("planted, expected", [
    ({"posegate.storage.cache": "from posegate.gate.report import Summary\n"},
     ["package cycle: gate <-> storage",
      "storage -> gate runs up (layer 0 imports layer 2): posegate.storage.cache -> posegate.gate.report"]),
    ({"posegate.storage.index": "def f():\n    from posegate.spec import ModelSpec\n"},
     ["storage -> spec runs up (layer 0 imports layer 1): posegate.storage.index -> posegate.spec"]),
    # no module cycle (metrics -> storage.cache, storage.serial -> spec -> metrics), but a cycle between rooms
    ({"posegate.storage.serial": "from posegate import spec\n", "posegate.spec": "from posegate import metrics\n"},
     ["package cycle: metrics <-> spec <-> storage",
      "storage -> spec runs up (layer 0 imports layer 1): posegate.storage.serial -> posegate.spec"]),
    ({"posegate.metrics": "import numpy\n", "posegate.spec": "from posegate.metrics import METRICS\n",
      "posegate.storage.serial": "import numpy\n"}, []),  # an arrow within a layer is allowed
    ({"posegate.newroom": "import numpy\n"}, ["room newroom is in no layer: add it to LAYERS where its imports "
                                               "put it"]),
], ids=["upward-arrow-and-cycle", "lazy-upward-arrow", "package-cycle-without-module-cycle", "within-a-layer",
        "undeclared-room"])
def test_room_checker_catches_a_planted_fault(planted, expected):
    assert room_problems(ROOMS, layers=PLANT_LAYERS) == []
    assert room_problems({**ROOMS, **planted}, layers=PLANT_LAYERS) == expected


def test_a_package_cycle_is_caught_where_the_modules_have_none():
    """metrics -> storage.cache, storage.serial -> spec -> metrics: no module is on a cycle, the rooms are."""
    planted = {**ROOMS, "posegate.storage.serial": "from posegate import spec\n",
               "posegate.spec": "from posegate import metrics\n"}
    assert problems(planted) == []
    assert room_problems(planted, layers=(("storage", "metrics", "spec", "gate"),)) == [
        "package cycle: metrics <-> spec <-> storage"]
