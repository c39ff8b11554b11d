"""Lightweight OpenPose pre/post-processing, reproducing upstream val.py and modules/keypoints.py.

Upstream: Daniil-Osokin/lightweight-human-pose-estimation.pytorch @ 1590929; Ascend port:
ACL_PyTorch/contrib/cv/detection/OpenPose. Facts: shared/reference/pipelines.md sections 1, 5 and 7.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from models.lightweight_openpose.layout import (
    BODY_PARTS_KPT_IDS,
    BODY_PARTS_PAF_IDS,
    EAR_SHOULDER_PARTS,
    NUM_KPTS,
    PEAK_MIN_DISTANCE,
    TO_COCO_MAP,
    PadRecord,
)
from models.lightweight_openpose.oracle import encode_ground_truth as _encode_ground_truth

STRIDE = 8
POSE_ENTRY_SIZE = 20  # 18 keypoint ids, total score, keypoint count
POINTS_PER_LIMB = 10
MIN_PAF_SCORE = 0.05
PEAK_THRESHOLD = 0.1


@dataclass(frozen=True)
class Profile:
    height: int
    width: int | None  # None: free width, padded as val.py pad_width does
    interpolation: int
    # val.py subtracts a tuple mean, which promotes the image to float64, so its cubic resize runs in
    # float64 (measurably different from float32); the Ascend port uses float32 mean and scale.
    resize_dtype: type


PROFILES = {
    "upstream": Profile(368, None, cv2.INTER_CUBIC, np.float64),
    "ascend": Profile(368, 640, cv2.INTER_LINEAR, np.float32),
    # Open Model Zoo's static 256x456 input, letterboxed as the Ascend port does (centred, zero after
    # normalisation); OMZ's own demo pads bottom-right instead, which changes no network weight.
    "omz": Profile(256, 456, cv2.INTER_LINEAR, np.float32),
}


# ----------------------------------------------------------------------------------------- preprocessing

def _profile(name) -> Profile:
    if isinstance(name, Profile):  # a variant of a named profile (the port audit's candidate mistakes)
        return name
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[name]


def _resize(image_bgr: np.ndarray, prof: Profile) -> tuple[np.ndarray, float]:
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
    h, w = image_bgr.shape[:2]
    normed = (image_bgr.astype(prof.resize_dtype) - 128) / 256  # exact in both dtypes: normalise first
    scale = prof.height / h if prof.width is None else min(prof.height / h, prof.width / w)
    # fx/fy (not dsize), as both upstreams: the size is round(w * scale) and sampling uses exactly scale.
    resized = cv2.resize(normed, (0, 0), fx=scale, fy=scale, interpolation=prof.interpolation)
    return resized, scale


def _pad(resized: np.ndarray, scale: float, orig_hw: tuple[int, int], target_h: int, target_w: int):
    rh, rw = resized.shape[:2]
    if rh > target_h or rw > target_w:
        raise ValueError(f"resized image {rh}x{rw} exceeds the input {target_h}x{target_w}")
    top, left = (target_h - rh) // 2, (target_w - rw) // 2
    record = PadRecord(orig_hw[0], orig_hw[1], scale, rh, rw, top, target_h - rh - top, left, target_w - rw - left)
    chw = np.zeros((3, target_h, target_w), dtype=np.float32)  # pad value 0, after normalisation
    chw[:, top:top + rh, left:left + rw] = resized.transpose(2, 0, 1)
    return chw, record


def _target_width(prof: Profile, resized_w: int, min_width: int | None) -> int:
    if prof.width is not None:
        if min_width is not None and min_width > prof.width:
            raise ValueError(f"profile has a fixed width {prof.width}; min_width {min_width} is larger")
        return prof.width
    wanted = max(resized_w, prof.height, min_width or 0)
    return math.ceil(wanted / STRIDE) * STRIDE


def preprocess(image_bgr: np.ndarray, profile: str, min_width: int | None = None) -> tuple[np.ndarray, PadRecord]:
    """BGR uint8 HxWx3 -> float32 (3, h, w) network input (BGR kept) and its PadRecord."""
    prof = _profile(profile)
    resized, scale = _resize(image_bgr, prof)
    target_h = math.ceil(prof.height / STRIDE) * STRIDE
    return _pad(resized, scale, image_bgr.shape[:2], target_h, _target_width(prof, resized.shape[1], min_width))


def preprocess_batch(images: list[np.ndarray], profile: str) -> tuple[np.ndarray, list[PadRecord]]:
    """float32 (N, 3, h, w); free-width profiles pad every image, centred, to the widest own width."""
    if not images:
        raise ValueError("empty batch")
    prof = _profile(profile)
    resized = [_resize(img, prof) for img in images]
    width = max(_target_width(prof, r.shape[1], None) for r, _ in resized)
    target_h = math.ceil(prof.height / STRIDE) * STRIDE
    padded = [_pad(r, s, img.shape[:2], target_h, width) for (r, s), img in zip(resized, images)]
    return np.stack([p[0] for p in padded]), [p[1] for p in padded]


# ---------------------------------------------------------------------------------------- postprocessing

def _peaks(maps: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peaks in the first `channels` channels of (H, W, C) maps as (channel, x, y), sorted that way.

    Upstream zeroes values < 0.1 and zero-pads; a pixel >= 0.1 then beats a zeroed or padded neighbour
    anyway, so comparing raw values is equivalent (NaN never peaks either way). Within a channel
    upstream lists peaks row-major, then stable-sorts by x: the order is x, then y.
    """
    h, w, c = maps.shape
    sub = maps[:, :, :channels]
    peak = sub >= PEAK_THRESHOLD
    if np.count_nonzero(peak) * 8 > peak.size:  # dense maps: whole-array comparisons are cheaper
        peak[1:] &= sub[1:] > sub[:-1]
        peak[:-1] &= sub[:-1] > sub[1:]
        peak[:, 1:] &= sub[:, 1:] > sub[:, :-1]
        peak[:, :-1] &= sub[:, :-1] > sub[:, 1:]
        y, x, ch = np.unravel_index(np.flatnonzero(peak), peak.shape)
    else:  # sparse maps: compare each candidate with its 4 neighbours only
        y, x, ch = np.unravel_index(np.flatnonzero(peak), peak.shape)
        flat = np.ascontiguousarray(maps).ravel()
        idx = (y * w + x) * c + ch
        keep = np.ones(len(idx), dtype=bool)
        for shift, inside in ((c, x < w - 1), (-c, x > 0), (w * c, y < h - 1), (-w * c, y > 0)):
            keep &= ~inside | (flat[idx] > flat[np.where(inside, idx + shift, idx)])
        y, x, ch = y[keep], x[keep], ch[keep]
    order = np.lexsort((y, x, ch))
    return ch[order], x[order], y[order]


