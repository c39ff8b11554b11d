"""The precision advice on OpenVINO: runtime info on the nodes to keep in fp32. Python's
``rt_info["precise_0"]`` is what ``save_model`` writes as the keep-fp32 attribute (SAVED_MARKS) the CPU
plugin honours (checked here: marking in memory alone changes nothing; through a saved IR it does), so the
advice is applied by saving an IR; OpenVINO's ONNX frontend keeps the ONNX node names as friendly names.
The same IRs re-validate every candidate of the advice search here (posegate.diagnosis.advice).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from posegate.backends.lazy import load

OV_KEEP = "precise_0"
# What the IR carries for the mark: OpenVINO 2024 serializes it as its DisableFP16Compression attribute (RTTI
# "precise"); later releases renamed the attribute DisablePrecisionConversion. Each reads back its own spelling.
SAVED_MARKS = ("DisablePrecisionConversion", "precise")


def saved_mark(xml_text: str) -> str | None:
    """The spelling of the keep-fp32 mark in a saved IR, or None where no layer carries it."""
    return next((m for m in SAVED_MARKS if f'<attribute name="{m}"' in xml_text), None)


def ov_keep_fp32(source: Path, keep: list[str], out_xml: Path, compress: bool = False) -> Path:
    """An IR of ``source`` (ONNX) with the ``keep`` nodes (and the ops OpenVINO splits them into, named
    after them) marked to stay fp32. Weights stay fp32 unless ``compress``: measured here, the CPU plugin
    keeps a marked node in fp32 only when its weights are not fp16-compressed (a decompressed weight feeds
    the f16 path whatever the mark)."""
    ov = load("openvino")
    model = ov.convert_model(str(source))
    names = set(keep)
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if name in names or any(name.startswith(n + "/") for n in names):
            op.get_rt_info()[OV_KEEP] = ""
    ov.save_model(model, str(out_xml), compress_to_fp16=compress)
    return out_xml


def run_ir(xml: Path, x: np.ndarray, input_name: str, hint: str, rounds: int = 0):
    ov = load("openvino")
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



class IrValidator:
    """Re-validates precision-advice candidates on the CPU plugin: an IR per candidate with its nodes marked,
    compiled at the backend's own inference precision hint."""

    def __init__(self, hint: str):
        self.hint = hint

    def keep_fp32(self, source: Path, keep: list[str], out: Path, compress: bool = False) -> Path:
        return ov_keep_fp32(source, keep, out.with_suffix(".xml"), compress)

    def run(self, model: Path, x: np.ndarray, input_name: str, rounds: int = 0):
        return run_ir(model, x, input_name, self.hint, rounds)


def write(keep: list[str], folder: Path, modules: dict, ir: str | None = None) -> dict[str, str]:
    """The nodes to mark (with their torch modules) and the IR the advice saved, for whoever converts again."""
    files = {}
    ov_file = folder / "openvino_keep_fp32.json"
    saved_as = saved_mark(Path(ir).read_text()) if ir and Path(ir).is_file() else None
    ov_file.write_text(json.dumps({"rt_info": OV_KEEP, "saved_as": saved_as or " or ".join(SAVED_MARKS),
                                   "nodes": keep, "modules": {n: modules.get(n) for n in keep},
                                   "ir": ir}, indent=1))
    files["openvino"] = str(ov_file)
    if ir:
        files["openvino_ir"] = ir
    return files
