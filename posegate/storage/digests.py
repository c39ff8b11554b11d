"""Content digests of data files, memoised on (size, mtime) so a warm run reads no image twice.

A dataset's identity must change when any of its images changes, or a warm cache would keep serving
predictions made from the old pixels. Hashing 5000 images every run is slow, so each file's SHA-256
is remembered with its size and modification time (and inode change time, which no copy tool can
set back, so an image swapped in with its old mtime restored is still hashed again), in memory and
(once ``use(folder)`` is called) in a JSON file in the cache that later runs and xdist workers share.
A file whose size or times moved is hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

_memo: dict[str, list] = {}  # path -> [size, mtime_ns, ctime_ns, sha256]
_store: Path | None = None
_dirty = False


def use(folder: Path) -> None:
    """Keep the memo in ``folder/digests.json`` (read now, written by ``flush``)."""
    global _store
    _store = Path(folder) / "digests.json"
    try:
        loaded = json.loads(_store.read_text())
        if isinstance(loaded, dict):
            _memo.update({k: v for k, v in loaded.items() if isinstance(v, list) and len(v) == 4})
    except (OSError, ValueError):
        pass  # no memo yet, or a damaged one: digests are recomputed, never trusted blindly


def sha256(path: Path) -> str:
    global _dirty
    path = Path(path)
    st = path.stat()
    key = str(path.resolve())
    known = _memo.get(key)
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    if known and known[:3] == stamp:
        return known[3]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    _memo[key] = [*stamp, h.hexdigest()]
    _dirty = True
    return h.hexdigest()


def flush() -> None:
    """Write the memo atomically (concurrent writers each leave a complete file)."""
    global _dirty
    if _store is None or not _dirty:
        return
    try:
        _store.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".digests-", dir=_store.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(_memo, f)
        os.replace(tmp, _store)
        _dirty = False
    except OSError:
        pass  # the memo only saves time
