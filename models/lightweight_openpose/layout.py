"""What the Lightweight OpenPose codec and its decoder oracle share: the 18-joint layout (limbs, PAF channels,
the COCO mapping) and the record of how an image maps into the network input.

Its own module so that the codec can offer the oracle (oracle.py builds on these) without an import cycle.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_KPTS = 18  # heatmap channel 18 is background
PEAK_MIN_DISTANCE = 6  # the decoder merges peaks closer than this; the oracle keeps drawn joints this far apart

BODY_PARTS_KPT_IDS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
                      (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17))
BODY_PARTS_PAF_IDS = ((12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5),
                      (6, 7), (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27))
EAR_SHOULDER_PARTS = (17, 18)  # redundant limbs: they only fill joints still missing
TO_COCO_MAP = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)  # -1: neck, not in COCO
COCO_TO_18 = (0, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)  # 0-based COCO index per non-neck slot
NECK = 1
R_SHOULDER, L_SHOULDER = 2, 5


@dataclass(frozen=True)
class PadRecord:
    """How one original image maps into the network input.

    Coordinates are continuous with pixel centres on integers, the convention cv2.resize samples with
    (source = (dest + 0.5) / scale - 0.5 when called with fx = fy = scale).
    """

    orig_h: int
    orig_w: int
    scale: float
    resized_h: int
    resized_w: int
    top: int
    bottom: int
    left: int
    right: int

    @property
    def input_h(self) -> int:
        return self.top + self.resized_h + self.bottom

    @property
    def input_w(self) -> int:
        return self.left + self.resized_w + self.right

    def _offset(self) -> np.ndarray:
        return np.array([self.left, self.top], dtype=np.float64)

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, dtype=np.float64) - self._offset() + 0.5) / self.scale - 0.5

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, dtype=np.float64) + 0.5) * self.scale - 0.5 + self._offset()

    @classmethod
    def identity(cls, height: int, width: int) -> "PadRecord":
        return cls(height, width, 1.0, height, width, 0, 0, 0, 0)

