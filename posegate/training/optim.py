"""Adam with the upstream parameter groups (train.py) and the per-epoch MultiStepLR."""
from __future__ import annotations

import torch
from torch import nn

BASE_LR = 4e-5
WEIGHT_DECAY = 5e-4
MILESTONES = (100, 200, 260)
GAMMA = 0.333
EPOCHS = 280


def _params(module: nn.Module, kind: str, name: str):
    def want(m):
        if kind == "bn":
            return isinstance(m, nn.BatchNorm2d)
        if not isinstance(m, nn.Conv2d):
            return False
        depthwise = m.groups == m.in_channels == m.out_channels and m.groups > 1
        return depthwise if kind == "dw" else m.groups == 1
    return [p for m in module.modules() if want(m) for n, p in m.named_parameters(recurse=False) if n == name]


# (part, kind, parameter, lr multiplier, weight decay or None for the default)
GROUPS = (
    ("model", "conv", "weight", 1, None), ("model", "dw", "weight", 1, 0), ("model", "bn", "weight", 1, 0),
    ("model", "bn", "bias", 2, 0),
    ("cpm", "conv", "weight", 1, None), ("cpm", "conv", "bias", 2, 0), ("cpm", "dw", "weight", 1, 0),
    ("initial_stage", "conv", "weight", 1, None), ("initial_stage", "conv", "bias", 2, 0),
    ("refinement_stages", "conv", "weight", 4, None), ("refinement_stages", "conv", "bias", 8, 0),
    ("refinement_stages", "bn", "weight", 1, 0), ("refinement_stages", "bn", "bias", 2, 0),
)


def param_groups(net: nn.Module, base_lr: float = BASE_LR) -> list[dict]:
    groups = []
    for part, kind, name, mult, decay in GROUPS:
        group = {"params": _params(getattr(net, part), kind, name), "lr": base_lr * mult,
                 "name": f"{part}.{kind}.{name}"}
        if decay is not None:
            group["weight_decay"] = decay
        groups.append(group)
    return groups


def uncovered(net: nn.Module, groups: list[dict]) -> list[str]:
    """Parameters no group trains (upstream silently freezes such ones)."""
    seen = {id(p) for g in groups for p in g["params"]}
    return [n for n, p in net.named_parameters() if id(p) not in seen]


def make_optimizer(net: nn.Module, base_lr: float = BASE_LR, weight_decay: float = WEIGHT_DECAY):
    groups = param_groups(net, base_lr)
    missed = uncovered(net, groups)
    if missed:
        raise ValueError(f"parameters in no optimizer group (they would never train): {missed[:5]}")
    return torch.optim.Adam(groups, lr=base_lr, weight_decay=weight_decay)


def make_scheduler(optimizer, milestones=MILESTONES, gamma=GAMMA):
    """Stepped once per finished epoch."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
