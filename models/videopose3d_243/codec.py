"""VideoPose3D's sequence codec: edge padding, the test-time flip, and trimming back to the input.

Two recipes share the network:
- ``upstream``: the unchunked evaluation, each sequence padded by 121 edge frames on both sides,
  so the engine sees T + 242 frames and returns exactly T.
- ``ascend``: the port's static shape, 121 edge frames on the left and 121 + delta on the right,
  delta = 6115 - T - 242; the engine returns 5873 frames and the last delta are dropped. Because
  every convolution is valid-only, frame t of the output only sees input frames t .. t + 242, so
  the dropped frames never influence the kept ones and the result equals the upstream recipe's.

Both batch each sequence with its mirror (x negated, left and right joints swapped) and average the
two predictions after mirroring the second back, as upstream's evaluation does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RECEPTIVE_FIELD = 243
PAD = (RECEPTIVE_FIELD - 1) // 2  # 121 frames each side
ASCEND_FRAMES = 6115  # the port's static input length
MAX_FRAMES = ASCEND_FRAMES - 2 * PAD  # 5873: the longest sequence the static shape holds
JOINTS_LEFT = (4, 5, 6, 11, 12, 13)
JOINTS_RIGHT = (1, 2, 3, 14, 15, 16)
_SWAP = np.arange(17)
_SWAP[list(JOINTS_LEFT + JOINTS_RIGHT)] = JOINTS_RIGHT + JOINTS_LEFT


class SequenceTooLong(ValueError):
    """A sequence the static shape cannot hold: refusing beats a silently wrong answer."""


@dataclass(frozen=True)
class SequenceRecord:
    frames: int  # T, the input sequence's length and the decoded one's
    pad_right: int  # edge frames appended on the right (121, or 121 + delta for the static shape)


def mirror(poses: np.ndarray) -> np.ndarray:
    """Left-right mirror of [..., T, 17, C] poses: x negated, left and right joints swapped."""
    out = poses[..., _SWAP, :].copy()
    out[..., 0] *= -1
    return out


def pad_sequence(seq: np.ndarray, recipe: str, length: int | None = None) -> tuple[np.ndarray, SequenceRecord]:
    """Edge-pad one [T, 17, 2] sequence for a recipe; its record says how to trim the output.

    ``length`` (upstream recipe only) pads further on the right to share a batch with longer
    sequences; like the static shape's extra frames, they never reach a kept output frame.
    """
    seq = np.asarray(seq, np.float32)
    if seq.ndim != 3 or seq.shape[1:] != (17, 2) or seq.shape[0] < 1:
        raise ValueError(f"a 2D pose sequence is [T >= 1, 17, 2], got {seq.shape}")
    frames = seq.shape[0]
    if recipe == "upstream":
        length = frames + 2 * PAD if length is None else length
        if length < frames + 2 * PAD:
            raise ValueError(f"a {frames}-frame sequence needs at least {frames + 2 * PAD} padded frames, not {length}")
    elif recipe == "ascend":
        if frames > MAX_FRAMES:
            raise SequenceTooLong(
                f"sequence of {frames} frames exceeds the static input: {ASCEND_FRAMES} frames hold at most "
                f"{MAX_FRAMES} (= {ASCEND_FRAMES} - 2 x {PAD}); evaluate it with the upstream (unpadded) profile")
        length = ASCEND_FRAMES
    else:
        raise ValueError(f"unknown VideoPose3D recipe {recipe!r}: expected 'upstream' or 'ascend'")
    right = length - frames - PAD
    padded = np.pad(seq, ((PAD, right), (0, 0), (0, 0)), mode="edge")
    return padded, SequenceRecord(frames, right)


def preprocess_batch(raws: list, recipe: str) -> tuple[np.ndarray, list[SequenceRecord]]:
    """Engine input [2N, F, 17, 2]: each sequence followed by its mirror; one record per sequence.

    Upstream's recipe pads a batch to its longest sequence (upstream itself lifts one at a time).
    """
    length = max(len(s) for s in raws) + 2 * PAD if recipe == "upstream" and raws else None
    rows, records = [], []
    for seq in raws:
        padded, record = pad_sequence(seq, recipe, length)
        rows += [padded, mirror(padded)]
        records.append(record)
    return np.ascontiguousarray(np.stack(rows)), records


def decode_batch(output: np.ndarray, records: list[SequenceRecord]) -> list[np.ndarray]:
    """[2N, F - 242, 17, 3] -> one [T, 17, 3] per sequence: un-mirror, average, drop the padding's frames."""
    if output.shape[0] != 2 * len(records):
        raise ValueError(f"output batch {output.shape[0]} is not 2 x {len(records)} sequences")
    poses = []
    for i, rec in enumerate(records):
        kept = output.shape[1] - (rec.pad_right - PAD)
        if kept != rec.frames:
            raise ValueError(f"output of {output.shape[1]} frames does not trim to the input's {rec.frames}")
        pair = np.stack([output[2 * i], mirror(output[2 * i + 1])])
        poses.append(pair.mean(axis=0)[:rec.frames])
    return poses
