"""HigherHRNet pre/post-processing: affine resize, flip test, associative-embedding grouping.

Upstream: HRNet/HigherHRNet-Human-Pose-Estimation @ aa23881 (tools/valid.py, lib/utils/transforms.py,
lib/core/inference.py, lib/core/group.py); Ascend port: ACL_PyTorch/contrib/cv/pose_estimation/HigherHRNet.
Facts: shared/reference/pipelines.md section 2.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.higherhrnet_w32_512.assignment import munkres
from models.higherhrnet_w32_512.geometry import (
    FLIP_INDEX,
    LONG_SIDES,
    NUM_JOINTS,
    SHORT_SIDE,
    AffineRecord,
    ascend_bucket,
    bucket_name,
    make_record,
    upstream_size,
)
from models.higherhrnet_w32_512.oracle import encode_ground_truth as _encode_ground_truth

STRIDE = 4  # of the coarsest output (tags); every input side must be a multiple of 64
# (H, W) of the seed's ATC --dynamic_image_size, in its order: 8 portrait, square, 8 landscape
BUCKETS = tuple((s, SHORT_SIDE) for s in LONG_SIDES[::-1]) + tuple((SHORT_SIDE, s) for s in LONG_SIDES[1:])
JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet, RGB
STD = np.array([0.229, 0.224, 0.225], np.float32)
NMS_KERNEL = 5
MAX_NUM_PEOPLE = 30
DETECTION_THRESHOLD = 0.1
TAG_THRESHOLD = 1.0


# ----------------------------------------------------------------------------------------- geometry
# (what the oracle shares lives in geometry.py)

def stratum(h: int, w: int) -> str:
    """The bucket an image falls in (accuracy is also reported per bucket)."""
    return bucket_name(ascend_bucket(h, w))


def input_size(profile: str, h: int, w: int) -> tuple[int, int]:
    """The input (H, W) of an image under a preprocessing profile: 'upstream', 'ascend' (the image's
    own bucket) or 'bucket:HxW' (one fixed bucket, as a static engine of that shape takes it)."""
    if profile == "upstream":
        return upstream_size(h, w)
    if profile == "ascend":
        return ascend_bucket(h, w)
    if profile.startswith("bucket:"):
        size = tuple(int(v) for v in profile.removeprefix("bucket:").split("x"))
        if size not in BUCKETS:
            raise ValueError(f"{profile}: not one of the 17 buckets {[bucket_name(b) for b in BUCKETS]}")
        return size
    raise ValueError(f"unknown preprocessing {profile!r}; expected 'upstream', 'ascend' or 'bucket:HxW'")


# ------------------------------------------------------------------------------------ preprocessing

def preprocess(image_bgr: np.ndarray, profile: str) -> tuple[np.ndarray, AffineRecord]:
    """BGR uint8 HxWx3 -> float32 (3, H, W) RGB input normalised with ImageNet statistics."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image_bgr.dtype} {image_bgr.shape}")
    h, w = image_bgr.shape[:2]
    record = make_record(h, w, input_size(profile, h, w))
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    # uint8 in, uint8 out, border 0: padding is black before normalisation, as upstream
    warped = cv2.warpAffine(rgb, record.forward, (record.input_w, record.input_h), flags=cv2.INTER_LINEAR)
    x = (warped.astype(np.float32) / np.float32(255) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)), record


def preprocess_batch(images: list[np.ndarray], profile: str) -> tuple[np.ndarray, list[AffineRecord]]:
    """(2N, 3, H, W): the N images, then the N flipped copies (flip test). Images of different sizes
    share the largest H and W, padded at the bottom and right with black (which leaves each image's
    geometry untouched; decode crops each image's own maps)."""
    if not images:
        raise ValueError("empty batch")
    done = [preprocess(img, profile) for img in images]
    h = max(r.input_h for _, r in done)
    w = max(r.input_w for _, r in done)
    x = np.empty((len(done), 3, h, w), np.float32)
    x[:] = (-MEAN / STD)[:, None, None]
    for xi, (chw, _) in zip(x, done):
        xi[:, :chw.shape[1], :chw.shape[2]] = chw
    return np.ascontiguousarray(np.concatenate([x, x[:, :, :, ::-1]])), [r for _, r in done]


