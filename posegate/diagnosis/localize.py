"""First divergent layer: the backend's intermediate tensors against the torch modules' outputs.

The backend runs the same input with its intermediate tensors exposed as outputs (a probe, one per
engine: ``posegate.backends.probing``); torch runs with forward hooks. A tensor is matched to a module through
the exporter's scope names: node ``/model/model.6/model.6.3/Conv`` belongs to module ``model.6.3``, and
a module's output is the output of the last node (in topological order) inside its scope. A
BatchNorm the exporter folded into the convolution before it has no node of its own: the convolution's
tensor is then the BatchNorm's output, which the structure says, not a guess. Everything else that
exists on one side only (functional ops, fused or renamed nodes, modules called twice) is skipped and
counted.

Memory: the comparison happens inside each hook, against the backend's tensor, which is dropped once
compared; the tensors are exposed in chunks under a byte budget, so no tensor is ever held twice and
HigherHRNet's ~2000 intermediates fit.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from posegate.backends.probing import Node

NO_MODULE = "no torch module (functional op, or made by the exporter or converter)"
NO_NODE = "module without a node of its own (fused, folded or constant)"
FOLDED = "convolution folded with the BatchNorm after it (compared as the BatchNorm's output)"
SHAPE = "shape differs between the two sides"
TWICE = "module called more than once per forward"
NOT_TENSOR = "module output is not one tensor"
BUDGET = 1 << 30  # bytes of exposed tensors per backend run




@dataclass
class Item:
    """One compared tensor: where it is in the graph and how far it is from torch, relative to its range."""
    index: int  # topological position of the node that produces it
    node: str
    op_type: str
    module: str | None
    tensor: str
    output: str | None  # the spec output this tensor is, if any
    max_abs: float = 0.0
    scale: float = 0.0
    max_rel: float = 0.0
    tolerance: float = 0.0  # bound on max_rel (the spec's output tolerance)
    nan: int = 0
    inf: int = 0

    @property
    def exceeds(self) -> bool:
        return bool(self.nan or self.inf) or self.max_rel > self.tolerance


@dataclass
class Localization:
    backend: str
    precision: str
    tolerance: float
    items: list[Item] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    first: dict | None = None
    seconds: float = 0.0
    runs: int = 0  # backend runs (one per chunk)
    plot: str | None = None

    @property
    def compared(self) -> int:
        return len(self.items)

    def worst(self, n: int = 5) -> list[Item]:
        return sorted(self.items, key=lambda i: -i.max_rel)[:n]

    def describe(self) -> str:
        skipped = ", ".join(f"{n} {k}" for k, n in self.skipped.items() if n)
        head = f"{self.compared} intermediate tensors compared with torch ({skipped or 'none skipped'})"
        f = self.first
        if not f:
            return f"{head}; none beyond its tolerance"
        return (f"{head}; first beyond its tolerance: node {f['node']} ({f['op_type']}), module "
                f"{f['module'] or '-'}, tensor {f['tensor']}: error entering {f['entering']:.3g}, leaving "
                f"{f['leaving']:.3g} of its range (tolerance {self.tolerance:.3g}): {f['verdict']}")

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "items"}
        d["compared"] = self.compared
        d["items"] = [{**asdict(i), "exceeds": i.exceeds} for i in self.items]
        return d


def module_scope(node_name: str, modules) -> list[str]:
    """The module paths a node lies in, outermost first.

    The exporter names each scope relative to an enclosing one: '/model/model.6/model.6.3/Conv' lies in
    model, model.6, model.6.3, and '/refinement_stages.0/trunk/trunk.3/initial/initial.1/Relu' in
    refinement_stages.0.trunk.3.initial.1 and its ancestors. Each scope must nest in the previous one;
    a scope that resolves to no module ends the chain (nothing is guessed).
    """
    parts = [p for p in node_name.split("/") if p][:-1]
    chain: list[str] = []
    for part in parts:
        inner = chain[-1] if chain else ""
        found = None
        for base in [*reversed(chain), ""]:
            path = f"{base}.{part}" if base else part
            if path in modules and (not inner or path.startswith(inner + ".")):
                found = path
                break
        if found is None:
            break
        chain.append(found)
    return chain


def match(nodes: list[Node], tensors: set[str], model: nn.Module) -> tuple[dict[str, tuple[int, str]], dict]:
    """{module path: (node index, tensor)} and the counts of what exists on one side only."""
    modules = dict(model.named_modules())
    last: dict[str, tuple[int, str]] = {}
    for i, node in enumerate(nodes):
        outs = [t for t in node.outputs if t in tensors]
        if len(outs) != 1:
            continue
        for scope in module_scope(node.name, modules):
            last[scope] = (i, outs[0])
    skipped = {NO_MODULE: 0, NO_NODE: 0, FOLDED: 0}
    for path, module in modules.items():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and path not in last:
            prev = _previous_sibling(modules, path)
            if prev is not None and isinstance(modules[prev], nn.modules.conv._ConvNd) and prev in last:
                last[path] = last.pop(prev)
                skipped[FOLDED] += 1
    # one tensor, one module: the innermost of those whose last node it is
    owner: dict[str, str] = {}
    for path, (_, tensor) in last.items():
        if tensor not in owner or path.count(".") > owner[tensor].count("."):
            owner[tensor] = path
    matched = {path: last[path] for path in owner.values()}
    leaves = [p for p, m in modules.items() if p and not list(m.children())]
    skipped[NO_NODE] += sum(1 for p in leaves if p not in last and p not in _folded_into(matched, modules))
    scoped = {t for t in owner}
    skipped[NO_MODULE] = sum(1 for n in nodes for t in n.outputs if t in tensors and t not in scoped)
    return matched, skipped


def _previous_sibling(modules: dict, path: str) -> str | None:
    parent, _, name = path.rpartition(".")
    names = list(modules[parent]._modules) if parent in modules else []
    if name not in names or names.index(name) == 0:
        return None
    sibling = names[names.index(name) - 1]
    return f"{parent}.{sibling}" if parent else sibling


def _folded_into(matched: dict, modules: dict) -> set[str]:
    return {_previous_sibling(modules, p) for p in matched if isinstance(modules[p], nn.modules.batchnorm._BatchNorm)}


def tolerance_of(spec, precision: str, outputs) -> float:
    """The tightest max_rel the spec allows any output at this precision: every intermediate gets it,
    scaled to its own range (max|ref|), since the range of an intermediate is all that relates it to the output's."""
    bounds = [spec.tolerance(precision, o).max_rel for o in outputs]
    bounds = [b for b in bounds if b is not None]
    return min(bounds) if bounds else 1e-3


