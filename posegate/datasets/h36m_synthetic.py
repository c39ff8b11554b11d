"""A small deterministic Human3.6M-format set: walking and gesturing skeletons seen by four cameras.

Motion is built from a 17-joint skeleton (upstream's joint order and parents) moving on a loop near
the capture area's centre, expanded to the 32-joint mocap layout, and projected through the published
cameras when they are at hand (``h36m-cameras/cameras.json`` of the reference folder), else through
generated ones. 2D sequences get pixel noise and a few extra frames, as the real detections run a
little longer than the mocap. Files are written in upstream's formats, so the real reader reads them.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from posegate.datasets.h36m import (
    CAMERA_IDS,
    CAMERAS_FILE,
    FILE_2D_CPN,
    FILE_3D,
    KEPT_JOINTS,
    project_to_2d,
    read_cameras,
    world_to_camera,
)
from posegate.datasets.staging import build_once

VERSION = 2
FPS = 50
# (subject, action, frames): both test subjects, a sub-take ('Walking 1' reports as 'Walking'), and a
# training subject the reader must leave out; kept small, as every backend lifts every sequence twice
SEQUENCES = (("S9", "Walking 1", 200), ("S11", "Photo", 150), ("S1", "Walking", 60))
# where each removed mocap joint sits: on this kept one (upstream drops them, so only plausibility matters)
_FILL = {4: 3, 5: 3, 9: 8, 10: 8, 11: 0, 16: 13, 20: 19, 21: 19, 22: 19, 23: 19, 24: 13, 28: 27, 29: 27,
         30: 27, 31: 27}
# rest pose, metres, body frame: x forward, y to the body's left, z up; root (pelvis) at 0
_REST = np.array([
    (0, 0, 0), (0, -0.13, 0), (0, -0.13, -0.45), (0, -0.13, -0.89), (0, 0.13, 0), (0, 0.13, -0.45),
    (0, 0.13, -0.89), (0, 0, 0.23), (0, 0, 0.48), (0.05, 0, 0.58), (0, 0, 0.68), (0, 0.17, 0.45),
    (0, 0.19, 0.18), (0.02, 0.2, -0.07), (0, -0.17, 0.45), (0, -0.19, 0.18), (0.02, -0.2, -0.07)])


def generate(root: Path, reference_dir: Path | None = None, seed: int = 0) -> Path:
    """Write the set to ``root`` unless a complete one from the same inputs is there; returns root."""
    root = Path(root).resolve()
    published = None
    if reference_dir is not None and (Path(reference_dir) / "h36m-cameras" / CAMERAS_FILE).is_file():
        published = Path(reference_dir) / "h36m-cameras" / CAMERAS_FILE
    marker = json.dumps({"generator": __name__, "version": VERSION, "seed": seed,
                         "cameras": "published" if published else "generated"}, sort_keys=True)
    return build_once(root, marker, lambda work: _write(work, published, seed), "synthetic Human3.6M set")


def _write(folder: Path, published: Path | None, seed: int) -> None:
    subjects = sorted({s for s, _, _ in SEQUENCES})
    rng = np.random.default_rng(seed)
    cameras = _published_cameras(published, subjects) if published else _generated_cameras(subjects, rng)
    (folder / CAMERAS_FILE).write_text(json.dumps(cameras, indent=1))
    cams = read_cameras(folder / CAMERAS_FILE)
    poses_3d, poses_2d = {}, {}
    for subject, action, frames in SEQUENCES:
        world = _to_mocap(_motion(frames, action, rng))
        poses_3d.setdefault(subject, {})[action] = world
        views = []
        for cam_id in CAMERA_IDS:
            cam = cams[(subject, cam_id)]
            extra = int(rng.integers(0, 4))  # detections outlast the mocap by a few frames
            longer = np.concatenate([world, np.repeat(world[-1:], extra, axis=0)])
            pixels = project_to_2d(world_to_camera(longer[:, KEPT_JOINTS], cam), cam)
            views.append((pixels + rng.normal(0, 1.5, pixels.shape)).astype(np.float32))
        poses_2d.setdefault(subject, {})[action] = views
    meta = {"layout_name": "h36m", "num_joints": 17,
            "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
    _save_npz(folder / FILE_3D, positions_3d=poses_3d)
    _save_npz(folder / FILE_2D_CPN, positions_2d=poses_2d, metadata=meta)


def _save_npz(path: Path, **objects) -> None:
    """np.savez's layout with fixed zip timestamps, so the same set is the same bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, obj in objects.items():
            buf = io.BytesIO()
            # writing upstream's layout (pickled dicts) for our own generated data; posegate.storage.safe_npz reads them
            np.lib.format.write_array(buf, np.array(obj, dtype=object))
            z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _swing(vec: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate body-frame vectors about the lateral (y) axis: positive swings a limb forward."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x, y, z = vec[..., 0], vec[..., 1], vec[..., 2]
    return np.stack([c[:, 0] * x - s[:, 0] * z, y, s[:, 0] * x + c[:, 0] * z], -1)


def _motion(frames: int, action: str, rng) -> np.ndarray:
    """World-space [T, 17, 3] metres: a walker (gait amplitude by action) on a loop around the origin."""
    t = np.arange(frames) / FPS
    gait = {"Walking": 0.5, "Directions": 0.15, "Photo": 0.1}.get(action.split(" ")[0], 0.3)
    step = 2 * np.pi * rng.uniform(0.8, 1.1)
    phase = rng.uniform(0, 2 * np.pi)
    scale = rng.uniform(0.95, 1.05)
    body = np.repeat(_REST[None] * scale, frames, axis=0)
    legs = gait * np.sin(step * t + phase)
    arms = 0.8 * gait * np.sin(step * t + phase) + rng.uniform(0, 0.6) * np.clip(np.sin(0.7 * t), 0, None)
    for hip, knee, foot, sign in ((1, 2, 3, 1.0), (4, 5, 6, -1.0)):
        thigh = _swing(body[:, knee] - body[:, hip], sign * legs)
        bend = np.clip(-sign * legs, 0, None) * 1.5
        shin = _swing(body[:, foot] - body[:, knee], sign * legs - bend)
        body[:, knee] = body[:, hip] + thigh
        body[:, foot] = body[:, knee] + shin
    for shoulder, elbow, wrist, sign in ((11, 12, 13, 1.0), (14, 15, 16, -1.0)):
        upper = _swing(body[:, elbow] - body[:, shoulder], sign * arms)
        fore = _swing(body[:, wrist] - body[:, elbow], sign * arms + 0.4 * gait)
        body[:, elbow] = body[:, shoulder] + upper
        body[:, wrist] = body[:, elbow] + fore
    radius, speed = rng.uniform(0.5, 1.5), gait * rng.uniform(0.8, 1.2) / 1.5
    angle = speed * t + rng.uniform(0, 2 * np.pi)
    root = np.stack([radius * np.cos(angle), radius * np.sin(angle),
                     0.92 + 0.02 * np.abs(np.sin(step * t + phase))], -1)
    heading = angle + np.pi / 2  # walk along the loop's tangent
    return (body @ _rot_z(heading).transpose(0, 2, 1) + root[:, None]).astype(np.float32)


def _to_mocap(poses17: np.ndarray) -> np.ndarray:
    mocap = np.zeros((poses17.shape[0], 32, 3), np.float32)
    mocap[:, KEPT_JOINTS] = poses17
    for removed, kept in _FILL.items():
        mocap[:, removed] = mocap[:, kept]
    return mocap


def _published_cameras(path: Path, subjects: list[str]) -> dict:
    raw = json.loads(path.read_text())
    return {f"{s}_{c}": raw[f"{s}_{c}"] for s in subjects for c in CAMERA_IDS}


def _generated_cameras(subjects: list[str], rng) -> dict:
    """Four cameras at the room's corners, 1.6 m up, looking at the centre; Human3.6M-like intrinsics."""
    out = {}
    for s in subjects:
        for i, cam_id in enumerate(CAMERA_IDS):
            yaw = np.pi / 4 + i * np.pi / 2 + rng.normal(0, 0.05)
            centre = np.array([4.5 * np.cos(yaw), 4.5 * np.sin(yaw), 1.6])
            forward = -centre / np.linalg.norm(centre)
            right = np.cross(forward, [0, 0, 1.0])
            right /= np.linalg.norm(right)
            down = np.cross(forward, right)
            # columns: the camera's x (right), y (down) and z (viewing direction) in the world, as published
            R = np.stack([right, down, forward], axis=1)
            h = 1002 if i in (0, 3) else 1000
            out[f"{s}_{cam_id}"] = {
                "R": R.tolist(), "T": centre.reshape(3, 1).tolist(),
                "c": [[512 + rng.normal(0, 3)], [h / 2 + rng.normal(0, 3)]],
                "f": [[1145 + rng.normal(0, 2)], [1144 + rng.normal(0, 2)]],
                "k": [[-0.2], [0.24], [-0.003]], "p": [[-0.0014], [-0.001]], "w": 1000, "h": h,
                "name": f"camera{i + 1}", "id": cam_id}
    return out