def _suppress(xy: np.ndarray) -> np.ndarray:
    """Greedy suppression in list order: a kept peak drops every later one closer than 6 px.

    Suppressed peaks suppress nothing, so the result depends on the order (x, then y).
    """
    keep = np.ones(len(xy), dtype=bool)
    if len(xy) < 2:
        return keep
    # Integer coordinates: distance < 6 <=> squared distance <= 35.
    pairs = cKDTree(xy).query_pairs(math.sqrt(PEAK_MIN_DISTANCE ** 2 - 0.5), output_type="ndarray")
    if len(pairs):
        pairs = np.sort(pairs, axis=1)
        for i, j in pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))].tolist():
            if keep[i]:
                keep[j] = False
    return keep


def _extract_all(maps: np.ndarray, channels: int) -> list[np.ndarray]:
    ch, x, y = _peaks(maps, channels)
    bounds = np.searchsorted(ch, np.arange(channels + 1))
    by_type = []
    for k in range(channels):
        xs, ys = x[bounds[k]:bounds[k + 1]], y[bounds[k]:bounds[k + 1]]
        keep = _suppress(np.stack([xs, ys], axis=1))
        xs, ys = xs[keep], ys[keep]
        by_type.append(np.stack([xs, ys, maps[ys, xs, k]], axis=1).astype(np.float64).reshape(-1, 3))
    return by_type


