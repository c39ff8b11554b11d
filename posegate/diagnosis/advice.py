"""Precision advice: which layers to keep in fp32 so a reduced-precision port meets its tolerance.

Layers are ranked by the error they add themselves (error leaving minus the worst error entering, from a
localisation of the reduced-precision run); the search keeps the top 1, 2, 4, ... of them in fp32 until the
outputs are within the target, re-validating each candidate on OpenVINO here. The result is written in
each tool's own format (all keyed by the ONNX node names, which ATC, TensorRT's ONNX parser and
OpenVINO's ONNX frontend keep as operator, layer and friendly names):

- ATC: a ``--keep_dtype`` file (one operator name a line; the torch modules in keep_dtype_modules.tsv
  beside it, as the file takes no comments) with ``--precision_mode=force_fp16``
  (hiascend.com CANN docs, atctool "--keep_dtype": "--keep_dtype=$HOME/exceptionlist.cfg --precision_mode=force_fp16");
- TensorRT: ``trtexec --fp16 --precisionConstraints=obey --layerPrecisions=NAME:fp32,...`` and the
  same as builder calls (ILayer.precision, set_output_type, BuilderFlag.OBEY_PRECISION_CONSTRAINTS);
- OpenVINO: runtime info on the nodes. Python's ``rt_info["precise_0"]`` is what ``save_model`` writes as
  the ``DisablePrecisionConversion`` attribute the CPU plugin honours (checked here: marking in memory
  alone changes nothing; through a saved IR it does), so the advice is applied by saving an IR.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from posegate.diagnosis.localize import upstream

OV_KEEP = "precise_0"
STEPS = (1, 2, 4, 8, 16, 32, 64)
# ONNX and OpenVINO op types that compute with weights or sums (OpenVINO names a Conv with bias after its Add)
COMPUTING = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Convolution", "GroupConvolution",
             "ConvolutionBackpropData"}


@dataclass
class Advice:
    precision: str
    target: float  # max_rel every output must reach
    ranked: list[dict] = field(default_factory=list)  # node, module, op_type, added error, in rank order
    keep: list[str] = field(default_factory=list)  # the ONNX node names advised to stay fp32
    before: dict = field(default_factory=dict)  # output -> max_rel
    weights_only: dict = field(default_factory=dict)  # fp32 weights, no layer kept: what the marks add beyond it
    after: dict = field(default_factory=dict)
    met: bool = False
    tried: list[dict] = field(default_factory=list)  # {"layers": k, "worst": max_rel}
    throughput_before: float | None = None  # runs/s of the reduced-precision model on the same input
    throughput_after: float | None = None
    files: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        worst = max(self.before.values()) if self.before else float("nan")
        now = max(self.after.values()) if self.after else float("nan")
        verdict = "meets" if self.met else "does not reach"
        alone = max(self.weights_only.values()) if self.weights_only else float("nan")
        return (f"keep {len(self.keep)} node(s) in fp32: worst max_rel {worst:.3g} -> {now:.3g} (fp32 weights alone "
                f"{alone:.3g}), {verdict} the target "
                f"{self.target:.3g}; throughput {_rate(self.throughput_before)} -> {_rate(self.throughput_after)} "
                "runs/s")


def _rate(v):
    return "?" if v is None else f"{v:.2f}"


def rank(localization) -> list[dict]:
    """Compared tensors by the error their own node adds: leaving minus the worst compared input entering."""
    out = []
    for item in localization.items:
        if item.output is not None and item.module is None:
            continue
        entering, between = upstream(localization, item)
        added = item.max_rel - max(entering, default=0.0)
        # the compared tensor's node and the uncompared ones feeding it (a Relu's convolution) made that error
        nodes = [n for n in [item.node, *between] if "/" in n]
        out.append({"node": item.node, "module": item.module, "op_type": item.op_type, "leaving": item.max_rel,
                    "added": added, "nodes": nodes, "computing": item.op_type in COMPUTING})
    # computing nodes first: they round weights and sums; an activation's relative error moves with its range
    return sorted(out, key=lambda r: (not r["computing"], -r["added"]))


def _openvino():
    """OpenVINO, imported when advice is asked for: the suite runs without it (its backend then says why)."""
    import openvino  # noqa: PLC0415 (optional device library, lazy on purpose)
    return openvino


def ov_keep_fp32(source: Path, keep: list[str], out_xml: Path, compress: bool = False) -> Path:
    """An IR of ``source`` (ONNX) with the ``keep`` nodes (and the ops OpenVINO splits them into, named
    after them) marked to stay fp32. Weights stay fp32 unless ``compress``: measured here, the CPU plugin
    keeps a marked node in fp32 only when its weights are not fp16-compressed (a decompressed weight feeds
    the f16 path whatever the mark)."""
    ov = _openvino()
    model = ov.convert_model(str(source))
    names = set(keep)
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if name in names or any(name.startswith(n + "/") for n in names):
            op.get_rt_info()[OV_KEEP] = ""
    ov.save_model(model, str(out_xml), compress_to_fp16=compress)
    return out_xml


def _ov_run(xml: Path, x: np.ndarray, input_name: str, hint: str, rounds: int = 0):
    ov = _openvino()
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": hint})
    request = compiled.create_infer_request()
    out = {p.get_any_name(): np.array(v) for p, v in zip(compiled.outputs, request.infer({input_name: x}).values())}
    rate = None
    if rounds:
        start = time.perf_counter()
        for _ in range(rounds):
            request.infer({input_name: x})
        rate = rounds / (time.perf_counter() - start)
    return out, rate


def _errors(out: dict, ref: dict) -> dict:
    return {n: float(np.max(np.abs(out[n] - ref[n])) / max(float(np.max(np.abs(ref[n]))), 1e-30)) for n in ref}


def advise_openvino(source: Path, localization, ref: dict, x: np.ndarray, input_name: str, target: float,
                    folder: Path, hint: str = "f16", rounds: int = 5) -> Advice:
    """The search on OpenVINO: the smallest top-k of the ranking whose IR meets ``target`` on every output."""
    folder.mkdir(parents=True, exist_ok=True)
    advice = Advice(localization.precision, target, ranked=rank(localization))
    base = ov_keep_fp32(source, [], folder / "reduced.xml", compress=True)  # as the suite converts fp16
    out, advice.throughput_before = _ov_run(base, x, input_name, hint, rounds)
    advice.before = _errors(out, ref)
    out, _ = _ov_run(ov_keep_fp32(source, [], folder / "fp32-weights.xml"), x, input_name, hint)
    advice.weights_only = _errors(out, ref)
    best = None
    layers = [r["nodes"] for r in advice.ranked]  # the ones adding most first; every compared layer last
    computing = sum(r["computing"] for r in advice.ranked)
    for k in sorted({*(s for s in STEPS if s < len(layers)), computing, len(layers)} - {0}):
        keep = list(dict.fromkeys(n for group in layers[:k] for n in group))
        xml = ov_keep_fp32(source, keep, folder / f"keep{len(keep)}.xml")
        out, _ = _ov_run(xml, x, input_name, hint)
        errors = _errors(out, ref)
        advice.tried.append({"layers": min(k, len(layers)), "nodes": len(keep), "worst": max(errors.values())})
        if best is None or max(errors.values()) < max(best[2].values()):
            best = (min(k, len(layers)), keep, errors, xml)
        if max(errors.values()) <= target:
            best = (min(k, len(layers)), keep, errors, xml)
            break
    _, advice.keep, advice.after, xml = best
    advice.met = max(advice.after.values()) <= target
    _, advice.throughput_after = _ov_run(xml, x, input_name, hint, rounds)
    advice.files = write(advice.keep, folder, openvino_ir=str(xml))
    (folder / "advice.json").write_text(json.dumps(advice.as_dict(), indent=1))
    advice.files["advice"] = str(folder / "advice.json")
    return advice


def trtexec_args(keep: list[str]) -> list[str]:
    """trtexec options keeping ``keep`` in fp32 in an fp16 engine (names quoted by the caller's shell, not here)."""
    return ["--fp16", "--precisionConstraints=obey", "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in keep)]


def atc_args(keep_file: Path) -> list[str]:
    return [f"--keep_dtype={keep_file}", "--precision_mode=force_fp16"]


def write(keep: list[str], folder: Path, openvino_ir: str | None = None, modules: dict | None = None) -> dict:
    """The advice in each tool's own format, as files a user feeds to their converter; ``modules`` (node ->
    torch module) adds each node's module where the format has room for it (comments, JSON fields)."""
    modules = modules or {}
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    cfg = folder / "keep_dtype.cfg"
    # names only, no comment lines: GE reads every non-empty trimmed line of the file as an operator name (or
    # OpType::T) and fails the build on one not in the graph, E10042 (graphengine ge/ir_build/attr_options/
    # keep_dtype_option.cc, KeepDtypeFunc); the torch modules go to a file beside it instead
    cfg.write_text("".join(f"{n}\n" for n in keep))
    beside = folder / "keep_dtype_modules.tsv"
    beside.write_text("# keep_dtype.cfg's operators (ONNX node names) and the torch module each computes\n"
                      + "".join(f"{n}\t{modules.get(n) or '-'}\n" for n in keep))
    (folder / "atc_options.txt").write_text(" ".join(atc_args(cfg)) + "\n")
    files["atc_keep_dtype"], files["atc_options"] = str(cfg), str(folder / "atc_options.txt")
    files["atc_keep_dtype_modules"] = str(beside)
    (folder / "trtexec_options.txt").write_text(" ".join(f"'{a}'" for a in trtexec_args(keep)) + "\n")
    files["trtexec"] = str(folder / "trtexec_options.txt")
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
    files["tensorrt_builder"] = str(builder)
    ov_file = folder / "openvino_keep_fp32.json"
    ov_file.write_text(json.dumps({"rt_info": OV_KEEP, "saved_as": "DisablePrecisionConversion",
                                   "nodes": keep, "modules": {n: modules.get(n) for n in keep},
                                   "ir": openvino_ir}, indent=1))
    files["openvino"] = str(ov_file)
    if openvino_ir:
        files["openvino_ir"] = openvino_ir
    return files
