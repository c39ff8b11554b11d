"""Stage 4, export: ONNX at each declared opset, checked, named as declared, with dynamic axes; and
TorchScript traces (seed 000's path), one per engine shape."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from posegate.export import to_torchscript as torchscript
from posegate.export.to_onnx import onnx_io
from posegate.metrics.parity import compare

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


@pytest.mark.cases("torchscript")
def test_torchscript(case, target, pipeline, run_context, needs, record):
    """Seed 000's export: a trace per engine shape, faithful on real inputs, saved and loaded back."""
    spec, profile = case.spec, case.profile
    needs(pipeline.torch_model, spec)
    # traces (a TracerWarning fails here, naming its source line), saves, reloads, compares the two
    path = pipeline.torchscript(spec, target.engine_shape)
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    reference = needs(pipeline.reference_outputs, spec, profile, dataset, case.batch)
    x = pipeline.parity_batch(spec, profile, dataset, case.batch).x
    module = torchscript.load(path)
    with torch.inference_mode():
        out = torchscript.as_tuple(module(torch.from_numpy(x)))
    assert len(out) == len(spec.output_names), f"{len(out)} outputs, the spec declares {list(spec.output_names)}"
    errors = {n: compare(o.numpy(), reference[n], spec.tolerance("fp32", n)) for n, o in zip(spec.output_names, out)}
    batch = torchscript.other_batch(module, x, reference, spec.output_names, lambda n: spec.tolerance("fp32", n))
    record(torchscript_bytes=path.stat().st_size, traced_shape=list(torchscript.trace_shape(spec, target.engine_shape)),
           input_shape=list(x.shape), other_batch=batch, dataset=dataset.name,
           parity={n: e.as_dict() for n, e in errors.items()})
    failing = [f"{n}: {e.describe()}" for n, e in errors.items() if not e.ok]
    assert not failing, "the trace is off the eager network on real inputs:\n" + "\n".join(failing)
