"""--reduce on ncnn: an ONNX subgraph converted by pnnx as convert does (same weight format, every input
fixed at its feed's shape), run by the session's runtime options, fed and read by pnnx's blob names.

pnnx names the graph's inputs in0, in1... and its outputs out0, out1... in the ONNX graph's order (see
convert.py), so the feeds are matched to the ONNX inputs by name and handed over in that order."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from posegate.backends.lazy import load
from posegate.backends.ncnn.availability import INSTALL, RUNTIME, converter_problem, pnnx_executable
from posegate.backends.ncnn.convert import BIN, PARAM, ConvertError, run_pnnx
from posegate.backends.ncnn.precision import converter_fp16, plan_here
from posegate.backends.ncnn.session import threads


def graph_names(onnx_path: Path) -> tuple[list[str], list[str]]:
    """The graph's fed inputs (initializers left out) and its outputs, in the graph's order."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    return [v.name for v in graph.input if v.name not in inits], [v.name for v in graph.output]


def run(onnx_path: Path, feeds, precision: str, workdir: Path) -> dict[str, np.ndarray]:
    ncnn = load(RUNTIME, INSTALL)
    inputs, outputs = graph_names(onnx_path)
    if sorted(inputs) != sorted(feeds):
        raise ValueError(f"{onnx_path}: feeds {sorted(feeds)} are not the graph's inputs {sorted(inputs)}")
    odd = [n for n in inputs if np.asarray(feeds[n]).dtype.kind != "f"]
    if odd:  # an ncnn Mat holds floats only
        raise ValueError(f"{onnx_path}: ncnn runs float inputs only; {odd} are not")
    exe = pnnx_executable()
    if exe is None:
        raise ConvertError(converter_problem())
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run_pnnx(exe, Path(onnx_path), workdir, converter_fp16(precision), [list(np.shape(feeds[n])) for n in inputs],
             None)
    net = ncnn.Net()
    plan_here(precision).apply(net.opt)
    net.opt.num_threads = threads()
    try:
        if net.load_param(str(workdir / PARAM)) != 0 or net.load_model(str(workdir / BIN)) != 0:
            raise ValueError(f"{workdir / PARAM}: ncnn could not load the converted subgraph")
        ex = net.create_extractor()
        for i, name in enumerate(inputs):
            mat = ncnn.Mat(np.ascontiguousarray(feeds[name], dtype=np.float32), batch_index=0)
            if ex.input(f"in{i}", mat) != 0:
                raise RuntimeError(f"ncnn: Extractor.input('in{i}') (ONNX input {name!r}) failed")
        out = {}
        for i, name in enumerate(outputs):
            rc, mat = ex.extract(f"out{i}")
            if rc != 0:
                raise RuntimeError(f"ncnn: extract('out{i}') (ONNX output {name!r}) returned {rc}")
            out[name] = np.array(mat.numpy(batch_index=0), dtype=np.float32)
        ex.clear()
        return out
    finally:
        net.clear()


def call(precision: str, feeds) -> dict:
    """The pnnx command and the ncnn lines that build and run a bundle's model.onnx as ``run`` does."""
    shapes = ",".join("[" + ",".join(str(d) for d in np.shape(a)) + "]f32" for a in feeds.values())
    plan = "fp16 weights, bf16 storage on x86 (fp16 on ARM)" if precision == "fp16" else "fp32, no reduced storage"
    return {"command": ["pnnx", "model.onnx", f"inputshape={shapes}", f"fp16={int(converter_fp16(precision))}"],
            "python": f"net = ncnn.Net(); net.load_param('model.ncnn.param'); net.load_model('model.ncnn.bin') "
                      f"# {plan}; feeds as in0, in1... in the ONNX inputs' order"}
