"""SimpleBaseline pre/post-processing, after microsoft/human-pose-estimation.pytorch (the paper's code).

Crop geometry and oracle are posegate.flows.topdown's; this module holds what is SimpleBaseline's own:
- box -> centre/scale: lib/dataset/coco.py ``_xywh2cs``: the box fitted to the 3:4 aspect, /200
  (pixel_std), then x 1.25; no test-time widening beforehand (MSPN's 1.09, 1.135).
- input: lib/dataset/JointsDataset.py reads with cv2.imread (BGR, never converted) and warps with
  cv2.INTER_LINEAR; pose_estimation/valid.py normalises with ImageNet's RGB-ordered mean and std applied
  to those BGR channels, as the released weights were trained.
- flip test: lib/core/function.py validate: the mirrored input's heatmaps flipped back (lib/utils/transforms.py
  flip_back), shifted one pixel right (TEST.SHIFT_HEATMAP: "feature is not aligned"), averaged.
- decode: lib/core/inference.py get_final_preds: the argmax, a quarter pixel toward the higher neighbour
  where the peak is not on the map's outer two pixels, heatmap -> image with transform_preds (the
  inverse three-point affine of the heatmap size, which scales both axes by the width's ratio).
- rescoring and OKS-NMS: lib/dataset/coco.py evaluate, with TEST.IN_VIS_THRE 0.2 and TEST.OKS_THRE 0.9.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from posegate.flows import topdown
from posegate.flows.topdown import Geometry

INPUT_H, INPUT_W = 256, 192
HEATMAP_H, HEATMAP_W = 64, 48
NUM_JOINTS = 17
STRIDE = INPUT_W // HEATMAP_W
PIXEL_STD = 200.0
PADDING = 1.25  # _xywh2cs: scale * 1.25 after the aspect fit
SIGMA = 2.0  # MODEL.EXTRA.SIGMA: the training targets' width in heatmap px (peak 1)
IN_VIS_THRE = 0.2  # TEST.IN_VIS_THRE: keypoints above it make the person's score
OKS_THRE = 0.9  # TEST.OKS_THRE
SHIFT = 0.25
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # applied to B, G, R in that order (see above)
STD = np.array([0.229, 0.224, 0.225], np.float32)
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# which test-time recipe a profile's ``preprocess`` names: upstream's flip test (with the shift) or none
FLIP = {"upstream": True, "no-flip": False}

GEOMETRY = Geometry(INPUT_W, INPUT_H, HEATMAP_W, HEATMAP_H, sigma=SIGMA, padding=PADDING, pixel_std=PIXEL_STD)


@dataclass(frozen=True)
class CropRecord(topdown.CropRecord):
    geometry = GEOMETRY

    @property
    def window(self) -> tuple[float, float, float, float]:
        """Where decoded keypoints can land: the heatmap's corner pixels through the decoder's own float32
        steps (which scale y by the width's ratio), so no rounding puts a border keypoint outside."""
        (x0, y0), (x1, y1) = heatmap_to_image(np.float32([[[0, 0], [HEATMAP_W - 1, HEATMAP_H - 1]]]),
                                              [self])[0].astype(np.float32)
        return float(x0), float(y0), float(x1), float(y1)


def _flip_order() -> list[int]:
    order = list(range(NUM_JOINTS))
    for a, b in FLIP_PAIRS:
        order[a], order[b] = b, a
    return order


FLIP_ORDER = _flip_order()


# ------------------------------------------------------------------------------------ preprocessing

def preprocess_crops(raws: list, profile: str) -> tuple[np.ndarray, list[CropRecord]]:
    """(image BGR, box xywh, detection score, image id) per person -> engine input and one record each;
    with flip test the N crops, then the same N mirrored: [2N, 3, 256, 192]."""
    if not raws:
        raise ValueError("empty batch")
    if profile not in FLIP:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(FLIP)}")
    flip = FLIP[profile]
    center, scale = GEOMETRY.boxes_to_center_scale([r[1] for r in raws])
    crops = np.empty((len(raws), INPUT_H, INPUT_W, 3), np.uint8)
    records = []
    for i, ((image, _, score, image_id), m) in enumerate(zip(raws, GEOMETRY.affine_matrices(center, scale))):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {image_id}: expected an HxWx3 uint8 BGR image, got {image.dtype} {image.shape}")
        crops[i] = cv2.warpAffine(image, m, (INPUT_W, INPUT_H), flags=cv2.INTER_LINEAR)
        records.append(CropRecord(int(image_id), image.shape[1], image.shape[0], tuple(center[i].tolist()),
                                  tuple(scale[i].tolist()), float(score), flip))
    x = (crops.astype(np.float32) / np.float32(255) - MEAN) / STD  # ToTensor, Normalize, in float32
    x = x.transpose(0, 3, 1, 2)
    if flip:
        x = np.concatenate([x, x[..., ::-1]])  # validate() mirrors the normalised tensor along its width
    return np.ascontiguousarray(x), records


