"""Seed 004's port files (Ascend ModelZoo-PyTorch, ACL_PyTorch/contrib/cv/pose_estimation/VideoPose3D, read for
facts; shared/reference/pipelines.md "The ports' own files"):

- vp3d_preprocess.py groups the test sequences (S9, S11) by action name (``action.split(' ')[0]``, in order of
  first appearance), walks each group's (subject, action) pairs and cameras with UnchunkedGenerator(pad=121,
  augment=True), and writes each as ``inputs/{n:03d}_{action name}.bin``, n counting from 1: float32
  2x6115x17x2 (the sequence and its mirror, edge-padded to the static length); ``delta_dict_padding.json``
  maps each stem to the frames padded beyond 121 on the right;
- the device run writes one output per input, float32 2x5873x17x3;
- vp3d_postprocess.py prints the MPJPE and writes no results file.

The audit numbers the sequences as the suite's dataset lists them (subject, then sorted action, then camera),
grouped as above; the npz's own action order is assumed sorted.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.videopose3d_243 import codec
from posegate.port.layout import OutputFile, PortLayout, SideFile, SideFileError, Variant

_NUMBERS: dict[str, dict] = {}


def _numbering(dataset) -> dict:
    """(subject, action, camera) -> the preprocess script's file stem."""
    if dataset.identity not in _NUMBERS:
        groups: dict[str, list] = {}
        for key in dataset.sequences:
            groups.setdefault(key[1].split(" ")[0], []).append(tuple(key))
        ordered = [(name, key) for name, keys in groups.items() for key in keys]
        _NUMBERS[dataset.identity] = {key: f"{n:03d}_{name}" for n, (name, key) in enumerate(ordered, 1)}
    return _NUMBERS[dataset.identity]


def _stem(dataset, sample, index) -> str:
    return _numbering(dataset)[tuple(sample)]


def read_delta(path: Path):
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SideFileError(f"{path.name}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise SideFileError(f"{path.name}: expected an object mapping file stems to padded frames")
    for stem, delta in data.items():
        if not isinstance(delta, int) or not 0 <= delta <= codec.MAX_FRAMES:
            raise SideFileError(f"{path.name}: {stem}: delta {delta!r} is not a frame count in 0..{codec.MAX_FRAMES}")
        yield stem, codec.SequenceRecord(codec.MAX_FRAMES - delta, codec.PAD + delta)


def delta_problem(side, ref) -> str | None:
    if side != ref:
        return (f"delta {side.pad_right - codec.PAD} ({side.frames} frames), the sequence has {ref.frames} "
                f"(delta {ref.pad_right - codec.PAD})")
    return None


def write_delta(path: Path, entries) -> None:
    path.write_text(json.dumps({stem: r.pad_right - codec.PAD for stem, r in entries}))


def _zero_padded(raw, profile):
    """Zeros where the port repeats the edge frames."""
    padded, record = codec.pad_sequence(raw, "ascend")
    padded[:codec.PAD] = 0
    padded[codec.PAD + record.frames:] = 0
    return np.stack([padded, codec.mirror(padded)])


LAYOUT = PortLayout(
    profile=str(codec.ASCEND_FRAMES),
    input_shape=(2, codec.ASCEND_FRAMES, 17, 2),
    stem=_stem,
    outputs=(OutputFile("3d_preds", (2, codec.MAX_FRAMES, 17, 3)),),
    side=SideFile("delta_dict_padding.json", read_delta, delta_problem, write_delta),
    input_variants=(Variant("padding", "padded with zeros where the port repeats the edge frames", _zero_padded),),
    results=False,
    source="Ascend ModelZoo-PyTorch ACL_PyTorch/contrib/cv/pose_estimation/VideoPose3D/vp3d_{pre,post}process.py",
)
