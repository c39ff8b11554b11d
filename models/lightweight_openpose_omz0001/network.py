"""Open Model Zoo human-pose-estimation-0001: upstream Lightweight OpenPose with another CPM block.

The Caffe-trained original has ELU after ``align``, an extra 1x1 reduction (``red``) before the
depthwise trunk, and biased pointwise convs in the trunk (see ../shared/data/weights/README.md).
"""
from __future__ import annotations

from torch import nn

from models.lightweight_openpose.network import PoseEstimationWithMobileNet, conv, conv_dw_no_bn


def _conv_elu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 1, 1, 0, bias=True), nn.ELU(inplace=True))


class CpmOmz(nn.Module):
    def __init__(self, cin=512, cout=128):
        super().__init__()
        self.align = _conv_elu(cin, cout)
        self.red = _conv_elu(cout, cout)
        self.trunk = nn.Sequential(*[conv_dw_no_bn(cout, cout, pointwise_bias=True) for _ in range(3)])
        self.conv = conv(cout, cout, bn=False)

    def forward(self, x):
        a = self.align(x)
        return self.conv(a + self.trunk(self.red(a)))


def build_network() -> PoseEstimationWithMobileNet:
    return PoseEstimationWithMobileNet(num_refinement_stages=1, cpm=CpmOmz(512, 128))