def localize(model: nn.Module, probe, x: np.ndarray, tolerance: float, model_outputs: tuple[str, ...] = (),
             output_names: dict[str, str] | None = None, budget: int = BUDGET) -> Localization:
    """Compare every matched intermediate tensor of ``probe`` (see posegate.backends.probing) with torch on ``x``.

    ``model_outputs``: the names of the torch model's outputs, in order; ``output_names``: engine output
    name -> one of those, for the graph outputs compared as such.
    """
    start = time.perf_counter()
    nodes = probe.nodes()
    tensors = probe.float_tensors()
    matched, skipped = match(nodes, tensors, model)
    result = Localization(probe.backend, probe.precision, tolerance, skipped=skipped)
    sizes = probe.sizes(x)  # bytes per tensor at this input, from the graph's own shape inference
    outputs = dict(output_names or {})
    order = sorted(matched, key=lambda p: matched[p][0])
    chunks, chunk, used = [], [], 0
    for path in order:
        nbytes = sizes.get(matched[path][1], 0)
        if chunk and used + nbytes > budget:
            chunks.append(chunk)
            chunk, used = [], 0
        chunk.append(path)
        used += nbytes
    chunks.append(chunk)
    producer = {t: i for i, n in enumerate(nodes) for t in n.outputs}
    for k, chunk in enumerate(chunks):
        wanted = [matched[p][1] for p in chunk] + (list(outputs) if k == len(chunks) - 1 else [])
        got = probe.run(x, list(dict.fromkeys(wanted)))
        result.runs += 1
        calls: dict[str, int] = {}
        refs = _hooked_pass(model, x, {p: matched[p][1] for p in chunk}, got, nodes, matched, tolerance, result,
                            skipped, model_outputs, calls, keep=set(outputs) if k == len(chunks) - 1 else set())
        # a module called twice has two outputs for one tensor: its comparison is dropped, not guessed
        for path, n in calls.items():
            if n != 1:
                skipped[TWICE] = skipped.get(TWICE, 0) + 1
                result.items = [i for i in result.items if i.module != path]
        if k == len(chunks) - 1:
            for engine, spec_name in outputs.items():
                ref = refs.get(spec_name)
                if ref is None or engine not in got:
                    continue
                i = producer.get(engine, len(nodes))
                node = nodes[i] if i < len(nodes) else Node(engine, "?", (), ())
                item = Item(i, node.name, node.op_type, None, engine, spec_name, tolerance=tolerance)
                if _measure(item, got.pop(engine), ref):
                    result.items.append(item)
                else:
                    skipped[SHAPE] = skipped.get(SHAPE, 0) + 1
        del got
    result.items.sort(key=lambda i: (i.index, i.output is not None))
    result._nodes, result._producer, result._inputs = nodes, producer, probe.inputs()  # for upstream_errors
    first = next((i for i in result.items if i.exceeds), None)
    if first is not None:
        result.first = _entering(first, nodes, producer, result, probe.inputs())
    result.seconds = time.perf_counter() - start
    return result


