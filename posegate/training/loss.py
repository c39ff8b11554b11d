"""The upstream masked L2 loss (modules/loss.py), one heatmap and one PAF term per stage."""
from __future__ import annotations

import torch


def l2_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, batch_size: int) -> torch.Tensor:
    diff = (pred.float() - target) * mask  # float: under autocast the sum of squares must not be low precision
    return (diff * diff).sum() / 2 / batch_size


def stage_losses(outputs, batch: dict) -> list[torch.Tensor]:
    """[s0 heatmaps, s0 pafs, s1 heatmaps, ...] losses of the network's outputs on one batch."""
    n = batch["image"].shape[0]
    losses = []
    for i in range(0, len(outputs), 2):
        losses.append(l2_loss(outputs[i], batch["keypoint_maps"], batch["keypoint_mask"], n))
        losses.append(l2_loss(outputs[i + 1], batch["paf_maps"], batch["paf_mask"], n))
    return losses
