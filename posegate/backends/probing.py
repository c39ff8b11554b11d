"""Probes: a backend run with chosen intermediate tensors exposed as extra outputs.

Every probe answers the same four questions for posegate.diagnosis.localize: the graph's nodes in topological
order, which tensors are floating point (comparable), the graph inputs, and ``run(x, names)``.
This is the library the backends build their probes on (``Backend.probe``, in each backend's folder):
``OrtProbe`` runs an ONNX file with the tensors added as graph outputs on ONNX Runtime, and its graph side
(nodes, float tensors, sizes, ``with_outputs``) serves every probe that rebuilds from ONNX.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx


@dataclass(frozen=True)
class Node:
    """One graph node as every probe lists it, in topological order (localisation matches it to a module)."""
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


class CannotLocalize(RuntimeError):
    """This backend or artifact offers no way to expose its intermediates here; the message says why.

    Defined beside the probes (posegate.diagnosis.diagnose re-exports it) so a backend's probe can raise it
    without importing diagnose, which asks the backends for their probes."""


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


class ProbeSpec:
    """The spec as a device probe's session sees it: the probed tensors as its outputs, the spec's input checks."""

    def __init__(self, spec, names):
        self._spec, self.output_names = spec, tuple(names)

    def __getattr__(self, name):
        return getattr(self._spec, name)


def device_source(backend, pipeline, spec, path: Path) -> Path:
    """The ONNX file a device backend's probe rebuilds with its intermediates exposed: the artifact itself when
    it is ONNX, else the suite's export at the backend's opset (an engine or OM cannot grow outputs).
    CannotLocalize when the backend cannot run here."""
    reason = backend.unavailable_reason()
    if reason:
        raise CannotLocalize(f"{backend.name} unavailable: {reason}")
    source = Path(path)
    return source if source.suffix == ".onnx" else pipeline.onnx(spec, backend.opset)
