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
HF32_ON = "--allow_hf32=false"
HF32_LOG_KEY = "ge.exec.allow_hf32"
# ATC's logs go to files under ~/ascend/log unless ASCEND_SLOG_PRINT_TO_STDOUT=1 prints them instead
# (CANN environment variable reference, envref_07_0121); ASCEND_GLOBAL_LOG_LEVEL=1 is INFO (envref_07_0122)
HF32_LOG_ENV = {"ASCEND_SLOG_PRINT_TO_STDOUT": "1", "ASCEND_GLOBAL_LOG_LEVEL": "1"}


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


def fp32_flags(chip: str) -> list[str]:
    if computes_fp32(chip):
        return ["--precision_mode_v2=origin", HF32_ON]
    return ["--precision_mode=force_fp32"]


def hf32_off_in(log_text: str) -> bool:
    """Whether the ATC log shows --allow_hf32 took effect (the guide: "ge.exec.allow_hf32" in the log), and
    not with true: the line's exact form is not documented, so only an explicit true/1 counts against it."""
    lines = [ln for ln in log_text.splitlines() if HF32_LOG_KEY in ln]
    return bool(lines) and not any(re.search(r"allow_hf32\W+(true|1)\b", ln, re.I) for ln in lines)


def execution(chip: str | None, precision: str, hf32_off: bool | None = None) -> str:
    """What an OM built by atc_command computes in, named for what it is (``hf32_off``: the ATC log's word
    on --allow_hf32, for an A2/A3 fp32 build)."""
    if precision != "fp32":
        return "f16"
    if not computes_fp32(chip):
        return "f16-in f32-out cube (force_fp32)"
    return "f32" if hf32_off else "hf32"


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
    return args + _build_flags(chip, precision, settings)


def subgraph_command(onnx_path, output_stem, shapes: dict, chip: str, precision: str,
                     settings: AtcSettings = AtcSettings()) -> list[str]:
    """The ATC argument list for a reduced subgraph: every input static at its feed's shape in one
    --input_shape ("name:d0,d1;name2:..."), the ND format (its inputs need not be images), and the
    model's own log, tuning and precision flags, as atc_command passes them."""
    spec = ";".join(f"{n}:{','.join(str(int(d)) for d in shape)}" for n, shape in shapes.items())
    return ["atc", "--framework=5", f"--model={onnx_path}", f"--output={output_stem}", "--input_format=ND",
            f'--input_shape="{spec}"', *_build_flags(chip, precision, settings)]


def _build_flags(chip: str, precision: str, settings: AtcSettings) -> list[str]:
    args = []
    log = settings.log
    if precision == "fp32" and computes_fp32(chip) and log in (None, "null", "error", "warning"):
        log = "info"  # the ge.exec.allow_hf32 line that proves HF32 off is not an error-level line
    if log:
        args.append(f"--log={log}")
    if settings.auto_tune_mode:
        args.append(f'--auto_tune_mode="{settings.auto_tune_mode}"')
    if precision == "fp32":
        args += fp32_flags(chip)  # ATC's default computes in fp16 (the seeds' OMs)
    args.append(f"--soc_version=Ascend{chip}")
    return args


def written_om(folder: Path, stem: str) -> Path | None:
    """The OM ATC wrote for ``--output=<stem>``: <stem>.om, or <stem>_<os>_<cpu>.om (model_linux_x86_64.om),
    the name GE gives an OM that carries its operators' .so binaries (hicann/ge,
    base/common/helper/model_helper.cc, SaveSpaceRegistrySoBin inserts "_" + host os + "_" + host cpu
    before ".om"); None when there is neither, or more than one candidate."""
    plain = Path(folder, stem + ".om")
    if plain.is_file():
        return plain
    tagged = [p for p in Path(folder).glob(f"{stem}_*.om")
              if re.fullmatch(re.escape(stem) + r"_[a-z]+_[A-Za-z0-9_]+\.om", p.name) and p.is_file()]
    return tagged[0] if len(tagged) == 1 else None


def run_atc(args: list[str], cwd: Path, run=subprocess.run) -> Path:
    """Run ATC in ``cwd``; the OM, or AtcError carrying the log of a failed run."""
    # quoting is for the shell the seeds type into; exec passes each argument whole
    argv = [a.replace('"', "") for a in args]
    log = cwd / "atc.log"
    env = {**os.environ, **HF32_LOG_ENV} if HF32_ON in argv else None  # the log must reach stdout
    try:
        proc = run(argv, cwd=str(cwd), capture_output=True, text=True, env=env)
    except OSError as e:
        raise AtcError(f"could not start {argv[0]}: {e}") from None
    log.write_text(f"$ {' '.join(args)}\n{proc.stdout or ''}{proc.stderr or ''}")
    stem = next(a.split("=", 1)[1] for a in argv if a.startswith("--output="))
    om = written_om(cwd, stem)
    if proc.returncode != 0 or om is None:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        oms = sorted(p.name for p in Path(cwd).glob("*.om"))
        why = f"exit {proc.returncode}" if proc.returncode else \
            f"no {stem}.om or {stem}_<os>_<cpu>.om written (.om files there: {oms or 'none'})"
        raise AtcError(f"atc failed ({why}): {' '.join(args)}\n--- atc log (last 40 lines) ---\n{tail}")
    shutil.rmtree(cwd / "kernel_meta", ignore_errors=True)  # ATC's compile scratch
    # ais_bench refuses a group- or other-writable model (see ascend_backend.ais_path_problem)
    om.chmod(om.stat().st_mode & ~0o022)
    return om
