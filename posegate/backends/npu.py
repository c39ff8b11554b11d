"""Ascend NPUs, what every Ascend backend (ascend: ATC + ais_bench; torch-aie) shares: which chip is here,
which NPU to run on, and what "fp32" means on that chip, so the rule is written once (``AscendChip``).
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

CHIP_ENV = "POSEGATE_ASCEND_CHIP"  # e.g. 310P3: convert on a host without an NPU (ATC itself needs none)
DEVICE_ENV = "POSEGATE_ASCEND_DEVICE"


# ------------------------------------------------------------------------------------------- chip

# The Name column of `npu-smi info`. The 310/310P and Atlas A2 rows carry the bare chip ("310P3", "910B3").
# For the Atlas A3 chips (soc_version Ascend910_9391/9392/9381/9382/9372/9362) no Huawei page read here shows
# the row: third-party fixtures print it bare ("910_9391"), while the first 910 generation's row is prefixed
# ("Ascend910"). So both forms are accepted, the prefix dropped, and an "_93xx" tail kept, so that
# soc_version comes out as Ascend910_9391 (the old pattern stopped at "_" and said Ascend910).
NPU_SMI_ROW = re.compile(r"^\|\s*\d+\s+(?:Ascend)?(\d{3}[A-Za-z0-9]*(?:_[A-Za-z0-9]+)?)\s+"
                         r"\|\s*(OK|Warning|Alarm|Critical)")


def parse_npu_smi(text: str) -> str | None:
    """The first chip name of `npu-smi info`'s table (the row '| 0       310P3     | OK ...')."""
    for line in text.splitlines():
        m = NPU_SMI_ROW.match(line)
        if m:
            return m.group(1)
    return None


def chip_name() -> tuple[str | None, str]:
    """(chip, why not) from the environment override or `npu-smi info`."""
    if os.environ.get(CHIP_ENV):
        return os.environ[CHIP_ENV], ""
    return _smi_chip(shutil.which("npu-smi"))


@functools.lru_cache(maxsize=4)
def _smi_chip(npu_smi: str | None, run=subprocess.run) -> tuple[str | None, str]:
    if npu_smi is None:
        return None, f"npu-smi is not on PATH (no Ascend driver here; set {CHIP_ENV}=310P3 to convert without one)"
    try:
        out = run([npu_smi, "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"npu-smi info failed: {e}"
    chip = parse_npu_smi(out.stdout or "")
    return (chip, "") if chip else (None, f"npu-smi info lists no healthy NPU (exit {out.returncode})")


# ------------------------------------------------------------------------------------- precision
# What "fp32" means on each chip, from CANN's ATC parameter guide (hiascend.com, devaids/atctool,
# atlasatcparam_16_0069 "--precision_mode_v2" and atlasatcparam_16_0077 "--allow_hf32"):
# - --precision_mode_v2 is accepted by every product line, the "Atlas inference series" (310P) included.
#   Its origin keeps the graph's dtypes; an fp32 operator whose AI Core implementation has no fp32 runs
#   as an fp32 AI CPU operator instead (an error where AI CPU has none either). The reading taken here
#   (issue 25's, not seen on a device) is that the 310/310P convolutions are such operators, so origin
#   moves them off the AI Core onto AI CPU kernels: fp32 numbers, but not the engine a port ships.
# - force_fp32 (= cube_fp16in_fp32out) makes matrix operators take fp16 inputs and accumulate into fp32
#   where they have that kernel: fp16 arithmetic, not fp32 parity.
# - On the Atlas A2/A3 chips (Ascend910B*, Ascend910_93*) origin keeps fp32 on the AI Core, but the
#   default of --allow_hf32 (supported on A2/A3 only) converts FP32 to HF32 for Conv operators (Matmul:
#   not). HF32 keeps fp32's range with an 11-bit mantissa, ~fp16's 10: the TF32 problem. The guide says
#   the option acts only on operators left in fp32 (it advises origin), that "ge.exec.allow_hf32" in the
#   conversion log shows it took effect, and also that it is "reserved, not supported in the current
#   version". So fp32 there passes --allow_hf32=false and is called f32 only when the ATC log shows the
#   option; otherwise the OM is named hf32 and its fp32 parity skipped.
# So no 310/310P build is fp32 parity on the engine that ships: fp32_problem() says so, for every Ascend
# backend (ascend, torch-aie) from this one place.
ORIGIN_FP32_CHIPS = ("910B", "910_93")


def _bare(chip) -> str:
    return str(chip or "").removeprefix("Ascend")


def computes_fp32(chip: str | None) -> bool:
    """The chip's AI Core has fp32 convolutions (Atlas A2/A3): --precision_mode_v2=origin keeps them there."""
    return bool(chip) and _bare(chip).startswith(ORIGIN_FP32_CHIPS)


def fp32_problem(chip: str | None, backend: str) -> str | None:
    """Why ``backend`` cannot run fp32 parity on ``chip`` (None: it can, HF32 permitting on A2/A3).

    The one rule for every Ascend backend: the 310 computes fp16 or int8 only; the 310P's "fp32" is
    fp16-input cube arithmetic (force_fp32) or AI CPU kernels (origin), and MindIE-Torch's
    PrecisionPolicy.FP32 ("forces internal dtypes to float32") can only be one of the two there."""
    if not chip:
        return None
    bare = _bare(chip)
    if bare == "310":
        return f"{backend}: the Ascend310's cube unit computes fp16 (or int8) only: no fp32 build exists"
    if not computes_fp32(bare):
        return (f"{backend}: fp32 on the Ascend{bare} is not fp32 on its cube units: "
                "--precision_mode=force_fp32 (cube_fp16in_fp32out) feeds them fp16, and "
                "--precision_mode_v2=origin runs fp32 operators without an fp32 AI Core kernel on AI CPU (CANN "
                "ATC guide, --precision_mode_v2), so fp32 parity would not measure the engine that ships; fp32 "
                "on the AI Core needs an Atlas A2/A3 chip (Ascend910B*, Ascend910_93*)")
    return None


class AscendChip:
    """The precision policy and device name of a backend on an Ascend NPU (a mixin before Backend)."""
    name = ""

    def precision_problem(self, precision):
        return fp32_problem(chip_name()[0], self.name) if precision == "fp32" else None

    def device(self) -> str | None:
        chip, _ = chip_name()
        return f"Ascend{chip}" if chip else None
