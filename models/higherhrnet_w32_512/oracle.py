"""Decoder oracle: COCO ground truth rendered as the network's two outputs (and their flipped copies)
that ``codec.decode`` turns back into people, through upsampling, NMS, grouping, adjust and refine.

Decode reports a joint at (argmax pixel + 0.5 +- 0.25) of the heatmaps bilinearly upsampled to the
input, so the encoder places, per joint and axis, two half-resolution nodes whose upsampled pattern
peaks at the pixel holding the truth and leans toward the quarter it lies in: the best any heatmap
can do, 0.25 input px.

Tags: a person's tag pair (image, flipped copy) is a point on a circle of radius 60, so a tag read
where two people's maps blend lies on a chord, far from every other person's point. Near a joint a
joint type's tag map holds the nearest joint's tag; elsewhere it is tiled with blocks of the tags of
the people who lack that joint, so refine (argmax of det - round(|tag - person's tag|)) finds its
maximum, 0, where det is 0 and leaves the joint missing instead of taking another person's.
"""
from __future__ import annotations

import numpy as np

from models.higherhrnet_w32_512.geometry import FLIP_INDEX, NUM_JOINTS, make_record, upstream_size

PEAK = 2.0  # the decoded heatmap value is about half of it, well above the 0.1 threshold
TAG_RADIUS = 60.0  # with >= 12 slots on the circle, neighbours lie 31 apart, blends >= 8 from others
MIN_SLOTS = 12
MEMBER_SPACING = 1.5  # tag distance between conflicting people: above the 1.0 threshold, rounds to 2
LEAN, NO_LEAN = 0.9, 0.4  # the second node's weight: above 2/3 the quarter step goes its way
OWN_RADIUS = 3.0  # quarter-res nodes around a joint that carry its tag (its heatmap spans < 1 node)
BLOCK = 4  # background tag blocks, in quarter-res nodes: an input pixel reads 2 x 2 nodes


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


def _support(i: int, n: int) -> set[int]:
    """Nodes of an n-node axis that a bilinear x2 upsampling (align_corners=False) reads at output i."""
    lo = int(np.floor(i / 2 - 0.25))
    return {min(max(lo, 0), n - 1), min(max(lo + 1, 0), n - 1)}


def _read_nodes(p, rows: int, cols: int) -> list[tuple[int, int]]:
    """Quarter-res nodes whose tags reach input pixel floor(p) through the two x2 upsamplings (up to
    3 per axis: each of the 2 half-res nodes read reads 2 quarter-res nodes)."""
    def axis(v, n):
        t = int(np.clip(np.floor(v), 0, 4 * n - 1))
        return sorted(set().union(*(_support(m, n) for m in _support(t, 2 * n))))
    return [(y, x) for y in axis(p[1], rows) for x in axis(p[0], cols)]


def _people(annotations):
    for ann in annotations:
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0:
            continue  # COCOeval ignores these
        yield np.asarray(ann["keypoints"], np.float64).reshape(NUM_JOINTS, 3)


def _tag_pairs(people, reads) -> np.ndarray:
    """A (image, flipped copy) tag per person. People whose same-type joints are read through shared
    quarter-res nodes (conflicting) form a cluster: its members sit 1.5 apart around a cluster centre,
    so a read blended between two of them is within 0.75 of the one it mostly belongs to (the 1.0
    threshold takes it there) and never near a third cluster's tags (centres >= 31 apart)."""
    n = len(people)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for j in range(NUM_JOINTS):
        for a in range(n):
            for b in range(a + 1, n):
                if reads[a][j] and reads[b][j] and reads[a][j] & reads[b][j]:
                    parent[root(b)] = root(a)
    clusters = sorted({root(i) for i in range(n)})
    slots = max(len(clusters), MIN_SLOTS)
    tags = np.zeros((n, 2))
    for c, r in enumerate(clusters):
        # a half-slot offset keeps every centre off another's mirror image: grouping keys a person by
        # the first tag coordinate, so no two may share it
        phi = 2 * np.pi * c / slots + np.pi / (2 * slots)
        members = [i for i in range(n) if root(i) == r]
        radius = 0.0 if len(members) == 1 else MEMBER_SPACING / 2 / np.sin(np.pi / len(members))
        for m, i in enumerate(members):
            psi = 2 * np.pi * m / len(members) + 0.1
            tags[i] = TAG_RADIUS * np.array([np.cos(phi), np.sin(phi)]) + radius * np.array([np.cos(psi), np.sin(psi)])
    return tags.astype(np.float32)


def encode_ground_truth(annotations, height: int, width: int):
    """(quarter (2, 34, H/4, W/4), half (2, 17, H/2, W/2), record, stride) in the upstream geometry."""
    record = make_record(height, width, upstream_size(height, width))
    h, w = record.input_h, record.input_w
    qh, qw = h // 4, w // 4
    people = list(_people(annotations))
    positions = [record.to_input(kpts[:, :2]) for kpts in people]
    reads = [[set(_read_nodes(xy[j], qh, qw)) if kpts[j, 2] > 0 else set() for j in range(NUM_JOINTS)]
             for kpts, xy in zip(people, positions)]
    tag_pairs = _tag_pairs(people, reads)
    half = np.zeros((NUM_JOINTS, h // 2, w // 2), np.float32)
    owner = np.zeros((NUM_JOINTS, qh, qw), np.int64)  # person index whose tag each node carries
    placed = [[] for _ in range(NUM_JOINTS)]  # per joint type: (input position, person)
    lacking = [[] for _ in range(NUM_JOINTS)]  # per joint type: people without it
    for k, (kpts, xy) in enumerate(zip(people, positions)):
        for j in range(NUM_JOINTS):
            if kpts[j, 2] <= 0:
                lacking[j].append(k)
                continue
            placed[j].append((xy[j], k))
            xs, ys = _axis_nodes(xy[j][0], w // 2), _axis_nodes(xy[j][1], h // 2)
            for yi, wy in ys:
                for xi, wx in xs:
                    half[j, yi, xi] = max(half[j, yi, xi], PEAK * wy * wx)
    gy, gx = np.mgrid[0:qh, 0:qw]
    blocks = (gy // BLOCK) * (qw // BLOCK + 1) + gx // BLOCK
    for j in range(NUM_JOINTS):
        if lacking[j]:
            owner[j] = np.array(lacking[j])[blocks % len(lacking[j])]
        if placed[j]:
            # each node carries the nearest joint's tag (a decode reads a joint at i / 4 - 0.375)
            pts = np.array([p / 4 - 0.375 for p, _ in placed[j]])
            who = np.array([k for _, k in placed[j]])
            d = (gx[..., None] - pts[:, 0]) ** 2 + (gy[..., None] - pts[:, 1]) ** 2
            near = d.min(axis=-1) <= OWN_RADIUS ** 2 if lacking[j] else np.ones((qh, qw), bool)
            owner[j][near] = who[np.argmin(d, axis=-1)][near]
    quarter = np.zeros((2, 2 * NUM_JOINTS, qh, qw), np.float32)
    if people:
        for c in range(2):  # image, flipped copy: each carries one coordinate of the tag pair
            quarter[c, NUM_JOINTS:] = tag_pairs[owner, c]
    # the flipped copy as a flip-equivariant network would give it: mirrored, left and right swapped
    quarter[1] = quarter[1][:, :, ::-1][list(FLIP_INDEX) + [NUM_JOINTS + i for i in FLIP_INDEX]]
    half_flip = half[:, :, ::-1][list(FLIP_INDEX)]
    return quarter, np.stack([half, half_flip]), record, 4
