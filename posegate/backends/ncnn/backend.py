"""ncnn on the CPU: the exported ONNX converted by pnnx into an ncnn .param/.bin, run by ncnn's Python
binding. One artifact serves every batch and input size (ncnn sizes each blob at run time)."""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from posegate.backends.base import Backend, EngineIO
from posegate.backends.lazy import load
from posegate.backends.ncnn.availability import (
    CONVERTER,
    INSTALL,
    RUNTIME,
    converter_problem,
    pnnx_executable,
    runtime_problem,
)
from posegate.backends.ncnn.convert import (
    BIN,
    PARAM,
    ConvertError,
    ignored_lines,
    input_shapes,
    layers,
    run_pnnx,
    unrunnable,
)
from posegate.backends.ncnn.precision import PRECISIONS, converter_fp16, plan_here
from posegate.backends.ncnn.probe import NcnnProbe
from posegate.backends.ncnn.session import NcnnSession, pnnx_io
from posegate.backends.ncnn.subgraph import call as call_for_subgraph
from posegate.backends.ncnn.subgraph import run as run_a_subgraph
from posegate.backends.probing import CannotLocalize

# What pnnx 20261020 cannot lower to ncnn layers, measured here and shown by the conversion's own error
# (tests/test_ncnn_backend.py checks these messages stay true). VideoPose3D slices each residual to the
# length of the dilated convolution's output, a size computed from the input's frame count: pnnx keeps
# it as pnnx.Expression sub(size(@0,2),3), which ncnn has no layer for.
VIDEOPOSE3D = ("pnnx cannot lower VideoPose3D's frame-count slices: it writes pnnx.Expression "
               "sub(size(@0,2),3) and Tensor.reshape layers (4 of each), which ncnn does not have")
KNOWN_FAILURES = MappingProxyType({
    r"^test_(convert|infer|perf_device|perf_end_to_end|accuracy|metric_parity)\[videopose3d_243-ncnn-": VIDEOPOSE3D,
})


class NcnnBackend(Backend):
    name = "ncnn"
    precisions = PRECISIONS
    distributions = (RUNTIME, CONVERTER)
    known_failures = KNOWN_FAILURES
    # Every stage on every model costs the default run minutes on 2 cores (HigherHRNet's infer alone ~45 s):
    # the stage cases run under --full and in the nightly; tests/test_ncnn_backend.py keeps the default
    # run's checks of the converter and the runtime in seconds.
    full_only = True
    # precision policy: no int8 (no calibration tool in the wheels), so nothing calibrated; and nothing the
    # precision advice addresses: ncnn cannot keep a layer in fp32 (see the package docstring), so fp16 is
    # not "reduced" in the interface's sense and write_advice stays the interface's {} (no format of its own)
    calibrated = ()
    reduced = ()
    artifact_suffixes = (".param",)  # the probe reads the .param and the .bin beside it

    def unavailable_reason(self):
        return runtime_problem() or converter_problem()

    def open_unavailable_reason(self):
        return runtime_problem()  # a supplied .param/.bin needs no converter

    def version(self):
        found = self.packages()
        return f"ncnn {found.get(RUNTIME, '?')}, pnnx {found.get(CONVERTER, '?')}"

    def probe(self, pipeline, spec, path, io, precision):
        """Every blob of the .param, its convolutions tied to the ONNX nodes of the export it came from
        (``pipeline.onnx`` at this backend's opset: what convert reads)."""
        param = Path(path)
        if param.is_dir():
            param = next(iter(sorted(param.glob("*.param"))), param)
        if param.suffix != ".param" or not param.with_suffix(".bin").is_file():
            raise CannotLocalize(f"{path}: ncnn localises a .param with its .bin beside it")
        return NcnnProbe(spec, param, param.with_suffix(".bin"), pipeline.onnx(spec, self.opset),
                         engine_io(param, spec, io), precision)

    def artifact_settings(self, precision_name, spec=None):
        return {**super().artifact_settings(precision_name, spec),
                "fp16_weights": converter_fp16(precision_name),
                "inputshapes": input_shapes(spec) if spec is not None else None}

    def convert(self, source, out_dir, precision_name, shape):
        ncnn = load(RUNTIME, INSTALL)
        spec = source.spec
        exe = pnnx_executable()
        if exe is None:
            raise ConvertError(converter_problem())
        onnx_path = source.onnx_path(self.opset)
        log = run_pnnx(exe, onnx_path, Path(out_dir), converter_fp16(precision_name),
                               *input_shapes(spec))
        lacking = unrunnable(Path(out_dir) / PARAM, lambda kind: ncnn.layer_to_index(kind) >= 0)
        if lacking:
            ignored = ignored_lines(log)
            raise ConvertError(
                f"{onnx_path}: pnnx wrote layers ncnn does not have: {', '.join(lacking[:4])}"
                + (f" (+{len(lacking) - 4} more)" if len(lacking) > 4 else "")
                + (f"; pnnx: {'; '.join(ignored[:2])}" if ignored else ""))
        (Path(out_dir) / "pnnx.log").write_text(log)

    def run_subgraph(self, onnx_path, feeds, precision, workdir):
        return run_a_subgraph(Path(onnx_path), feeds, precision, Path(workdir))

    def subgraph_call(self, precision, feeds):
        return call_for_subgraph(precision, feeds)

    def load(self, artifact_dir, source, precision_name):
        artifact_dir = Path(artifact_dir)
        return NcnnSession(source.spec, artifact_dir / PARAM, artifact_dir / BIN, precision_name,
                           plan_here(precision_name), pnnx_io(source.spec), self.name)

    def supplied_path_problem(self, path):
        """A .param with its .bin beside it, or a folder holding exactly one such .param."""
        path = Path(path)
        if path.is_dir():
            params = sorted(path.glob("*.param"))
            if len(params) != 1:
                return f"expected one ncnn .param file in the folder, found {[p.name for p in params]}"
            path = params[0]
        if not path.is_file() or path.suffix != ".param" or not path.with_suffix(".bin").is_file():
            return "an ncnn model is a .param file with its .bin beside it (or a folder holding one)"
        return None

    def open(self, path, spec, precision_name, io):
        path = Path(path)
        problem = self.supplied_path_problem(path)
        if problem:
            raise ValueError(f"{path}: {problem}")
        if path.is_dir():
            path = next(path.glob("*.param"))
        return NcnnSession(spec, path, path.with_suffix(".bin"), precision_name, plan_here(precision_name),
                           io, self.name)


def engine_io(param: Path, spec, io: EngineIO) -> EngineIO:
    """``io`` where the .param has its input blob; else pnnx's own names (a converted artifact is handed over
    with the spec's names, which pnnx replaces by in0/out0...)."""
    inputs = {b for kind, _, _, outs, _ in layers(param) if kind == "Input" for b in outs}
    return io if io.input in inputs else pnnx_io(spec)