def _hooked_pass(model, x, chunk: dict[str, str], got: dict, nodes, matched, tolerance, result, skipped,
                 model_outputs, calls, keep=frozenset()) -> dict:
    modules = dict(model.named_modules())
    handles = []
    for path, tensor in chunk.items():
        def hook(_m, _inp, out, path=path, tensor=tensor):
            calls[path] = calls.get(path, 0) + 1
            if calls[path] > 1:
                return
            if not isinstance(out, torch.Tensor):
                skipped[NOT_TENSOR] = skipped.get(NOT_TENSOR, 0) + 1
                got.pop(tensor, None)
                return
            i = matched[path][0]
            item = Item(i, nodes[i].name, nodes[i].op_type, path, tensor, None, tolerance=tolerance)
            # dropped once compared, unless a graph output still to be compared as such
            backend = got.get(tensor) if tensor in keep else got.pop(tensor, None)
            if backend is None:
                skipped[NO_NODE] = skipped.get(NO_NODE, 0) + 1
            elif _measure(item, backend, out.detach().numpy()):
                result.items.append(item)
            else:
                skipped[SHAPE] = skipped.get(SHAPE, 0) + 1
        handles.append(modules[path].register_forward_hook(hook))
    try:
        with torch.inference_mode():
            out = model(torch.from_numpy(np.ascontiguousarray(x)))
    finally:
        for h in handles:
            h.remove()
    outs = out if isinstance(out, (list, tuple)) else [out]
    return {n: o.detach().numpy() for n, o in zip(model_outputs, outs)}


def _measure(item: Item, got: np.ndarray, ref: np.ndarray) -> bool:
    got = np.asarray(got)
    if got.shape != ref.shape:
        return False
    # float32 arithmetic: a max over differences needs no wider type, and this runs ~2000 times for HigherHRNet
    a, b = got.astype(np.float32, copy=False), ref.astype(np.float32, copy=False)
    if not (np.isfinite(a.max(initial=0)) and np.isfinite(a.min(initial=0)) and np.isfinite(b.max(initial=0))
            and np.isfinite(b.min(initial=0))):
        finite = np.isfinite(a) & np.isfinite(b)
        item.nan, item.inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        a, b = a[finite], b[finite]
    item.max_abs = float(np.max(np.abs(a - b))) if a.size else 0.0
    item.scale = float(np.max(np.abs(b))) if b.size else 0.0
    item.max_rel = item.max_abs / item.scale if item.scale > 0 else item.max_abs
    return True


def upstream(result: Localization, item: Item) -> tuple[list[float], list[str]]:
    """max_rel of the nearest compared tensors feeding ``item`` (0 for a graph input), and the uncompared
    nodes between them and it: together with ``item.node``, the nodes that made the error it adds."""
    entering, between, _ = _walk_up(item, result._nodes, result._producer, result, result._inputs)
    return entering, between


def _walk_up(first: Item, nodes, producer, result, graph_inputs):
    compared = {i.tensor: i for i in result.items}
    seen, entering, between, sources = set(), [], [], []
    stack = list(nodes[first.index].inputs) if first.index < len(nodes) else []
    while stack:
        t = stack.pop()
        if t in seen or not t:
            continue
        seen.add(t)
        if t in compared:
            entering.append(compared[t].max_rel)
            sources.append(t)
        elif t in graph_inputs:
            entering.append(0.0)
            sources.append(t)
        elif t in producer:
            n = nodes[producer[t]]
            between.append(n.name)
            stack.extend(n.inputs)
    return entering, between, sources


def _entering(first: Item, nodes, producer, result: Localization, graph_inputs) -> dict:
    """The error of the nearest compared tensors upstream of the first divergent one: a fault of the
    node itself leaves with far more error than enters (as msit compare's --locat reasons)."""
    entering, between, sources = _walk_up(first, nodes, producer, result, graph_inputs)
    enter = max(entering) if entering else 0.0
    leave = first.max_rel
    if first.nan or first.inf:
        verdict = f"{first.nan} NaN, {first.inf} Inf leave this node while its inputs are finite"
    elif enter <= result.tolerance and (enter == 0 or leave / enter >= 10):
        verdict = "the fault is in this node" + (
            f" or the {len(between)} uncompared node(s) before it" if between else "")
    else:
        verdict = "error accumulated upstream crosses the tolerance here"
    return {"node": first.node, "op_type": first.op_type, "module": first.module, "tensor": first.tensor,
            "index": first.index, "output": first.output, "entering": enter, "leaving": leave,
            "entering_from": sources, "uncompared_between": between[:20], "verdict": verdict}