# --------------------------------------------------------------------------------------- decoding

def merge_flip(outputs: np.ndarray, records: list[CropRecord]) -> np.ndarray:
    """[N or 2N, 17, 64, 48] engine outputs -> [N, 17, 64, 48]: with flip test, (maps + the mirrored crops'
    maps flipped back and shifted one pixel right) * 0.5; the shift repeats column 0."""
    n = len(records)
    flipped = any(r.flip for r in records)
    rows = n * (2 if flipped else 1)
    if outputs.shape != (rows, NUM_JOINTS, HEATMAP_H, HEATMAP_W):
        raise ValueError(f"heatmaps {outputs.shape} do not fit {n} crop records (flip test {flipped}): "
                         f"expected [{rows}, {NUM_JOINTS}, {HEATMAP_H}, {HEATMAP_W}]")
    outputs = np.asarray(outputs, np.float32)
    if not flipped:
        return outputs
    back = np.take(outputs[n:], FLIP_ORDER, axis=1)[..., ::-1]
    shifted = np.concatenate([back[..., :1], back[..., :-1]], axis=-1)
    return (outputs[:n] + shifted) * np.float32(0.5)


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, 17, H, W] -> (x, y) in heatmap pixels [N, 17, 2] (float32, as upstream's arrays) and the maxima
    [N, 17]: get_max_preds (a joint whose maximum is not above 0 sits at (0, 0)) and its post-processing."""
    n, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, j, -1)
    idx = flat.argmax(axis=-1)
    maxval = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    xy = np.stack([idx % w, idx // w], axis=-1).astype(np.float32) * (maxval > 0)[..., None]
    px, py = np.floor(xy + 0.5).astype(int).transpose(2, 0, 1)
    inner = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    ni, ji = np.nonzero(inner)
    hm, x, y = heatmaps[ni, ji], px[ni, ji], py[ni, ji]
    k = np.arange(len(ni))
    diff = np.stack([hm[k, y, x + 1] - hm[k, y, x - 1], hm[k, y + 1, x] - hm[k, y - 1, x]], axis=-1)
    xy[ni, ji] += (np.sign(diff) * SHIFT).astype(np.float32)
    return xy, maxval


def heatmap_to_image(xy: np.ndarray, records: list[CropRecord]) -> np.ndarray:
    """transform_preds: heatmap px -> image px about the crop's centre, both axes by s_w * 200 / W (the
    three-point affine's scale: its points are built from the width alone)."""
    center = np.array([r.center for r in records], np.float32)[:, None]
    scale = np.array([r.scale for r in records], np.float32)[:, None]
    k = scale[..., :1].astype(np.float64) * PIXEL_STD / HEATMAP_W
    return center + (xy - (HEATMAP_W / 2, HEATMAP_H / 2)) * k


def decode_crops(outputs: np.ndarray, records: list[CropRecord]) -> list[dict]:
    """Engine outputs of a batch of crops -> one COCO keypoint result per crop, in record order, with
    upstream's rescored person score (it needs the crop alone) and the crop's area for finalize's OKS-NMS."""
    if not records:
        return []
    xy, maxval = decode_heatmaps(merge_flip(outputs, records))
    image_xy = heatmap_to_image(xy, records).astype(np.float32)  # upstream keeps all_preds in float32
    v = maxval.astype(np.float32).astype(np.float64)
    keypoints = np.concatenate([image_xy.astype(np.float64), v[..., None]], axis=-1).reshape(len(records), -1)
    results = []
    for r, kp, s in zip(records, keypoints, v):
        area = float(np.prod(np.float32(r.scale) * np.float32(PIXEL_STD)))  # validate(): prod(s * 200)
        results.append({"image_id": r.image_id, "category_id": 1, "keypoints": kp.tolist(),
                        "score": topdown.rescore(s, r.det_score, IN_VIS_THRE), "area": area})
    return results


def finalize(results: list[dict]) -> list[dict]:
    """Per image, OKS-NMS at TEST.OKS_THRE over every crop's person (coco.py evaluate)."""
    return topdown.oks_nms_per_image(results, OKS_THRE)


# -------------------------------------------------------------------------------------- oracle

def encode_ground_truth(annotations: list[dict], height: int, width: int, image_id: int):
    """Ground truth -> Gaussians of peak 1, sigma 2 in the ground-truth boxes (at the exact sub-pixel spot
    where the decoder reads crop pixel 4u, not upstream's rounded training centres), and the records."""
    return topdown.encode_ground_truth(CropRecord, lambda xy: xy / STRIDE, annotations, height, width, image_id)
