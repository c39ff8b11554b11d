"""What each precision means on OpenVINO's CPU plugin: the inference precision its sessions, probes and the
advice search ask for."""
from __future__ import annotations

from posegate.backends.lazy import load

# What the CPU plugin computes in for each precision we ask for. fp32 must be pinned: on CPUs with
# BF16 support the plugin's default is bf16, which would make an "fp32" run silently lossy. An INT8
# IR carries its quantisation in FakeQuantize nodes; what lies between them stays f32.
HINTS = {"fp32": ["f32"], "fp16": ["f16", "bf16", "f32"], "int8": ["f32"]}


def inference_hint(precision: str, core=None) -> str:
    """The INFERENCE_PRECISION_HINT this backend's sessions ask the CPU for at ``precision`` (the HINTS rule
    against the CPU's capabilities); the probes and the advice search ask for the same."""
    caps = set((core or load("openvino").Core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return next(h for h in HINTS.get(precision, ["f32"]) if h == "f32" or h.upper() in caps)
