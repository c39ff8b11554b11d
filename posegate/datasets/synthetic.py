"""A small deterministic person-keypoint dataset in COCO layout, for tests that need no real data.

People are drawn from known skeletons (thick limbs, a torso and a head on a noisy, cluttered
background), so the ground truth is exact and a pose network still sees something person-like.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from posegate.datasets.coco import ANNOTATION_FILE, DETECTION_DIR, IMAGE_DIR, PERSON_CATEGORY, DatasetError
from posegate.datasets.staging import build_once

VERSION = 1
DETECTION_FILE = "person_detections.json"
JPEG_QUALITY = 92

# (height, width), cycled so every small set has landscape, portrait and square images.
_SIZES = ((480, 640), (640, 480), (427, 640), (512, 512), (640, 427), (375, 500), (500, 375), (360, 640))

# Keypoints of a person 1 unit tall (head top y=0, soles y=1) facing the camera, so the person's
# left side lies at +x; order as COCO's 17 keypoints.
_POSES = {
    "standing": [
        (0.0, 0.07), (0.025, 0.05), (-0.025, 0.05), (0.05, 0.06), (-0.05, 0.06),
        (0.11, 0.19), (-0.11, 0.19), (0.14, 0.34), (-0.14, 0.34), (0.15, 0.48), (-0.15, 0.48),
        (0.075, 0.52), (-0.075, 0.52), (0.08, 0.74), (-0.08, 0.74), (0.085, 0.96), (-0.085, 0.96),
    ],
    "arms_raised": [
        (0.0, 0.07), (0.025, 0.05), (-0.025, 0.05), (0.05, 0.06), (-0.05, 0.06),
        (0.11, 0.19), (-0.11, 0.19), (0.19, 0.08), (-0.19, 0.08), (0.21, -0.05), (-0.21, -0.05),
        (0.075, 0.52), (-0.075, 0.52), (0.09, 0.74), (-0.09, 0.74), (0.1, 0.96), (-0.1, 0.96),
    ],
    "walking": [
        (0.02, 0.07), (0.04, 0.05), (0.005, 0.05), (0.055, 0.06), (-0.03, 0.06),
        (0.08, 0.19), (-0.08, 0.19), (0.13, 0.32), (-0.11, 0.33), (0.17, 0.44), (-0.15, 0.45),
        (0.05, 0.52), (-0.05, 0.52), (0.12, 0.73), (-0.07, 0.74), (0.16, 0.95), (-0.15, 0.94),
    ],
}
_POSE_NAMES = tuple(_POSES)
# Body parts as (keypoint a, keypoint b, colour slot): 0 shirt, 1 skin, 2 trousers.
_LIMBS = ((5, 7, 0), (7, 9, 1), (6, 8, 0), (8, 10, 1), (11, 13, 2), (13, 15, 2), (12, 14, 2), (14, 16, 2),
          (5, 6, 0), (11, 12, 2))
_HIP_CENTRE = (11, 12)


def generate(root: Path, num_images: int = 8, seed: int = 0) -> Path:
    """Write the dataset to ``root`` (or keep it, when a complete matching one is there); returns root.

    The same (num_images, seed) always gives byte-identical files. The set is built in a hidden
    folder beside root and renamed into place, under a lock, so concurrent callers never see or
    write a partial set.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    return build_once(root, _marker(num_images, seed), lambda work: _write_dataset(work, num_images, seed),
                      "synthetic dataset", DatasetError)


def _marker(num_images: int, seed: int) -> str:
    return json.dumps({"generator": __name__, "version": VERSION, "num_images": num_images, "seed": seed},
                      sort_keys=True)


def _write_dataset(out: Path, num_images: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for sub in (IMAGE_DIR, ANNOTATION_FILE.parent, DETECTION_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    images, annotations, detections = [], [], []
    for index in range(num_images):
        image_id = index + 1
        height, width = _SIZES[index % len(_SIZES)]
        canvas = _background(rng, height, width)
        count = int(rng.integers(1, 4))
        people = [_person(rng, height, width, slot, count) for slot in range(count)]
        for person in sorted(people, key=lambda p: p["scale"]):
            _draw(canvas, person)
        canvas = _add_noise(rng, canvas)
        file_name = f"{image_id:012d}.jpg"
        ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok, "OpenCV failed to encode a JPEG"
        (out / IMAGE_DIR / file_name).write_bytes(jpeg.tobytes())
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for person in people:
            ann = _annotation(rng, person, height, width, image_id, len(annotations) + 1)
            annotations.append(ann)
            detections.append(_detection(rng, ann))
    ground_truth = {
        "info": {"description": "posegate synthetic person keypoints", "version": str(VERSION)},
        "licenses": [], "images": images, "annotations": annotations, "categories": [PERSON_CATEGORY],
    }
    _write_json(out / ANNOTATION_FILE, ground_truth)
    _write_json(out / DETECTION_DIR / DETECTION_FILE, detections)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")


def _background(rng, height: int, width: int) -> np.ndarray:
    coarse = rng.integers(30, 226, size=(height // 48 + 2, width // 48 + 2, 3), dtype=np.uint8)
    canvas = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(3, 8))):
        x0, x1 = sorted(rng.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, height, size=2).tolist())
        colour = rng.integers(0, 256, size=3).tolist()
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness=-1)
    return canvas


