"""ATC, Ascend's ONNX -> OM converter: the command line for a chip (posegate.backends.npu), and running it.

The command is built from the spec (input name, profile dims and gears, ATC settings) and the chip
`npu-smi info` reports, as the seeds write it by hand.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import onnx

from posegate.backends.npu import computes_fp32


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


# ------------------------------------------------------------------------------------- precision
# What "fp32" means on each chip, and its sources: posegate.backends.npu. The flags below pass it to ATC; on
# the Atlas A2/A3 chips ATC's --allow_hf32 default would compute fp32 Conv in HF32, so fp32 passes
# --allow_hf32=false and the OM is called f32 only when the ATC log shows the option took effect.
HF32_ON = "--allow_hf32=false"
HF32_LOG_KEY = "ge.exec.allow_hf32"
# ATC's logs go to files under ~/ascend/log unless ASCEND_SLOG_PRINT_TO_STDOUT=1 prints them instead
# (CANN environment variable reference, envref_07_0121); ASCEND_GLOBAL_LOG_LEVEL=1 is INFO (envref_07_0122)
HF32_LOG_ENV = {"ASCEND_SLOG_PRINT_TO_STDOUT": "1", "ASCEND_GLOBAL_LOG_LEVEL": "1"}


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
    # ais_bench refuses a group- or other-writable model (see posegate.backends.ascend.backend.ais_path_problem)
    om.chmod(om.stat().st_mode & ~0o022)
    return om
