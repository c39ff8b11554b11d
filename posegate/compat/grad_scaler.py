"""The loss scaler for mixed precision on a device. torch 2.3 added the device-generic
torch.amp.GradScaler(device) (pytorch/pytorch#126527 then deprecated torch.cuda.amp.GradScaler in its favour);
before it each device has its own: torch.cuda.amp.GradScaler, and torch.npu.amp.GradScaler once torch_npu is
imported."""
from __future__ import annotations

import torch

from posegate.compat import torch_release

DEVICE_GENERIC = (2, 3)


def grad_scaler(device_type: str, have: tuple[int, int] | None = None, torch_module=torch):
    """A GradScaler for ``device_type`` ('cuda', 'npu', ...) on torch ``have``."""
    if (have or torch_release()) >= DEVICE_GENERIC:
        return torch_module.amp.GradScaler(device_type)
    return getattr(torch_module, device_type).amp.GradScaler()
