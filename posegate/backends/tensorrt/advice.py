"""The precision advice in TensorRT's form: ``trtexec --fp16 --precisionConstraints=obey
--layerPrecisions=NAME:fp32,...`` and the same as builder calls (ILayer.precision, set_output_type,
BuilderFlag.OBEY_PRECISION_CONSTRAINTS). TensorRT's ONNX parser keeps the ONNX node names as layer names."""
from __future__ import annotations

import json
from pathlib import Path


def trtexec_args(keep: list[str]) -> list[str]:
    """trtexec options keeping ``keep`` in fp32 in an fp16 engine (names quoted by the caller's shell, not here)."""
    return ["--fp16", "--precisionConstraints=obey", "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in keep)]


def write(keep: list[str], folder: Path, modules: dict) -> dict[str, str]:
    (folder / "trtexec_options.txt").write_text(" ".join(f"'{a}'" for a in trtexec_args(keep)) + "\n")
    builder = folder / "tensorrt_layer_precisions.py"
    builder.write_text(
        '"""Keep these layers in fp32 in an fp16 TensorRT build (posegate precision advice)."""\n'
        "import tensorrt as trt\n\n"
        f"KEEP_FP32 = {json.dumps(keep, indent=4)}\n"
        + "".join(f"# {n}: torch module {modules[n]}\n" for n in keep if modules.get(n)) + "\n\n"
        "def apply(network, config):\n"
        "    config.set_flag(trt.BuilderFlag.FP16)\n"
        "    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)\n"
        "    for i in range(network.num_layers):\n"
        "        layer = network.get_layer(i)\n"
        "        if layer.name in KEEP_FP32:\n"
        "            layer.precision = trt.float32\n"
        "            for j in range(layer.num_outputs):\n"
        "                layer.set_output_type(j, trt.float32)\n")
    return {"trtexec": str(folder / "trtexec_options.txt"), "tensorrt_builder": str(builder)}
