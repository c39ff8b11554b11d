"""Subgraphs of an exported ONNX model: the nodes that compute one tensor from tensors fed from outside.

A cut may only fall on a tensor the torch reference has a value for (a graph input, or an intermediate
localisation compared with a torch module's output): every other tensor a kept node reads is computed
inside the subgraph, so its inputs are always real reference tensors, never guesses.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from posegate.backends.probing import Node


def producers(nodes: list[Node]) -> dict[str, int]:
    return {t: i for i, n in enumerate(nodes) for t in n.outputs}


def cone(nodes: list[Node], target: int, cuts: set[str], start: int) -> list[int]:
    """Indices of the nodes computing node ``target``'s outputs, fed at every cut tensor produced before
    node ``start``: ``start == target`` gives the target and the uncut nodes just before it; ``start == 0``
    its whole cone from the graph inputs. The set grows as ``start`` falls, which the search bisects on."""
    made = producers(nodes)
    keep: set[int] = set()
    stack = [target]
    while stack:
        i = stack.pop()
        if i in keep:
            continue
        keep.add(i)
        for t in nodes[i].inputs:
            j = made.get(t)
            if j is None or (t in cuts and j < start):
                continue  # a graph input or weight, or fed from the reference
            stack.append(j)
    return sorted(keep)


def boundary(nodes: list[Node], keep: list[int], initializers: set[str]) -> list[str]:
    """The tensors the kept nodes read but do not make (weights excepted): the subgraph's inputs."""
    made = {t for i in keep for t in nodes[i].outputs}
    seen: dict[str, None] = {}
    for i in keep:
        for t in nodes[i].inputs:
            if t and t not in made and t not in initializers:
                seen[t] = None
    return list(seen)


def extract(model: onnx.ModelProto, keep: list[int], feeds: dict[str, np.ndarray], outputs: dict[str, int],
            types: dict[str, int]) -> onnx.ModelProto:
    """The kept nodes (graph order) as a model of their own: inputs typed and shaped as the fed arrays,
    the weights they read, ``outputs`` (name -> rank, None: unknown) as its outputs, their dims left free."""
    g = model.graph
    nodes = [g.node[i] for i in keep]
    read = {t for n in nodes for t in n.input}
    inits = [i for i in g.initializer if i.name in read]
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
              for name, a in feeds.items()]
    outs = [helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT),
                                          None if rank is None else [f"{name}_d{k}" for k in range(rank)])
            for name, rank in outputs.items()]
    graph = helper.make_graph(nodes, f"{g.name or 'graph'}-reduced", inputs, outs, initializer=inits)
    sub = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                            producer_name="posegate-reduce")
    sub.functions.extend(model.functions)
    onnx.checker.check_model(sub)
    return sub
