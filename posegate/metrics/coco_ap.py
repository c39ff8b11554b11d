"""COCO keypoint AP (COCOeval 'keypoints', stats[0] at maxDets 20) and backend agreement AP."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posegate.datasets.coco import KEYPOINT_NAMES, PERSON_CATEGORY, build_coco, read_annotation_file

NUM_VALUES = 3 * len(KEYPOINT_NAMES)
MAX_DETS = 20  # COCOeval's keypoint setting: only an image's 20 best-scored people count
MIN_AGREEMENT_AREA = 32.0 * 32.0


class EvaluationError(ValueError):
    """Results or image ids that cannot be scored against the ground truth."""


@dataclass(frozen=True)
class KeypointScore:
    ap: float
    ap50: float
    ap75: float
    ar: float
    stats: tuple[float, ...]
    num_images: int
    num_results: int


def evaluate_keypoints(dataset_or_annotation_file, results: list[dict],
                       image_ids: list[int] | None = None) -> KeypointScore:
    """Score keypoint results against a dataset, an annotation file or a pycocotools COCO."""
    gt, source = _ground_truth(dataset_or_annotation_file)
    known = set(gt.getImgIds())
    ids = sorted(known) if image_ids is None else sorted({int(i) for i in image_ids})
    if not ids:
        raise EvaluationError(f"{source}: no image ids to evaluate")
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise EvaluationError(f"{source}: image ids {unknown[:5]} are not in the ground truth")
    cleaned = _clean_results(results, known, source)
    selected = set(ids)
    stats = _cocoeval(gt, cleaned, ids)
    return KeypointScore(ap=stats[0], ap50=stats[1], ap75=stats[2], ar=stats[5], stats=tuple(stats),
                         num_images=len(ids), num_results=sum(r["image_id"] in selected for r in cleaned))


def agreement_ap(reference_results: list[dict], results: list[dict], image_ids: list[int],
                 image_sizes: Mapping) -> float | None:
    """AP of ``results`` scored with ``reference_results`` as the ground truth; None if it has no person.

    This isolates the conversion: it says how closely a backend reproduces the reference backend's
    predictions, whatever the weights. ``image_sizes`` maps image id to (height, width) or to an
    object with ``height`` and ``width``.
    """
    ids = sorted({int(i) for i in image_ids})
    missing = [i for i in ids if i not in image_sizes]
    if missing:
        raise EvaluationError(f"image_sizes lacks image ids {missing[:5]}")
    references = _clean_results(reference_results, set(ids), "reference results")
    gt_data = {
        "images": [_image_record(i, image_sizes[i]) for i in ids],
        "annotations": _reference_annotations(references),
        "categories": [PERSON_CATEGORY],
    }
    if not any(ann["num_keypoints"] for ann in gt_data["annotations"]):
        return None
    return evaluate_keypoints(build_coco(gt_data), results, ids).ap


def _ground_truth(source) -> tuple[COCO, str]:
    if isinstance(source, COCO):
        return source, "ground truth"
    if hasattr(source, "coco") and hasattr(source, "annotation_file"):
        return source.coco, str(source.annotation_file)
    if isinstance(source, (str, Path)):
        return build_coco(read_annotation_file(Path(source))[0]), str(source)
    raise TypeError(f"expected a dataset, an annotation file or a COCO, got {type(source).__name__}")


def _clean_results(results, image_ids: set[int], source: str) -> list[dict]:
    """Checked copies holding only the result fields, so loadRes takes its keypoint branch."""
    if not isinstance(results, (list, tuple)):
        raise EvaluationError(f"results for {source} must be a list of dicts, got {type(results).__name__}")
    cleaned = []
    for index, result in enumerate(results):
        where = f"result #{index} for {source}"
        if not isinstance(result, Mapping):
            raise EvaluationError(f"{where} is a {type(result).__name__}, not a dict")
        absent = [k for k in ("image_id", "category_id", "keypoints", "score") if k not in result]
        if absent:
            raise EvaluationError(f"{where} lacks {', '.join(absent)}")
        image_id = result["image_id"]
        if not isinstance(image_id, (int, np.integer)) or int(image_id) not in image_ids:
            raise EvaluationError(f"{where} has image_id {image_id!r}, which is not among the ground truth's images")
        if result["category_id"] != 1:
            raise EvaluationError(f"{where} has category_id {result['category_id']!r}; person is 1")
        try:
            keypoints = np.asarray(result["keypoints"], dtype=np.float64).ravel()
            score = float(result["score"])
        except (TypeError, ValueError):
            raise EvaluationError(f"{where} has non-numeric keypoints or score") from None
        if keypoints.size != NUM_VALUES or not np.isfinite(keypoints).all() or not math.isfinite(score):
            raise EvaluationError(f"{where} needs {NUM_VALUES} finite keypoint values (17 x [x, y, score]) and "
                                  f"a finite score; got {keypoints.size} values, score {score}")
        cleaned.append({"image_id": int(image_id), "category_id": 1, "keypoints": keypoints.tolist(), "score": score})
    return cleaned


def _cocoeval(gt: COCO, results: list[dict], image_ids: list[int]) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        # loadRes cannot take an empty list; an empty result set over the same images scores 0.
        dt = gt.loadRes(results) if results else _empty_results(gt)
        evaluator = COCOeval(gt, dt, "keypoints")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(s) for s in evaluator.stats]


def _empty_results(gt: COCO) -> COCO:
    return build_coco({"images": list(gt.dataset["images"]), "annotations": [],
                       "categories": list(gt.dataset["categories"])})


def _image_record(image_id: int, size) -> dict:
    height, width = (size.height, size.width) if hasattr(size, "height") else size
    return {"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": int(height), "width": int(width)}


def _reference_annotations(references: list[dict]) -> list[dict]:
    by_image: dict[int, list[dict]] = {}
    for result in references:
        by_image.setdefault(result["image_id"], []).append(result)
    annotations = []
    for image_id in sorted(by_image):
        # COCOeval only ever looks at an image's 20 best results, so reference people beyond those
        # would be unmatchable ground truth; the stable sort picks the same 20 COCOeval picks.
        ranked = sorted(by_image[image_id], key=lambda r: -r["score"])[:MAX_DETS]
        for result in ranked:
            annotations.append(_reference_person(result, len(annotations) + 1))
    return annotations


def _reference_person(result: dict, ann_id: int) -> dict:
    points = np.asarray(result["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
    found = (points != 0).any(axis=1)
    keypoints = np.zeros((len(points), 3))
    keypoints[found, :2] = points[found]
    keypoints[found, 2] = 2
    if found.any():
        (x0, y0), (x1, y1) = points[found].min(axis=0), points[found].max(axis=0)
    else:
        x0 = y0 = x1 = y1 = 0.0
    # A floor on the area keeps the OKS scale usable for people found by one or two keypoints.
    area = max((x1 - x0) * (y1 - y0), MIN_AGREEMENT_AREA)
    return {
        "id": ann_id, "image_id": result["image_id"], "category_id": 1, "iscrowd": 0,
        "keypoints": keypoints.ravel().tolist(), "num_keypoints": int(found.sum()),
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "area": float(area),
    }
