"""A machine fingerprint: what must match before two throughput figures may be compared.

Host names change between CI runners of the same kind, so they are recorded but not compared; the
CPU model, core count, accelerator, OS and the engine versions are.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
from functools import lru_cache
from importlib import metadata

import torch

from posegate.backends import BACKENDS

COMPARED = ("cpu", "cores", "accelerator", "system", "python", "packages")
# besides what the backends run on (each names its own distributions): what every backend's host side uses
HOST_PACKAGES = ("numpy",)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _accelerator() -> str:
    if os.environ.get("POSEGATE_ACCELERATOR"):
        return os.environ["POSEGATE_ACCELERATOR"]
    try:
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # a broken CUDA install must not stop a CPU run
        pass
    return "none"


def packages(backends=None, lookup=metadata.version) -> dict[str, str]:
    """{distribution: version} of every registered backend's installed distributions and the host's.

    Read from package metadata (``lookup``), never by importing: a device library absent here, or broken,
    must not stop a CPU run, and a distribution such as onnxruntime-gpu is named for what is installed.
    """
    if backends is None:
        backends = BACKENDS.values()
    found = {}
    for name in HOST_PACKAGES:
        try:
            found[name] = lookup(name)
        except metadata.PackageNotFoundError:
            pass
    for backend in backends:
        found.update(backend.packages(lookup))
    return dict(sorted(found.items()))


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels dispatch to (ATEN_CPU_CAPABILITY caps it: avx2 on an AVX-512
    machine stands in for an older CPU). torch reports it from 2.1 (torch.backends.cpu.get_cpu_capability)."""
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if get is not None:
        return get()
    return os.environ.get("ATEN_CPU_CAPABILITY", f"not reported by torch {torch.__version__}")


def stack_line(lookup=metadata.version) -> str:
    """The session header's line of the releases that decide a verdict: torch with the CPU kernels it runs,
    numpy, onnx, and every engine installed (device ones included)."""
    found = packages(lookup=lookup)
    for name in ("torch", "onnx"):
        try:
            found.setdefault(name, lookup(name))
        except metadata.PackageNotFoundError:
            pass
    torch_part = (f"torch {found.pop('torch', torch.__version__)} (CPU kernels {cpu_capability()}, "
                  f"{torch.get_num_threads()} threads)")
    return "posegate stack: " + ", ".join([torch_part, *(f"{k} {v}" for k, v in sorted(found.items()))])


@lru_cache(maxsize=1)
def fingerprint() -> dict:
    return describe(packages())


def describe(installed: dict[str, str]) -> dict:
    """The fingerprint of this machine with ``installed`` as its packages."""
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "accelerator": _accelerator(),
        "system": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "packages": installed,
        "host": socket.gethostname(),
    }
    info["id"] = fingerprint_id(info)
    return info


def fingerprint_id(info: dict) -> str:
    compared = {k: info.get(k) for k in COMPARED}
    return hashlib.sha256(json.dumps(compared, sort_keys=True).encode()).hexdigest()[:16]


def differences(a: dict, b: dict) -> list[str]:
    """What differs between two fingerprints, in words ('cores 2 != 16')."""
    out = []
    for k in COMPARED:
        if a.get(k) != b.get(k):
            if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                keys = sorted(set(a[k]) | set(b[k]))
                out += [f"{p} {a[k].get(p)} != {b[k].get(p)}" for p in keys if a[k].get(p) != b[k].get(p)]
            else:
                out.append(f"{k} {a.get(k)!r} != {b.get(k)!r}")
    return out
