"""The reference: the PyTorch module itself, fp32 on CPU."""
from __future__ import annotations

import torch

from posegate.backends.base import Backend, Session, SessionInfo


class TorchSession(Session):
    def __init__(self, spec, module):
        super().__init__(spec, SessionInfo("torch", "fp32", "f32", {"threads": torch.get_num_threads()}))
        self.module = module

    def _run(self, x):
        with torch.inference_mode():
            out = self.module(torch.from_numpy(x))
        return [o.numpy() for o in out]


class TorchBackend(Backend):
    name = "torch"
    precisions = ("fp32",)
    converts = False
    reference = True

    def version(self):
        return torch.__version__

    def load(self, artifact_dir, source, precision):
        return TorchSession(source.spec, source.torch_model())
