"""MSPN top-down pre/post-processing, reproducing upstream (megvii-research/MSPN) dataset/, test.py.

A person box becomes a 256x192 crop (centre and scale of the box, widened and fitted to the input's
aspect, one affine warp); heatmaps come back to the image through the same centre and scale.
Everything is computed for a whole batch of crops at once, across images. Facts:
shared/reference/pipelines.md sections 3 and 7.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from posegate.flows import topdown
from posegate.flows.topdown import Geometry

INPUT_H, INPUT_W = 256, 192
HEATMAP_H, HEATMAP_W = 64, 48
STRIDE = INPUT_H // HEATMAP_H
NUM_JOINTS = 17
PIXEL_STD = 200.0  # scale is in units of 200 px
EXTEND_X, EXTEND_Y = 1.09, 1.135  # test-time box widening
MEAN_BGR = np.array([0.406, 0.456, 0.485], np.float32)
STD_BGR = np.array([0.225, 0.224, 0.229], np.float32)
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
BLUR_KERNEL = 5  # GaussianBlur (5, 5) with sigma 0, i.e. OpenCV's sigma 1.1
BORDER = 10  # zeros padded around each heatmap before the blur
SHIFT = 0.25  # quarter-pixel step toward the second maximum
TARGET_PEAK = 255.0  # training targets are Gaussians scaled to this maximum
ORACLE_SIGMA = 2.0  # heatmap px; the training targets' width

# Which test-time recipe a profile's ``preprocess`` names: upstream tests with flip, the Ascend port without.
FLIP = {"upstream": True, "ascend": False}


GEOMETRY = Geometry(INPUT_W, INPUT_H, HEATMAP_W, HEATMAP_H, sigma=ORACLE_SIGMA, extend=(EXTEND_X, EXTEND_Y),
                    pixel_std=PIXEL_STD, peak=TARGET_PEAK)


@dataclass(frozen=True)
class CropRecord(topdown.CropRecord):
    """A crop of MSPN's geometry. ``to_original`` is test.py's way back,
    ``kp / 192 * (s_w * 200) + c - s_w * 200 / 2`` (256 and s_h for y)."""
    geometry = GEOMETRY


boxes_to_center_scale = GEOMETRY.boxes_to_center_scale
affine_matrices = GEOMETRY.affine_matrices


# ------------------------------------------------------------------------------------ preprocessing

def normalize(crops_bgr: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 BGR -> [N, 3, H, W] float32: ToTensor then Normalize in BGR order, in float32."""
    x = crops_bgr.astype(np.float32) / np.float32(255)
    x = (x - MEAN_BGR) / STD_BGR
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess_crops(raws: list, profile: str) -> tuple[np.ndarray, list[CropRecord]]:
    """(image BGR, box xywh, detection score, image id) per person -> engine input and one record each.

    With flip test the input holds the N crops, then the same N crops mirrored: [2N, 3, 256, 192].
    """
    if not raws:
        raise ValueError("empty batch")
    if profile not in FLIP:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(FLIP)}")
    flip = FLIP[profile]
    center, scale = boxes_to_center_scale([r[1] for r in raws])
    mats = affine_matrices(center, scale)
    crops = np.empty((len(raws), INPUT_H, INPUT_W, 3), np.uint8)
    records = []
    for i, ((image, _, score, image_id), m) in enumerate(zip(raws, mats)):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {image_id}: expected an HxWx3 uint8 BGR image, got {image.dtype} {image.shape}")
        # bilinear, constant zero border: the box may reach beyond the image
        crops[i] = cv2.warpAffine(image, m, (INPUT_W, INPUT_H), flags=cv2.INTER_LINEAR)
        records.append(CropRecord(int(image_id), image.shape[1], image.shape[0], tuple(center[i].tolist()),
                                  tuple(scale[i].tolist()), float(score), flip))
    x = normalize(crops)
    if flip:
        x = np.concatenate([x, x[..., ::-1]])  # upstream flips the normalised tensor along its width
    return np.ascontiguousarray(x), records


# --------------------------------------------------------------------------------------- decoding

def _flip_order() -> list[int]:
    order = list(range(NUM_JOINTS))
    for a, b in FLIP_PAIRS:
        order[a], order[b] = b, a
    return order


FLIP_ORDER = _flip_order()  # joint channel of the mirrored crop that holds each joint


def flip_back(heatmaps: np.ndarray) -> np.ndarray:
    """Heatmaps of mirrored crops -> the unmirrored crops' (mirror the width, swap left/right joints)."""
    # a mirrored view of the reordered copy: NumPy gathers a reversed axis many times slower
    return np.take(heatmaps, FLIP_ORDER, axis=1)[..., ::-1]


def merge_flip(outputs: np.ndarray, records: list[CropRecord]) -> np.ndarray:
    """[N or 2N, 17, 64, 48] engine outputs -> [N, 17, 64, 48], averaging in the flipped half if present."""
    n = len(records)
    flipped = any(r.flip for r in records)
    if outputs.shape[1:] != (NUM_JOINTS, HEATMAP_H, HEATMAP_W) or outputs.shape[0] != n * (2 if flipped else 1):
        raise ValueError(f"heatmaps {outputs.shape} do not fit {n} crop records (flip test {flipped}): "
                         f"expected [{n * (2 if flipped else 1)}, {NUM_JOINTS}, {HEATMAP_H}, {HEATMAP_W}]")
    outputs = np.asarray(outputs, np.float32)
    if not flipped:
        return outputs
    # (outputs + flipped back) * 0.5 in float32, as upstream, computed in place in the reordered copy
    merged = flip_back(outputs[n:])
    np.add(merged, outputs[:n], out=merged)
    return np.multiply(merged, np.float32(0.5), out=merged)


