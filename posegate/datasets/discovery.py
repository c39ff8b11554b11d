"""Find the datasets under a data root."""

from __future__ import annotations

import os
from pathlib import Path

from posegate.datasets import KINDS
from posegate.datasets.base import DatasetError


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
    entries = sorted(p for p in data_root.iterdir() if not p.name.startswith("."))
    for p in entries:
        _check_link(p)
    folders = [data_root] + [p for p in entries if p.is_dir()]
    found = []
    for folder in folders:
        for kind in KINDS.values():
            dataset = kind.recognise(folder)
            if dataset is not None:
                found.append(dataset)
                break
    return sorted(found, key=lambda d: d.name)


def _check_link(path: Path) -> None:
    """A dataset folder reached through a link that leads nowhere (an unmounted share) or loops is an
    error naming it, not a dataset quietly left out."""
    if not path.is_symlink() or os.path.exists(path):
        return
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    try:
        os.stat(path)
        why = ""
    except OSError as e:
        why = e.strerror or str(e)
    what = ("a symbolic link loop" if "symbolic links" in why.lower() else
            f"a symbolic link to {target}, which does not exist (an unmounted share?)")
    raise DatasetError(f"{path}: is {what}; fix or remove the link")
