"""The top-down flow: which person boxes become samples, and what its results are held to."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from posegate.flows.kinds import MissingData, TopDown

STAGE = "preprocess"
pytestmark = pytest.mark.stage


class _Dataset:
    root = Path("/data/people")

    def __init__(self, detections, annotations):
        self.image_ids = [1, 2]
        self.detections_file = Path("/data/people/detections/d.json") if detections is not None else None
        self._detections, self._annotations = detections, annotations

    def load_detections(self):
        return self._detections

    def annotations(self, image_id):
        return [a for a in self._annotations if a["image_id"] == image_id]


# keeps TopDown's codec contract (posegate.flows.codec_contracts.TopDownCodec); these tests never decode
_CODEC = SimpleNamespace(preprocess_crops=lambda raws, profile: (np.zeros((0,)), []),
                         decode_crops=lambda output, records: [], encode_ground_truth=lambda a, h, w, i: (None, []))


def _det(image_id, score, category=1):
    return {"image_id": image_id, "category_id": category, "bbox": [1, 2, 30, 40], "score": score}


def test_every_person_detection_of_a_known_image_is_a_sample_best_first():
    dets = [_det(2, 0.9), _det(1, 0.01), _det(1, 0.7), _det(1, 0.95, category=3), _det(5, 0.99), _det(2, 0.3)]
    samples = TopDown(_CODEC, "out").samples(_Dataset(dets, []), None, {})
    # no score threshold, other categories and unknown images dropped, by image then score
    assert [(s["image_id"], s["score"]) for s in samples] == [(1, 0.7), (1, 0.01), (2, 0.9), (2, 0.3)]


def test_ground_truth_boxes_skip_crowds_and_people_without_keypoints():
    anns = [{"image_id": 1, "bbox": [0, 0, 10, 20], "iscrowd": 0, "num_keypoints": 3},
            {"image_id": 1, "bbox": [0, 0, 10, 20], "iscrowd": 1, "num_keypoints": 3},
            {"image_id": 2, "bbox": [5, 5, 10, 20], "iscrowd": 0, "num_keypoints": 0},
            {"image_id": 2, "bbox": [5, 5, 0, 20], "iscrowd": 0, "num_keypoints": 2},
            {"image_id": 2, "bbox": [7, 7, 10, 20], "iscrowd": 0, "num_keypoints": 1}]
    samples = TopDown(_CODEC, "out").samples(_Dataset(None, anns), None, {"boxes": "ground-truth"})
    assert [(s["image_id"], s["bbox"][0], s["score"]) for s in samples] == [(1, 0, 1.0), (2, 7, 1.0)]


def test_missing_detection_file_names_the_folder_and_the_alternative():
    with pytest.raises(MissingData, match=r"/data/people/detections/.*--boxes=ground-truth"):
        TopDown(_CODEC, "out").samples(_Dataset(None, []), None, {})


def test_the_profile_names_the_codecs_recipe():
    seen = []
    codec = SimpleNamespace(**{**vars(_CODEC),
                               "preprocess_crops": lambda raws, name: seen.append(name) or (np.zeros((1,)), [])})
    TopDown(codec, "out").preprocess([], SimpleNamespace(preprocess="upstream"))
    assert seen == ["upstream"]


def test_keypoints_are_held_to_the_crop_not_the_image():
    rec = SimpleNamespace(image_id=1, orig_w=100, orig_h=100, window=(-20.0, -10.0, 120.0, 130.0))
    kp = np.tile([50.0, 50.0, 0.9], (17, 1))
    kp[0, :2] = (-15, 125)  # beyond the image, inside the crop: upstream does not clip
    ok = {"image_id": 1, "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 0.5}
    flow = TopDown(_CODEC, "out")
    assert flow.check_results([ok], [rec], [{}]) == []
    kp[1, :2] = (-25, 50)
    bad = {**ok, "keypoints": kp.ravel().tolist()}
    assert any("crop window" in p for p in flow.check_results([bad], [rec], [{}]))
    assert any("2 boxes" in p for p in flow.check_results([ok], [rec], [{}, {}]))
