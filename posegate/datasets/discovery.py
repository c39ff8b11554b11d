"""Find the datasets under a data root."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from posegate.datasets import coco
from posegate.datasets.coco import DatasetError

# A recogniser takes a folder and returns a dataset, or None when the folder is not its kind.
# A new dataset kind (e.g. Human3.6M) plugs in by appending its recogniser here.
RECOGNISERS: list[Callable[[Path], object | None]] = [coco.recognise]


def discover(data_root: Path) -> list:
    """Every dataset in ``data_root`` itself or in one of its direct subfolders, sorted by name.

    Each dataset is recognised by its contents (e.g. a COCO person-keypoint annotation file), never
    by its folder name, so renamed or extra copies are found too. Hidden folders are skipped: they
    hold work in progress such as a synthetic set being generated.
    """
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise DatasetError(f"{data_root}: data root does not exist or is not a folder; "
                           "point it at the folder that holds the datasets")
    folders = [data_root] + sorted(p for p in data_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = []
    for folder in folders:
        for recognise in RECOGNISERS:
            dataset = recognise(folder)
            if dataset is not None:
                found.append(dataset)
                break
    return sorted(found, key=lambda d: d.name)
