"""PyTorch -> ONNX export with the checks every converter downstream relies on."""
from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from posegate.compat.onnx_export import exporter_keywords


class ExportError(RuntimeError):
    pass


def export_onnx(network: torch.nn.Module, spec, path: Path, opset: int, sample_shape: tuple[int, ...]) -> None:
    """Export with the legacy TorchScript exporter: it is the one that still writes opset 11 (ATC's)."""
    dummy = torch.zeros(sample_shape, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (dummy,), str(path), opset_version=opset,
                          input_names=[spec.input_name], output_names=list(spec.output_names),
                          dynamic_axes=spec.dynamic_axes(), do_constant_folding=True, **exporter_keywords())
    check_onnx(path, spec, opset)


def onnx_io(model: onnx.ModelProto) -> tuple[dict, dict]:
    """{name: [dim or symbol]} for the graph inputs (initializers excluded) and outputs."""
    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    inits = {i.name for i in model.graph.initializer}
    ins = {v.name: dims(v) for v in model.graph.input if v.name not in inits}
    outs = {v.name: dims(v) for v in model.graph.output}
    return ins, outs


def check_onnx(path: Path, spec, opset: int) -> onnx.ModelProto:
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{path}: onnx.checker rejected the model: {str(e).splitlines()[0]}") from None
    got = {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")}
    if got != {opset}:
        raise ExportError(f"{path}: opset {sorted(got)} written, {opset} requested")
    ins, outs = onnx_io(model)
    if list(ins) != [spec.input_name]:
        raise ExportError(f"{path}: inputs {list(ins)}, spec declares [{spec.input_name!r}]")
    if list(outs) != list(spec.output_names):
        raise ExportError(f"{path}: outputs {list(outs)}, spec declares {list(spec.output_names)}")
    for name, dims in [*ins.items(), *outs.items()]:
        if not isinstance(dims[0], str):
            raise ExportError(f"{path}: {name} has a fixed batch dimension {dims[0]}; the spec needs it dynamic")
    return model

