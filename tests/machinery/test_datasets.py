"""Datasets (COCO layout, discovery, synthetic generation) and the COCO keypoint metrics."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from posegate.datasets import KINDS, synthetic
from posegate.datasets.base import Dataset
from posegate.datasets.coco import ANNOTATION_FILE, CocoKeypointDataset, DatasetError, recognise
from posegate.datasets.discovery import discover
from posegate.metrics.coco_ap import agreement_ap, evaluate_keypoints

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("POSEGATE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
MINI = SHARED_DATA / "coco-val2017-mini"
SUBSET250 = SHARED_DATA / "coco-val2017-subset250"

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                  reason=f"shared data not found at {SHARED_DATA} (set POSEGATE_SHARED_DATA)")
pytestmark = pytest.mark.stage


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return synthetic.generate(tmp_path_factory.mktemp("synthetic") / "set", num_images=4, seed=0)


@pytest.fixture
def synthetic_copy(synthetic_root, tmp_path) -> Path:
    return Path(shutil.copytree(synthetic_root, tmp_path / "copy"))


def ground_truth_as_results(dataset) -> list[dict]:
    return [{"image_id": ann["image_id"], "category_id": 1, "score": 1.0,
             "keypoints": [float(v) for v in ann["keypoints"]]}
            for image_id in dataset.image_ids for ann in dataset.annotations(image_id) if ann["num_keypoints"]]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# Real data -------------------------------------------------------------------------------------

@needs_shared
def test_mini_set_is_recognised_with_images():
    dataset = recognise(MINI)
    assert dataset is not None and dataset.has_images and not dataset.is_official
    assert dataset.image_ids == [785, 40083, 196141, 197388]
    assert dataset.identity.startswith("coco-val2017-mini@") and dataset.identity.endswith(":4img")
    assert dataset.detections_file is not None and len(dataset.load_detections()) == 118
    for image_id in dataset.image_ids:
        info = dataset.image_info(image_id)
        assert dataset.load_image(image_id).shape == (info.height, info.width, 3)


@needs_shared
def test_subset250_is_recognised_as_annotations_only():
    dataset = recognise(SUBSET250)
    assert dataset is not None and not dataset.has_images and dataset.detections_file is None
    assert len(dataset.image_ids) == 250 and dataset.identity.endswith(":250img")
    assert sum(len(dataset.annotations(i)) for i in dataset.image_ids) == 519


@needs_shared
@pytest.mark.parametrize("folder", ["golden", "h36m-cameras", "manifests", "weights"])
def test_unrelated_folders_are_not_recognised(folder):
    assert recognise(SHARED_DATA / folder) is None


@needs_shared
def test_discovery_finds_exactly_the_coco_sets():
    assert [d.name for d in discover(SHARED_DATA)] == ["coco-val2017-mini", "coco-val2017-subset250"]


def test_discovery_of_a_missing_root_raises(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        discover(tmp_path / "nowhere")


def test_discovery_recognises_a_dataset_by_content(synthetic_copy, tmp_path):
    renamed = synthetic_copy.rename(tmp_path / "anything")
    (tmp_path / "empty").mkdir()
    assert [d.name for d in discover(tmp_path)] == ["anything"]
    assert [d.name for d in discover(renamed)] == ["anything"]


# Errors ----------------------------------------------------------------------------------------

def _write_annotations(root: Path, content) -> None:
    path = root / ANNOTATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))


_IMAGE = {"id": 1, "file_name": "000000000001.jpg", "height": 10, "width": 10}
_BAD_ANNOTATIONS = {
    "not-json": "this is not json",
    "truncated-json": '{"images": [{"id": 1, "file_na',
    "instances": {"images": [_IMAGE], "categories": [{"id": 1, "name": "person"}],
                  "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]},
    "captions": {"images": [_IMAGE], "annotations": [{"id": 1, "image_id": 1, "caption": "a person"}]},
    "results-list": [{"image_id": 1, "category_id": 1, "keypoints": [0] * 51, "score": 0.9}],
    "missing-categories": {"images": [_IMAGE], "annotations": []},
}


@pytest.mark.parametrize("content", _BAD_ANNOTATIONS.values(), ids=_BAD_ANNOTATIONS.keys())
def test_bad_annotation_file_raises_naming_it(tmp_path, content):
    _write_annotations(tmp_path, content)
    with pytest.raises(DatasetError, match="person_keypoints_val2017.json"):
        recognise(tmp_path)


def test_missing_annotation_file_raises_naming_it(tmp_path):
    with pytest.raises(DatasetError, match="person_keypoints_val2017.json.*missing"):
        CocoKeypointDataset(tmp_path)


def _remove(path: Path) -> None:
    path.unlink()


def _garble(path: Path) -> None:
    path.write_bytes(b"not an image at all" * 10)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _resize(path: Path) -> None:
    cv2.imwrite(str(path), np.zeros((20, 30, 3), np.uint8))


@pytest.mark.parametrize("damage, problem", [(_remove, "missing"), (_garble, "cannot be decoded"),
                                             (_truncate, "truncated"), (_resize, "differs")],
                         ids=["missing", "corrupt", "truncated", "wrong-size"])
def test_damaged_image_raises_naming_it(synthetic_copy, damage, problem):
    damage(synthetic_copy / "val2017" / "000000000002.jpg")
    if damage is _remove:  # a listed image that is absent is refused when the folder is read
        with pytest.raises(DatasetError, match="1 of the 4 images listed .* missing: 000000000002.jpg"):
            CocoKeypointDataset(synthetic_copy)
        return
    dataset = CocoKeypointDataset(synthetic_copy)
    dataset.load_image(1)
    with pytest.raises(DatasetError, match=f"000000000002.jpg.*{problem}"):
        dataset.load_image(2)


@pytest.mark.parametrize("content", [{"image_id": 1}, [{"image_id": 1, "category_id": 1, "score": 0.5}],
                                     [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 0.5}]],
                         ids=["dict", "no-bbox", "short-bbox"])
def test_bad_detections_file_raises_naming_it(synthetic_copy, content):
    (synthetic_copy / "detections" / "person_detections.json").write_text(json.dumps(content))
    with pytest.raises(DatasetError, match="person_detections.json"):
        CocoKeypointDataset(synthetic_copy).load_detections()


# Synthetic data --------------------------------------------------------------------------------

def test_synthetic_generation_is_deterministic(synthetic_root, tmp_path):
    again = synthetic.generate(tmp_path / "again", num_images=4, seed=0)
    assert tree_bytes(again) == tree_bytes(synthetic_root)
    assert tree_bytes(synthetic.generate(tmp_path / "other", num_images=4, seed=1)) != tree_bytes(again)


def test_synthetic_set_is_valid_and_scores_itself_perfectly(synthetic_root):
    dataset = recognise(synthetic_root)
    assert dataset.has_images and len(dataset.load_detections()) == len(dataset.coco.anns)
    for image_id in dataset.image_ids:
        info = dataset.image_info(image_id)
        assert dataset.load_image(image_id).shape == (info.height, info.width, 3)
        assert 1 <= len(dataset.annotations(image_id)) <= 3
    score = evaluate_keypoints(dataset, ground_truth_as_results(dataset))
    assert score.ap == pytest.approx(1.0) and score.num_images == 4


def test_synthetic_generate_keeps_a_complete_set_and_refuses_foreign_folders(synthetic_copy, tmp_path):
    stamp = (synthetic_copy / ANNOTATION_FILE).stat().st_mtime_ns
    synthetic.generate(synthetic_copy, num_images=4, seed=0)
    assert (synthetic_copy / ANNOTATION_FILE).stat().st_mtime_ns == stamp
    synthetic.generate(synthetic_copy, num_images=2, seed=0)
    assert len(recognise(synthetic_copy).image_ids) == 2
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("user data")
    with pytest.raises(DatasetError, match="foreign"):
        synthetic.generate(tmp_path / "foreign")


def test_concurrent_generation_yields_one_valid_set(tmp_path):
    root = tmp_path / "shared-set"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=synthetic.generate, args=(root, 3, 7)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["shared-set"]
    assert recognise(root).has_images and len(recognise(root).image_ids) == 3


def test_every_kind_is_a_dataset_counted_by_its_units(tmp_path):
    """The shared surface (name, root, len, identity, official) holds for every kind, drawn synthetically."""
    for kind in KINDS.values():
        dataset = kind.synthetic(tmp_path / kind.name, None)
        assert isinstance(dataset, Dataset) and dataset.kind == kind.name
        assert len(dataset) == len(dataset.units) > 0 and not dataset.is_official and dataset.has_inputs
        assert dataset.name == dataset.root.name and dataset.identity.startswith(f"{dataset.name}@")
        assert repr(dataset) == f"{type(dataset).__name__}({dataset.root})"


# Metrics ---------------------------------------------------------------------------------------

def test_empty_results_score_zero(synthetic_root):
    score = evaluate_keypoints(synthetic_root / ANNOTATION_FILE, [])
    assert score.ap == 0.0 and score.num_results == 0


def test_malformed_results_are_rejected(synthetic_root):
    with pytest.raises(ValueError, match="51"):
        evaluate_keypoints(synthetic_root / ANNOTATION_FILE,
                           [{"image_id": 1, "category_id": 1, "keypoints": [0.0] * 50, "score": 1.0}])
    with pytest.raises(ValueError, match="image_id 999"):
        evaluate_keypoints(synthetic_root / ANNOTATION_FILE,
                           [{"image_id": 999, "category_id": 1, "keypoints": [0.0] * 51, "score": 1.0}])


def test_agreement_ap_is_one_for_identical_and_lower_for_perturbed(synthetic_root):
    dataset = recognise(synthetic_root)
    reference = ground_truth_as_results(dataset)
    sizes = {i: dataset.image_info(i) for i in dataset.image_ids}
    assert agreement_ap(reference, reference, dataset.image_ids, sizes) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    shifted = []
    for result in reference:
        points = np.asarray(result["keypoints"]).reshape(17, 3)
        found = (points[:, :2] != 0).any(axis=1)
        points[found, :2] += rng.normal(0.0, 25.0, size=(found.sum(), 2))
        shifted.append(dict(result, keypoints=points.ravel().tolist()))
    assert agreement_ap(reference, shifted, dataset.image_ids, sizes) < 0.5
    assert agreement_ap([], reference, dataset.image_ids, sizes) is None
