"""TorchScript: the traced network (the export stage's ``.ts``), frozen, then optimised for inference
(conv+BN folding, oneDNN layouts on CPU) at load. fp32, on CUDA where torch sees a GPU, else CPU.

One trace serves every batch and free axis: the export stage checks the trace on another batch size
and on real inputs, so a shape the trace baked in fails there first.
"""
from __future__ import annotations

import shutil

import torch

from posegate.backends.base import Backend, SessionInfo
from posegate.backends.torch_runtime import TorchModuleSession, pick_device
from posegate.export.to_torchscript import default_trace_shape, load

TRACED = "model.ts"


class TorchScriptBackend(Backend):
    name = "torchscript"
    distributions = ("torch",)
    precisions = ("fp32",)
    exports = "torchscript"

    def version(self):
        return str(torch.__version__)

    def artifact_settings(self, precision, spec=None):
        return {"backend": self.name, "version": self.version(), "precision": precision, "freeze": True,
                "device": pick_device()}

    def convert(self, source, out_dir, precision, shape):
        traced = source.torchscript_path(default_trace_shape(source.spec))
        frozen = torch.jit.freeze(load(traced).eval())  # weights become constants; saved frozen, reloads as is
        torch.jit.save(frozen, str(out_dir / TRACED))
        shutil.copyfile(traced, out_dir / "traced.ts")  # what was frozen, for whoever debugs a difference

    def load(self, artifact_dir, source, precision):
        device = pick_device()
        module = torch.jit.optimize_for_inference(load(artifact_dir / TRACED, device))
        info = SessionInfo(self.name, precision, "f32", {"optimized_for_inference": True})
        return TorchModuleSession(source.spec, info, module, device)
