"""A probe of an ncnn model for posegate.diagnosis.localize: any blob can be extracted by name, so every layer's
output is an intermediate tensor to compare with torch.

pnnx renames layers (``convrelu_3``) and loses the exporter's scope names that tie a tensor to a torch
module. The convolutions are put back in touch with them: pnnx lowers each ONNX Conv to exactly one ncnn
convolution layer, in the graph's order, so the i-th of each is paired, and the pairing is accepted only
if every pair agrees on output channels and weight count (params 0= and 6=, Tencent/ncnn
docs/developer-guide/operation-param-weight-table.md); any disagreement names the first pair and nothing
is guessed. A convolution that pnnx fused with its activation (param 9=, non-zero) outputs what the ONNX
activation after the Conv outputs, so it takes that node's name. Every other layer keeps its ncnn name
and so matches no module (localisation counts it as such).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from posegate.backends.ncnn.convert import layers
from posegate.backends.ncnn.precision import plan_here
from posegate.backends.ncnn.session import NcnnSession
from posegate.backends.probing import CannotLocalize, Node

CONVOLUTIONS = ("Convolution", "ConvolutionDepthWise", "Convolution1D", "Deconvolution", "DeconvolutionDepthWise")
ACTIVATIONS = ("Relu", "LeakyRelu", "Clip", "Sigmoid", "Mish", "HardSwish")  # ncnn's 9= codes 1..6


class ProbeError(CannotLocalize):
    """The ncnn graph cannot be tied to the ONNX one it was converted from; the message says where."""


def scoped_names(param: Path, onnx_path: Path) -> dict[str, str]:
    """{ncnn layer name: ONNX node name} for the convolutions (see the module's docstring)."""
    graph = onnx.load(str(onnx_path)).graph
    weights = {i.name: tuple(i.dims) for i in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    ours = [(name, params) for kind, name, _, _, params in layers(param) if kind in CONVOLUTIONS]
    if len(convs) != len(ours):
        raise ProbeError(f"{param}: {len(ours)} convolution layers, {onnx_path} has {len(convs)} Conv nodes")
    names = {}
    for i, (node, (layer, params)) in enumerate(zip(convs, ours)):
        dims = weights.get(node.input[1])
        if dims is None:
            raise ProbeError(f"{onnx_path}: Conv {node.name} has no initializer weight")
        want = (dims[1] if node.op_type == "ConvTranspose" else dims[0]) * (
            int(params.get("7", 1)) if node.op_type == "ConvTranspose" else 1)
        if (int(params.get("0", -1)), int(params.get("6", -1))) != (want, int(np.prod(dims))):
            raise ProbeError(f"{param}: convolution #{i} {layer} (0={params.get('0')} 6={params.get('6')}) is not "
                             f"{node.name} ({want} outputs, {int(np.prod(dims))} weights)")
        name = node.name
        if int(params.get("9", 0)):
            after = consumers.get(node.output[0], [])
            if len(after) == 1 and after[0].op_type in ACTIVATIONS:
                name = after[0].name
        names[layer] = name
    return names


class NcnnProbe:
    backend = "ncnn"

    def __init__(self, spec, param: Path, weights: Path, onnx_path: Path, io, precision: str = "fp32"):
        self.spec, self.param, self.weights, self.io, self.precision = spec, Path(param), Path(weights), io, precision
        renamed = scoped_names(self.param, Path(onnx_path))
        self._nodes, self._inputs = [], set()
        for kind, name, ins, outs, _ in layers(self.param):
            if kind == "Input":
                self._inputs.update(outs)
                continue
            self._nodes.append(Node(renamed.get(name, name), kind, tuple(ins), tuple(outs)))
        self._session = None

    def nodes(self) -> list[Node]:
        return self._nodes

    def float_tensors(self) -> set[str]:
        return {t for n in self._nodes for t in n.outputs}  # ncnn blobs are float (fp32 once extracted)

    def inputs(self) -> set[str]:
        return set(self._inputs)

    def sizes(self, x: np.ndarray) -> dict[str, int]:
        return {}  # a .param holds no shapes: every blob is extracted in one run

    def run(self, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        if self._session is None:
            self._session = NcnnSession(self.spec, self.param, self.weights, self.precision,
                                        plan_here(self.precision), self.io, self.backend)
        return self._session.extract(x, names)
