"""Stage 4, export: ONNX at each declared opset, checked, named as declared, with dynamic axes."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from posegate.export import onnx_io

STAGE = "export"
pytestmark = pytest.mark.stage


@pytest.mark.cases("export")
def test_export(case, pipeline, needs, record):
    spec = case.spec
    opset = int(case.variant.removeprefix("opset"))
    needs(pipeline.torch_model, spec)
    path = pipeline.onnx(spec, opset)  # exports, runs onnx.checker, checks names and opset
    model = onnx.load(str(path))
    ins, outs = onnx_io(model)
    record(onnx_bytes=path.stat().st_size, inputs=ins, outputs=outs)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [opset]

    # every declared dynamic axis really is dynamic: two batch sizes, and each free axis grown
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    free = [a for a in spec.dynamic_axes()[spec.input_name] if a > 0]
    dims = spec.sample_dims
    shapes = [(1, *dims), (2, *dims)]
    for a in free:
        grown = list(dims)
        grown[a - 1] += spec.dynamic_step
        shapes.append((1, *grown))
    runs = [sess.run(None, {spec.input_name: np.zeros(s, np.float32)}) for s in shapes]
    for shape, out in zip(shapes, runs):
        assert len(out) == len(spec.output_names)
        assert all(o.shape[0] == shape[0] for o in out), f"batch {shape[0]} in, {[o.shape for o in out]} out"
    for a, grown in zip(free, runs[2:]):
        assert all(g.shape[a] > o.shape[a] for g, o in zip(grown, runs[0])), \
            f"output axis {a} did not follow the input's {spec.input_axes[a]}"
