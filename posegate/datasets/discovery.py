"""Find the datasets under a data root."""

from __future__ import annotations

from pathlib import Path

from posegate.datasets import KINDS
from posegate.datasets.coco import DatasetError


def discover(data_root: Path) -> list:
    """Every dataset in ``data_root`` itself or in one of its direct subfolders, sorted by name.

    Each dataset is recognised by its contents (a COCO person-keypoint annotation file, Human3.6M's
    npz files), never by its folder name, so renamed or extra copies are found too. Hidden folders
    are skipped: they hold work in progress such as a synthetic set being generated.
    """
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise DatasetError(f"{data_root}: data root does not exist or is not a folder; "
                           "point it at the folder that holds the datasets")
    folders = [data_root] + sorted(p for p in data_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = []
    for folder in folders:
        for kind in KINDS.values():
            dataset = kind.recognise(folder)
            if dataset is not None:
                found.append(dataset)
                break
    return sorted(found, key=lambda d: d.name)
