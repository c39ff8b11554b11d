"""The search: the smallest subgraph of a failing export that still fails the same way on its backend.

Localisation names the first tensor beyond its tolerance (the target). The candidates are the target's
node with everything it is computed from back to a start index in topological order, fed at the cut
tensors with the torch reference's values (``subgraph.cone``); the smallest is the target's node and
the uncompared nodes just before it, the largest its whole cone from the graph inputs. The smallest is
tried first (a fault of one node reproduces there: one conversion); otherwise the start is bisected,
keeping the latest start that still reproduces (an error that accumulates over many layers needs them).

"The same failure" is checked on every parity input the full model fails on, not one: within the
candidate, every compared tensor is an output too, and on each such input the first one beyond its
tolerance must be the target, with the same class (out of tolerance, NaN/Inf, shape). A candidate whose
error shows earlier, or differently, is another failure (the drift Polygraphy's and torch's minifiers
allow) and is rejected.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from posegate.backends.probing import OrtProbe
from posegate.diagnosis.reduce.reference import CannotReduce, capture
from posegate.diagnosis.reduce.subgraph import boundary, cone, extract, producers

TOLERANCE, NONFINITE, SHAPE = "out of tolerance", "NaN/Inf", "shape"
NOTHING = "nothing to reduce"


def budget(nodes: int) -> int:
    """The issue's bound on backend conversions for a graph of ``nodes`` nodes."""
    return int(2 * math.log2(max(nodes, 2))) + 10


def judge(got: np.ndarray, ref: np.ndarray, tolerance: float) -> dict:
    """One tensor against its reference, relative to the reference's range (localisation's rule)."""
    got = np.asarray(got)
    if got.shape != ref.shape:
        return {"class": SHAPE, "max_rel": None, "nan": 0, "inf": 0, "shape": list(got.shape)}
    a, b = got.astype(np.float32, copy=False), ref.astype(np.float32, copy=False)
    finite = np.isfinite(a) & np.isfinite(b)
    nan, inf = int(np.isnan(a[np.isfinite(b)]).sum()), int(np.isinf(a[np.isfinite(b)]).sum())
    a, b = a[finite], b[finite]
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    rel = err / scale if scale > 0 else err
    cls = NONFINITE if (nan or inf) else TOLERANCE if rel > tolerance else None
    return {"class": cls, "max_rel": rel, "nan": nan, "inf": inf}


def judge_rows(outputs: list[str], got: dict, expected: dict, tolerance: float, rows: int) -> list[dict]:
    """Per parity input: the first output (graph order) beyond its tolerance and how, else none."""
    verdicts = []
    for r in range(rows):
        first = None
        for name in outputs:
            if name not in expected:  # no torch value (a shape bundle's tensor torch never computes): not judged
                continue
            g, e = got[name], expected[name]
            if rows > 1 and e.shape[:1] == (rows,) and g.shape[:1] == (rows,):
                g, e = g[r:r + 1], e[r:r + 1]
            v = judge(g, e, tolerance)
            if v["class"] is not None:
                first = {"tensor": name, **v}
                break
        verdicts.append({"row": r, "first": first and first["tensor"], "class": first and first["class"],
                         "max_rel": first and first["max_rel"], "nan": first["nan"] if first else 0,
                         "inf": first["inf"] if first else 0})
    return verdicts


@dataclass
class Reduction:
    backend: str
    precision: str
    tolerance: float
    graph_nodes: int
    target: dict = field(default_factory=dict)  # tensor, node, op_type, module, class
    nothing: str | None = None  # why there is no bundle ("nothing to reduce: ...")
    nodes: list[str] = field(default_factory=list)  # the kept ONNX nodes, graph order
    op_types: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    rows_required: list[int] = field(default_factory=list)  # the parity inputs the full model fails on
    rows: list[dict] = field(default_factory=list)  # the chosen subgraph's verdict per parity input
    reproduces: bool = False
    conversions: int = 0  # subgraph builds on the backend
    localisation_runs: int = 0  # backend runs localisation made (its probe)
    budget: int = 0
    tried: list[dict] = field(default_factory=list)
    peak_reference_bytes: int = 0  # the most reference tensor bytes held at once
    seconds: float = 0.0

    @property
    def backend_runs(self) -> int:
        return self.conversions + self.localisation_runs

    def describe(self) -> str:
        if self.nothing:
            return self.nothing
        t = self.target
        how = "reproduces" if self.reproduces else "does NOT reproduce"
        return (f"reduced {self.graph_nodes} nodes to {len(self.nodes)} ({', '.join(self.op_types[:8])}"
                f"{'...' if len(self.op_types) > 8 else ''}) ending at {t['node']} ({t['op_type']}, module "
                f"{t['module'] or '-'}): {how} the {t['class']} failure on {len(self.rows_required)} parity "
                f"input(s); {self.conversions} conversions + {self.localisation_runs} localisation run(s) "
                f"(budget {self.budget})")

    def as_dict(self) -> dict:
        keep = ("backend", "precision", "tolerance", "graph_nodes", "target", "nothing", "nodes", "op_types",
                "inputs", "outputs", "rows_required", "rows", "reproduces", "conversions", "localisation_runs",
                "budget", "tried", "peak_reference_bytes", "seconds")
        return {k: getattr(self, k) for k in keep}