def _add_noise(rng, canvas: np.ndarray) -> np.ndarray:
    noise = rng.normal(0.0, 9.0, size=canvas.shape)
    return np.clip(canvas + np.rint(noise), 0, 255).astype(np.uint8)


def _person(rng, height: int, width: int, slot: int, count: int) -> dict:
    template = np.asarray(_POSES[_POSE_NAMES[int(rng.integers(len(_POSE_NAMES)))]], dtype=np.float64)
    template = template + rng.normal(0.0, 0.008, size=template.shape)
    scale = float(rng.uniform(120.0, min(400.0, 1.1 * height)))
    # The allowed top edge lets a tall or edge-placed person leave the frame a little, which gives
    # the unlabelled (v=0) keypoints that real COCO people have.
    top_lo, top_hi = -0.15 * scale, height - 0.85 * scale
    top = float(rng.uniform(min(top_lo, top_hi), max(top_lo, top_hi)))
    centre_x = (slot + 0.5) * width / count + float(rng.uniform(-0.15, 0.15)) * width / count
    angle = math.radians(float(rng.uniform(-12.0, 12.0)))
    hip = template[list(_HIP_CENTRE)].mean(axis=0)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = (template - hip) @ rotation.T * scale + np.array([centre_x, top + hip[1] * scale])
    colours = [rng.integers(20, 236, size=3).tolist(),
               [int(v) for v in rng.integers(60, 120, size=1).tolist() + [150, 210]],
               rng.integers(20, 236, size=3).tolist()]
    return {"points": points, "scale": scale, "colours": colours}


def _draw(canvas: np.ndarray, person: dict) -> None:
    points, scale, colours = person["points"], person["scale"], person["colours"]

    def pixel(j: int) -> tuple[int, int]:
        return int(round(points[j][0])), int(round(points[j][1]))

    torso = np.array([pixel(5), pixel(6), pixel(12), pixel(11)], dtype=np.int32)
    cv2.fillConvexPoly(canvas, torso, colours[0], lineType=cv2.LINE_AA)
    thickness = max(3, int(round(scale * 0.045)))
    for a, b, slot in _LIMBS:
        cv2.line(canvas, pixel(a), pixel(b), colours[slot], thickness, lineType=cv2.LINE_AA)
    head = points[[0, 3, 4]].mean(axis=0)
    centre = (int(round(head[0])), int(round(head[1] - 0.01 * scale)))
    cv2.circle(canvas, centre, max(4, int(round(0.065 * scale))), colours[1], -1, lineType=cv2.LINE_AA)
    for eye in (1, 2):
        cv2.circle(canvas, pixel(eye), max(1, int(round(0.008 * scale))), (20, 20, 20), -1, lineType=cv2.LINE_AA)


def _annotation(rng, person: dict, height: int, width: int, image_id: int, ann_id: int) -> dict:
    rounded = np.rint(person["points"]).astype(int)
    inside = (rounded[:, 0] >= 0) & (rounded[:, 0] < width) & (rounded[:, 1] >= 0) & (rounded[:, 1] < height)
    occluded = rng.random(len(rounded)) < 0.08
    keypoints = []
    for (x, y), seen, hidden in zip(rounded.tolist(), inside.tolist(), occluded.tolist()):
        keypoints += [x, y, 1 if hidden else 2] if seen else [0, 0, 0]
    visible = rounded[inside]
    margin = 0.06 * person["scale"]
    x0 = max(0.0, visible[:, 0].min() - margin)
    y0 = max(0.0, visible[:, 1].min() - 1.5 * margin)
    x1 = min(width - 1.0, visible[:, 0].max() + margin)
    y1 = min(height - 1.0, visible[:, 1].max() + margin)
    bbox = [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)]
    x, y, w, h = bbox
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "keypoints": keypoints, "num_keypoints": int(inside.sum()), "bbox": bbox,
        "area": round(w * h * 0.6, 2),
        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
    }


def _detection(rng, ann: dict) -> dict:
    x, y, w, h = ann["bbox"]
    jitter = rng.normal(0.0, 0.04, size=4)
    return {
        "image_id": ann["image_id"], "category_id": 1, "score": round(float(rng.uniform(0.6, 0.99)), 4),
        "bbox": [round(x + jitter[0] * w, 2), round(y + jitter[1] * h, 2),
                 round(w * (1 + jitter[2]), 2), round(h * (1 + jitter[3]), 2)],
    }
