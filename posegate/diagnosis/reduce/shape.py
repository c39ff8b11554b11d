"""Shape errors: a backend that raises while converting or running the export (a Reshape to a shape baked at
another size, a rank its converter infers wrongly) instead of computing wrong numbers.

The failure is the error class (a shape or rank error, from the message) at a node: the node the message
names (ONNX Runtime and OpenVINO name the failing node by the ONNX node name), else the first node whose
prefix of the graph already raises it, found by bisecting the topological order. The search is the
tolerance search's (``search``): the target's node with the uncompared nodes before it first, then
earlier starts, each candidate fed at cut tensors with the torch reference's values; a candidate
reproduces when converting or running it raises a shape error at the same node. A candidate that runs,
or raises something else, is another failure and is rejected.
"""
from __future__ import annotations

import re
import time

import numpy as np
import onnx
from onnx import helper

from posegate.backends.probing import OrtProbe
from posegate.diagnosis.localize import Node, match
from posegate.diagnosis.reduce.reference import CannotReduce, capture
from posegate.diagnosis.reduce.search import SHAPE, Reduction, budget, widen
from posegate.diagnosis.reduce.subgraph import boundary, cone, extract, producers

# words ONNX Runtime (reshape_helper.h "cannot be reshaped to the requested shape", ShapeInferenceError,
# "Invalid rank") and OpenVINO ("the shape of input data ... conflicts with the reshape pattern",
# "Incompatible", "dimension") use for shape and rank errors
SHAPE_WORDS = re.compile(r"shape|rank|reshape|dimension|broadcast|incompatible", re.I)


def is_shape_error(error: BaseException) -> bool:
    return bool(SHAPE_WORDS.search(str(error)))


def named_node(message: str, nodes: list[Node]) -> str | None:
    """The node a backend's message names: the longest graph node name quoted or bracketed in it (ONNX
    Runtime's run error "Name:'...'", its load-time shape inference "Node (...)", OpenVINO's plugin "node with
    name '...'"; a longer name wins over its own prefix), else the node OpenVINO's ONNX frontend names in
    "While validating ONNX node '<Node(Reshape): X>'": X is the node's name on OpenVINO 2024, its first output
    tensor on later releases."""
    hits = [n.name for n in nodes if n.name and any(f"{a}{n.name}{b}" in message for a, b in ("''", '""', "()"))]
    if not hits:
        hits = [n.name for n in nodes if any(f"): {t}>" in message for t in (n.name, *n.outputs) if t)]
    return max(hits, key=len) if hits else None


def verdict(error: BaseException | None, nodes: list[Node], rows: int) -> list[dict]:
    """Per parity input, as search.judge_rows reports them: a raised shape error at its node's tensor."""
    if error is None:
        return [{"row": r, "first": None, "class": None, "max_rel": None, "nan": 0, "inf": 0} for r in range(rows)]
    node = named_node(str(error), nodes)
    cls = SHAPE if is_shape_error(error) else type(error).__name__
    first = next((n.outputs[0] for n in nodes if n.name == node), None)
    return [{"row": r, "first": first, "class": cls, "max_rel": None, "nan": 0, "inf": 0,
             "node": node, "error": str(error).strip()[:600]} for r in range(rows)]


def nodes_of(model: onnx.ModelProto) -> list[Node]:
    return [Node(n.name, n.op_type, tuple(n.input), tuple(n.output)) for n in model.graph.node]


def _attempt(runner, sub, feeds):
    try:
        runner.run(sub, feeds)
    except Exception as e:  # noqa: BLE001 - a backend's conversion or run error is the verdict itself
        return e
    return None


