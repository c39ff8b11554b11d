"""MSPN with two ResNet-50 stages (megvii-research/MSPN, exps/mspn.2xstg.coco/network.py).

Module names follow the official state-dict keys (``top.conv.conv.weight``,
``stage0.downsample.layer1.0.conv_bn_relu1.bn.weight``, ``stage0.upsample.up4.cross_conv...``), so
mspn_2xstg_coco.pth loads by name. Facts: shared/reference/pipelines.md section 3.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

NUM_JOINTS = 17
OUTPUT_SHAPE = (64, 48)  # heatmap (height, width): a quarter of the 256x192 crop
UPSAMPLE_CHANNELS = 256
RESNET50_BLOCKS = (3, 4, 6, 3)
LEVEL_CHANNELS = (2048, 1024, 512, 256)  # ResNet outputs, coarsest first, as the upsample units take them


class ConvBnRelu(nn.Module):
    """Every convolution of MSPN carries a bias even when a BatchNorm follows (the official layout)."""

    def __init__(self, cin, cout, kernel=1, stride=1, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        cout = planes * self.expansion
        self.conv_bn_relu1 = ConvBnRelu(cin, planes, 1)
        self.conv_bn_relu2 = ConvBnRelu(planes, planes, 3, stride)
        self.conv_bn_relu3 = ConvBnRelu(planes, cout, 1, relu=False)
        self.downsample = ConvBnRelu(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = self.conv_bn_relu3(self.conv_bn_relu2(self.conv_bn_relu1(x)))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Top(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ConvBnRelu(3, 64, 7, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x):
        return self.maxpool(self.conv(x))


class Downsample(nn.Module):
    """ResNet-50 layers 1-4; a later stage adds the previous stage's two skips at every level."""

    def __init__(self, has_skip: bool):
        super().__init__()
        self.has_skip = has_skip
        cin = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), RESNET50_BLOCKS)):
            stride = 1 if i == 0 else 2
            layers = [Bottleneck(cin, planes, stride)]
            cin = planes * Bottleneck.expansion
            layers += [Bottleneck(cin, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))

    def forward(self, x, skip1, skip2):
        feats = []
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            if self.has_skip:
                x = x + skip1[i] + skip2[i]
            feats.append(x)
        return feats[::-1]  # coarsest first


class UpsampleUnit(nn.Module):
    def __init__(self, index: int, cin: int, up_size, gen_skip: bool, gen_cross_conv: bool):
        super().__init__()
        ch = UPSAMPLE_CHANNELS
        self.index, self.up_size = index, up_size
        self.u_skip = ConvBnRelu(cin, ch, relu=False)
        if index > 0:
            self.up_conv = ConvBnRelu(ch, ch, relu=False)
        self.gen_skip = gen_skip
        if gen_skip:
            self.skip1 = ConvBnRelu(cin, cin)
            self.skip2 = ConvBnRelu(ch, cin)
        self.gen_cross_conv = gen_cross_conv and index == 3
        if self.gen_cross_conv:
            self.cross_conv = ConvBnRelu(ch, 64)
        self.res_conv1 = ConvBnRelu(ch, ch)
        self.res_conv2 = ConvBnRelu(ch, NUM_JOINTS, 3, relu=False)

    def forward(self, x, up_x):
        out = self.u_skip(x)
        if self.index > 0:
            out = out + self.up_conv(F.interpolate(up_x, size=self.up_size, mode="bilinear", align_corners=True))
        out = F.relu(out)
        res = self.res_conv2(self.res_conv1(out))
        res = F.interpolate(res, size=OUTPUT_SHAPE, mode="bilinear", align_corners=True)
        skip1 = self.skip1(x) if self.gen_skip else None
        skip2 = self.skip2(out) if self.gen_skip else None
        cross = self.cross_conv(out) if self.gen_cross_conv else None
        return out, res, skip1, skip2, cross


class Upsample(nn.Module):
    def __init__(self, gen_skip: bool, gen_cross_conv: bool):
        super().__init__()
        h, w = OUTPUT_SHAPE
        sizes = ((h // 8, w // 8), (h // 4, w // 4), (h // 2, w // 2), (h, w))
        for i, (cin, size) in enumerate(zip(LEVEL_CHANNELS, sizes)):
            setattr(self, f"up{i + 1}", UpsampleUnit(i, cin, size, gen_skip, gen_cross_conv))

    def forward(self, feats):
        out, results, skip1, skip2, cross = None, [], [], [], None
        for unit, x in zip((self.up1, self.up2, self.up3, self.up4), feats):
            out, res, s1, s2, cross = unit(x, out)
            results.append(res)
            skip1.append(s1)
            skip2.append(s2)
        # the next stage adds skips finest level first, in its own layer order
        return results, skip1[::-1], skip2[::-1], cross


class Stage(nn.Module):
    def __init__(self, has_skip: bool, gen_skip: bool, gen_cross_conv: bool):
        super().__init__()
        self.downsample = Downsample(has_skip)
        self.upsample = Upsample(gen_skip, gen_cross_conv)

    def forward(self, x, skip1, skip2):
        return self.upsample(self.downsample(x, skip1, skip2))


class MSPN(nn.Module):
    """Evaluation forward: the last stage's finest heatmaps, [N, 17, 64, 48] on a 0..255 scale."""

    def __init__(self, stages: int = 2):
        super().__init__()
        self.stages = stages
        self.top = Top()
        for i in range(stages):
            last = i == stages - 1
            setattr(self, f"stage{i}", Stage(has_skip=i > 0, gen_skip=not last, gen_cross_conv=not last))

    def forward(self, x):
        x = self.top(x)
        skip1 = skip2 = None
        for i in range(self.stages):
            results, skip1, skip2, x = getattr(self, f"stage{i}")(x, skip1, skip2)
        return (results[-1],)  # a tuple, like every multi-output network of the suite


def build_network() -> MSPN:
    return MSPN(stages=2)
