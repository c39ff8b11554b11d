"""Upstream's post-network steps written out one crop and one joint at a time, as test.py runs them
(shared/reference/pipelines.md section 3; golden/decoders/README.md for the float32 centre and scale):
the yardstick the batched decoder in codec.py is checked and timed against, not used by the suite.
"""
from __future__ import annotations

import cv2
import numpy as np

from models.mspn_2xstg.codec import BORDER, FLIP_PAIRS, HEATMAP_H, HEATMAP_W, INPUT_H, INPUT_W, NUM_JOINTS


def _flip_back(maps: np.ndarray) -> np.ndarray:
    out = maps[..., ::-1].copy()
    for a, b in FLIP_PAIRS:
        out[:, [a, b]] = out[:, [b, a]]
    return out


def _joint(blurred: np.ndarray) -> tuple[float, float]:
    """One blurred, padded map -> (x, y) in heatmap px: argmax, zero it, argmax again, quarter step."""
    y, x = np.unravel_index(blurred.argmax(), blurred.shape)
    blurred[y, x] = 0
    py, px = np.unravel_index(blurred.argmax(), blurred.shape)
    x, y = float(x - BORDER), float(y - BORDER)
    px, py = px - BORDER - x, py - BORDER - y
    length = (px ** 2 + py ** 2) ** 0.5
    if length > 1e-3:
        x += 0.25 * px / length
        y += 0.25 * py / length
    return max(0.0, min(x, HEATMAP_W - 1.0)), max(0.0, min(y, HEATMAP_H - 1.0))


def decode_crops(outputs: np.ndarray, records: list) -> list[dict]:
    """Same contract as codec.decode_crops: [N or 2N, 17, 64, 48] outputs -> one result per record."""
    n = len(records)
    maps = np.asarray(outputs[:n], np.float32)
    if len(outputs) == 2 * n:
        maps = (maps + _flip_back(outputs[n:])) * np.float32(0.5)
    sizes = np.array([r.scale for r in records], np.float32) * np.float32(200)
    centers = np.array([r.center for r in records], np.float32)
    results = []
    for i, rec in enumerate(records):
        score_map = maps[i] / np.float32(255) + np.float32(0.5)
        padded = np.zeros((NUM_JOINTS, HEATMAP_H + 2 * BORDER, HEATMAP_W + 2 * BORDER))
        padded[:, BORDER:-BORDER, BORDER:-BORDER] = maps[i]
        kp = np.zeros((NUM_JOINTS, 3))
        for j in range(NUM_JOINTS):
            x, y = _joint(cv2.GaussianBlur(padded[j], (5, 5), 0))
            kp[j, :2] = x * 4 + 2, y * 4 + 2
            kp[j, 2] = score_map[j, int(round(y) + 1e-9), int(round(x) + 1e-9)]
        kp[:, 0] = kp[:, 0] / INPUT_W * sizes[i, 0] + centers[i, 0] - sizes[i, 0] * 0.5
        kp[:, 1] = kp[:, 1] / INPUT_H * sizes[i, 1] + centers[i, 1] - sizes[i, 1] * 0.5
        results.append({"image_id": rec.image_id, "category_id": 1, "keypoints": kp.ravel().tolist(),
                        "score": float(rec.det_score * kp[:, 2].mean())})
    return results
