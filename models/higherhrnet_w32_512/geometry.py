"""What the HigherHRNet codec and its decoder oracle share: the joint layout (count, flip pairs) and the image
-> input geometry (upstream's center/scale affine record, the Ascend port's buckets).

Its own module so that the codec can offer the oracle (oracle.py builds on these) without an import cycle.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

NUM_JOINTS = 17
FLIP_INDEX = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
SHORT_SIDE = 512
LONG_SIDES = tuple(range(512, 1025, 64))  # the Ascend port's 9 long sides


def bucket_name(hw) -> str:
    return f"{hw[0]}x{hw[1]}"


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], np.float32)


def _affine(center, scale, size_wh, inverse: bool) -> np.ndarray:
    """The upstream transform (rotation 0): center -> middle of the output, scale[0] * 200 px of
    width -> the output width. Built from the same three float32 point pairs upstream solves for, so
    the matrix is bit-identical."""
    src_w = np.float64(scale[0]) * 200.0
    dst_w, dst_h = size_wh
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = np.asarray(center, np.float64) + np.array([0.0, src_w * -0.5])
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0.0, dst_w * -0.5], np.float32)
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


@dataclass(frozen=True)
class AffineRecord:
    """How one image maps into the network input: upstream's center and scale, the input size and the
    Ascend bucket the image falls in (whatever the profile used)."""
    orig_h: int
    orig_w: int
    center: tuple[int, int]
    scale: tuple[float, float]
    input_h: int
    input_w: int
    bucket: str

    @cached_property
    def forward(self) -> np.ndarray:
        return _affine(self.center, self.scale, (self.input_w, self.input_h), inverse=False)

    @cached_property
    def inverse(self) -> np.ndarray:
        return _affine(self.center, self.scale, (self.input_w, self.input_h), inverse=True)

    def to_input(self, xy) -> np.ndarray:
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return xy @ self.forward[:, :2].T + self.forward[:, 2]

    def to_original(self, xy) -> np.ndarray:
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return xy @ self.inverse[:, :2].T + self.inverse[:, 2]


def upstream_size(h: int, w: int) -> tuple[int, int]:
    """(H, W): short side 512, long side rounded up to a multiple of 64 (get_multi_scale_size)."""
    if w < h:
        return int((SHORT_SIDE / w * h + 63) // 64 * 64), SHORT_SIDE
    return SHORT_SIDE, int((SHORT_SIDE / h * w + 63) // 64 * 64)


def ascend_bucket(h: int, w: int) -> tuple[int, int]:
    """(H, W) of the Ascend port: the long side snapped to the nearest of 512..1024 (a tie goes to the
    smaller side, as an argmin over the ascending list does); beyond 1024 it is 1024 and centre-cropped."""
    short, long = (w, h) if w < h else (h, w)
    side = min(LONG_SIDES, key=lambda s: (abs(s - SHORT_SIDE / short * long), s))
    return (side, SHORT_SIDE) if w < h else (SHORT_SIDE, side)


def make_record(h: int, w: int, size_hw: tuple[int, int]) -> AffineRecord:
    """Upstream's center and scale for an image resized into ``size_hw``: the short side spans the
    input's matching side, the other side follows at the same scale (padded or cropped, centred)."""
    in_h, in_w = size_hw
    if w < h:
        scale = (w / 200.0, in_h / in_w * w / 200.0)
    else:
        scale = (in_w / in_h * h / 200.0, h / 200.0)
    center = (int(w / 2.0 + 0.5), int(h / 2.0 + 0.5))
    return AffineRecord(h, w, center, scale, in_h, in_w, bucket_name(ascend_bucket(h, w)))
