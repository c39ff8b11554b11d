"""The upstream augmentation chain (datasets/transformations.py), in order:
ConvertKeypoints -> Scale -> Rotate -> CropPad -> Flip.

A sample is {'image': BGR uint8, 'mask': uint8 0/1, 'label': prepared label (mutated)}; every random
draw comes from the ``rng`` handed in, so a sample is a pure function of its seed (what makes resume
bit-exact whatever the worker layout).
"""
from __future__ import annotations

import random

import cv2
import numpy as np

# 17 COCO points (1-based) -> the 18-point order without the neck, which is inserted at index 1.
REORDER_1BASED = (1, 7, 9, 11, 6, 8, 10, 13, 15, 17, 12, 14, 16, 3, 2, 5, 4)
RIGHT = (2, 3, 4, 8, 9, 10, 14, 16)
LEFT = (5, 6, 7, 11, 12, 13, 15, 17)
PAD_BGR = (128, 128, 128)


def _people(label):
    return [label, *label["processed_other_annotations"]]


def _outside(x, y, w, h) -> bool:
    return x < 0 or x >= w or y < 0 or y >= h


def _to_18(kpts, w, h):
    out = [list(kpts[i - 1]) for i in REORDER_1BASED]
    ls, rs = kpts[5], kpts[6]
    neck = [(ls[0] + rs[0]) / 2, (ls[1] + rs[1]) / 2, 0]
    if ls[2] == 2 or rs[2] == 2:
        neck[2] = 2
    elif ls[2] == 1 and rs[2] == 1:
        neck[2] = 1
    if _outside(neck[0], neck[1], w, h):
        neck[2] = 2
    out.insert(1, neck)
    return out


def convert_keypoints(sample, rng=None):
    """17 COCO points -> 18 with the neck; unlabelled ((0,0)) or out-of-image points get v=2."""
    h, w = sample["image"].shape[:2]
    for person in _people(sample["label"]):
        for k in person["keypoints"]:
            if (k[0] == 0 and k[1] == 0) or _outside(k[0], k[1], w, h):
                k[2] = 2
        person["keypoints"] = _to_18(person["keypoints"], w, h)
    return sample


def _map_points(label, fn):
    for person in _people(label):
        person["objpos"] = list(fn(*person["objpos"]))
        for k in person["keypoints"]:
            k[0], k[1] = fn(k[0], k[1])


class Scale:
    def __init__(self, prob=1.0, min_scale=0.5, max_scale=1.1, target_dist=0.6):
        self.prob, self.min_scale, self.max_scale, self.target_dist = prob, min_scale, max_scale, target_dist

    def __call__(self, sample, rng: random.Random):
        multiplier = 1.0
        if rng.random() <= self.prob:
            multiplier = (self.max_scale - self.min_scale) * rng.random() + self.min_scale
        scale = self.target_dist / sample["label"]["scale_provided"] * multiplier
        sample["image"] = cv2.resize(sample["image"], (0, 0), fx=scale, fy=scale)
        sample["mask"] = cv2.resize(sample["mask"], (0, 0), fx=scale, fy=scale)
        _map_points(sample["label"], lambda x, y: (x * scale, y * scale))
        return sample


class Rotate:
    def __init__(self, max_degree=40.0, pad=PAD_BGR):
        self.max_degree, self.pad = max_degree, pad

    def __call__(self, sample, rng: random.Random):
        degree = (rng.random() - 0.5) * 2 * self.max_degree
        h, w = sample["image"].shape[:2]
        r = cv2.getRotationMatrix2D((w / 2, h / 2), degree, 1)
        cos, sin = abs(r[0, 0]), abs(r[0, 1])
        size = (int(h * sin + w * cos), int(h * cos + w * sin))  # canvas grown to hold the whole image
        r[0, 2] += size[0] / 2 - w / 2
        r[1, 2] += size[1] / 2 - h / 2
        sample["image"] = cv2.warpAffine(sample["image"], r, size, borderMode=cv2.BORDER_CONSTANT,
                                         borderValue=self.pad)
        sample["mask"] = cv2.warpAffine(sample["mask"], r, size, borderMode=cv2.BORDER_CONSTANT, borderValue=1)
        _map_points(sample["label"], lambda x, y: (r[0, 0] * x + r[0, 1] * y + r[0, 2],
                                                    r[1, 0] * x + r[1, 1] * y + r[1, 2]))
        return sample


class CropPad:
    def __init__(self, size=(368, 368), perturb=40, pad=PAD_BGR):
        self.crop_w, self.crop_h = size
        self.perturb, self.pad = perturb, pad

    def __call__(self, sample, rng: random.Random):
        dx = int((rng.random() - 0.5) * 2 * self.perturb)
        dy = int((rng.random() - 0.5) * 2 * self.perturb)
        cx, cy = sample["label"]["objpos"]
        x0, y0 = int(cx + dx - self.crop_w / 2), int(cy + dy - self.crop_h / 2)
        image, mask = sample["image"], sample["mask"]
        out = np.empty((self.crop_h, self.crop_w, 3), np.uint8)
        out[:] = self.pad
        out_mask = np.ones((self.crop_h, self.crop_w), np.uint8)
        h, w = image.shape[:2]
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + self.crop_w, w), min(y0 + self.crop_h, h)
        if sx1 > sx0 and sy1 > sy0:
            out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
            out_mask[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = mask[sy0:sy1, sx0:sx1]
        sample["image"], sample["mask"] = out, out_mask
        _map_points(sample["label"], lambda x, y: (x - x0, y - y0))
        return sample


def swap_left_right(kpts: list) -> list:
    kpts = list(kpts)
    for right, left in zip(RIGHT, LEFT):
        kpts[right], kpts[left] = kpts[left], kpts[right]
    return kpts


class Flip:
    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, sample, rng: random.Random):
        if not rng.random() <= self.prob:
            return sample
        sample["image"] = cv2.flip(sample["image"], 1)
        sample["mask"] = cv2.flip(sample["mask"], 1)
        w = sample["image"].shape[1]
        _map_points(sample["label"], lambda x, y: (w - 1 - x, y))
        for person in _people(sample["label"]):
            person["keypoints"] = swap_left_right(person["keypoints"])
        return sample


def train_chain(size=(368, 368)):
    """The upstream training transforms (after ConvertKeypoints, which the dataset always applies)."""
    return [Scale(), Rotate(), CropPad(size=size), Flip()]


def apply(sample, transforms, rng: random.Random):
    sample = convert_keypoints(sample)
    for t in transforms:
        sample = t(sample, rng)
    return sample
