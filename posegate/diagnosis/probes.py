"""Probes: a backend run with chosen intermediate tensors exposed as extra outputs.

Every probe answers the same four questions for posegate.diagnosis.localize: the graph's nodes in topological
order, which tensors are floating point (comparable), the graph inputs, and ``run(x, names)``.
ONNX Runtime runs an ONNX file with the tensors added as graph outputs; OpenVINO reads an ONNX file or
an IR and adds them with ``Model.add_outputs`` (an IR converted from ONNX keeps the ONNX node names as
friendly names and the tensor names, so the same scope matching applies). TensorRT and Ascend probes
live in posegate.diagnosis.device_probes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from posegate.backends.openvino_backend import _HINTS
from posegate.diagnosis.localize import Node

_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


class CannotLocalize(RuntimeError):
    """This backend or artifact offers no way to expose its intermediates here; the message says why.

    Defined beside the probes (posegate.diagnosis.diagnose re-exports it) so
    posegate.diagnosis.device_probes can raise it without importing diagnose, which dispatches to it."""


class OrtProbe:
    backend = "onnxruntime"

    def __init__(self, path: Path, io, precision: str = "fp32", providers=("CPUExecutionProvider",)):
        self.path, self.io, self.precision, self.providers = Path(path), io, precision, list(providers)
        model = onnx.load(str(self.path))
        try:  # types of the intermediates; a model shape inference rejects still runs, typed by its outputs
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:
            pass
        self.model = model
        g = model.graph
        self._types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.output, *g.input]}
        self._nodes = [Node(n.name or f"{n.op_type}_{i}", n.op_type, tuple(n.input), tuple(n.output))
                       for i, n in enumerate(g.node)]
        inits = {i.name for i in g.initializer}
        self._inputs = {v.name for v in g.input if v.name not in inits}

    def nodes(self) -> list[Node]:
        return self._nodes

    def float_tensors(self) -> set[str]:
        return {t for n in self._nodes for t in n.outputs if self._types.get(t) in _FLOATS}

    def inputs(self) -> set[str]:
        return set(self._inputs)

    def sizes(self, x: np.ndarray) -> dict[str, int]:
        """Bytes of each tensor at this input: shape inference with the input dims made concrete."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        for v in model.graph.input:
            if v.name == self.io.input:
                for d, n in zip(v.type.tensor_type.shape.dim, x.shape):
                    d.Clear()
                    d.dim_value = int(n)
        del model.graph.value_info[:]
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:
            return {}
        out = {}
        for v in [*model.graph.value_info, *model.graph.output]:
            dims = [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
            out[v.name] = 4 * int(np.prod(dims)) if dims and all(dims) else 0
        return out

    def with_outputs(self, names: list[str]) -> onnx.ModelProto:
        """A copy of the graph with ``names`` exposed as outputs as well."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        present = {o.name for o in model.graph.output}
        for name in names:
            if name not in present:
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, self._types.get(name, 1), None))
        return model

    def run(self, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        import onnxruntime as ort  # noqa: PLC0415 (optional engine, lazy)
        model = self.with_outputs(names)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=self.providers)
        values = sess.run(names, {self.io.input: self.io.to_engine(x)})
        return dict(zip(names, values))


class OvProbe:
    backend = "openvino"

    def __init__(self, path: Path, io, precision: str = "fp32"):
        import openvino as ov  # noqa: PLC0415 (optional engine, lazy)
        self.path, self.io, self.precision = Path(path), io, precision
        self.core = ov.Core()
        self.hint = ov_hint(precision, self.core)
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


def ov_hint(precision: str, core=None) -> str:
    """The inference precision the openvino backend's sessions ask the CPU for (its _HINTS rule)."""
    import openvino as ov  # noqa: PLC0415 (optional engine, lazy)
    caps = set((core or ov.Core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return next(h for h in _HINTS.get(precision, ["f32"]) if h == "f32" or h.upper() in caps)


def _name(port) -> str:
    """A port's tensor name; an unnamed one gets its node's name and index (stable within a model)."""
    names = sorted(port.get_names())
    if names:
        return names[0]
    return f"{port.get_node().get_friendly_name()}:{port.get_index()}"
