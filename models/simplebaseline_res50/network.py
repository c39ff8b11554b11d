"""SimpleBaseline: ResNet-50 with three deconvolutions (Xiao et al. 2018, microsoft/human-pose-estimation.pytorch
lib/models/pose_resnet.py, experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml).

The backbone is ResNet-50 (bottlenecks with the stride on the 3x3 convolution); three 4x4 stride-2 transposed
convolutions of 256 channels without bias (DECONV_WITH_BIAS false), each with BatchNorm and ReLU, bring
1/32 back to 1/4; a 1x1 convolution with bias gives the 17 heatmaps. Module names follow upstream's
state-dict keys (``layer1.0.conv1.weight``, ``deconv_layers.0.weight``, ``final_layer.bias``), so its
pose_resnet_50_256x192.pth.tar loads by name.
"""
from __future__ import annotations

from torch import nn

NUM_JOINTS = 17
RESNET50_BLOCKS = (3, 4, 6, 3)
DECONV_CHANNELS = (256, 256, 256)
DECONV_KERNEL = 4  # with padding 1 and no output padding: exactly x2 per layer


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class PoseResNet(nn.Module):
    def __init__(self, blocks=RESNET50_BLOCKS, deconv=DECONV_CHANNELS, joints: int = NUM_JOINTS):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            layer = []
            for b in range(n):
                layer.append(Bottleneck(cin, planes, stride if b == 0 else 1))
                cin = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        ups = []
        for cout in deconv:  # indices 0, 3, 6 are the deconvolutions, as upstream's Sequential numbers them
            ups += [nn.ConvTranspose2d(cin, cout, DECONV_KERNEL, 2, 1, 0, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]
            cin = cout
        self.deconv_layers = nn.Sequential(*ups)
        self.final_layer = nn.Conv2d(cin, joints, 1)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return (self.final_layer(self.deconv_layers(x)),)  # a tuple, as every network of the suite


def build_network() -> PoseResNet:
    """Seeded weights: PyTorch's default initialisation, and the head's bias 0 as upstream's init_weights
    sets it. (Upstream's normal(0, 0.001) deconvolutions and head would leave heatmaps of about 1e-8, below
    what FP16 parity can measure; a zero bias keeps every joint's maximum above 0, as trained maps have it.)"""
    net = PoseResNet()
    nn.init.zeros_(net.final_layer.bias)
    return net