def extract_keypoints(heatmap: np.ndarray) -> np.ndarray:
    """One keypoint type's (H, W) map -> (N, 3) rows of x, y, score, ordered as upstream."""
    return _extract_all(np.asarray(heatmap)[:, :, None], 1)[0]


def _sample_points(a: np.ndarray, vec_raw: np.ndarray, t) -> np.ndarray:
    # Point t of 10 from a to b inclusive, rounded (half to even) to the pixel whose PAF is read;
    # float32 throughout, operation by operation as upstream.
    steps = vec_raw * np.float32(1 / (POINTS_PER_LIMB - 1))
    return (steps * t + a).round().astype(np.int32)


def _plausible(kpts_a: np.ndarray, kpts_b: np.ndarray, field: np.ndarray, paf_ids: tuple[int, int]) -> np.ndarray:
    """Candidate indices (b * n + a, upstream's b-major layout) that could still be valid limbs.

    A limb needs 9 of its 10 points to pass, so a candidate is dropped as soon as two fail. Each point's
    score is computed elementwise exactly as upstream does, so no valid candidate is ever dropped.
    """
    n, m = len(kpts_a), len(kpts_b)
    _, width, depth = field.shape
    planes = [field.ravel()[c::depth] for c in paf_ids]  # strided views of the two channels
    if n * m > 4096:
        planes = [p.copy() for p in planes]  # many gathers: contiguous planes are cache-friendlier
    cand = np.arange(n * m)
    ax = np.tile(kpts_a[:, 0], m)
    ay = np.tile(kpts_a[:, 1], m)
    vx = (kpts_b[:, None, 0] - kpts_a[None, :, 0]).ravel()
    vy = (kpts_b[:, None, 1] - kpts_a[None, :, 1]).ravel()
    norm = np.sqrt(vx * vx + vy * vy) + np.float32(1e-6)
    ux, uy = vx / norm, vy / norm
    failures = np.zeros(len(cand), dtype=np.int8)
    for t in np.arange(POINTS_PER_LIMB, dtype=np.float32):
        px = _sample_points(ax, vx, t)
        py = _sample_points(ay, vy, t)
        idx = py.astype(np.intp) * width + px
        score = planes[0][idx] * ux + planes[1][idx] * uy
        failures += ~(score > MIN_PAF_SCORE)
        alive = np.flatnonzero(failures < 2)
        if len(alive) < len(cand):
            cand, ax, ay, vx, vy, ux, uy, failures = (
                v[alive] for v in (cand, ax, ay, vx, vy, ux, uy, failures))
    return cand


