"""Lightweight OpenPose (MobileNetV1 backbone, one refinement stage).

Module and index layout follow the upstream state-dict keys exactly (``model.1.3.weight``,
``cpm.trunk.0.2.weight``...), so the official checkpoint loads by name.
"""
from __future__ import annotations

import torch
from torch import nn

NUM_HEATMAPS = 19  # 18 keypoints + background
NUM_PAFS = 38


def conv(cin, cout, kernel=3, padding=1, bn=True, dilation=1, stride=1, relu=True, bias=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def conv_dw(cin, cout, stride=1, dilation=1, padding=1):
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, padding, dilation=dilation, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def conv_dw_no_bn(cin, cout, pointwise_bias=False):
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
        nn.ELU(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=pointwise_bias),
        nn.ELU(inplace=True),
    )


def mobilenet_backbone() -> nn.Sequential:
    return nn.Sequential(
        conv(3, 32, stride=2, bias=False),
        conv_dw(32, 64),
        conv_dw(64, 128, stride=2),
        conv_dw(128, 128),
        conv_dw(128, 256, stride=2),
        conv_dw(256, 256),
        conv_dw(256, 512),
        conv_dw(512, 512, dilation=2, padding=2),
        conv_dw(512, 512),
        conv_dw(512, 512),
        conv_dw(512, 512),
        conv_dw(512, 512),
    )


class Cpm(nn.Module):
    def __init__(self, cin=512, cout=128):
        super().__init__()
        self.align = conv(cin, cout, kernel=1, padding=0, bn=False)
        self.trunk = nn.Sequential(*[conv_dw_no_bn(cout, cout) for _ in range(3)])
        self.conv = conv(cout, cout, bn=False)

    def forward(self, x):
        x = self.align(x)
        return self.conv(x + self.trunk(x))


def _heads(cin, mid):
    def head(cout):
        return nn.Sequential(
            conv(cin, mid, kernel=1, padding=0, bn=False),
            conv(mid, cout, kernel=1, padding=0, bn=False, relu=False),
        )
    return head(NUM_HEATMAPS), head(NUM_PAFS)


class InitialStage(nn.Module):
    def __init__(self, channels=128):
        super().__init__()
        self.trunk = nn.Sequential(*[conv(channels, channels, bn=False) for _ in range(3)])
        self.heatmaps, self.pafs = _heads(channels, 512)

    def forward(self, x):
        x = self.trunk(x)
        return [self.heatmaps(x), self.pafs(x)]


class RefinementStageBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.initial = conv(cin, cout, kernel=1, padding=0, bn=False)
        self.trunk = nn.Sequential(conv(cout, cout), conv(cout, cout, dilation=2, padding=2))

    def forward(self, x):
        x = self.initial(x)
        return x + self.trunk(x)


class RefinementStage(nn.Module):
    def __init__(self, cin, channels=128):
        super().__init__()
        self.trunk = nn.Sequential(RefinementStageBlock(cin, channels),
                                   *[RefinementStageBlock(channels, channels) for _ in range(4)])
        self.heatmaps, self.pafs = _heads(channels, channels)

    def forward(self, x):
        x = self.trunk(x)
        return [self.heatmaps(x), self.pafs(x)]


class PoseEstimationWithMobileNet(nn.Module):
    """Returns (stage1_heatmaps, stage1_pafs, stage2_heatmaps, ...) at 1/8 of the input."""

    def __init__(self, num_refinement_stages=1, channels=128, cpm: nn.Module | None = None):
        super().__init__()
        self.model = mobilenet_backbone()
        self.cpm = cpm if cpm is not None else Cpm(512, channels)
        self.initial_stage = InitialStage(channels)
        self.refinement_stages = nn.ModuleList(
            RefinementStage(channels + NUM_HEATMAPS + NUM_PAFS, channels)
            for _ in range(num_refinement_stages))

    def forward(self, x: torch.Tensor):
        features = self.cpm(self.model(x))
        outputs = self.initial_stage(features)
        for stage in self.refinement_stages:
            outputs.extend(stage(torch.cat([features, outputs[-2], outputs[-1]], dim=1)))
        return tuple(outputs)


def build_network() -> PoseEstimationWithMobileNet:
    return PoseEstimationWithMobileNet(num_refinement_stages=1)
