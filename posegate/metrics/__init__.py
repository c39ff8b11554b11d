"""Task metrics behind one interface: a value with a direction, and agreement between two backends.

``direction`` reads as a Threshold's: "min" when the value has a floor (AP, higher is better) and
"max" when it has a ceiling (MPJPE, lower is better). ``agreement`` scores a backend's results against the
reference backend's own results, which isolates the conversion from the weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Score:
    value: float
    details: dict = field(default_factory=dict)
    count: int = 0  # people or frames scored


class CocoAP:
    name, unit, direction = "AP", "", "min"
    agreement_name, agreement_direction = "agreement AP", "min"

    def evaluate(self, dataset, results, samples=None) -> Score:
        """``samples``: score only these images (a stratum); default every image of the dataset."""
        from posegate.metrics.coco_ap import evaluate_keypoints
        s = evaluate_keypoints(dataset, results, samples)
        return Score(s.ap, {"AP50": s.ap50, "AP75": s.ap75, "AR": s.ar, "images": s.num_images}, s.num_results)

    def agreement(self, reference, results, dataset) -> float | None:
        """None when the reference finds nobody: there is nothing to agree with."""
        from posegate.metrics.coco_ap import agreement_ap
        ids = dataset.image_ids
        return agreement_ap(reference, results, ids, {i: dataset.image_info(i) for i in ids})


class Mpjpe:
    name, unit, direction = "MPJPE", "mm", "max"
    agreement_name, agreement_direction = "MPJPE to reference", "max"

    def evaluate(self, dataset, results) -> Score:
        from posegate.metrics.mpjpe import evaluate_sequences
        return evaluate_sequences(dataset, results)

    def agreement(self, reference, results, dataset) -> float | None:
        from posegate.metrics.mpjpe import prediction_distance
        return prediction_distance(reference, results)


METRICS = {m.name: m for m in (CocoAP(), Mpjpe())}


def margin(value: float, bound: float, direction: str) -> float:
    """Positive when ``value`` respects ``bound``: a floor for "min", a ceiling for "max"."""
    return value - bound if direction == "min" else bound - value
