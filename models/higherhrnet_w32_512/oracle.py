"""Decoder oracle: COCO ground truth rendered as the network's two outputs (and their flipped copies)
that ``codec.decode`` turns back into people, through upsampling, NMS, grouping, adjust and refine.

Decode reports a joint at (argmax pixel + 0.5 +- 0.25) of the heatmaps bilinearly upsampled to the
input, so the encoder places, per joint and axis, two half-resolution nodes whose upsampled pattern
peaks at the pixel holding the truth and leans toward the quarter it lies in: the best any heatmap
can do, 0.25 input px. Tags are per-person constants, each node of a joint type's tag map owned by
the nearest joint of that type.
"""
from __future__ import annotations

import numpy as np

from models.higherhrnet_w32_512.codec import FLIP_INDEX, NUM_JOINTS, make_record, upstream_size

PEAK = 2.0  # the decoded heatmap value is about a third of it, well above the 0.1 threshold
TAG_SPACING = 3.0  # people's tag vectors lie >= 3 * sqrt(2) apart: never within the 1.0 threshold
LEAN, NO_LEAN = 0.9, 0.4  # the second node's weight: above 2/3 the quarter step goes its way


def _axis_nodes(p: float, size: int) -> list[tuple[int, float]]:
    """Half-resolution nodes (index, weight) along one axis whose bilinear x2 upsampling (input pixel i
    reads node i/2 - 0.25) peaks at pixel floor(p) and steps a quarter toward p's side of it."""
    t = int(np.clip(np.floor(p), 0, 2 * size - 1))
    right = p - t >= 0.5  # decode adds +0.25 when the right/lower neighbour is larger
    k = t // 2
    if t % 2:  # odd pixel: partner node k + 1 makes it the maximum; its weight sets the step
        nodes = [(k, 1.0), (k + 1, LEAN if right else NO_LEAN)]
    else:
        nodes = [(k, 1.0), (k - 1, NO_LEAN if right else LEAN)]
    return [(i, w) for i, w in nodes if 0 <= i < size]


def _people(annotations):
    for ann in annotations:
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0:
            continue  # COCOeval ignores these
        yield np.asarray(ann["keypoints"], np.float64).reshape(NUM_JOINTS, 3)


def encode_ground_truth(annotations, height: int, width: int):
    """(quarter (2, 34, H/4, W/4), half (2, 17, H/2, W/2), record, stride) in the upstream geometry."""
    record = make_record(height, width, upstream_size(height, width))
    h, w = record.input_h, record.input_w
    half = np.zeros((NUM_JOINTS, h // 2, w // 2), np.float32)
    quarter = np.zeros((2 * NUM_JOINTS, h // 4, w // 4), np.float32)
    owners = [[] for _ in range(NUM_JOINTS)]  # per joint type: (quarter-res position, tag)
    for k, kpts in enumerate(_people(annotations)):
        tag = TAG_SPACING * (k + 1)
        labelled = kpts[:, 2] > 0
        xy = record.to_input(kpts[:, :2])
        for j in np.flatnonzero(labelled):
            px, py = xy[j]
            xs, ys = _axis_nodes(px, w // 2), _axis_nodes(py, h // 2)
            for yi, wy in ys:
                for xi, wx in xs:
                    half[j, yi, xi] = max(half[j, yi, xi], PEAK * wy * wx)
            # a pixel i of the input reads the quarter map at i / 4 - 0.375
            owners[j].append((px / 4 - 0.375, py / 4 - 0.375, tag))
    gy, gx = np.mgrid[0:h // 4, 0:w // 4]
    for j, found in enumerate(owners):
        if found:
            pts = np.array(found)
            d = (gx[..., None] - pts[:, 0]) ** 2 + (gy[..., None] - pts[:, 1]) ** 2
            quarter[NUM_JOINTS + j] = pts[np.argmin(d, axis=-1), 2]
    # the flipped copy as a flip-equivariant network would give it: mirrored, left and right swapped
    quarter_flip = quarter[:, :, ::-1][list(FLIP_INDEX) + [NUM_JOINTS + i for i in FLIP_INDEX]]
    half_flip = half[:, :, ::-1][list(FLIP_INDEX)]
    return (np.stack([quarter, quarter_flip]), np.stack([half, half_flip]), record, 4)
