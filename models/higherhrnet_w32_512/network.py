"""HigherHRNet-W32 (HRNet backbone, 1/4 heatmaps + tags, one deconv head to 1/2 heatmaps).

Module names and nesting follow the upstream state-dict keys (``stage4.2.fuse_layers.0.3.1.weight``,
``deconv_layers.0.1.0.conv1.weight``), so the official plain state dict loads by name and strictly.
Facts: shared/reference/pipelines.md section 2; layout: manifests/higherhrnet_w32_512.json.
"""
from __future__ import annotations

import torch
from torch import nn

NUM_JOINTS = 17
STAGES = (  # (modules, channels per branch) of stages 2-4; every branch holds 4 BASIC blocks
    (1, (32, 64)),
    (4, (32, 64, 128)),
    (3, (32, 64, 128, 256)),
)


def _conv_bn(cin, cout, kernel=3, stride=1, relu=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _fuse(cin: int, cout: int, steps: int) -> nn.Module | None:
    """Branch j -> branch i: 1x1 conv + nearest upsampling from a coarser branch, strided 3x3 convs
    from a finer one (ReLU between them, none after the last, since the sum is activated)."""
    if steps == 0:
        return None
    if steps < 0:
        return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                             nn.Upsample(scale_factor=2 ** -steps, mode="nearest"))
    downs = [_conv_bn(cin, cin, stride=2) for _ in range(steps - 1)]
    downs.append(_conv_bn(cin, cout, stride=2, relu=False))
    return nn.Sequential(*downs)


class HighResolutionModule(nn.Module):
    def __init__(self, channels: tuple[int, ...], multi_scale_output: bool):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(c) for _ in range(4)]) for c in channels)
        outputs = len(channels) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse(channels[j], channels[i], i - j) for j in range(len(channels)))
            for i in range(outputs))
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for layers in self.fuse_layers:
            # summed in branch order, as upstream: float addition order shows in these large activations
            y = None
            for layer, x in zip(layers, xs):
                term = x if layer is None else layer(x)
                y = term if y is None else y + term
            fused.append(self.relu(y))
        return fused


def _transition(previous: tuple[int, ...], current: tuple[int, ...]) -> nn.ModuleList:
    """New branches come from the coarsest previous one through a strided 3x3 conv."""
    layers = []
    for i, c in enumerate(current):
        if i < len(previous):
            layers.append(None if previous[i] == c else _conv_bn(previous[i], c))
        else:
            layers.append(nn.Sequential(_conv_bn(previous[-1], c, stride=2)))
    return nn.ModuleList(layers)


class HigherHRNet(nn.Module):
    """Returns (out_quarter, out_half): 17 heatmaps + 17 tag maps at 1/4, 17 heatmaps at 1/2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        down = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, down), *[Bottleneck(256, 64) for _ in range(3)])
        previous = (256,)
        for n, (modules, channels) in enumerate(STAGES, start=1):
            setattr(self, f"transition{n}", _transition(previous, channels))
            last_stage = n == len(STAGES)
            # the last module of the last stage fuses into the finest branch only
            setattr(self, f"stage{n + 1}", nn.Sequential(*[
                HighResolutionModule(channels, multi_scale_output=not (last_stage and m == modules - 1))
                for m in range(modules)]))
            previous = channels
        width = STAGES[0][1][0]
        self.final_layers = nn.ModuleList([nn.Conv2d(width, 2 * NUM_JOINTS, 1), nn.Conv2d(width, NUM_JOINTS, 1)])
        deconv = nn.Sequential(nn.ConvTranspose2d(width + 2 * NUM_JOINTS, width, 4, 2, 1, bias=False),
                               nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.deconv_layers = nn.ModuleList([nn.Sequential(
            deconv, *[nn.Sequential(BasicBlock(width)) for _ in range(4)])])

    def _stage(self, n: int, ys: list[torch.Tensor]) -> list[torch.Tensor]:
        transition = getattr(self, f"transition{n}")
        # upstream feeds every transition from the coarsest branch (only new branches have one here)
        xs = [ys[i] if t is None else t(ys[-1]) for i, t in enumerate(transition)]
        for module in getattr(self, f"stage{n + 1}"):
            xs = module(xs)
        return xs

    def forward(self, x: torch.Tensor):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for n in range(1, len(STAGES) + 1):
            ys = self._stage(n, ys)
        feat = ys[0]
        quarter = self.final_layers[0](feat)
        half = self.final_layers[1](self.deconv_layers[0](torch.cat((feat, quarter), 1)))
        return quarter, half


def build_network() -> HigherHRNet:
    return HigherHRNet()
