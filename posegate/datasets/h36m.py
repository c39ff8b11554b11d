"""Human3.6M as VideoPose3D evaluates it: npz poses, published cameras, test subjects S9 and S11.

A folder is a Human3.6M set when it holds ``data_3d_h36m.npz`` and a 2D file (the CPN detections
``data_2d_h36m_cpn_ft_h36m_dbb.npz``, else the ground-truth ``data_2d_h36m_gt.npz``). The npz files
hold pickled dicts (subject -> action -> arrays), as upstream writes them; they are read by
``posegate.storage.safe_npz``, which admits only numpy's array reconstruction, so a crafted file cannot run
code when loaded. Camera calibrations come from a
``cameras.json`` (keys ``S<n>_<camera id>``: R, T in metres, c, f, k, p, w, h) beside the files, in an
``h36m-cameras/`` subfolder, or in ``h36m-cameras/`` beside the set.

Evaluation units are (subject, action, camera index) sequences: 2D in pixels truncated to the mocap
length and screen-normalised; 3D targets in camera space, root-relative, root at 0, in metres.
"""
from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

from posegate.datasets.base import Dataset, DatasetError
from posegate.storage import safe_npz
from posegate.weights import file_digest

FILE_3D = "data_3d_h36m.npz"
FILE_2D_CPN = "data_2d_h36m_cpn_ft_h36m_dbb.npz"
FILE_2D_GT = "data_2d_h36m_gt.npz"
CAMERAS_FILE = "cameras.json"
CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")  # the 2D files' camera order
TEST_SUBJECTS = ("S9", "S11")
OFFICIAL_SEQUENCES = 236  # S9 and S11, 4 cameras each, S11 'Directions' discarded
REMOVED_JOINTS = (4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31)
KEPT_JOINTS = tuple(i for i in range(32) if i not in REMOVED_JOINTS)
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
# the published dataset's corrupted video, discarded by upstream
DISCARDED = {("S11", "Directions")}


class Camera(NamedTuple):
    R: np.ndarray  # camera -> world rotation (its columns are the camera axes in the world)
    T: np.ndarray  # camera centre in world coordinates, metres
    f: np.ndarray  # focal lengths, px
    c: np.ndarray  # principal point, px
    k: np.ndarray  # radial k1..k3
    p: np.ndarray  # tangential p1, p2
    w: int
    h: int


def normalize_screen_coordinates(x: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pixels -> [-1, 1] across the width, aspect kept: X / w * 2 - [1, h / w]."""
    return (x / w * 2 - np.array([1, h / w])).astype(np.float32)


def image_coordinates(x: np.ndarray, w: int, h: int) -> np.ndarray:
    return ((x + np.array([1, h / w])) * w / 2).astype(np.float32)


def world_to_camera(x: np.ndarray, cam: Camera) -> np.ndarray:
    return ((x - cam.T) @ cam.R).astype(np.float32)


def project_to_2d(x: np.ndarray, cam: Camera) -> np.ndarray:
    """Camera-space points -> distorted pixels, upstream's model (normalised coordinates clamped to +-1)."""
    xx = np.clip(x[..., :2] / x[..., 2:], -1, 1)
    r2 = np.sum(xx ** 2, axis=-1, keepdims=True)
    radial = 1 + cam.k[0] * r2 + cam.k[1] * r2 ** 2 + cam.k[2] * r2 ** 3
    tangential = np.sum(cam.p * xx, axis=-1, keepdims=True)
    return cam.f * (xx * (radial + tangential) + cam.p * r2) + cam.c


def read_cameras(path: Path) -> dict[tuple[str, str], Camera]:
    try:
        raw = json.loads(Path(path).read_text())
        cams = {}
        for key, v in raw.items():
            subject, cam_id = key.split("_")
            cams[(subject, cam_id)] = Camera(
                np.asarray(v["R"], float).reshape(3, 3), np.asarray(v["T"], float).reshape(3),
                np.asarray(v["f"], float).reshape(2), np.asarray(v["c"], float).reshape(2),
                np.asarray(v["k"], float).reshape(3), np.asarray(v["p"], float).reshape(2), int(v["w"]), int(v["h"]))
    except FileNotFoundError:
        raise DatasetError(f"{path}: camera file not found") from None
    except (json.JSONDecodeError, AttributeError, KeyError, ValueError, TypeError) as e:
        raise DatasetError(f"{path}: not a Human3.6M camera file (expected {{'S<n>_<camera id>': "
                           f"{{R, T, c, f, k, p, w, h}}}}): {type(e).__name__}: {e}") from None
    for key, cam in cams.items():
        if not np.allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-5):
            raise DatasetError(f"{path}: camera {key[0]}_{key[1]} has an R that is no rotation")
    return cams