# ----------------------------------------------------------------------------------- postprocessing

def aggregate(quarter: np.ndarray, half: np.ndarray, record: AffineRecord) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's outputs and its flipped copy's, (2, 34, h/4, w/4) and (2, 17, h/2, w/2), -> heatmaps
    (1, 17, H, W) and tags (17, 2, H, W) at the input size (get_multi_stage_outputs, aggregate_results)."""
    h, w = record.input_h, record.input_w
    q = torch.from_numpy(np.ascontiguousarray(quarter[:, :, :h // 4, :w // 4], np.float32))
    hf = torch.from_numpy(np.ascontiguousarray(half[:, :, :h // 2, :w // 2], np.float32))
    if q.shape[0] != 2 or hf.shape[0] != 2:
        raise ValueError(f"expected an image and its flipped copy, got {tuple(q.shape)} and {tuple(hf.shape)}")
    q = F.interpolate(q, size=hf.shape[2:], mode="bilinear", align_corners=False)
    flip = list(FLIP_INDEX)
    heat = [(q[0:1, :NUM_JOINTS] + hf[0:1]) / 2]
    tags = [q[0:1, NUM_JOINTS:]]
    qf, hff = torch.flip(q[1:2], [3]), torch.flip(hf[1:2], [3])
    heat.append((qf[:, :NUM_JOINTS][:, flip] + hff[:, flip]) / 2)
    tags.append(qf[:, NUM_JOINTS:][:, flip])

    # one call for all four maps: interpolation is independent per batch entry and channel
    projected = F.interpolate(torch.cat(heat + tags), size=(h, w), mode="bilinear", align_corners=False)
    heatmaps = (projected[0:1] + projected[1:2]) / 2.0
    # upstream stacks the pair on a last axis, (1, 17, H, W, 2); (17, 2, H, W) holds the same values
    return heatmaps, projected[2:4].transpose(0, 1)


def _max_filter(det: torch.Tensor) -> torch.Tensor:
    """MaxPool2d(5, 1, 2) of upstream's NMS: the same maxima (padding never wins), from OpenCV's much
    faster dilation."""
    kernel = np.ones((NMS_KERNEL, NMS_KERNEL), np.uint8)
    planes = det[0].numpy()
    return torch.from_numpy(np.stack([cv2.dilate(p, kernel, borderType=cv2.BORDER_CONSTANT,
                                                 borderValue=-np.inf) for p in planes]))[None]


def top_k(det: torch.Tensor, tag: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heatmaps (1, 17, H, W) and tags (17, 2, H, W) -> the 30 best peaks per joint, a peak being the
    maximum of its 5x5 window: (tags, (x, y), values)."""
    keep = torch.eq(_max_filter(det), det).float()
    det = det * keep
    _, joints, h, w = det.shape
    val, ind = det.view(1, joints, -1).topk(MAX_NUM_PEOPLE, dim=2)
    val, ind = val[0], ind[0]
    tag = tag.reshape(joints, tag.shape[1], h * w)
    tag_k = torch.stack([torch.gather(tag[:, i], 1, ind) for i in range(tag.shape[1])], dim=2)
    loc = torch.stack((ind % w, ind // w), dim=2)  # the Ascend port's ind // w, upstream's (ind / w).long()
    return tag_k.numpy(), loc.numpy(), val.numpy()


def match_by_tag(tag_k: np.ndarray, loc_k: np.ndarray, val_k: np.ndarray, assign=munkres) -> np.ndarray:
    """Greedy joint-by-joint grouping: each joint type's detections are assigned to the people found so
    far by Hungarian matching on round(tag distance) * 100 - value. Rows: x, y, value, tags.

    That cost ties often; ``assign`` (rows, cols) -> pairs in row order must then pick upstream's
    assignment among the optimal ones, which its Munkres steps do (assignment.py)."""
    default = np.zeros((NUM_JOINTS, 3 + tag_k.shape[2]))
    people: dict = {}  # keyed by the first tag value of the person's first joint, as upstream
    person_tags: dict = {}
    for i, idx in enumerate(JOINT_ORDER):
        joints = np.concatenate((loc_k[idx], val_k[idx, :, None], tag_k[idx]), 1)
        mask = joints[:, 2] > DETECTION_THRESHOLD
        tags, joints = tag_k[idx][mask], joints[mask]
        if len(joints) == 0:
            continue
        if i == 0 or not people:
            for tag, joint in zip(tags, joints):
                people.setdefault(tag[0], np.copy(default))[idx] = joint
                person_tags[tag[0]] = [tag]
            continue
        keys = list(people)[:MAX_NUM_PEOPLE]
        means = np.array([np.mean(person_tags[k], axis=0) for k in keys])
        dist = np.linalg.norm(joints[:, None, 3:] - means[None], ord=2, axis=2)
        cost = np.round(dist) * 100 - joints[:, 2:3]
        added, grouped = dist.shape
        if added > grouped:
            cost = np.concatenate((cost, np.full((added, added - grouped), 1e10)), axis=1)
        for row, col in assign(cost):
            if col < grouped and dist[row, col] < TAG_THRESHOLD:
                people[keys[col]][idx] = joints[row]
                person_tags[keys[col]].append(tags[row])
            else:
                people.setdefault(tags[row][0], np.copy(default))[idx] = joints[row]
                person_tags[tags[row][0]] = [tags[row]]
    return np.array(list(people.values()), np.float32).reshape(-1, NUM_JOINTS, default.shape[1])


def _quarter_step(m: np.ndarray, y: int, x: int) -> tuple[float, float]:
    """+-0.25 toward the larger horizontal and vertical neighbour (ties go down/left), indices clamped."""
    h, w = m.shape
    dx = 0.25 if m[y, min(x + 1, w - 1)] > m[y, max(x - 1, 0)] else -0.25
    dy = 0.25 if m[min(y + 1, h - 1), x] > m[max(y - 1, 0), x] else -0.25
    return dx, dy


def adjust(people: np.ndarray, det: np.ndarray) -> np.ndarray:
    """Detected joints move a quarter pixel toward the larger neighbour, then to the pixel centre."""
    for person in people:
        for j, joint in enumerate(person):
            if joint[2] > 0:
                x, y = joint[0], joint[1]
                dx, dy = _quarter_step(det[j], int(y), int(x))
                person[j, 0:2] = (x + dx + 0.5, y + dy + 0.5)
    return people


def refine(det: np.ndarray, tag: np.ndarray, person: np.ndarray, work: np.ndarray | None = None) -> np.ndarray:
    """Fill the person's missing joints: argmax of det - round(|tag - person's mean tag|) over the map.

    ``tag`` is (17, 2, H, W). Upstream computes this for every joint but keeps it for missing ones only;
    only those are computed, with the same float32 operations (x ** 2 summed over the pair, then sqrt),
    in place in ``work`` (2, H, W) float32 when given: a refine reads whole maps, and fresh temporaries
    cost as much as the arithmetic.
    """
    xy = person[person[:, 2] > 0, :2].astype(np.int32)
    joints = np.flatnonzero(person[:, 2] > 0)
    mean_tag = np.mean([tag[j, :, y, x] for j, (x, y) in zip(joints, xy)], axis=0)
    d0, d1 = np.empty((2, *det.shape[1:]), np.float32) if work is None else work
    for j in np.flatnonzero(person[:, 2] == 0):
        m = det[j]
        np.subtract(tag[j, 0], mean_tag[0], out=d0)
        np.multiply(d0, d0, out=d0)
        np.subtract(tag[j, 1], mean_tag[1], out=d1)
        np.multiply(d1, d1, out=d1)
        np.add(d0, d1, out=d0)
        np.sqrt(d0, out=d0)
        np.round(d0, out=d0)
        np.subtract(m, d0, out=d0)
        y, x = np.unravel_index(np.argmax(d0), m.shape)
        val = m[y, x]
        if val > 0:
            dx, dy = _quarter_step(m, y, x)
            person[j, :3] = (x + 0.5 + dx, y + 0.5 + dy, val)
    return person


def parse(heatmaps: torch.Tensor, tags: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """HeatmapParser.parse with adjust and refine: people (P, 17, 5) in input pixels and their scores.
    ``tags`` is (17, 2, H, W)."""
    people = match_by_tag(*top_k(heatmaps, tags))
    det = heatmaps[0].numpy()
    people = adjust(people, det)
    scores = np.array([p[:, 2].mean() for p in people], np.float32)
    tag = tags.numpy()
    work = np.empty((2, *det.shape[1:]), np.float32)
    for p in people:
        refine(det, tag, p, work)
    return people, scores


def to_coco(people: np.ndarray, scores: np.ndarray, record: AffineRecord, clip: bool = False,
            zero_missing: bool = False) -> list[dict]:
    """Upstream's results (get_final_preds, COCODataset's results): every joint, missing ones at input
    pixel (0, 0), through the inverse affine, kept in float32; v is the heatmap value (0 = missing).

    Found joints are not clipped: refine may take a padding pixel, outside the image. COCO's OKS reads
    predicted coordinates even where v is 0, so where missing joints sit moves AP. Both are upstream's
    protocol; ``clip`` (found joints into the image) and ``zero_missing`` (missing joints at (0, 0, 0))
    are departures from it, off by default, for measuring what they change.
    """
    results = []
    for person, score in zip(people, scores):
        xy = record.to_original(person[:, :2].astype(np.float64)).astype(np.float32).astype(np.float64)
        if clip:
            xy[:, 0] = np.clip(xy[:, 0], 0, record.orig_w)
            xy[:, 1] = np.clip(xy[:, 1], 0, record.orig_h)
        kp = np.concatenate([xy, person[:, 2:3].astype(np.float64)], axis=1)
        if zero_missing:
            kp[person[:, 2] <= 0] = 0
        results.append({"keypoints": [float(v) for v in kp.ravel()], "score": float(score)})
    return results


def result_window(record: AffineRecord) -> tuple[float, float, float, float]:
    """Where results can lie in the image: the network input's extent (refine may pick any input pixel,
    padding included); a missing joint sits at its corner (x0, y0), the image of input pixel (0, 0)."""
    corners = record.to_original([[0.0, 0.0], [record.input_w, record.input_h]]).astype(np.float32)
    (x0, y0), (x1, y1) = corners.astype(np.float64)
    return float(x0), float(y0), float(x1), float(y1)


def decode(quarter: np.ndarray, half: np.ndarray, record: AffineRecord, stride: int = STRIDE,
           clip: bool = False, zero_missing: bool = False) -> list[dict]:
    """One image's pair of outputs (image, flipped copy) -> COCO results without image_id, as upstream
    writes them (``clip``, ``zero_missing``: see to_coco)."""
    if stride != STRIDE:
        raise ValueError(f"HigherHRNet outputs are at 1/{STRIDE} and 1/2; stride {stride} given")
    with torch.inference_mode():
        heatmaps, tags = aggregate(quarter, half, record)
        return to_coco(*parse(heatmaps, tags), record, clip=clip, zero_missing=zero_missing)


def encode_ground_truth(annotations, height, width, **kwargs):
    """The decoder oracle (see oracle.py): ground truth as (quarter pair, half pair, record, stride)."""
    return _encode_ground_truth(annotations, height, width, **kwargs)
