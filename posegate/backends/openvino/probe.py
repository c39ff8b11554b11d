"""Localisation on OpenVINO: an ONNX file or an IR read by OpenVINO, the tensors added with
``Model.add_outputs`` (an IR converted from ONNX keeps the ONNX node names as friendly names and the tensor
names, so the same scope matching applies), compiled with the backend's own precision hint."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posegate.backends.lazy import load
from posegate.backends.openvino.precision import inference_hint
from posegate.backends.probing import Node


class OvProbe:
    backend = "openvino"

    def __init__(self, path: Path, io, precision: str = "fp32"):
        self.path, self.io, self.precision = Path(path), io, precision
        self.core = load("openvino").Core()
        self.hint = inference_hint(precision, self.core)
        model = self.core.read_model(str(self.path))
        self._nodes, self._floats, self._inputs = [], set(), set()
        for op in model.get_ordered_ops():
            kind = op.get_type_name()
            outs = tuple(_name(o) for o in op.outputs())
            ins = tuple(_name(i.get_source_output()) for i in op.inputs())
            if kind == "Parameter":
                self._inputs.update(outs)
            if kind in ("Parameter", "Constant", "Result"):
                continue
            self._nodes.append(Node(op.get_friendly_name(), kind, ins, outs))
            self._floats.update(_name(o) for o in op.outputs() if o.get_element_type().is_real())

    def nodes(self) -> list[Node]:
        return self._nodes

    def float_tensors(self) -> set[str]:
        return set(self._floats)

    def inputs(self) -> set[str]:
        return set(self._inputs)

    def sizes(self, x: np.ndarray) -> dict[str, int]:
        model = self.core.read_model(str(self.path))
        try:
            model.reshape({self.io.input: list(x.shape)})
        except Exception:
            return {}
        out = {}
        for op in model.get_ordered_ops():
            for o in op.outputs():
                shape = o.get_partial_shape()
                out[_name(o)] = 4 * int(np.prod([d.get_length() for d in shape])) if shape.is_static else 0
        return out

    def run(self, x: np.ndarray, names: list[str], model=None) -> dict[str, np.ndarray]:
        model = model if model is not None else self.core.read_model(str(self.path))
        ports = {_name(o): o for op in model.get_ordered_ops() for o in op.outputs()}
        have = {_name(o) for o in model.outputs}
        extra = [ports[n] for n in names if n in ports and n not in have]
        if extra:
            model.add_outputs(extra)
        compiled = self.core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": self.hint})
        res = compiled.create_infer_request().infer({self.io.input: self.io.to_engine(x)})
        out = {}
        for port, value in zip(compiled.outputs, res.values()):
            for n in port.get_names() or {_name(port)}:
                if n in names:
                    out[n] = np.array(value)
        return out


def _name(port) -> str:
    """A port's tensor name; an unnamed one gets its node's name and index (stable within a model)."""
    names = sorted(port.get_names())
    if names:
        return names[0]
    return f"{port.get_node().get_friendly_name()}:{port.get_index()}"