def reduce(source: Path, model, loc, runner, x: np.ndarray, io, model_outputs: tuple[str, ...],
           required_rows: list[int] | None = None):
    """(Reduction, (subgraph, feeds, expected) or None) for the failure ``loc`` localised in ``source``.

    ``x``: every parity input (torch side, batch first); ``io``: the engine's input name and scaling;
    ``required_rows``: the inputs the full model fails on (default: all).
    """
    start = time.perf_counter()
    onnx_model = onnx.load(str(source))
    graph = OrtProbe(source, io)  # nodes in graph order, and every tensor's type
    nodes, types = graph.nodes(), graph._types
    result = Reduction(runner.backend, runner.precision, loc.tolerance, len(nodes), budget=budget(len(nodes)),
                       localisation_runs=loc.runs)
    rows = int(x.shape[0])
    result.rows_required = list(range(rows)) if required_rows is None else sorted(required_rows)
    if loc.first is None:
        result.nothing = f"{NOTHING}: no intermediate tensor is beyond its tolerance ({loc.describe()})"
        return result, None
    made = producers(nodes)
    first = loc.first
    tensor = first["tensor"] if first["tensor"] in made else next(
        (n.outputs[0] for n in nodes if n.name == first["node"]), None)
    if tensor is None:
        raise CannotReduce(f"{source}: neither tensor {first['tensor']} nor node {first['node']} is in the ONNX graph")
    item = next(i for i in loc.items if i.tensor == first["tensor"])
    cls = NONFINITE if (item.nan or item.inf) else TOLERANCE
    target = made[tensor]
    result.target = {"tensor": tensor, "node": nodes[target].name, "op_type": nodes[target].op_type,
                     "module": first["module"], "class": cls, "localised": first}
    # where the torch reference has a value: the compared tensors (a module's output, or a model output)
    modules = {i.tensor: i.module for i in loc.items if i.module and i.tensor in made}
    outputs = {i.tensor: i.output for i in loc.items if not i.module and i.output and i.tensor in made}
    cuts = set(modules) | set(outputs)
    inits = {i.name for i in onnx_model.graph.initializer}
    engine_x = io.to_engine(x)
    kept_data = None

    def check(keep: list[int]) -> bool:
        nonlocal kept_data
        inputs = boundary(nodes, keep, inits)
        unknown = [t for t in inputs if t not in cuts and t != io.input]
        if unknown:
            raise CannotReduce(f"subgraph inputs without a reference value: {unknown[:3]}")
        inside = [t for i in keep for t in nodes[i].outputs if t in cuts and t != tensor]
        outs = [*dict.fromkeys(inside), tensor]
        wanted = set(inputs) | set(outs)
        ref = capture(model, x, {t: modules[t] for t in wanted if t in modules},
                      {t: outputs[t] for t in wanted if t in outputs and t not in modules}, model_outputs)
        if io.input in wanted:
            ref[io.input] = engine_x
        result.peak_reference_bytes = max(result.peak_reference_bytes, sum(a.nbytes for a in ref.values()))
        feeds = {t: ref[t].astype(helper.tensor_dtype_to_np_dtype(types.get(t, 1)), copy=False) for t in inputs}
        sub = extract(onnx_model, keep, feeds, {t: ref[t].ndim for t in outs}, types)
        got = runner.run(sub, feeds)
        verdicts = judge_rows(outs, got, ref, loc.tolerance, rows)
        ok = all(verdicts[r]["first"] == tensor and verdicts[r]["class"] == cls for r in result.rows_required)
        result.tried.append({"start": None, "nodes": len(keep), "reproduces": ok,
                             "first": [v["first"] for v in verdicts], "class": [v["class"] for v in verdicts]})
        if ok:
            kept_data = (keep, sub, feeds, {t: ref[t] for t in outs}, verdicts)
        return ok

    seen: dict[tuple, bool] = {}

    def attempt(s: int) -> bool:
        keep = tuple(cone(nodes, target, cuts, s))
        if keep not in seen:
            seen[keep] = check(list(keep))
            result.tried[-1]["start"] = s
        return seen[keep]

    widen(attempt, target)
    result.conversions = runner.conversions
    result.seconds = time.perf_counter() - start
    if kept_data is None:
        result.nothing = (f"the {cls} failure at {tensor} does not reproduce on any subgraph fed with the "
                          f"reference's tensors, its whole cone included ({result.conversions} conversions)")
        return result, None
    keep, sub, feeds, expected, verdicts = kept_data
    result.reproduces = True
    result.nodes = [nodes[i].name for i in keep]
    result.op_types = [nodes[i].op_type for i in keep]
    result.inputs, result.outputs, result.rows = list(feeds), [o.name for o in sub.graph.output], verdicts
    return result, (sub, feeds, expected)


def widen(attempt, target: int) -> None:
    """The target node alone first; else bisect how far back its cone must start to reproduce (``attempt(k)``:
    the cone from node k, True when it fails the same way). The whole cone is the full model's computation, so
    it fails as the model does."""
    if attempt(target):
        return
    lo, hi = 0, target
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if attempt(mid):
            lo = mid
        else:
            hi = mid
    if lo == 0:
        attempt(0)