_scratch = threading.local()


def _workspace(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A zero-bordered float64 input buffer and an output buffer of ``shape``, kept per thread between
    calls: a batch of 64 crops needs 30 MB each, and fresh pages cost about as much as the blur."""
    held = getattr(_scratch, "buffers", None)
    if held is None or held[0].shape != shape:
        held = (np.zeros(shape), np.empty(shape))
        _scratch.buffers = held
    return held


def blur(maps: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """cv2.GaussianBlur (5, 5), sigma 0, of each [H, W] plane of [..., H, W] maps, in float64 as upstream
    blurs its padded float64 copies, for a whole batch in one call.

    The planes are stacked into one tall image; each must have a zero border at least 2 px (the
    kernel's reach) wide, so that no output reads another plane's values, and a constant zero border
    outside the stack then gives every pixel the same 5 x 5 inputs, so the same value, as a blur of the
    plane alone with any border mode (tested bit for bit against one call per plane).
    """
    h, w = maps.shape[-2:]
    tall = np.ascontiguousarray(maps, np.float64).reshape(-1, w)
    dst = None if out is None else out.reshape(-1, w)
    return cv2.GaussianBlur(tall, (BLUR_KERNEL, BLUR_KERNEL), 0, dst=dst,
                            borderType=cv2.BORDER_CONSTANT).reshape(maps.shape)


def _first_maxima(flat: np.ndarray, width: int, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of blurred maps padded by ``reach``: (x, y) in map pixels of upstream's argmax over its
    BORDER-padded copy, and the value there. Beyond ``reach`` upstream's copy is exactly 0 and its
    first pixel, (-BORDER, -BORDER), comes first: it is the argmax wherever nothing exceeds 0."""
    first = flat.argmax(axis=-1)
    value = np.take_along_axis(flat, first[..., None], axis=-1)[..., 0]
    xy = np.stack([first % width, first // width], axis=-1) - reach
    xy[value <= 0] = -BORDER
    return xy.astype(np.float64), first


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, 17, 64, 48] heatmaps -> (x, y) in heatmap pixels [N, 17, 2] and keypoint scores [N, 17].

    Per joint, as upstream: pad by 10, blur, take the maximum, step a quarter pixel toward the second
    maximum (found after zeroing the first), clip to the map; the score is the unblurred value /255 + 0.5
    there. Only the 2 px the blur reaches beyond the map are computed; the rest of upstream's padding is
    0 after the blur too and only matters where no pixel exceeds 0 (see _first_maxima).
    """
    n, j, h, w = heatmaps.shape
    reach = BLUR_KERNEL // 2
    wp = w + 2 * reach
    padded, blurred = _workspace((n, j, h + 2 * reach, wp))
    padded[..., reach:-reach, reach:-reach] = heatmaps  # the border stays 0: only the inside is written
    flat = blur(padded, blurred).reshape(n, j, -1)
    xy, first = _first_maxima(flat, wp, reach)
    np.put_along_axis(flat, first[..., None], 0.0, axis=-1)
    second, _ = _first_maxima(flat, wp, reach)
    # where the first maximum is upstream's padding corner, zeroing it (a 0) changes nothing: same pixel
    step = second - xy
    length = np.linalg.norm(step, axis=-1, keepdims=True)
    moved = length > 1e-3
    xy += np.where(moved, SHIFT * step / np.where(moved, length, 1.0), 0.0)
    xy = np.clip(xy, 0, (w - 1, h - 1))
    ix, iy = (np.rint(xy) + 1e-9).astype(int).transpose(2, 0, 1)
    peak = np.asarray(heatmaps[np.arange(n)[:, None], np.arange(j)[None, :], iy, ix], np.float32)
    # upstream's score map, outputs / 255 + 0.5 in float32, read at the rounded position only
    scores = (peak / np.float32(255) + np.float32(0.5)).astype(np.float64)
    return xy, scores


def decode_crops(outputs: np.ndarray, records: list[CropRecord]) -> list[dict]:
    """Engine outputs of a batch of crops -> one COCO keypoint result per crop, in record order."""
    if not records:
        return []
    xy, scores = decode_heatmaps(merge_flip(outputs, records))
    crop_xy = xy * STRIDE + STRIDE / 2
    # upstream's dataset hands test.py float32 centres and scales and scales them by 200 in float32;
    # the rest is float64 (golden/decoders/README.md). Same operations, same bits.
    center = np.array([r.center for r in records], np.float32)[:, None]
    size = np.array([r.scale for r in records], np.float32)[:, None] * np.float32(PIXEL_STD)
    image_xy = crop_xy / (INPUT_W, INPUT_H) * size + center - size * np.float32(0.5)
    person = np.array([r.det_score for r in records]) * scores.mean(axis=1)
    keypoints = np.concatenate([image_xy, scores[..., None]], axis=-1).reshape(len(records), -1)
    return [{"image_id": r.image_id, "category_id": 1, "keypoints": kp.tolist(), "score": float(s)}
            for r, kp, s in zip(records, keypoints, person)]


# -------------------------------------------------------------------------------------- oracle

def encode_ground_truth(annotations: list[dict], height: int, width: int, image_id: int):
    """Ground-truth people of one image -> Gaussians of peak 255 in their ground-truth boxes, and records."""
    # the decoder's crop coordinate is 4 * u + 2, so the keypoint sits at u = (crop - 2) / 4
    return topdown.encode_ground_truth(CropRecord, lambda xy: (xy - STRIDE / 2) / STRIDE, annotations,
                                       height, width, image_id)


def finalize(results: list[dict]) -> list[dict]:
    """None per image: upstream's test.py only sorts by (image_id, score), which COCOeval does not need."""
    return results
