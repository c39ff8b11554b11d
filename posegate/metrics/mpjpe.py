"""3D pose errors as VideoPose3D reports them, in millimetres.

All take [..., J, 3] poses in metres. MPJPE is the mean joint distance; P-MPJPE first aligns each
frame to the target by a similarity transform (Procrustes: rotation with reflection removed, scale,
translation); N-MPJPE by a least-squares scale only; MPJVE compares first differences over frames.
Protocol #1 is the action-wise average: frame-weighted within an action (sub-takes, subjects and
cameras merged), then the plain mean over actions.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from posegate.metrics.score import Score

MM = 1000.0


def mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    _same_shape(pred, target)
    return float(np.mean(np.linalg.norm(pred - target, axis=-1)))


def p_mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """MPJPE after aligning each frame of ``pred`` to ``target`` (Procrustes, per frame)."""
    _same_shape(pred, target)
    p = np.asarray(pred, np.float64).reshape(-1, *pred.shape[-2:])
    t = np.asarray(target, np.float64).reshape(-1, *target.shape[-2:])
    mu_p, mu_t = p.mean(axis=1, keepdims=True), t.mean(axis=1, keepdims=True)
    p0, t0 = p - mu_p, t - mu_t
    norm_p = np.sqrt(np.sum(p0 ** 2, axis=(1, 2), keepdims=True))
    norm_t = np.sqrt(np.sum(t0 ** 2, axis=(1, 2), keepdims=True))
    p0, t0 = p0 / norm_p, t0 / norm_t
    u, s, vt = np.linalg.svd(np.matmul(t0.transpose(0, 2, 1), p0))
    v = vt.transpose(0, 2, 1)
    r = np.matmul(v, u.transpose(0, 2, 1))
    # a reflection is no rigid motion: flip the last singular direction where det(R) < 0
    sign = np.sign(np.linalg.det(r))[:, None]
    v[:, :, -1] *= sign
    s[:, -1] *= sign[:, 0]
    r = np.matmul(v, u.transpose(0, 2, 1))
    a = np.sum(s, axis=1)[:, None, None] * norm_t / norm_p
    aligned = a * np.matmul(p - mu_p, r) + mu_t
    return float(np.mean(np.linalg.norm(aligned - t, axis=-1)))


def n_mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """MPJPE after scaling each frame of ``pred`` by its least-squares factor onto ``target``."""
    _same_shape(pred, target)
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    scale = np.sum(p * t, axis=(-2, -1), keepdims=True) / np.sum(p * p, axis=(-2, -1), keepdims=True)
    return mpjpe(scale * p, t)


def mpjve(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean per-joint velocity error of [T, J, 3] sequences: first differences over frames."""
    _same_shape(pred, target)
    return float(np.mean(np.linalg.norm(np.diff(pred, axis=0) - np.diff(target, axis=0), axis=-1)))


def _same_shape(a, b):
    if np.shape(a) != np.shape(b):
        raise ValueError(f"poses {np.shape(a)} and targets {np.shape(b)} differ in shape")


ERRORS = {"MPJPE": mpjpe, "P-MPJPE": p_mpjpe, "N-MPJPE": n_mpjpe, "MPJVE": mpjve}


def action_wise(per_sequence: list[tuple[str, int, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """(action group, frames, {error: value}) per sequence -> {error: {action: frame-weighted mean}}."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    frames: dict[str, int] = defaultdict(int)
    for action, n, errors in per_sequence:
        frames[action] += n
        for name, value in errors.items():
            sums[name][action] += n * value
    return {name: {a: v / frames[a] for a, v in sorted(by_action.items())} for name, by_action in sums.items()}


def evaluate_sequences(dataset, results):
    """Protocol #1 MPJPE (mm, action-wise average) with P-MPJPE, N-MPJPE and MPJVE beside it."""
    by_key = {tuple(r["key"]): np.asarray(r["poses_3d"], np.float32) for r in results}
    missing = [k for k in dataset.sequences if tuple(k) not in by_key]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} of {len(dataset.sequences)} sequences of "
                         f"{dataset.identity}, e.g. {missing[0]}")
    rows = []
    for key in dataset.sequences:
        pred, target = by_key[tuple(key)], dataset.targets(key)
        if pred.shape != target.shape:
            raise ValueError(f"{key}: prediction {pred.shape} for a target of {target.shape}")
        rows.append((dataset.action_group(key[1]), len(target), {n: MM * f(pred, target) for n, f in ERRORS.items()}))
    table = action_wise(rows)
    summary = {name: float(np.mean(list(per_action.values()))) for name, per_action in table.items()}
    details = {**{k: v for k, v in summary.items() if k != "MPJPE"}, "actions": len(table["MPJPE"]),
               "sequences": len(rows), "per_action_MPJPE": table["MPJPE"]}
    return Score(summary["MPJPE"], details, sum(n for _, n, _ in rows))


def prediction_distance(reference: list, results: list) -> float | None:
    """MPJPE (mm) between two backends' predictions of the same sequences, over all their frames."""
    ref = {tuple(r["key"]): np.asarray(r["poses_3d"], np.float64) for r in reference}
    got = {tuple(r["key"]): np.asarray(r["poses_3d"], np.float64) for r in results}
    if not ref:
        return None
    if ref.keys() != got.keys():
        raise ValueError(f"the two result sets cover different sequences ({len(ref)} vs {len(got)})")
    total = sum(np.linalg.norm(got[k] - ref[k], axis=-1).sum() for k in ref)
    return float(MM * total / sum(ref[k].shape[0] * ref[k].shape[1] for k in ref))
