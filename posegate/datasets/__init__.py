"""Dataset kinds: how each is recognised in a data root, drawn synthetically, and what its official set is.

A model's flow names its kind; a new kind (a new task's data) plugs in by adding an entry here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from posegate.datasets import coco, h36m, h36m_synthetic, synthetic
from posegate.datasets.base import Dataset


@dataclass(frozen=True)
class DatasetKind:
    name: str
    recognise: Callable[[Path], Dataset | None]  # folder -> dataset, or None when not this kind
    synthetic: Callable[[Path, Path | None], Dataset]  # (folder, reference dir) -> a generated dataset
    official: str  # what to supply for the official gate, said in every skip that needs it


def _coco_recognise(folder):
    return coco.recognise(folder)


def _coco_synthetic(folder, reference_dir):
    return coco.CocoKeypointDataset(synthetic.generate(folder, 8))


def _h36m_recognise(folder):
    return h36m.recognise(folder)


def _h36m_synthetic(folder, reference_dir):
    return h36m.H36mDataset(h36m_synthetic.generate(folder, reference_dir))


KINDS: dict[str, DatasetKind] = {k.name: k for k in (
    DatasetKind("coco-keypoints", _coco_recognise, _coco_synthetic,
                "the full COCO val2017 (annotations/person_keypoints_val2017.json and its 5000 images in "
                "val2017/) as a folder under --data-root"),
    DatasetKind("h36m", _h36m_recognise, _h36m_synthetic,
                "the Human3.6M test set (data_3d_h36m.npz and data_2d_h36m_cpn_ft_h36m_dbb.npz, S9 and S11, "
                "with h36m-cameras/cameras.json) as a folder under --data-root"),
)}