def reduce_shape_error(source, model, error: BaseException, runner, x: np.ndarray, io,
                       model_outputs: tuple[str, ...], tolerance: float):
    """(Reduction, (subgraph, feeds, expected) or None) for ``error``, raised by the backend on ``source``;
    ``tolerance``: what a replay holds the target's tensor to once the backend no longer raises."""
    start = time.perf_counter()
    if not is_shape_error(error):
        raise CannotReduce(f"{type(error).__name__} is not a shape or rank error: {str(error)[:200]}")
    onnx_model = onnx.load(str(source))
    graph = OrtProbe(source, io)
    nodes, types = graph.nodes(), graph._types
    names = [n.name for n in nodes]
    ranks = _ranks(graph.model)
    result = Reduction(runner.backend, runner.precision, tolerance, len(nodes), budget=budget(len(nodes)))
    rows = int(x.shape[0])
    result.rows_required = list(range(rows))
    inits = {i.name for i in onnx_model.graph.initializer}
    engine_x = io.to_engine(x)
    matched, _ = match(nodes, graph.float_tensors(), model)
    modules = {tensor: path for path, (_, tensor) in matched.items()}
    made = producers(nodes)
    outputs = {e: s for e, s in io.outputs if e in made and e not in modules}
    cuts = set(modules) | set(outputs)

    node = named_node(str(error), nodes)
    if node is None:
        node = _first_raising(onnx_model, nodes, inits, types, ranks, runner, io, engine_x)
    target = names.index(node)
    tensor = nodes[target].outputs[0]
    result.target = {"tensor": tensor, "node": node, "op_type": nodes[target].op_type,
                     "module": modules.get(tensor), "class": SHAPE, "error": str(error).strip()[:600],
                     "named_by_backend": named_node(str(error), nodes) is not None}
    kept = None
    seen: dict[tuple, bool] = {}

    def attempt(s: int) -> bool:
        nonlocal kept
        keep = tuple(cone(nodes, target, cuts, s))
        if keep in seen:
            return seen[keep]
        inputs = boundary(nodes, list(keep), inits)
        unknown = [t for t in inputs if t not in cuts and t != io.input]
        if unknown:
            raise CannotReduce(f"subgraph inputs without a reference value: {unknown[:3]}")
        wanted = set(inputs) | {tensor}
        ref = capture(model, x, {t: modules[t] for t in wanted if t in modules},
                      {t: outputs[t] for t in wanted if t in outputs and t not in modules}, model_outputs)
        if io.input in wanted:
            ref[io.input] = engine_x
        result.peak_reference_bytes = max(result.peak_reference_bytes, sum(a.nbytes for a in ref.values()))
        feeds = {t: ref[t].astype(helper.tensor_dtype_to_np_dtype(types.get(t, 1)), copy=False) for t in inputs}
        sub = extract(onnx_model, list(keep), feeds, {tensor: ranks.get(tensor)}, types)
        raised = _attempt(runner, sub, feeds)
        # the same node, where the backend names one; else any shape error of the candidate (its prefix search
        # found the node)
        ok = raised is not None and is_shape_error(raised) and (
            named_node(str(raised), nodes) == node or not result.target["named_by_backend"])
        result.tried.append({"start": s, "nodes": len(keep), "reproduces": ok,
                             "raised": None if raised is None else str(raised).strip()[:300]})
        if ok:
            # the torch value of the target's tensor where it has one: a fixed backend is compared with it
            kept = (keep, sub, feeds, {t: ref[t] for t in (tensor,) if t in ref}, raised)
        seen[keep] = ok
        return ok

    widen(attempt, target)
    result.conversions = runner.conversions
    result.seconds = time.perf_counter() - start
    if kept is None:
        result.nothing = (f"the shape error at {node} does not reproduce on any subgraph fed with the reference's "
                          f"tensors, its whole cone included ({result.conversions} conversions)")
        return result, None
    keep, sub, feeds, expected, raised = kept
    result.reproduces = True
    result.nodes = [nodes[i].name for i in keep]
    result.op_types = [nodes[i].op_type for i in keep]
    result.inputs, result.outputs = list(feeds), [o.name for o in sub.graph.output]
    result.rows = verdict(raised, nodes, rows)
    return result, (sub, feeds, expected)


def _first_raising(onnx_model, nodes, inits, types, ranks, runner, io, engine_x) -> str:
    """The first node whose prefix of the graph (every node up to it, fed at the graph input) raises a shape
    error: bisected, for a backend whose message names no node."""
    def raises(k: int) -> bool:
        keep = list(range(k + 1))
        inside = {t for i in keep for t in nodes[i].inputs}
        dangling = {t: ranks.get(t) for i in keep for t in nodes[i].outputs if t not in inside}
        feeds = {t: engine_x for t in boundary(nodes, keep, inits)}
        if set(feeds) - {io.input}:
            raise CannotReduce(f"a prefix of the graph reads {sorted(set(feeds) - {io.input})[:3]} besides its input")
        raised = _attempt(runner, extract(onnx_model, keep, feeds, dangling, types), feeds)
        return raised is not None and is_shape_error(raised)

    lo, hi = -1, len(nodes) - 1  # the whole graph raises (the failure being reduced)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if raises(mid):
            hi = mid
        else:
            lo = mid
    return nodes[hi].name


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Each tensor's rank where shape inference knows it (a subgraph's outputs must declare one)."""
    g = model.graph
    return {v.name: len(v.type.tensor_type.shape.dim) for v in [*g.value_info, *g.output]
            if v.type.tensor_type.HasField("shape")}
