"""Content-addressed artifact cache, safe across pytest-xdist workers.

An entry is a folder named by the SHA-256 of its key fields (checkpoint hash, spec version, settings,
tool versions...). It is built in a temporary folder and renamed into place, so a reader never sees a
half-written entry; a file lock per key makes sure only one process builds it; a manifest of file
digests detects a corrupt entry, which is then rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from filelock import FileLock, Timeout

META = "posegate-entry.json"


class ArtifactBuildError(RuntimeError):
    """Building an artifact failed; ``kind`` and ``key`` say which."""


@dataclass
class Entry:
    kind: str
    key: str
    path: Path
    hit: bool
    fields: dict
    build_seconds: float = 0.0

    def file(self, name: str) -> Path:
        return self.path / name


@dataclass
class CacheStats:
    hits: int = 0
    builds: int = 0
    rebuilt_corrupt: int = 0
    by_kind: dict = field(default_factory=dict)

    def count(self, kind: str, what: str) -> None:
        setattr(self, what, getattr(self, what) + 1)
        self.by_kind.setdefault(kind, {"hits": 0, "builds": 0, "rebuilt_corrupt": 0})[what] += 1


def cache_key(fields: dict) -> str:
    blob = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ArtifactCache:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stats = CacheStats()

    def path_for(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / key

    def get_or_build(self, kind: str, fields: dict, build: Callable[[Path], None]) -> Entry:
        """Return the entry for ``fields``, calling ``build(tmpdir)`` to write its files if absent."""
        key = cache_key({"kind": kind, **fields})
        final = self.path_for(kind, key)
        entry = self._valid(kind, key, final, fields)
        if entry:
            self.stats.count(kind, "hits")
            return entry
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            # another process may have built it while we waited for the lock
            entry = self._valid(kind, key, final, fields)
            if entry:
                self.stats.count(kind, "hits")
                return entry
            if final.exists():
                self.stats.count(kind, "rebuilt_corrupt")
                shutil.rmtree(final, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=final.parent))
            start = time.perf_counter()
            try:
                build(tmp)
                files = sorted(p for p in tmp.rglob("*") if p.is_file())
                if not files:
                    raise ArtifactBuildError(f"{kind}: the builder wrote no files")
                meta = {"kind": kind, "key": key, "fields": fields, "created": time.time(),
                        "build_seconds": time.perf_counter() - start,
                        "files": {str(p.relative_to(tmp)): _digest(p) for p in files}}
                (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        self.stats.count(kind, "builds")
        return Entry(kind, key, final, hit=False, fields=fields, build_seconds=meta["build_seconds"])

    def _valid(self, kind, key, final: Path, fields) -> Entry | None:
        meta_file = final / META
        if not meta_file.is_file():
            return None
        try:
            meta = json.loads(meta_file.read_text())
            for name, digest in meta["files"].items():
                if _digest(final / name) != digest:
                    return None
        except (OSError, ValueError, KeyError):
            return None
        return Entry(kind, key, final, hit=True, fields=fields, build_seconds=meta.get("build_seconds", 0.0))


ORPHAN_AGE_S = 600.0  # a temporary folder untouched this long, with no build holding its lock, is an orphan
_TEMP = re.compile(r"^\.(?:[0-9a-f]{8}-|.+\.(?:tmp|old)-)")


def clean_orphans(cache_dir: Path, min_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Remove the temporary folders a killed run left in the cache (entries being built, generated sets
    being staged); returns what was removed.

    A folder is only removed when no process holds the lock its builder takes (a live concurrent worker
    keeps it for the whole build; a killed one released it with its death) and nothing in it changed for
    ``min_age_s`` seconds, so a build that is starting up or between two locks is never pulled away.
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    removed, now = [], time.time()
    for folder in _temporary_folders(cache_dir):
        try:
            newest = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.rglob("*")])
        except OSError:
            continue  # vanished while we looked: its owner finished it
        if now - newest < min_age_s:
            continue
        lock = _owner_lock(folder)
        if lock is None:
            continue
        try:
            with FileLock(str(lock), timeout=0):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except Timeout:
            continue  # a live builder holds it
    return removed


def _temporary_folders(root: Path):
    for dirpath, dirnames, _ in os.walk(root):
        for name in list(dirnames):
            if _TEMP.match(name):
                dirnames.remove(name)  # never descend into one
                yield Path(dirpath) / name


def _owner_lock(folder: Path) -> Path | None:
    """The lock file the folder's builder holds: an entry's ``<key>.lock`` (key starting with the folder's
    8-hex prefix) or a staged set's ``.<name>.lock`` beside it."""
    name = folder.name
    m = re.match(r"^\.([0-9a-f]{8})-", name)
    if m:
        locks = sorted(folder.parent.glob(f"{m.group(1)}*.lock"))
        return locks[0] if len(locks) == 1 else None
    m = re.match(r"^\.(.+)\.(?:tmp|old)-", name)
    return folder.parent / f".{m.group(1)}.lock" if m else None
