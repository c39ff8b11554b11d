"""Backend registry: the only list of backends. A backend is one folder (posegate/backends/<name>/) holding its
engine and session, its availability, its precision policy, its probe and its advice format behind the Backend
interface (base.py); its package's ``BACKENDS`` tuple says what it registers. A new backend is its folder and
its name in PACKAGES. What several backends share sits beside them: lazy.py (optional device libraries),
nvidia.py (the GPU), npu.py (the Ascend chip and its fp32 rule), torch_runtime.py (running torch modules).
"""
from __future__ import annotations

import importlib

from posegate.backends.base import Backend, EngineIO, ModelSource, Session, SessionInfo

# the backend folders, in the order their cases are generated
PACKAGES = ("torch", "torchscript", "torch_compile", "onnxruntime", "openvino", "ascend", "torch_aie", "tensorrt",
            "onnxruntime_gpu", "ncnn")


def _registered(packages) -> dict[str, Backend]:
    found: dict[str, Backend] = {}
    for package in packages:
        for backend in importlib.import_module(f"{__name__}.{package}").BACKENDS:
            if backend.name in found:
                raise ValueError(f"backend {backend.name!r} is registered twice (posegate/backends/{package}/)")
            found[backend.name] = backend
    return found


BACKENDS: dict[str, Backend] = _registered(PACKAGES)
REFERENCE = "torch"

__all__ = ["BACKENDS", "PACKAGES", "REFERENCE", "Backend", "EngineIO", "ModelSource", "Session", "SessionInfo"]
