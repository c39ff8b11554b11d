"""Precision advice: which layers to keep in fp32 so a reduced-precision port meets its tolerance.

Layers are ranked by the error they add themselves (error leaving minus the worst error entering, from a
localisation of the reduced-precision run); the search keeps the top 1, 2, 4, ... of them in fp32 until the
outputs are within the target, re-validating each candidate on OpenVINO here (its IR marks:
posegate.backends.openvino.advice). The result is written in each engine's own format by the backend that
owns it (``Backend.write_advice``: ATC's --keep_dtype file, trtexec's and TensorRT's builder form, OpenVINO's
marks), all keyed by the ONNX node names, which ATC, TensorRT's ONNX parser and OpenVINO's ONNX frontend
keep as operator, layer and friendly names.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from posegate.backends import BACKENDS
from posegate.diagnosis.localize import upstream

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


def _errors(out: dict, ref: dict) -> dict:
    return {n: float(np.max(np.abs(out[n] - ref[n])) / max(float(np.max(np.abs(ref[n]))), 1e-30)) for n in ref}


def validator(precision: str):
    """The first backend that re-validates advice here (``Backend.advice_validator``), or CannotAdvise saying
    why none can."""
    reasons = []
    for backend in BACKENDS.values():
        found = backend.advice_validator(precision)
        if found is None:
            continue
        why = backend.unavailable_reason()
        if why is None:
            return found
        reasons.append(why)
    raise CannotAdvise("no backend here re-validates the advice: " + ("; ".join(reasons) or "none offers to"))


class CannotAdvise(RuntimeError):
    """No backend here can re-validate advice candidates; the message says why."""


def advise(check, source: Path, localization, ref: dict, x: np.ndarray, input_name: str, target: float,
           folder: Path, rounds: int = 5) -> Advice:
    """The search on ``check`` (a validator): the smallest top-k of the ranking whose model meets ``target`` on
    every output."""
    folder.mkdir(parents=True, exist_ok=True)
    advice = Advice(localization.precision, target, ranked=rank(localization))
    base = check.keep_fp32(source, [], folder / "reduced", compress=True)  # as the suite converts fp16
    out, advice.throughput_before = check.run(base, x, input_name, rounds)
    advice.before = _errors(out, ref)
    out, _ = check.run(check.keep_fp32(source, [], folder / "fp32-weights"), x, input_name)
    advice.weights_only = _errors(out, ref)
    best = None
    layers = [r["nodes"] for r in advice.ranked]  # the ones adding most first; every compared layer last
    computing = sum(r["computing"] for r in advice.ranked)
    for k in sorted({*(s for s in STEPS if s < len(layers)), computing, len(layers)} - {0}):
        keep = list(dict.fromkeys(n for group in layers[:k] for n in group))
        xml = check.keep_fp32(source, keep, folder / f"keep{len(keep)}")
        out, _ = check.run(xml, x, input_name)
        errors = _errors(out, ref)
        advice.tried.append({"layers": min(k, len(layers)), "nodes": len(keep), "worst": max(errors.values())})
        if best is None or max(errors.values()) < max(best[2].values()):
            best = (min(k, len(layers)), keep, errors, xml)
        if max(errors.values()) <= target:
            best = (min(k, len(layers)), keep, errors, xml)
            break
    _, advice.keep, advice.after, xml = best
    advice.met = max(advice.after.values()) <= target
    _, advice.throughput_after = check.run(xml, x, input_name, rounds)
    advice.files = write(advice.keep, folder, ir=str(xml))
    (folder / "advice.json").write_text(json.dumps(advice.as_dict(), indent=1))
    advice.files["advice"] = str(folder / "advice.json")
    return advice


def write(keep: list[str], folder: Path, ir: str | None = None, modules: dict | None = None) -> dict:
    """The advice in each engine's own format, as files a user feeds to their converter: every backend that
    has a format writes it (``Backend.write_advice``); ``modules`` (node -> torch module) adds each node's
    module where the format has room for it (comments, JSON fields)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for backend in BACKENDS.values():
        files.update(backend.write_advice(keep, folder, modules or {}, ir))
    return files
