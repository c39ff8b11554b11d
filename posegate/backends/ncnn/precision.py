"""ncnn's precision policy: what each precision asks of the converter and of the runtime, and what the
runtime then really computes in on this CPU.

- fp32: pnnx writes fp32 weights (``fp16=0``) and every reduced storage option is off.
- fp16: pnnx writes fp16 weights (its default ``fp16=1``). ncnn keeps activations in fp16 only on ARM
  (asimdhp / vfpv4) and RISC-V (zfh); on x86 Net::forward_layer never casts to fp16, and its one
  reduced-storage path is bf16 (``use_bf16_storage``: bf16 blobs and weights, fp32 accumulation), the
  counterpart of OpenVINO's bf16 on this CPU. Tencent/ncnn src/net.cpp (the NCNN_ARM82 / NCNN_VFPV4 /
  NCNN_ZFH / NCNN_BF16 branches of convert_layout) and src/layer/x86/convolution_x86.cpp
  (create_pipeline_bf16s).

No int8: ncnn's int8 needs a calibration table from ncnn2table, a tool the wheels do not ship.
"""
from __future__ import annotations

from dataclasses import dataclass

from posegate.backends.lazy import load
from posegate.backends.ncnn.availability import INSTALL, RUNTIME

PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class Plan:
    """One precision on one CPU: the converter's weight format, the runtime's options, the compute."""
    fp16_weights: bool  # pnnx fp16=1
    fp16_storage: bool  # Option.use_fp16_storage / _packed / _arithmetic
    bf16_storage: bool  # Option.use_bf16_storage / _packed
    execution: str  # what SessionInfo.execution reports

    def apply(self, opt) -> None:
        """Set an ncnn.Option to this plan (every field, so no default of the binding leaks in: its
        Option() turns fp16 storage on)."""
        opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = self.fp16_storage
        opt.use_bf16_storage = opt.use_bf16_packed = self.bf16_storage


def converter_fp16(precision: str) -> bool:
    """Whether the artifact stores fp16 weights (part of what the converter is asked, so of its cache key)."""
    _check(precision)
    return precision == "fp16"


def plan(precision: str, arm_fp16: bool) -> Plan:
    """The plan for ``precision`` on a CPU that has (``arm_fp16``) or lacks ARM half-precision arithmetic."""
    _check(precision)
    if precision == "fp32":
        return Plan(False, False, False, "f32")
    if arm_fp16:
        return Plan(True, True, False, "f16")
    return Plan(True, False, True, "bf16")


def plan_here(precision: str) -> Plan:
    ncnn = load(RUNTIME, INSTALL)
    return plan(precision, bool(ncnn.cpu_support_arm_asimdhp()))


def _check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"ncnn has no {precision} path here; it runs {', '.join(PRECISIONS)}")