def _connections(kpts_a: np.ndarray, kpts_b: np.ndarray, field: np.ndarray, paf_ids: tuple[int, int]):
    """Scores every a->b candidate on the PAF, returns NMS-surviving (a index, b index, score).

    Mirrors upstream's float32 arithmetic and array shapes so the thresholds see identical values.
    """
    n = len(kpts_a)
    cand = _plausible(kpts_a, kpts_b, field, paf_ids)
    if len(cand) == 0:
        return []
    b_idx, a_idx = np.divmod(cand, n)
    a = kpts_a[a_idx, :2].reshape(-1, 1, 2)
    vec_raw = (kpts_b[b_idx, :2] - kpts_a[a_idx, :2]).reshape(-1, 1, 2)
    vec = vec_raw / (np.linalg.norm(vec_raw, ord=2, axis=-1, keepdims=True) + 1e-6)
    grid = np.arange(POINTS_PER_LIMB, dtype=np.float32).reshape(1, -1, 1)
    points = _sample_points(a, vec_raw, grid)
    x, y = points[..., 0].ravel(), points[..., 1].ravel()
    sampled = field[y, x][:, list(paf_ids)].reshape(-1, POINTS_PER_LIMB, 2)
    point_scores = (sampled * vec).sum(-1).reshape(-1, POINTS_PER_LIMB)
    passed = point_scores > MIN_PAF_SCORE
    passed_num = passed.sum(1)
    # Same (K, 10) float32 layout as upstream, so the row sums round identically.
    scores = (point_scores * passed).sum(1) / (passed_num + 1e-6)
    valid = (scores > 0) & (passed_num / POINTS_PER_LIMB > 0.8)
    if not valid.any():
        return []
    a_idx, b_idx, scores = a_idx[valid], b_idx[valid], scores[valid]
    # Same call as upstream (default argsort, reversed), so equal scores tie-break identically.
    order = scores.argsort()[::-1]
    used_a, used_b, kept = set(), set(), []
    for ia, ib, s in zip(a_idx[order].tolist(), b_idx[order].tolist(), scores[order].tolist()):
        if ia not in used_a and ib not in used_b:
            used_a.add(ia)
            used_b.add(ib)
            kept.append((ia, ib, s))
    return kept


