"""Top-down crop geometry, its decoder oracle and per-image finalisation, shared by every top-down model.

A person box becomes a centre and a scale (units of ``pixel_std`` px), widened as the model's upstream does
and fitted to the input's aspect; one affine warp cuts the crop. The oracle encodes ground truth as the
Gaussian heatmaps a perfect network would give in the crop. A model's codec keeps only what is its own:
normalisation, flip test and the decode of its heatmaps. Facts: shared/reference/pipelines.md sections 3, 7.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

NUM_JOINTS = 17
# COCO's per-joint OKS constants (pycocotools COCOeval.Params.kpt_oks_sigmas)
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10


@dataclass(frozen=True)
class Geometry:
    """One top-down model's crop: input and heatmap sizes, box widening, the oracle's Gaussian.

    ``extend`` multiplies the box's (w, h) before the aspect fit (MSPN: 1.09, 1.135); ``padding`` the fitted
    scale after it (SimpleBaseline: 1.25).
    """
    input_w: int
    input_h: int
    heatmap_w: int
    heatmap_h: int
    sigma: float  # heatmap px: the training targets' width, which the oracle draws
    extend: tuple[float, float] = (1.0, 1.0)
    padding: float = 1.0
    pixel_std: float = 200.0
    peak: float = 1.0  # the training targets' maximum

    @property
    def aspect(self) -> float:
        return self.input_w / self.input_h

    @property
    def stride(self) -> int:
        return self.input_h // self.heatmap_h

    def boxes_to_center_scale(self, boxes) -> tuple[np.ndarray, np.ndarray]:
        """[N, 4] xywh boxes -> centres [N, 2] and scales [N, 2] (units of pixel_std), widened and fitted to
        the input's aspect by enlarging the smaller side, as upstream's test-time crop does."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ok = np.isfinite(boxes).all(axis=1) & (np.maximum(boxes[:, 2], boxes[:, 3]) > 0)
        if not ok.all():
            raise ValueError(f"person box {boxes[~ok][0].tolist()} (x, y, w, h) has no extent; cannot crop it")
        center = boxes[:, :2] + boxes[:, 2:] / 2
        scale = boxes[:, 2:] / self.pixel_std * self.extend
        wide = scale[:, 0] > self.aspect * scale[:, 1]
        scale[:, 1] = np.where(wide, scale[:, 0] / self.aspect, scale[:, 1])
        scale[:, 0] = np.where(wide, scale[:, 0], scale[:, 1] * self.aspect)
        if self.padding != 1.0:  # exactly MSPN's operations where there is no padding
            scale = scale * self.padding
        return center, scale

    def affine_matrices(self, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """[N, 2, 3] image -> input maps: a scale about the box centre, which lands on the input's centre."""
        k = np.array([self.input_w, self.input_h]) / (scale * self.pixel_std)
        m = np.zeros((len(center), 2, 3))
        m[:, 0, 0], m[:, 1, 1] = k[:, 0], k[:, 1]
        m[:, :, 2] = (self.input_w / 2, self.input_h / 2) - k * center
        return m

    def gaussians(self, centers: np.ndarray, labelled: np.ndarray) -> np.ndarray:
        """[N, 17, 2] heatmap-pixel centres and [N, 17] labelled flags -> [N, 17, H, W] float32 Gaussians of
        height ``peak`` (zero maps where a joint is not labelled)."""
        gy, gx = np.mgrid[0:self.heatmap_h, 0:self.heatmap_w].astype(np.float64)
        maps = np.zeros((*labelled.shape, self.heatmap_h, self.heatmap_w), np.float32)
        for i, j in zip(*np.nonzero(labelled)):
            d2 = (gx - centers[i, j, 0]) ** 2 + (gy - centers[i, j, 1]) ** 2
            maps[i, j] = self.peak * np.exp(-d2 / (2 * self.sigma ** 2))
        return maps


@dataclass(frozen=True)
class CropRecord:
    """Where one person crop came from: image, box centre and scale (units of pixel_std), detection score.

    A model's codec subclasses it with its ``geometry`` (a class attribute, not a field: records stay small
    and keep their stored form). ``to_input`` is the warp's affine map, ``to_original`` its exact inverse.
    It keeps the top-down flow's record contract, posegate.flows.codec_contracts.CropRecord.
    """
    geometry: ClassVar[Geometry]
    image_id: int
    orig_w: int
    orig_h: int
    center: tuple[float, float]
    scale: tuple[float, float]
    det_score: float
    flip: bool = False

    def _k(self) -> np.ndarray:
        """Input pixels per image pixel, per axis."""
        g = self.geometry
        return np.array([g.input_w, g.input_h]) / (np.asarray(self.scale) * g.pixel_std)

    def to_input(self, xy) -> np.ndarray:
        g = self.geometry
        return (np.asarray(xy, np.float64) - self.center) * self._k() + (g.input_w / 2, g.input_h / 2)

    def to_original(self, xy) -> np.ndarray:
        g = self.geometry
        size = np.asarray(self.scale) * g.pixel_std
        return np.asarray(xy, np.float64) / (g.input_w, g.input_h) * size + self.center - size / 2

    @property
    def window(self) -> tuple[float, float, float, float]:
        """The crop's extent in the image (x0, y0, x1, y1): where its keypoints can land."""
        (x0, y0), (x1, y1) = self.to_original([[0, 0], [self.geometry.input_w, self.geometry.input_h]])
        return float(x0), float(y0), float(x1), float(y1)


# -------------------------------------------------------------------------------------- oracle

def oracle_people(annotations: list[dict]) -> list[dict]:
    """People whose ground truth can be encoded: not crowd, a box with extent, at least one keypoint
    (COCOeval ignores people without keypoints, so a prediction for them could only be a false positive)."""
    return [a for a in annotations
            if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0 and a["bbox"][2] > 0 and a["bbox"][3] > 0]


def oracle_box(annotation: dict) -> list[float]:
    """The person's box grown to hold every labelled keypoint.

    COCO boxes follow the visible segment while occluded keypoints are labelled beyond it; a crop
    cannot hold what lies outside it, and the oracle measures the decoder, not the box.
    """
    x, y, w, h = annotation["bbox"]
    kp = np.asarray(annotation["keypoints"], np.float64).reshape(NUM_JOINTS, 3)
    kp = kp[kp[:, 2] > 0, :2]
    x0, y0 = np.minimum([x, y], kp.min(axis=0)) if len(kp) else (x, y)
    x1, y1 = np.maximum([x + w, y + h], kp.max(axis=0)) if len(kp) else (x + w, y + h)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def encode_ground_truth(record_type: type[CropRecord], to_heatmap, annotations: list[dict], height: int,
                        width: int, image_id: int):
    """Ground-truth people of one image -> the heatmaps a perfect network would give in their ground-truth
    boxes (a Gaussian at each labelled keypoint), and their crop records.

    ``to_heatmap(crop_xy)`` is the inverse of the model's decode from heatmap to crop pixels (MSPN decodes
    ``4u + 2``, SimpleBaseline ``4u``), so each Gaussian sits where the decoder reads the keypoint back.
    """
    g = record_type.geometry
    people = oracle_people(annotations)
    if not people:
        return np.zeros((0, NUM_JOINTS, g.heatmap_h, g.heatmap_w), np.float32), []
    center, scale = g.boxes_to_center_scale([oracle_box(a) for a in people])
    records = [record_type(int(image_id), int(width), int(height), tuple(c.tolist()), tuple(s.tolist()), 1.0)
               for c, s in zip(center, scale)]
    kps = np.array([np.asarray(p["keypoints"], np.float64).reshape(NUM_JOINTS, 3) for p in people])
    centers = np.stack([to_heatmap(r.to_input(kp[:, :2])) for r, kp in zip(records, kps)])
    return g.gaussians(centers, kps[..., 2] > 0), records


# --------------------------------------------------------------------------------- finalisation

def oks(kpts: np.ndarray, others: np.ndarray, area: float, other_areas: np.ndarray,
        sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """Object keypoint similarity of one person's [17, 3] keypoints with each of [M, 17, 3] others, every
    joint counted (upstream's oks_iou with in_vis_thre None, as its evaluate calls it): the mean over joints
    of exp(-d^2 / (2 (2 sigma)^2 s)), s the mean of the two areas (+ eps)."""
    var = (2 * sigmas) ** 2
    d2 = ((others[..., :2] - kpts[:, :2]) ** 2).sum(axis=-1)
    e = d2 / var / ((area + other_areas[:, None]) / 2 + np.spacing(1)) / 2
    return np.exp(-e).mean(axis=-1)


def oks_nms(kpts: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float) -> list[int]:
    """Greedy OKS non-maximum suppression: indices kept, best first; a person is dropped when its OKS
    with a kept better one exceeds ``threshold`` (microsoft/human-pose-estimation.pytorch lib/nms/nms.py
    oks_nms). Upstream orders by ``scores.argsort()[::-1]``; a stable sort reversed gives that order for
    ties too on the few people of an image (NumPy sorts short arrays by insertion: stable)."""
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        order = rest[oks(kpts[i], kpts[rest], areas[i], areas[rest]) <= threshold]
    return keep


def rescore(keypoint_scores: np.ndarray, det_score: float, in_vis_thre: float) -> float:
    """Person score = detection score x the mean of the keypoint scores above ``in_vis_thre`` (0 when none is;
    microsoft/human-pose-estimation.pytorch lib/dataset/coco.py evaluate, 'rescoring')."""
    visible = keypoint_scores[keypoint_scores > in_vis_thre]
    return float(det_score * (visible.sum() / len(visible) if len(visible) else 0.0))


def oks_nms_per_image(results: list[dict], threshold: float, area_key: str = "area") -> list[dict]:
    """Each image's results after OKS-NMS, images in order of first appearance, each image's kept people
    best first (upstream's evaluate groups by image in a dict and writes the kept ones in keep order; an
    image whose NMS keeps nobody keeps all, which cannot happen with one person or more). ``area_key`` is
    the crop area each result carries for the OKS scale; it is dropped from what is returned."""
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    out = []
    for people in by_image.values():
        kpts = np.array([np.asarray(p["keypoints"], np.float64).reshape(NUM_JOINTS, 3) for p in people])
        keep = oks_nms(kpts, np.array([p["score"] for p in people]), np.array([p[area_key] for p in people]),
                       threshold)
        out += [{k: v for k, v in people[i].items() if k != area_key} for i in keep]
    return out
