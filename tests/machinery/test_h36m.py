"""Human3.6M reading (VideoPose3D's formats and protocol) and the synthetic set that stands in for it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from models import MODELS
from posegate.datasets import h36m_synthetic
from posegate.datasets.coco import DatasetError
from posegate.datasets.discovery import discover
from posegate.datasets.h36m import (
    CAMERA_IDS,
    FILE_2D_CPN,
    FILE_2D_GT,
    FILE_3D,
    KEPT_JOINTS,
    H36mDataset,
    image_coordinates,
    normalize_screen_coordinates,
    project_to_2d,
    read_cameras,
    recognise,
    world_to_camera,
)
from posegate.storage import safe_npz

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("POSEGATE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
PUBLISHED = SHARED_DATA / "h36m-cameras" / "cameras.json"
pytestmark = pytest.mark.stage
needs_cameras = pytest.mark.skipif(not PUBLISHED.is_file(), reason=f"supply the published cameras at {PUBLISHED}")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> H36mDataset:
    reference = SHARED_DATA if PUBLISHED.is_file() else None
    return H36mDataset(h36m_synthetic.generate(tmp_path_factory.mktemp("h36m") / "set", reference))


@pytest.fixture
def copy(synthetic, tmp_path) -> Path:
    return Path(shutil.copytree(synthetic.root, tmp_path / "copy"))


def _rewrite(path: Path, field: str, edit) -> None:
    objects = {k: v.item() for k, v in safe_npz.load(path).items()}
    edit(objects[field])
    h36m_synthetic._save_npz(path, **objects)


def test_joint_reduction_keeps_the_facts_17():
    assert len(KEPT_JOINTS) == 17 and KEPT_JOINTS[:4] == (0, 1, 2, 3) and KEPT_JOINTS[-3:] == (25, 26, 27)


def test_screen_normalisation_and_back():
    px = np.array([[500.0, 501.0], [0.0, 0.0], [1000.0, 1002.0]])
    norm = normalize_screen_coordinates(px, 1000, 1002)
    np.testing.assert_allclose(norm, [[0, 0], [-1, -1.002], [1, 1.002]], atol=1e-6)
    np.testing.assert_allclose(image_coordinates(norm, 1000, 1002), px, atol=1e-3)


@needs_cameras
def test_published_cameras_see_a_person_in_the_middle_of_the_room():
    cams = read_cameras(PUBLISHED)
    body = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.7]])  # feet and head top at the world origin
    for subject in ("S9", "S11"):
        for cam_id in CAMERA_IDS:
            cam = cams[(subject, cam_id)]
            local = world_to_camera(body, cam)
            px = project_to_2d(local, cam)
            assert (local[:, 2] > 2).all(), f"{subject}_{cam_id}: person behind the camera"
            assert (px >= 0).all() and (px[:, 0] <= cam.w).all() and (px[:, 1] <= cam.h).all(), px
            assert px[1, 1] < px[0, 1], f"{subject}_{cam_id}: head below the feet"


def test_synthetic_set_is_deterministic(synthetic, tmp_path):
    again = h36m_synthetic.generate(tmp_path / "again", SHARED_DATA if PUBLISHED.is_file() else None)
    for name in (FILE_3D, FILE_2D_CPN, "cameras.json"):
        assert (again / name).read_bytes() == (synthetic.root / name).read_bytes(), name


def test_discovery_finds_the_set_by_its_files(copy, tmp_path):
    renamed = copy.rename(tmp_path / "anything")
    found = discover(tmp_path)
    assert [(d.kind, d.name) for d in found] == [("h36m", "anything")]
    assert found[0].keypoints == "cpn_ft_h36m_dbb" and not found[0].is_official
    assert recognise(renamed / "..") is None


def test_sequences_are_the_test_subjects_in_every_camera(synthetic):
    keys = synthetic.sequences
    assert {s for s, _, _ in keys} == {"S9", "S11"}  # S1 trains
    assert len(keys) == 4 * len({(s, a) for s, a, _ in keys})
    assert keys == sorted(keys, key=lambda k: (("S9", "S11").index(k[0]), k[1], k[2]))
    assert synthetic.identity.endswith(f":cpn_ft_h36m_dbb:{len(keys)}seq")


def test_2d_is_truncated_to_the_mocap_length_and_normalised(synthetic):
    raw = safe_npz.load(synthetic.root / FILE_2D_CPN)["positions_2d"].item()
    longer = 0
    for key in synthetic.sequences:
        subject, action, cam = key
        x, y = synthetic.inputs(key), synthetic.targets(key)
        assert x.shape == (len(y), 17, 2) and x.dtype == np.float32
        longer += len(raw[subject][action][cam]) > len(y)
        c = synthetic.camera(subject, cam)
        np.testing.assert_allclose(x, normalize_screen_coordinates(raw[subject][action][cam][:len(y)], c.w, c.h),
                                   atol=1e-6)
    assert longer, "the synthetic set must exercise truncation"


def test_targets_are_camera_space_root_relative(synthetic):
    key = synthetic.sequences[5]
    subject, action, cam_index = key
    y = synthetic.targets(key)
    assert (y[:, 0] == 0).all()
    world = safe_npz.load(synthetic.root / FILE_3D)["positions_3d"].item()[subject][action][:, KEPT_JOINTS]
    cam = synthetic.camera(subject, cam_index)
    local = (world - cam.T) @ cam.R
    np.testing.assert_allclose(y[:, 1:], local[:, 1:] - local[:, :1], atol=1e-5)
    # a rotation keeps bone lengths
    np.testing.assert_allclose(np.linalg.norm(y[:, 2] - y[:, 1], axis=-1),
                               np.linalg.norm(world[:, 2] - world[:, 1], axis=-1), atol=1e-5)


def test_2d_inputs_are_the_3d_motion_seen_by_the_camera(synthetic):
    """2D and 3D agree within the synthetic detection noise (1.5 px)."""
    for key in synthetic.sequences[::3]:
        subject, action, cam_index = key
        cam = synthetic.camera(subject, cam_index)
        world = safe_npz.load(synthetic.root / FILE_3D)["positions_3d"].item()[subject][action][:, KEPT_JOINTS]
        px = project_to_2d(world_to_camera(world, cam), cam)
        seen = image_coordinates(synthetic.inputs(key), cam.w, cam.h)
        assert np.abs(seen - px).mean() < 2.0
        assert (px > 0).all() and (px[..., 0] < cam.w).all() and (px[..., 1] < cam.h).all()


def test_generated_cameras_stand_in_without_the_published_ones(tmp_path):
    ds = H36mDataset(h36m_synthetic.generate(tmp_path / "gen", reference_dir=None))
    cams = json.loads((ds.root / "cameras.json").read_text())
    if PUBLISHED.is_file():
        assert cams["S9_54138969"]["R"] != json.loads(PUBLISHED.read_text())["S9_54138969"]["R"]
    for key in ds.sequences:
        x = ds.inputs(key)
        assert np.abs(x[..., 0]).max() < 1 and np.isfinite(ds.targets(key)).all()


def test_the_discarded_take_is_left_out(copy):
    _rewrite(copy / FILE_3D, "positions_3d", lambda d: d["S11"].__setitem__("Directions", d["S11"]["Photo"]))
    _rewrite(copy / FILE_2D_CPN, "positions_2d", lambda d: d["S11"].__setitem__("Directions", d["S11"]["Photo"]))
    assert not any(a == "Directions" for s, a, _ in H36mDataset(copy).sequences if s == "S11")


def test_ground_truth_2d_is_read_but_not_official(copy):
    (copy / FILE_2D_CPN).rename(copy / FILE_2D_GT)
    ds = recognise(copy)
    assert ds.keypoints == "gt" and ds.inputs(ds.sequences[0]).shape[1:] == (17, 2)
    problem = MODELS["videopose3d_243"].flow.official_problem(ds, {})
    assert problem and FILE_2D_CPN in problem


def test_2d_shorter_than_the_mocap_raises_naming_the_file(copy, synthetic):
    subject, action, cam = synthetic.sequences[0]
    _rewrite(copy / FILE_2D_CPN, "positions_2d",
             lambda d: d[subject][action].__setitem__(cam, d[subject][action][cam][:10]))
    with pytest.raises(DatasetError, match=rf"{FILE_2D_CPN}: {subject} '{action}' camera {cam} has 10 frames"):
        H36mDataset(copy).inputs((subject, action, cam))


def test_missing_2d_file_raises_naming_what_to_supply(copy):
    (copy / FILE_2D_CPN).unlink()
    with pytest.raises(DatasetError, match=FILE_2D_CPN):
        recognise(copy)


def test_missing_cameras_raise_naming_the_file(copy):
    (copy / "cameras.json").unlink()
    with pytest.raises(DatasetError, match="cameras.json"):
        H36mDataset(copy).targets(H36mDataset(copy).sequences[0])


def test_missing_views_raise(copy):
    _rewrite(copy / FILE_2D_CPN, "positions_2d", lambda d: d["S9"].pop(sorted(d["S9"])[0]))
    with pytest.raises(DatasetError, match="no 2D views"):
        _ = H36mDataset(copy).sequences  # the property reads the files


def test_damaged_npz_raises_naming_it(copy):
    (copy / FILE_3D).write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DatasetError, match=FILE_3D):
        _ = H36mDataset(copy).sequences  # the property reads the files


def test_camera_file_without_rotations_raises(tmp_path):
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps({"S9_54138969": {"R": [[2, 0, 0], [0, 1, 0], [0, 0, 1]], "T": [0, 0, 0], "c": [0, 0],
                                                "f": [1, 1], "k": [0, 0, 0], "p": [0, 0], "w": 10, "h": 10}}))
    with pytest.raises(DatasetError, match="no rotation"):
        read_cameras(path)
    path.write_text("[]")
    with pytest.raises(DatasetError, match="not a Human3.6M camera file"):
        read_cameras(path)


class _RunsCode:
    """Pickles as a call of os.system: what a crafted npz would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_npz_payload_does_not_run(copy, tmp_path):
    marker = tmp_path / "payload-ran"
    h36m_synthetic._save_npz(copy / FILE_3D, positions_3d={"S9": {"Walking": _RunsCode(marker)}})
    with pytest.raises(DatasetError, match="refused to load.*refused global posix.system"):
        _ = H36mDataset(copy).sequences  # the property reads the files
    assert not marker.exists(), "the npz payload ran when the dataset was read"
    # the same stream through numpy's own loader does run it: the test's payload is real
    # allow_pickle only in this control case, on the test's own file
    with np.load(copy / FILE_3D, allow_pickle=True) as z:
        _ = z["positions_3d"]
    assert marker.exists()
