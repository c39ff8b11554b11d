"""VideoPose3D's temporal convolution network (243-frame receptive field, 1024 channels).

Module names and order follow the upstream state dict (``expand_conv``, ``layers_conv.<i>``,
``layers_bn.<i>``, ``shrink``), so the official ``model_pos`` loads by name. Every convolution is
valid-only: T input frames give T - 242 output frames, which is what lets a padded sequence be
trimmed back to exactly the unpadded result.
"""
from __future__ import annotations

import torch
from torch import nn

JOINTS = 17
FILTER_WIDTHS = (3, 3, 3, 3, 3)
CHANNELS = 1024


class TemporalModel(nn.Module):
    """[B, T, 17, 2] screen-normalised 2D poses -> [B, T - 242, 17, 3] root-relative 3D poses (metres)."""

    def __init__(self, joints: int = JOINTS, widths=FILTER_WIDTHS, channels: int = CHANNELS, dropout: float = 0.25):
        super().__init__()
        self.joints = joints
        # registration order is the upstream state dict's: the base class's layers first
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.shrink = nn.Conv1d(channels, joints * 3, 1)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout)
        self.expand_conv = nn.Conv1d(joints * 2, channels, widths[0], bias=False)
        # block i trims (w - 1) * dilation // 2 frames per side, so its residual is the input's centre
        self.pads = []
        convs, bns = [], []
        dilation = widths[0]
        for w in widths[1:]:
            self.pads.append((w - 1) * dilation // 2)
            convs += [nn.Conv1d(channels, channels, w, dilation=dilation, bias=False),
                      nn.Conv1d(channels, channels, 1, bias=False)]
            bns += [nn.BatchNorm1d(channels, momentum=0.1), nn.BatchNorm1d(channels, momentum=0.1)]
            dilation *= w
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(bns)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        b, t = x.shape[0], x.shape[1]
        x = x.reshape(b, t, -1).permute(0, 2, 1)
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i, pad in enumerate(self.pads):
            residual = x[:, :, pad: x.shape[2] - pad]
            x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = residual + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        x = self.shrink(x).permute(0, 2, 1)
        return (x.reshape(b, x.shape[1], self.joints, 3),)


def build_network() -> TemporalModel:
    return TemporalModel()
