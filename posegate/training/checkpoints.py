"""Checkpoints in the upstream and the port's layouts, and loading by key and shape with a report.

Upstream: {state_dict (no 'module.'), optimizer, scheduler, iter, current_epoch}.
Port:     {epoch, arch, state_dict ('module.' prefixed), optimizer, amp, scheduler, ap}; model_best.pth.

A scheduler's milestones are a collections.Counter, which torch's weights_only unpickler admits only from torch
2.4: the suite writes them as a plain dict, so its checkpoints resume on every supported torch, and turns them
back into a Counter on resume. A file written by upstream (a Counter inside) needs torch >= 2.4 to resume, and
says so.
"""
from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from posegate.weights import WeightsError, read_checkpoint

LAYOUTS = ("upstream", "port")
ARCH = "lightweight_openpose"
MOBILENET_FILE = "mobilenet_sgd_68.848.pth.tar"


@dataclass
class LoadReport:
    """What a by-key-and-shape load did: loaded, left at their fresh values, and ignored from the file."""
    source: str
    loaded: list[str] = field(default_factory=list)
    not_loaded: list[str] = field(default_factory=list)  # network keys absent from the file or of another shape
    unused: list[str] = field(default_factory=list)  # file keys the network has no place for

    def __str__(self) -> str:
        def few(keys):
            return ", ".join(keys[:4]) + (" ..." if len(keys) > 4 else "")
        text = f"{self.source}: loaded {len(self.loaded)} tensors"
        if self.not_loaded:
            text += f"; {len(self.not_loaded)} not loaded (kept freshly initialised): {few(self.not_loaded)}"
        if self.unused:
            text += f"; {len(self.unused)} in the file unused: {few(self.unused)}"
        return text


def strip_module(state: dict) -> dict:
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def state_dict_of(obj, path: Path) -> dict:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: holds no state dict of tensors")
    return strip_module({k: v for k, v in obj.items() if isinstance(v, torch.Tensor)})


def load_matching(net: torch.nn.Module, tensors: dict, source: str, rename=None) -> LoadReport:
    """Copy every tensor whose (renamed) key and shape match; report the rest. Never silent."""
    report = LoadReport(source)
    target = net.state_dict()
    named = {rename(k) if rename else k: v for k, v in tensors.items()}
    update = {}
    for key, value in target.items():
        src = named.get(key)
        if src is not None and tuple(src.shape) == tuple(value.shape):
            update[key] = src.to(value.dtype)
            report.loaded.append(key)
        else:
            report.not_loaded.append(key if src is None else f"{key} {tuple(src.shape)}!={tuple(value.shape)}")
    report.unused = sorted(k for k in named if k not in target)
    if not report.loaded:
        raise WeightsError(f"{source}: no tensor matches the network by key and shape "
                           f"(file keys look like {sorted(named)[:3]}); wrong file?")
    net.load_state_dict({**target, **update})
    return report


def load_weights(net, path: Path) -> LoadReport:
    """Weights only from an upstream or port checkpoint (or a bare state dict), by key and shape."""
    path = Path(path)
    return load_matching(net, state_dict_of(read_checkpoint(path), path), str(path))


def load_mobilenet(net, path: Path) -> LoadReport:
    """Step 1: the ImageNet MobileNetV1 (keys 'module.model.*') into the backbone ``model.*``."""
    path = Path(path)
    tensors = state_dict_of(read_checkpoint(path), path)
    backbone = {k: v for k, v in tensors.items() if k.startswith("model.")}
    if not backbone:
        raise WeightsError(f"{path}: no 'model.*' backbone tensors; expected the MobileNetV1 {MOBILENET_FILE}")
    report = load_matching(net, backbone, str(path))
    report.unused = sorted(set(report.unused) | {k for k in tensors if k not in backbone})
    return report


def save(path: Path, layout: str, net, optimizer, scheduler, *, iteration: int, epoch: int,
         amp_state=None, ap: float | None = None) -> Path:
    """Write a checkpoint atomically (a crash mid-write must not leave a broken resume point)."""
    if layout not in LAYOUTS:
        raise ValueError(f"checkpoint layout {layout!r}: expected one of {LAYOUTS}")
    state = strip_module(net.state_dict())
    if layout == "upstream":
        obj = {"state_dict": state, "optimizer": optimizer.state_dict(), "scheduler": _portable(scheduler.state_dict()),
               "iter": iteration, "current_epoch": epoch}
    else:
        # The port saves at an epoch's end and resumes at the next: 'epoch' counts finished epochs.
        obj = {"epoch": epoch, "arch": ARCH, "state_dict": {f"module.{k}": v for k, v in state.items()},
               "optimizer": optimizer.state_dict(), "amp": amp_state, "scheduler": _portable(scheduler.state_dict()),
               "ap": ap}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def _portable(state: dict) -> dict:
    return {k: dict(v) if isinstance(v, collections.Counter) else v for k, v in state.items()}


def _as_written_by(scheduler, state: dict) -> dict:
    """The scheduler's own container types back (MultiStepLR counts repeated milestones with a Counter)."""
    own = scheduler.state_dict()
    return {k: collections.Counter(v) if isinstance(own.get(k), collections.Counter) and isinstance(v, dict) else v
            for k, v in state.items()}


@dataclass
class ResumePoint:
    epoch: int  # epoch to continue
    iteration: int  # optimizer steps done
    amp_state: object = None
    ap: float | None = None


def restore(path: Path, net, optimizer, scheduler, iters_per_epoch: int) -> ResumePoint:
    """Full resume: weights (strict), optimizer, scheduler and the position in the run."""
    path = Path(path)
    obj = read_checkpoint(path, admit=(collections.Counter,))
    if not isinstance(obj, dict) or not {"state_dict", "optimizer", "scheduler"} <= set(obj):
        raise WeightsError(f"{path}: cannot resume from it: needs state_dict, optimizer and scheduler "
                           f"(found {sorted(obj) if isinstance(obj, dict) else type(obj).__name__}); "
                           "use --weights-only to start from its weights")
    missing, unexpected = net.load_state_dict(strip_module(obj["state_dict"]), strict=False)
    if missing or unexpected:
        raise WeightsError(f"{path}: does not fit the network: missing {missing[:4]}, unexpected {unexpected[:4]}; "
                           "a different number of refinement stages? use --weights-only")
    optimizer.load_state_dict(obj["optimizer"])
    scheduler.load_state_dict(_as_written_by(scheduler, obj["scheduler"]))
    if "iter" in obj:
        return ResumePoint(int(obj["current_epoch"]), int(obj["iter"]))
    return ResumePoint(int(obj["epoch"]), int(obj["epoch"]) * iters_per_epoch, obj.get("amp"), obj.get("ap"))
