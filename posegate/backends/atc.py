"""ATC, Ascend's ONNX -> OM converter: the chip to build for, the command line, and running it.

The command is built from the spec (input name, profile dims and gears, ATC settings) and the chip
`npu-smi info` reports, as the seeds write it by hand.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import onnx

CHIP_ENV = "POSEGATE_ASCEND_CHIP"  # e.g. 310P3: convert on a host without an NPU (ATC itself needs none)


class AtcError(RuntimeError):
    """ATC failed; the message ends with its log."""


@dataclass(frozen=True)
class AtcSettings:
    """ATC arguments a model needs beyond its ONNX file and profile (the seeds' extra flags); a spec gives
    them as ``backend_settings={"ascend": AtcSettings(...)}``."""
    input_format: str = "NCHW"
    out_nodes: tuple[str, ...] = ()  # spec outputs ATC keeps, passed as their producer nodes (Conv_1818:0)
    log: str | None = "error"
    auto_tune_mode: str | None = None  # e.g. "RL,GA": seed 001's advice when the 310P is slow


# ------------------------------------------------------------------------------------------- chip

def parse_npu_smi(text: str) -> str | None:
    """The first chip name of `npu-smi info`'s table (the row '| 0       310P3     | OK ...')."""
    for line in text.splitlines():
        m = re.match(r"^\|\s*\d+\s+(\d{3}[A-Za-z0-9]*)\s+\|\s*(OK|Warning|Alarm|Critical)", line)
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
# ATC's --precision_mode / --precision_mode_v2 (CANN ATC guide, "--precision_mode_v2"):
# - force_fp32 is cube_fp16in_fp32out: where an operator has both, the cube (matrix) units take fp16
#   inputs and accumulate into fp32; only vector operators run in fp32. Not fp32 parity.
# - --precision_mode_v2=origin keeps the graph's fp32, and fails where an AI Core operator has no fp32
#   implementation, as the 310/310P cube units have none. The Atlas A2/A3 training and inference chips
#   (Ascend910B*, Ascend910_93*) compute fp32 convolutions; no other chip is assumed to.
ORIGIN_FP32_CHIPS = ("910B", "910_93")


def computes_fp32(chip: str | None) -> bool:
    return bool(chip) and str(chip).removeprefix("Ascend").startswith(ORIGIN_FP32_CHIPS)


def fp32_flag(chip: str) -> str:
    return "--precision_mode_v2=origin" if computes_fp32(chip) else "--precision_mode=force_fp32"


def execution(chip: str | None, precision: str) -> str:
    """What an OM built by atc_command computes in, named for what it is."""
    if precision != "fp32":
        return "f16"
    return "f32" if computes_fp32(chip) else "f16-in f32-out cube (force_fp32)"


# -------------------------------------------------------------------------------------------- ATC

def producer_nodes(onnx_path: Path, outputs) -> list[str]:
    """'Node:index' of the node writing each named graph output: ATC's --out_nodes form."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    found = {}
    for node in graph.node:
        for i, name in enumerate(node.output):
            found[name] = f"{node.name}:{i}"
    missing = [o for o in outputs if o not in found]
    if missing:
        raise ValueError(f"{onnx_path}: no node writes {missing}")
    return [found[o] for o in outputs]


def _profile_for(spec, shape):
    for p in spec.all_profiles:
        if tuple(p.dims) == tuple(shape[1:]):
            return p
    raise ValueError(f"{spec.name}: no input profile has dims {shape[1:]}")


def atc_command(spec, onnx_path, output_stem, shape, chip: str, precision: str, out_nodes=(),
                settings: AtcSettings = AtcSettings()) -> list[str]:
    """The ATC argument list for one engine shape; a dynamic axis becomes the profile's gears."""
    profile = _profile_for(spec, shape)
    dynamic = [i for i, d in enumerate(shape) if d is None]
    dims = ",".join("-1" if d is None else str(d) for d in shape)
    args = ["atc", "--framework=5", f"--model={onnx_path}", f"--output={output_stem}"]
    fmt = settings.input_format
    extra = []
    if dynamic:
        if 0 in dynamic:
            raise ValueError(f"{spec.name}: ATC needs a batch size; got shape {shape}")
        if not profile.gears:
            raise ValueError(f"{spec.name} profile {profile.name}: dynamic dims {profile.dims} need gears for ATC")
        gears = ";".join(",".join(str(g) for g in gear) for gear in profile.gears)
        free = [i - 1 for i in dynamic]
        if any(len(g) != len(free) for g in profile.gears):
            raise ValueError(f"{spec.name} profile {profile.name}: each gear needs {len(free)} values")
        if fmt == "NCHW" and len(shape) == 4 and dynamic == [2, 3]:
            extra.append(f'--dynamic_image_size="{gears}"')
        else:
            fmt = "ND"  # ATC takes --dynamic_dims with the ND format only
            extra.append(f'--dynamic_dims="{gears}"')
    args += [f"--input_format={fmt}", f'--input_shape="{spec.input_name}:{dims}"', *extra]
    if out_nodes:
        args.append('--out_nodes="' + ";".join(out_nodes) + '"')
    if settings.log:
        args.append(f"--log={settings.log}")
    if settings.auto_tune_mode:
        args.append(f'--auto_tune_mode="{settings.auto_tune_mode}"')
    if precision == "fp32":
        args.append(fp32_flag(chip))  # ATC's default computes in fp16 (the seeds' OMs)
    args.append(f"--soc_version=Ascend{chip}")
    return args


def run_atc(args: list[str], cwd: Path, run=subprocess.run) -> Path:
    """Run ATC in ``cwd``; the OM, or AtcError carrying the log of a failed run."""
    # quoting is for the shell the seeds type into; exec passes each argument whole
    argv = [a.replace('"', "") for a in args]
    log = cwd / "atc.log"
    try:
        proc = run(argv, cwd=str(cwd), capture_output=True, text=True)
    except OSError as e:
        raise AtcError(f"could not start {argv[0]}: {e}") from None
    log.write_text(f"$ {' '.join(args)}\n{proc.stdout or ''}{proc.stderr or ''}")
    stem = next(a.split("=", 1)[1] for a in argv if a.startswith("--output="))
    om = Path(cwd, stem + ".om")
    if proc.returncode != 0 or not om.is_file():
        tail = "\n".join(log.read_text().splitlines()[-40:])
        why = f"exit {proc.returncode}" if proc.returncode else f"no {om.name} written"
        raise AtcError(f"atc failed ({why}): {' '.join(args)}\n--- atc log (last 40 lines) ---\n{tail}")
    shutil.rmtree(cwd / "kernel_meta", ignore_errors=True)  # ATC's compile scratch
    # ais_bench refuses a group- or other-writable model (see ascend_backend.ais_path_problem)
    om.chmod(om.stat().st_mode & ~0o022)
    return om
