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

    # every declared dynamic axis really is dynamic: run two batch sizes and, where free, two widths
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    axes = spec.dynamic_axes()[spec.input_name]
    base = next(p for p in spec.profiles)
    h, w = base.height or base.perf_shape[0], base.width or base.perf_shape[1]
    shapes = [(1, spec.channels, h, w), (2, spec.channels, h, w)]
    if 3 in axes:
        shapes.append((1, spec.channels, h, w + 8 * spec.output_stride))
    runs = [sess.run(None, {spec.input_name: np.zeros(s, np.float32)}) for s in shapes]
    for shape, out in zip(shapes, runs):
        assert len(out) == len(spec.output_names)
        assert all(o.shape[0] == shape[0] for o in out), f"batch {shape[0]} in, {[o.shape for o in out]} out"
    if 3 in axes:
        assert all(wide.shape[3] > narrow.shape[3] for wide, narrow in zip(runs[2], runs[0])), "width did not follow the input"
