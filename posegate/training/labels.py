"""COCO keypoint annotations -> the prepared training labels (upstream scripts/prepare_train_labels.py).

One record per *main* person; every other annotated person of the image rides along so its keypoints
are drawn too, and the image's crowd regions are kept to be masked out of the loss.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

NET_INPUT_SIZE = 368
MIN_MAIN_KEYPOINTS = 5
MIN_MAIN_AREA = 32 * 32
MIN_CENTRE_DISTANCE = 0.3  # x the accepted person's bbox width
VAL_SUBSET_SIZE = 250

# Internal visibility: 0 occluded, 1 visible, 2 not labelled (COCO: 1 occluded, 2 visible, 0 not labelled).
COCO_TO_INTERNAL_V = {1: 0, 2: 1, 0: 2}


class LabelError(ValueError):
    """An annotation file that cannot be turned into training labels."""


def internal_keypoints(flat: list) -> list[list]:
    if len(flat) != 51:
        raise LabelError(f"expected 17 x 3 keypoint values, found {len(flat)}")
    return [[flat[i], flat[i + 1], COCO_TO_INTERNAL_V.get(int(flat[i + 2]), 2)] for i in range(0, 51, 3)]


def _person(ann: dict) -> dict:
    x, y, w, h = ann["bbox"]
    return {"objpos": [x + w / 2, y + h / 2], "bbox": list(ann["bbox"]), "segment_area": ann["area"],
            "scale_provided": h / NET_INPUT_SIZE, "num_keypoints": ann["num_keypoints"],
            "keypoints": internal_keypoints(ann["keypoints"])}


def _is_close(centre, accepted) -> bool:
    return any(((centre[0] - a[0]) ** 2 + (centre[1] - a[1]) ** 2) ** 0.5 < a[2] * MIN_CENTRE_DISTANCE
               for a in accepted)


def prepare_labels(data: dict, source: str = "annotations") -> list[dict]:
    """The prepared labels of a COCO person-keypoint annotation dict (annotation order is kept)."""
    for key in ("images", "annotations"):
        if not isinstance(data, dict) or key not in data:
            raise LabelError(f"{source}: not a COCO annotation file (no '{key}' list)")
    images = {img["id"]: img for img in data["images"]}
    people, crowds = {}, {}
    for ann in data["annotations"]:
        if ann.get("iscrowd"):
            crowds.setdefault(ann["image_id"], []).append(ann["segmentation"])
        elif ann.get("num_keypoints", 0) != 0:
            people.setdefault(ann["image_id"], []).append(ann)
    labels = []
    for image_id, anns in people.items():
        if image_id not in images:
            raise LabelError(f"{source}: annotation refers to image {image_id}, which is not in 'images'")
        img, accepted = images[image_id], []
        for ann in anns:
            if ann["num_keypoints"] < MIN_MAIN_KEYPOINTS or ann["area"] < MIN_MAIN_AREA:
                continue
            main = _person(ann)
            if _is_close(main["objpos"], accepted):
                continue
            main.update(img_paths=img["file_name"], img_width=img["width"], img_height=img["height"],
                        image_id=image_id, segmentations=crowds.get(image_id, []))
            main["processed_other_annotations"] = [_person(o) for o in anns if o is not ann]
            labels.append(main)
            accepted.append((*main["objpos"], ann["bbox"][2], ann["bbox"][3]))
    return labels


def read_coco(path: Path) -> dict:
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise LabelError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as e:
        raise LabelError(f"{path}: not valid JSON ({e})") from None


def load_labels(path: Path) -> list[dict]:
    """Prepared labels from a file written by ``save_labels``, or prepared now from a COCO annotation file."""
    data = read_coco(path)
    if isinstance(data, dict):
        labels = prepare_labels(data, str(path))
    elif isinstance(data, list) and all(isinstance(r, dict) and "keypoints" in r for r in data):
        labels = data
    else:
        raise LabelError(f"{path}: neither a COCO annotation file nor prepared labels")
    if not labels:
        raise LabelError(f"{path}: holds no person with >= {MIN_MAIN_KEYPOINTS} keypoints and area >= 32^2")
    return labels


def save_labels(labels: list[dict], path: Path) -> None:
    # JSON, not the upstream pickle: a label file should never be able to run code when read.
    Path(path).write_text(json.dumps(labels))


def val_subset(data: dict, size: int = VAL_SUBSET_SIZE) -> dict:
    """The port's quick-validation subset: random.seed(0), shuffled image order, the first ``size`` images."""
    order = list(range(len(data["images"])))
    random.Random(0).shuffle(order)  # the same draw as random.seed(0); random.shuffle, without global state
    images = [data["images"][i] for i in order[:size]]
    ids = {img["id"] for img in images}
    return {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
