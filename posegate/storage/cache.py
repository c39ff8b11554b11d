"""Content-addressed artifact cache, safe across pytest-xdist workers.

An entry is a folder named by the SHA-256 of its key fields (checkpoint hash, spec version, settings,
tool versions...). It is built in a temporary folder and renamed into place, so a reader never sees a
half-written entry; a file lock per key makes sure only one process builds it; a manifest of file
digests detects a corrupt entry, which is then rebuilt.
"""
from __future__ import annotations

import errno
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
# Written by the suite into every temporary folder it makes (an entry being built, a generated set being
# staged, a set being replaced): the start-up clean-up removes a leftover folder only when it holds this
# file with this text, so a folder the suite did not make is never deleted, whatever its name.
TEMP_MARKER = ".posegate-temp"
TEMP_TEXT = "posegate temporary folder: removed by posegate's start-up clean-up once its build is dead\n"
# The suite's own subfolders of a cache dir; nothing outside them is ever walked or removed.
OWN_SUBFOLDERS = ("artifacts", "datasets")


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


def make_temp_dir(prefix: str, parent: Path) -> Path:
    """A new temporary folder in ``parent``, marked as the suite's (``TEMP_MARKER``) before anything else."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (folder / TEMP_MARKER).write_text(TEMP_TEXT)
    return folder


def is_own_temp_dir(folder: Path) -> bool:
    """Whether ``folder`` is a temporary folder the suite made: a real folder (not a link) holding the
    marker as a regular file with the suite's text."""
    marker = folder / TEMP_MARKER
    try:
        return (not folder.is_symlink() and not marker.is_symlink() and marker.is_file()
                and marker.stat().st_size == len(TEMP_TEXT) and marker.read_text() == TEMP_TEXT)
    except (OSError, UnicodeDecodeError):
        return False


_WRITE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM)


