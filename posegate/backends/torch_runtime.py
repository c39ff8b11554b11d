"""Running a PyTorch module (eager, TorchScript or compiled) on the device torch sees, and timing it.

CUDA when torch sees a GPU, else CPU; ``POSEGATE_TORCH_DEVICE`` overrides (``cpu``, ``cuda``, ``cuda:1``).
On CUDA the host copies stay outside the device timer: CUDA events around the forward alone give
``device_ms``, and the call synchronises before it returns so the host timer covers finished work.
TF32 is switched off: an fp32 reference must compute in fp32.
"""
from __future__ import annotations

import copy
import os

import torch

from posegate.backends.base import Session, SessionInfo

DEVICE_ENV = "POSEGATE_TORCH_DEVICE"


def pick_device(env: dict | None = None, cuda_available=None, cuda_count=None) -> str:
    """The device the torch-family backends run on; a bad override is an error naming the variable."""
    env = os.environ if env is None else env
    cuda_available = torch.cuda.is_available if cuda_available is None else cuda_available
    cuda_count = torch.cuda.device_count if cuda_count is None else cuda_count
    wanted = env.get(DEVICE_ENV, "").strip()
    if not wanted:
        return "cuda" if cuda_available() else "cpu"
    try:
        dev = torch.device(wanted)
    except RuntimeError:
        raise ValueError(f"{DEVICE_ENV}={wanted!r} is not a torch device (cpu, cuda, cuda:N)") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise ValueError(f"{DEVICE_ENV}={wanted!r}: only cpu and cuda are supported by the torch backends")
    if not cuda_available():
        raise ValueError(f"{DEVICE_ENV}={wanted!r} but torch sees no CUDA device (torch {torch.__version__})")
    if dev.index is not None and dev.index >= cuda_count():
        raise ValueError(f"{DEVICE_ENV}={wanted!r} but torch sees {cuda_count()} CUDA device(s)")
    return str(dev)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def for_device(module: torch.nn.Module, device: str) -> torch.nn.Module:
    """The module on ``device``; a copy when it moves, so the shared CPU reference (export's input) stays put."""
    if device == "cpu":
        return module
    return copy.deepcopy(module).to(device)


def strict_fp32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


class TorchModuleSession(Session):
    """A callable on torch tensors behind the Session interface: numpy in, numpy out."""

    def __init__(self, spec, info: SessionInfo, module, device: str):
        info.details.setdefault("device", device)
        if device == "cpu":
            info.details.setdefault("threads", torch.get_num_threads())
        else:
            info.details.setdefault("device_name", device_name(device))
            strict_fp32()
        super().__init__(spec, info)
        self.module, self.device = module, device
        self.cuda = device.startswith("cuda")
        if self.cuda:
            self.device_ms = []

    def _run(self, x):
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device)
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = self.module(t)
                end.record()
                torch.cuda.synchronize(self.device)
                self.device_ms.append(start.elapsed_time(end))
            else:
                out = self.module(t)
            out = (out,) if isinstance(out, torch.Tensor) else tuple(out)
            return [o.detach().to("cpu").numpy() for o in out]