def group_keypoints(keypoints_by_type: list[np.ndarray], pafs_hwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-type (N, 3) keypoints and (H, W, 38) PAFs -> pose_entries (M, 20) and all_keypoints (K, 4).

    Keypoint ids are positions in the concatenation of keypoints_by_type (all_keypoints[:, 3]).
    Entry rows hold 18 keypoint ids (-1 missing), the total score and the keypoint count.
    """
    counts = [len(k) for k in keypoints_by_type]
    all_keypoints = np.zeros((sum(counts), 4), dtype=np.float64)
    if all_keypoints.size:
        all_keypoints[:, :3] = np.concatenate([np.asarray(k, dtype=np.float64).reshape(-1, 3)[:, :3]
                                               for k in keypoints_by_type])
    all_keypoints[:, 3] = np.arange(len(all_keypoints))
    # Upstream samples with float32 copies of the keypoints; scores stay float64 in all_keypoints.
    starts = np.cumsum([0] + counts)
    typed = [all_keypoints[s:s + c].astype(np.float32) for s, c in zip(starts, counts)]
    score = all_keypoints[:, 2]
    field = np.ascontiguousarray(pafs_hwc)

    entries = np.empty((0, POSE_ENTRY_SIZE), dtype=np.float64)
    for part_id, (kpt_a, kpt_b) in enumerate(BODY_PARTS_KPT_IDS):
        if counts[kpt_a] == 0 or counts[kpt_b] == 0:
            continue
        found = _connections(typed[kpt_a], typed[kpt_b], field, BODY_PARTS_PAF_IDS[part_id])
        if not found:
            continue
        ia, ib, conn_score = (np.array(v) for v in zip(*found))
        ca, cb = starts[kpt_a] + ia, starts[kpt_b] + ib
        # Upstream loops connection by connection over the entries. After NMS a connection's a and b ids
        # are unique, so each entry is touched by at most one connection and one vectorised pass per
        # limb gives the same result: a lookup from keypoint id to connection replaces the inner loop.
        by_a = np.full(len(all_keypoints) + 1, -1)  # slot -1 maps a missing joint to "no connection"
        by_b = by_a.copy()
        by_a[ca] = np.arange(len(ca))
        by_b[cb] = np.arange(len(cb))
        conn_of_a = by_a[entries[:, kpt_a].astype(int)]
        if part_id in EAR_SHOULDER_PARTS:
            # Fill the missing end only, without touching count or score.
            fill_b = (conn_of_a >= 0) & (entries[:, kpt_b] == -1)
            conn_of_b = by_b[entries[:, kpt_b].astype(int)]
            fill_a = (conn_of_b >= 0) & (entries[:, kpt_a] == -1)
            entries[fill_b, kpt_b] = cb[conn_of_a[fill_b]]
            entries[fill_a, kpt_a] = ca[conn_of_b[fill_a]]
            continue
        # Every entry already holding a gets b, overwriting any b it had, and counts it again.
        hit = conn_of_a >= 0
        conn = conn_of_a[hit]
        entries[hit, kpt_b] = cb[conn]
        entries[hit, -1] += 1
        entries[hit, -2] += score[cb[conn]] + conn_score[conn]
        # Unmatched connections start new entries, in connection order.
        matched = np.zeros(len(ca), dtype=bool)
        matched[conn] = True
        new = np.flatnonzero(~matched)
        rows = np.full((len(new), POSE_ENTRY_SIZE), -1.0)
        rows[:, kpt_a], rows[:, kpt_b], rows[:, -1] = ca[new], cb[new], 2
        rows[:, -2] = (score[ca[new]] + score[cb[new]]) + conn_score[new]
        entries = np.vstack([entries, rows])

    keep = (entries[:, -1] >= 3) & ~(entries[:, -2] / np.maximum(entries[:, -1], 1) < 0.2)
    return entries[keep], all_keypoints


def to_coco(pose_entries: np.ndarray, all_keypoints: np.ndarray) -> list[dict]:
    results = []
    for entry in pose_entries:
        keypoints = [0.0] * 51
        for slot, kpt_id in enumerate(entry[:NUM_KPTS]):
            coco = TO_COCO_MAP[slot]
            if coco < 0 or kpt_id == -1:
                continue
            x, y = all_keypoints[int(kpt_id), :2]
            # Upstream maps a pixel index to its centre.
            keypoints[coco * 3:coco * 3 + 3] = [float(x) + 0.5, float(y) + 0.5, 1.0]
        # Not normalised; the -1 discounts the neck, as upstream.
        results.append({"keypoints": keypoints, "score": float(entry[-2] * max(0, entry[-1] - 1))})
    return results


def _to_original_frame(maps_chw: np.ndarray, record: PadRecord, stride: int,
                       interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """(C, h, w) network output -> (orig_h, orig_w, C) float32, as val.py infer does."""
    hwc = np.asarray(maps_chw, dtype=np.float32).transpose(1, 2, 0)
    if (hwc.shape[0] * stride, hwc.shape[1] * stride) != (record.input_h, record.input_w):
        raise ValueError(f"maps {hwc.shape[:2]} x stride {stride} do not match input "
                         f"{record.input_h}x{record.input_w}")
    up = cv2.resize(hwc, (0, 0), fx=stride, fy=stride, interpolation=interpolation)
    up = up.reshape(up.shape[0], up.shape[1], -1)  # cv2 drops a single channel axis
    crop = up[record.top:up.shape[0] - record.bottom, record.left:up.shape[1] - record.right]
    out = cv2.resize(crop, (record.orig_w, record.orig_h), interpolation=interpolation)
    return out.reshape(record.orig_h, record.orig_w, -1)


def decode(heatmaps: np.ndarray, pafs: np.ndarray, record: PadRecord, stride: int = STRIDE,
           interpolation: int = cv2.INTER_CUBIC) -> list[dict]:
    """Last-stage heatmaps (19, h, w) and PAFs (38, h, w) of one image -> COCO results without image_id.
    ``interpolation``: upstream's cubic; another is a known postprocessing mistake the port audit tries."""
    heat = _to_original_frame(heatmaps, record, stride, interpolation)
    field = _to_original_frame(pafs, record, stride, interpolation)
    return to_coco(*group_keypoints(_extract_all(heat, NUM_KPTS), field))


def encode_ground_truth(annotations, height, width, **kwargs):
    """The decoder oracle (see oracle.py): ground truth as (heatmaps, pafs, record, stride)."""
    return _encode_ground_truth(annotations, height, width, **kwargs)