def _under(error: OSError, root: Path) -> bool:
    """Whether ``error`` is the cache refusing a write: a named file inside it, or a write errno with no
    file named (a converter's own failure outside the cache keeps its own message)."""
    if error.filename is None:
        return error.errno in _WRITE_ERRNOS
    try:
        return Path(os.fsdecode(error.filename)).resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError, TypeError):
        return False


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
        try:
            return self._build(kind, key, final, fields, build)
        except OSError as e:
            if not _under(e, self.root):
                raise
            # a full disk or a cache made read-only mid-run: the affected test fails with the reason
            raise ArtifactBuildError(f"{kind}: the cache {self.root} cannot be written "
                                     f"({e.strerror or e}: {e.filename or self.root}); free space or fix its "
                                     "permissions, or choose another --cache-dir") from None

    def _build(self, kind, key, final: Path, fields, build) -> Entry:
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
            tmp = make_temp_dir(f".{key[:8]}-", final.parent)
            start = time.perf_counter()
            try:
                build(tmp)
                files = sorted(p for p in tmp.rglob("*") if p.is_file() and p != tmp / TEMP_MARKER)
                if not files:
                    raise ArtifactBuildError(f"{kind}: the builder wrote no files")
                meta = {"kind": kind, "key": key, "fields": fields, "created": time.time(),
                        "build_seconds": time.perf_counter() - start,
                        "files": {str(p.relative_to(tmp)): _digest(p) for p in files}}
                (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
                (tmp / TEMP_MARKER).unlink()  # a finished entry is no temporary folder
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

CACHE_MARKER = ".posegate-cache"
CACHE_TEXT = ("posegate cache folder: made by posegate, which removes only its own marked temporary folders "
              "under artifacts/ and datasets/\n")
# What the top of a cache made before the marker existed holds. Such a cache is adopted (marked): all of it is
# the suite's, and refusing it would throw away hours of conversions for a user who only upgraded.
_LEGACY_NAMES = frozenset({"artifacts", "datasets", "ledger", "shards", "digests.json"})
_LEGACY_PREFIXES = (".digests-", ".write-probe-", CACHE_MARKER)


class CacheDirError(ValueError):
    """A cache dir the suite did not make and that is not empty: it is refused, never written or cleaned."""


def claim(cache_dir: Path) -> str:
    """Make sure ``cache_dir`` is the suite's: ``"own"`` (marked), ``"new"`` (was empty, now marked) or
    ``"adopted"`` (a cache of an earlier version, now marked); CacheDirError for anything else."""
    cache_dir = Path(cache_dir)
    marker = cache_dir / CACHE_MARKER
    names = sorted(os.listdir(cache_dir))
    for name in sorted(_LEGACY_NAMES - {"digests.json"}):
        if os.path.lexists(cache_dir / name) and not (cache_dir / name).is_dir():
            raise CacheDirError(f"{cache_dir}: its {name} is not a folder (a link to nothing, a loop or a file); "
                                "remove it")
    if marker.is_file() and not marker.is_symlink():
        return "own"
    foreign = [n for n in names if n not in _LEGACY_NAMES and not n.startswith(_LEGACY_PREFIXES)]
    if foreign:
        shown = ", ".join(foreign[:4]) + (f", ... ({len(foreign)} in all)" if len(foreign) > 4 else "")
        raise CacheDirError(f"{cache_dir}: is not empty and is not a posegate cache (no {CACHE_MARKER}; it holds "
                            f"{shown}); the suite writes and cleans up in its cache, so it only takes an empty or "
                            "new folder, e.g. --cache-dir=/tmp/posegate-cache")
    fd, tmp = tempfile.mkstemp(prefix=CACHE_MARKER + ".tmp-", dir=cache_dir)
    with os.fdopen(fd, "w") as f:
        f.write(CACHE_TEXT)
    os.replace(tmp, marker)  # whole, so a concurrent session never reads half a marker
    return "adopted" if names else "new"


def clean_orphans(cache_dir: Path, min_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Remove the temporary folders a killed run left in the cache (entries being built, generated sets
    being staged); returns what was removed.

    Only folders the suite marked as its own (``TEMP_MARKER``) are candidates, only under its own
    subfolders of a cache it marked (``claim``), and links are never followed. A folder is only removed
    when no process holds the lock its builder takes (a live concurrent worker keeps it for the whole
    build; a killed one released it with its death) and nothing in it changed for ``min_age_s`` seconds,
    so a build that is starting up or between two locks is never pulled away.
    """
    cache_dir = Path(cache_dir)
    marker = cache_dir / CACHE_MARKER
    if not marker.is_file() or marker.is_symlink():
        return []
    removed, now = [], time.time()
    for folder in _temporary_folders(cache_dir):
        newest = _newest_mtime(folder)
        if newest is None or now - newest < min_age_s:
            continue  # vanished while we looked (its owner finished it), or recent
        lock = _owner_lock(folder)
        if lock is None:
            continue
        try:
            with FileLock(str(lock), timeout=0):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except Timeout:
            continue  # a live builder holds it
        except OSError:
            continue  # its lock cannot be taken here (a read-only cache): leave it
    return removed


def _newest_mtime(folder: Path) -> float | None:
    try:
        times = [folder.stat().st_mtime]
        for dirpath, _, filenames in os.walk(folder):
            times += [os.lstat(os.path.join(dirpath, n)).st_mtime for n in filenames]
        return max(times)
    except OSError:
        return None


def _temporary_folders(root: Path):
    for sub in OWN_SUBFOLDERS:
        top = root / sub
        if top.is_symlink() or not top.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(top):  # never follows links
            for name in list(dirnames):
                path = Path(dirpath) / name
                if _TEMP.match(name) and is_own_temp_dir(path):
                    dirnames.remove(name)  # never descend into one
                    yield path


_TEMP = re.compile(r"^\.(?:[0-9a-f]{8}-|.+\.(?:tmp|old)-)")


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
