"""The torch reference's values of chosen tensors, and nothing else: one forward with hooks on just the
modules asked for, so a reduction of HigherHRNet holds a handful of tensors, never all ~2000."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class CannotReduce(RuntimeError):
    """The failure cannot be reduced here; the message says why."""


def capture(model: nn.Module, x: np.ndarray, modules: dict[str, str], outputs: dict[str, str],
            model_outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``modules``: tensor -> module path whose output it is; ``outputs``: tensor -> the model output it is."""
    table = dict(model.named_modules())
    got: dict[str, np.ndarray] = {}
    calls: dict[str, int] = {}
    handles = []
    for tensor, path in modules.items():
        def hook(_m, _inp, out, tensor=tensor, path=path):
            calls[path] = calls.get(path, 0) + 1
            if isinstance(out, torch.Tensor):
                got[tensor] = out.detach().numpy().copy()
        handles.append(table[path].register_forward_hook(hook))
    try:
        with torch.inference_mode():
            out = model(torch.from_numpy(np.ascontiguousarray(x)))
    finally:
        for h in handles:
            h.remove()
    twice = sorted(p for p, n in calls.items() if n != 1)
    if twice:  # localisation drops these; a cut on one would feed a value the graph never sees
        raise CannotReduce(f"modules called more than once per forward cannot be cut at: {twice}")
    outs = out if isinstance(out, (list, tuple)) else [out]
    by_name = dict(zip(model_outputs, outs))
    for tensor, name in outputs.items():
        got[tensor] = by_name[name].detach().numpy().copy()
    missing = [t for t in (*modules, *outputs) if t not in got]
    if missing:
        raise CannotReduce(f"torch gave no tensor output for {missing[:3]}")
    return got