def _load_npz_dict(path: Path, field: str) -> tuple[dict, dict]:
    try:
        archive = safe_npz.load(path)
        data = archive[field].item()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except KeyError:
        raise DatasetError(f"{path}: has no '{field}' entry; not a VideoPose3D Human3.6M file") from None
    except safe_npz.RefusedPickle as e:
        raise DatasetError(f"{path}: refused to load: its pickled entries name code, not data ({e}); "
                           "only dicts, lists, strings and numpy arrays are read") from None
    except Exception as e:  # zip, pickle and shape errors of a damaged file all mean the same thing
        raise DatasetError(f"{path}: cannot be read as a VideoPose3D npz ({type(e).__name__}: {e}); "
                           "download or regenerate it") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: '{field}' holds a {type(data).__name__}, not a dict of subjects")
    return data, archive


def _digest(*paths: Path) -> str:
    return hashlib.sha256("".join(file_digest(p) for p in paths).encode()).hexdigest()


class H36mDataset(Dataset):
    kind = "h36m"

    def __init__(self, root: Path):
        super().__init__(root)
        self.keypoints_file = next((self._root / f for f in (FILE_2D_CPN, FILE_2D_GT) if (self._root / f).is_file()),
                                   self._root / FILE_2D_CPN)

    @property
    def keypoints(self) -> str:
        """Which 2D keypoints feed the network: 'cpn_ft_h36m_dbb' (the official protocol) or 'gt'."""
        return "cpn_ft_h36m_dbb" if self.keypoints_file.name == FILE_2D_CPN else "gt"

    @property
    def has_inputs(self) -> bool:
        return self.keypoints_file.is_file()

    @property
    def is_official(self) -> bool:
        return self.keypoints == "cpn_ft_h36m_dbb" and len(self.sequences) == OFFICIAL_SEQUENCES

    @cached_property
    def cameras_file(self) -> Path:
        for folder in (self._root, self._root / "h36m-cameras", self._root.parent / "h36m-cameras"):
            if (folder / CAMERAS_FILE).is_file():
                return folder / CAMERAS_FILE
        raise DatasetError(f"{self._root}: no {CAMERAS_FILE} for the Human3.6M cameras; put the published "
                           f"calibrations (../shared/data/h36m-cameras/{CAMERAS_FILE}) in {self._root} or in "
                           f"{self._root.parent / 'h36m-cameras'}")

    @cached_property
    def identity(self) -> str:
        digest = _digest(self._root / FILE_3D, self.keypoints_file, self.cameras_file)
        return f"{self.name}@{digest[:8]}:{self.keypoints}:{len(self.sequences)}seq"

    @cached_property
    def cameras(self) -> dict[tuple[str, str], Camera]:
        return read_cameras(self.cameras_file)

    @cached_property
    def _poses_3d(self) -> dict:
        data, _ = _load_npz_dict(self._root / FILE_3D, "positions_3d")
        return data

    @cached_property
    def _poses_2d(self) -> dict:
        data, archive = _load_npz_dict(self.keypoints_file, "positions_2d")
        meta = archive["metadata"].item() if "metadata" in archive else {}
        if meta.get("num_joints", 17) != 17:
            raise DatasetError(f"{self.keypoints_file}: {meta['num_joints']} joints, "
                               "the network takes 17 (h36m layout)")
        return data

    @cached_property
    def sequences(self) -> list[tuple[str, str, int]]:
        """(subject, action, camera index) of every test sequence, in a fixed order."""
        keys = []
        for subject in TEST_SUBJECTS:
            actions = self._poses_3d.get(subject, {})
            for action in sorted(actions):
                if (subject, action) in DISCARDED:
                    continue
                views = self._poses_2d.get(subject, {}).get(action)
                if views is None or len(views) != len(CAMERA_IDS):
                    raise DatasetError(f"{self.keypoints_file}: {subject} '{action}' has "
                                       f"{'no' if views is None else len(views)} 2D views, {FILE_3D} needs "
                                       f"{len(CAMERA_IDS)} (cameras {', '.join(CAMERA_IDS)})")
                keys += [(subject, action, i) for i in range(len(CAMERA_IDS))]
        return keys

    @property
    def units(self) -> list[tuple[str, str, int]]:
        return self.sequences

    def camera(self, subject: str, index: int) -> Camera:
        try:
            return self.cameras[(subject, CAMERA_IDS[index])]
        except KeyError:
            raise DatasetError(f"{self.cameras_file}: has no camera {subject}_{CAMERA_IDS[index]}") from None

    def _mocap(self, subject: str, action: str) -> np.ndarray:
        poses = np.asarray(self._poses_3d[subject][action], np.float32)
        if poses.ndim != 3 or poses.shape[1:] != (32, 3):
            raise DatasetError(f"{self._root / FILE_3D}: {subject} '{action}' is {poses.shape}, expected (T, 32, 3)")
        return poses[:, KEPT_JOINTS]

    def inputs(self, key: tuple[str, str, int]) -> np.ndarray:
        """Screen-normalised 2D keypoints [T, 17, 2], truncated to the mocap length T."""
        subject, action, index = key
        frames = len(self._poses_3d[subject][action])
        kp = np.asarray(self._poses_2d[subject][action][index], np.float32)
        if kp.ndim != 3 or kp.shape[1:] != (17, 2):
            raise DatasetError(f"{self.keypoints_file}: {subject} '{action}' camera {index} is {kp.shape}, "
                               "expected (T, 17, 2)")
        if kp.shape[0] < frames:
            raise DatasetError(f"{self.keypoints_file}: {subject} '{action}' camera {index} has {kp.shape[0]} "
                               f"frames, fewer than the {frames} of its mocap in {FILE_3D}")
        cam = self.camera(subject, index)
        return normalize_screen_coordinates(kp[:frames], cam.w, cam.h)

    def targets(self, key: tuple[str, str, int]) -> np.ndarray:
        """Camera-space 3D joints [T, 17, 3] in metres, relative to the root, root at 0."""
        subject, action, index = key
        cam = self.camera(subject, index)
        poses = world_to_camera(self._mocap(subject, action), cam)
        poses[:, 1:] -= poses[:, :1]
        poses[:, 0] = 0
        return poses

    @staticmethod
    def action_group(action: str) -> str:
        """Upstream reports per action name, sub-takes merged: 'Walking 1' -> 'Walking'."""
        return action.split(" ")[0]


def recognise(folder: Path) -> H36mDataset | None:
    try:
        claimed = (Path(folder) / FILE_3D).is_file()
    except OSError:
        return None
    if not claimed:
        return None
    dataset = H36mDataset(folder)
    if not dataset.has_inputs:
        raise DatasetError(f"{folder}: holds {FILE_3D} but no 2D keypoints; put {FILE_2D_CPN} (or {FILE_2D_GT}) "
                           "beside it")
    return dataset
