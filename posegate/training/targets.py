"""Training targets of upstream datasets/coco.py: keypoint heatmaps with background, PAFs, loss masks.

Coordinates are in input pixels; map cell (i, j) stands for input position (j*stride + stride/2 - 0.5,
i*stride + stride/2 - 0.5) in the heatmaps, and for (j, i) * stride in the PAFs (no half-pixel shift
there, as upstream).
"""
from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils

STRIDE = 8
SIGMA = 7.0
PAF_THICKNESS = 1.0
NUM_KEYPOINTS = 18
N_SIGMA = 4
MAX_EXPONENT = 4.6052  # ln(100): cells below 1% of the peak stay 0
# (a, b) keypoint ids of limb i, whose PAF is channels 2i (x) and 2i+1 (y).
LIMBS = ((1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16),
         (1, 5), (5, 6), (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17))
LABELLED = 1  # internal visibility <= 1: occluded or visible; 2: not labelled / outside


def add_gaussian(heatmap: np.ndarray, x: float, y: float, stride: int = STRIDE, sigma: float = SIGMA) -> None:
    """Add one keypoint's Gaussian to ``heatmap`` in place (sum with earlier people, clipped to 1)."""
    map_h, map_w = heatmap.shape
    x0, y0 = max(int(x - N_SIGMA * sigma), 0), max(int(y - N_SIGMA * sigma), 0)
    x1, y1 = min(int(x + N_SIGMA * sigma), map_w * stride), min(int(y + N_SIGMA * sigma), map_h * stride)
    cols, rows = np.arange(x0 // stride, x1 // stride), np.arange(y0 // stride, y1 // stride)
    if cols.size == 0 or rows.size == 0:
        return
    shift = stride / 2 - 0.5
    dx2 = (cols * stride + shift - x) ** 2
    dy2 = (rows * stride + shift - y) ** 2
    exponent = (dy2[:, None] + dx2[None, :]) / 2 / sigma / sigma
    value = np.where(exponent > MAX_EXPONENT, 0.0, np.exp(-exponent))
    window = heatmap[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    np.minimum(window + value, 1.0, out=window, casting="unsafe")


def set_paf(paf: np.ndarray, xa, ya, xb, yb, stride: int = STRIDE, thickness: float = PAF_THICKNESS) -> None:
    """Write limb a->b's unit vector into ``paf`` (2, h, w) where a cell lies within ``thickness`` of it."""
    _, map_h, map_w = paf.shape
    xa, ya, xb, yb = xa / stride, ya / stride, xb / stride, yb / stride
    vx, vy = xb - xa, yb - ya
    norm = (vx * vx + vy * vy) ** 0.5
    if norm < 1e-7:
        return
    vx, vy = vx / norm, vy / norm
    x0, x1 = int(max(min(xa, xb) - thickness, 0)), int(min(max(xa, xb) + thickness, map_w))
    y0, y1 = int(max(min(ya, yb) - thickness, 0)), int(min(max(ya, yb) + thickness, map_h))
    if x1 <= x0 or y1 <= y0:
        return
    cx, cy = np.meshgrid(np.arange(x0, x1) - xa, np.arange(y0, y1) - ya)
    near = np.abs(cx * vy - cy * vx) <= thickness
    paf[0, y0:y1, x0:x1][near] = vx
    paf[1, y0:y1, x0:x1][near] = vy


def _people(label):
    return [label, *label["processed_other_annotations"]]


def heatmaps(label: dict, height: int, width: int, stride: int = STRIDE, sigma: float = SIGMA) -> np.ndarray:
    """(19, h/stride, w/stride) float32; channel 18 = 1 - max of the 18 keypoint channels."""
    maps = np.zeros((NUM_KEYPOINTS + 1, height // stride, width // stride), np.float32)
    for k in range(NUM_KEYPOINTS):
        for person in _people(label):
            x, y, v = person["keypoints"][k]
            if v <= LABELLED:
                add_gaussian(maps[k], x, y, stride, sigma)
    maps[-1] = 1 - maps[:-1].max(axis=0)
    return maps


def pafs(label: dict, height: int, width: int, stride: int = STRIDE, thickness: float = PAF_THICKNESS) -> np.ndarray:
    """(38, h/stride, w/stride) float32; later people overwrite earlier ones where limbs cross."""
    maps = np.zeros((2 * len(LIMBS), height // stride, width // stride), np.float32)
    for i, (a, b) in enumerate(LIMBS):
        for person in _people(label):
            ka, kb = person["keypoints"][a], person["keypoints"][b]
            if ka[2] <= LABELLED and kb[2] <= LABELLED:
                set_paf(maps[2 * i:2 * i + 2], ka[0], ka[1], kb[0], kb[1], stride, thickness)
    return maps


def crowd_mask(segmentations: list, height: int, width: int) -> np.ndarray:
    """uint8 (h, w): 1 everywhere but inside crowd regions, so unlabelled people cost nothing."""
    mask = np.ones((height, width), np.uint8)
    for seg in segmentations:
        if isinstance(seg, dict) and isinstance(seg.get("counts"), str):
            rle = {"size": seg["size"], "counts": seg["counts"].encode()}
        else:
            rle = mask_utils.frPyObjects(seg, height, width)
        decoded = mask_utils.decode(rle)
        if decoded.ndim == 3:
            decoded = decoded.max(axis=2)
        mask[decoded > 0.5] = 0
    return mask


def map_mask(mask: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """The input-resolution mask at map resolution (area average of uint8, so still 0/1)."""
    return cv2.resize(mask, (0, 0), fx=1 / stride, fy=1 / stride, interpolation=cv2.INTER_AREA)


def encode(sample: dict, stride: int = STRIDE, sigma: float = SIGMA, thickness: float = PAF_THICKNESS) -> dict:
    """An augmented sample -> network input and targets (CHW float32 arrays)."""
    image = sample["image"]
    h, w = image.shape[:2]
    small = map_mask(sample["mask"], stride).astype(np.float32)
    hm, pf = heatmaps(sample["label"], h, w, stride, sigma), pafs(sample["label"], h, w, stride, thickness)
    small = small[:hm.shape[1], :hm.shape[2]]
    return {
        "image": ((image.astype(np.float32) - 128) / 256).transpose(2, 0, 1).copy(),
        "keypoint_maps": hm, "paf_maps": pf,
        "keypoint_mask": np.broadcast_to(small, hm.shape).copy(),
        "paf_mask": np.broadcast_to(small, pf.shape).copy(),
    }
