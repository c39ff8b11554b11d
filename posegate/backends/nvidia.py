"""What the NVIDIA backends share: finding the GPU, naming it as the seeds do, and the input shape
range an engine must accept (TensorRT's optimisation profile)."""
from __future__ import annotations

import functools
import shutil
import subprocess

import torch


@functools.lru_cache(maxsize=1)
def cuda_device() -> tuple[str | None, str]:
    """(GPU name, why not): through torch when it has CUDA, else `nvidia-smi -L` (asked once per run)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0), ""
    if shutil.which("nvidia-smi") is None:
        return None, "no CUDA device (torch.cuda.is_available() is False and nvidia-smi is not on PATH)"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"nvidia-smi -L failed: {e}"
    for line in out.splitlines():  # "GPU 0: Tesla T4 (UUID: GPU-...)"
        if line.startswith("GPU 0:"):
            return line.split(":", 1)[1].split("(UUID")[0].strip(), ""
    return None, "nvidia-smi lists no GPU"


def seed_device_name(gpu: str | None) -> str | None:
    """'Tesla T4' / 'NVIDIA T4' -> 'T4', the name the seeds' tables use."""
    if not gpu:
        return None
    for prefix in ("NVIDIA ", "Tesla "):
        gpu = gpu.removeprefix(prefix)
    return gpu.strip()


def shape_range(spec) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) engine input shapes covering every profile's batches and dims.

    The first axis counts engine rows, not samples: a profile's flip copies (MSPN, VideoPose3D) and a
    flow's (HigherHRNet) multiply each batch, as ``ModelSpec.engine_shape`` feeds the engine. A dynamic
    dim spans its gears when the profile lists them, else half to three times its perf size (the
    profile's representative input); opt is the first profile at its largest default batch.
    """
    lows, highs = [], []
    for p in spec.profiles:
        rows = [spec.engine_shape(p, b)[0] for b in p.batch_sizes + p.full_batch_sizes]
        lo, hi = [min(rows)], [max(rows)]
        for i, d in enumerate(p.dims):
            if d is not None:
                lo.append(d)
                hi.append(d)
            elif p.gears:
                free = [j for j, e in enumerate(p.dims) if e is None].index(i)
                lo.append(min(g[free] for g in p.gears))
                hi.append(max(g[free] for g in p.gears))
            else:
                lo.append(max(1, p.concrete_dims[i] // 2))
                hi.append(p.concrete_dims[i] * 3)
        lows.append(lo)
        highs.append(hi)
    first = spec.profiles[0]
    opt = (spec.engine_shape(first, max(first.batch_sizes))[0], *first.concrete_dims)
    low = tuple(min(v) for v in zip(*lows))
    high = tuple(max(v) for v in zip(*highs))
    return low, tuple(min(max(o, a), b) for o, a, b in zip(opt, low, high)), high
