"""The reference: the PyTorch module itself, fp32, on CUDA where torch sees a GPU, else CPU."""
from __future__ import annotations

import torch

from posegate.backends.base import Backend, SessionInfo
from posegate.backends.torch_runtime import TorchModuleSession, for_device, pick_device


class TorchSession(TorchModuleSession):
    def __init__(self, spec, module, device: str = "cpu"):
        super().__init__(spec, SessionInfo("torch", "fp32", "f32"), for_device(module, device), device)


class TorchBackend(Backend):
    name = "torch"
    distributions = ("torch",)
    precisions = ("fp32",)
    converts = False
    reference = True

    def version(self):
        # the device is part of it: reference outputs and predictions cached on a CPU are not a GPU's
        return f"{torch.__version__} on {pick_device()}"

    def load(self, artifact_dir, source, precision):
        return TorchSession(source.spec, source.torch_model(), pick_device())
