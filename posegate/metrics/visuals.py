"""Pictures of the worst cases: predicted and ground-truth skeletons side by side.

For keypoint AP the worst images are those whose people are matched worst: each ground-truth person
scores the best OKS any prediction reaches on it, an image the mean over its people. People read a
wrong skeleton faster than a lower number.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from posegate.datasets.coco import OKS_SIGMAS, SKELETON

PREDICTED, TRUTH = (40, 40, 230), (40, 200, 40)  # BGR: red, green
MAX_SIDE = 640


def oks(gt: dict, keypoints) -> float:
    """COCO's object keypoint similarity of one prediction (17 x [x, y, score]) to one ground-truth person."""
    g = np.asarray(gt["keypoints"], float).reshape(17, 3)
    p = np.asarray(keypoints, float).reshape(17, 3)
    visible = g[:, 2] > 0
    if not visible.any():
        return float("nan")
    d2 = ((p[:, :2] - g[:, :2]) ** 2).sum(1)
    e = d2 / ((2 * OKS_SIGMAS) ** 2) / (max(gt.get("area", 0.0), 1e-9) + np.spacing(1)) / 2
    return float(np.exp(-e)[visible].mean())


def image_scores(dataset, results: list[dict]) -> dict[int, float]:
    """Image id -> mean best OKS over its annotated people (images without any are left out)."""
    by_image: dict[int, list] = {}
    for r in results:
        by_image.setdefault(int(r["image_id"]), []).append(r["keypoints"])
    scores = {}
    for image_id in dataset.image_ids:
        people = [a for a in dataset.annotations(image_id) if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")]
        if not people:
            continue
        best = [max([oks(a, k) for k in by_image.get(image_id, [])] or [0.0]) for a in people]
        scores[image_id] = float(np.mean(best))
    return scores


def _skeleton(canvas, people, color, threshold=0.0):
    for kp in people:
        k = np.asarray(kp, float).reshape(17, 3)
        shown = k[:, 2] > threshold
        for a, b in SKELETON:
            if shown[a - 1] and shown[b - 1]:
                cv2.line(canvas, tuple(int(v) for v in k[a - 1, :2]), tuple(int(v) for v in k[b - 1, :2]), color, 2,
                         cv2.LINE_AA)
        for x, y in k[shown, :2]:
            cv2.circle(canvas, (int(x), int(y)), 3, color, -1, cv2.LINE_AA)


def side_by_side(image: np.ndarray, predicted: list, truth: list, caption: str) -> np.ndarray:
    left, right = image.copy(), image.copy()
    _skeleton(left, predicted, PREDICTED)
    _skeleton(right, truth, TRUTH)
    both = np.concatenate([left, np.full((image.shape[0], 8, 3), 255, np.uint8), right], axis=1)
    scale = min(1.0, 2 * MAX_SIDE / both.shape[1])
    if scale < 1.0:
        both = cv2.resize(both, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    band = np.full((52, both.shape[1], 3), 255, np.uint8)
    for i, text in enumerate((caption, "left: predicted (red)    right: ground truth (green)")):
        cv2.putText(band, text, (8, 20 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, both], axis=0)


def save_worst_images(dataset, results: list[dict], folder: Path, label: str, count: int = 3) -> list[str]:
    """PNG files of the ``count`` lowest-OKS images, worst first."""
    scores = image_scores(dataset, results)
    worst = sorted(scores, key=lambda i: (scores[i], i))[:count]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for rank, image_id in enumerate(worst, 1):
        preds = [r["keypoints"] for r in results if int(r["image_id"]) == image_id]
        truth = [a["keypoints"] for a in dataset.annotations(image_id) if a.get("num_keypoints", 0) > 0]
        picture = side_by_side(dataset.load_image(image_id), preds, truth,
                               f"image {image_id}: mean OKS {scores[image_id]:.3f}, worst #{rank} of {len(scores)}")
        path = folder / f"{rank:02d}-image{image_id}-oks{scores[image_id]:.3f}.png"
        cv2.imwrite(str(path), picture)
        paths.append(str(path))
    return paths


def _project(pose: np.ndarray, axes: tuple[int, int], scale: float, size: int) -> np.ndarray:
    """Root-relative metres to panel pixels: camera x right, y down, z away from the camera."""
    return pose[:, list(axes)] * scale + size / 2


def _skeleton_3d(canvas, pixels, parents, color):
    for j, p in enumerate(parents):
        if p >= 0:
            cv2.line(canvas, tuple(int(v) for v in pixels[j]), tuple(int(v) for v in pixels[p]), color, 2, cv2.LINE_AA)
    for x, y in pixels:
        cv2.circle(canvas, (int(x), int(y)), 3, color, -1, cv2.LINE_AA)


def frame_panels(pred: np.ndarray, target: np.ndarray, parents, caption: str, size: int = 300) -> np.ndarray:
    """Predicted and ground-truth 3D poses (one frame), seen from the camera and from the side."""
    centred_p, centred_t = pred - target[:1].mean(0), target - target[:1].mean(0)
    extent = max(float(np.abs(centred_t).max()), float(np.abs(centred_p).max()), 1e-6)
    scale = 0.42 * size / extent
    panels = []
    for axes, view in (((0, 1), "front"), ((2, 1), "side")):
        for pose, color, who in ((centred_p, PREDICTED, "predicted"), (centred_t, TRUTH, "ground truth")):
            panel = np.full((size, size, 3), 255, np.uint8)
            _skeleton_3d(panel, _project(pose, axes, scale, size), parents, color)
            cv2.putText(panel, f"{who}, {view}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            panels += [panel, np.full((size, 4, 3), 200, np.uint8)]
    row = np.concatenate(panels[:-1], axis=1)
    band = np.full((30, row.shape[1], 3), 255, np.uint8)
    cv2.putText(band, caption, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, row], axis=0)


def save_worst_frames(sequences, folder: Path, parents, count: int = 3) -> list[str]:
    """PNG files of the ``count`` frames with the largest MPJPE, worst first, at most one per sequence.

    ``sequences``: (name, predicted [T, J, 3], target [T, J, 3]) in metres.
    """
    worst = []
    for name, pred, target in sequences:
        errors = np.linalg.norm(np.asarray(pred) - np.asarray(target), axis=-1).mean(-1)
        t = int(np.argmax(errors))
        worst.append((float(errors[t]), name, t, np.asarray(pred[t]), np.asarray(target[t])))
    worst.sort(key=lambda w: -w[0])
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for rank, (error, name, t, p, g) in enumerate(worst[:count], 1):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = folder / f"{rank:02d}-{safe}-frame{t}-{1000 * error:.0f}mm.png"
        title = f"{name} frame {t}: MPJPE {1000 * error:.1f} mm (worst #{rank})"
        cv2.imwrite(str(path), frame_panels(p, g, parents, title))
        paths.append(str(path))
    return paths


def error_along_graph(localization: dict, path: Path, width: int = 960, height: int = 320) -> str:
    """PNG of each compared tensor's error over its tolerance (log scale) in topological order, the first
    divergent node marked: a fault shows as a step, accumulated error as a slope."""
    items = localization["items"]
    tol = localization["tolerance"] or 1e-12
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, width - 10, 40, height - 30
    lo, hi = -6.0, 4.0

    def y_of(v):
        return int(bottom - (min(max(v, lo), hi) - lo) / (hi - lo) * (bottom - top))

    for decade in range(int(lo), int(hi) + 1, 2):
        cv2.line(canvas, (left, y_of(decade)), (right, y_of(decade)), (225, 225, 225), 1)
        cv2.putText(canvas, f"1e{decade:+d}", (4, y_of(decade) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (90, 90, 90), 1)
    cv2.line(canvas, (left, y_of(0)), (right, y_of(0)), (0, 140, 255), 1)  # the tolerance
    n = max(len(items) - 1, 1)
    points = []
    for k, it in enumerate(items):
        ratio = hi if (it["nan"] or it["inf"]) else math.log10(max(it["max_rel"] / tol, 1e-30))
        points.append((int(left + k / n * (right - left)), y_of(ratio)))
    for a, b in zip(points, points[1:]):
        cv2.line(canvas, a, b, (120, 120, 120), 1, cv2.LINE_AA)
    for (px, py), it in zip(points, items):
        cv2.circle(canvas, (px, py), 2, PREDICTED if it["exceeds"] else (60, 60, 60), -1)
    first = localization.get("first")
    caption = f"error / tolerance ({tol:.2g} of each tensor's range), {len(items)} tensors in topological order"
    if first:
        k = next(i for i, it in enumerate(items) if it["tensor"] == first["tensor"])
        cv2.line(canvas, (points[k][0], top), (points[k][0], bottom), PREDICTED, 1)
        caption = f"first divergent: {first['node']} ({first['op_type']})"
    cv2.putText(canvas, caption[:110], (left, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "orange: tolerance; red: beyond it", (left, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (90, 90, 90), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), canvas)
    return str(path)
