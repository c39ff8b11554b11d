"""Task metrics behind one interface: a value with a direction, and agreement between two backends.

``direction`` reads as a Threshold's: "min" when the value has a floor (AP, higher is better) and
"max" when it has a ceiling (MPJPE, lower is better). ``agreement`` scores a backend's results against the
reference backend's own results, which isolates the conversion from the weights.
"""
from __future__ import annotations

import numpy as np

from posegate.datasets.h36m import PARENTS
from posegate.metrics.coco_ap import agreement_ap, evaluate_keypoints
from posegate.metrics.mpjpe import evaluate_sequences, prediction_distance
from posegate.metrics.score import Score
from posegate.metrics.visuals import save_worst_frames, save_worst_images


class CocoAP:
    name, unit, direction = "AP", "", "min"
    agreement_name, agreement_direction = "agreement AP", "min"

    def evaluate(self, dataset, results, samples=None) -> Score:
        """``samples``: score only these images (a stratum); default every image of the dataset."""
        s = evaluate_keypoints(dataset, results, samples)
        return Score(s.ap, {"AP50": s.ap50, "AP75": s.ap75, "AR": s.ar, "images": s.num_images}, s.num_results)

    def agreement(self, reference, results, dataset) -> float | None:
        """None when the reference finds nobody: there is nothing to agree with."""
        ids = dataset.image_ids
        return agreement_ap(reference, results, ids, {i: dataset.image_info(i) for i in ids})

    def save_visuals(self, dataset, results, folder, label) -> list[str]:
        """The lowest-OKS images with predicted and ground-truth skeletons (images needed)."""
        if not dataset.has_inputs:
            return []
        return save_worst_images(dataset, results, folder, label)


class Mpjpe:
    name, unit, direction = "MPJPE", "mm", "max"
    agreement_name, agreement_direction = "MPJPE to reference", "max"

    def evaluate(self, dataset, results) -> Score:
        return evaluate_sequences(dataset, results)

    def agreement(self, reference, results, dataset) -> float | None:
        return prediction_distance(reference, results)

    def save_visuals(self, dataset, results, folder, label) -> list[str]:
        """The worst-MPJPE frames, predicted and ground-truth skeletons from the front and the side."""
        by_key = {tuple(r["key"]): np.asarray(r["poses_3d"]) for r in results}
        pairs = [(" ".join(map(str, k)), by_key[tuple(k)], dataset.targets(k)) for k in dataset.sequences
                 if tuple(k) in by_key]
        return save_worst_frames(pairs, folder, PARENTS)


METRICS = {m.name: m for m in (CocoAP(), Mpjpe())}


def margin(value: float, bound: float, direction: str) -> float:
    """Positive when ``value`` respects ``bound``: a floor for "min", a ceiling for "max"."""
    return value - bound if direction == "min" else bound - value
