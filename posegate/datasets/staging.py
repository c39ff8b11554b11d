"""Generated data folders, written once: built beside their place and renamed into it under a lock.

Concurrent callers (xdist workers, two sessions) never see or write a partial set, and a folder that
holds something other than an earlier generated set is never deleted.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from filelock import FileLock

from posegate.storage.cache import TEMP_MARKER, make_temp_dir

MARKER = ".complete"


def build_once(root: Path, marker: str, write: Callable[[Path], None], what: str = "generated dataset",
               error: type[Exception] = ValueError) -> Path:
    """``write(folder)`` fills a new folder that becomes ``root``, unless ``root`` already holds a
    complete set made from the same inputs (``marker``); returns root."""
    root = Path(root).resolve()
    if complete(root, marker):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock")):
        if complete(root, marker):
            return root
        if root.exists() and not (root / MARKER).is_file() and any(root.iterdir()):
            raise error(f"{root}: exists and is not a {what}; choose an empty or new folder")
        work = make_temp_dir(f".{root.name}.tmp-", root.parent)
        work.chmod(0o755)  # mkdtemp's private 0700 would otherwise become the dataset's mode
        try:
            write(work)
            (work / MARKER).write_text(marker)
            (work / TEMP_MARKER).unlink()  # the finished set is no temporary folder
            _replace(work, root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return root


def complete(root: Path, marker: str) -> bool:
    try:
        return (root / MARKER).read_text() == marker
    except OSError:
        return False


def _replace(work: Path, root: Path) -> None:
    if root.exists() and any(root.iterdir()):
        stale = make_temp_dir(f".{root.name}.old-", root.parent)
        os.replace(root, stale / "set")
        try:
            os.replace(work, root)
        finally:
            shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(work, root)
