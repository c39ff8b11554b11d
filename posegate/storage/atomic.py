"""Reports and baselines are written whole or not at all.

A baseline is what tomorrow's gate trusts: a write cut short (a full disk, Ctrl-C, a killed runner) must
leave yesterday's file as it was. Each write goes to a temporary file in the same folder (so the rename
stays on one file system), is flushed to disk, and only then replaces the target with ``os.replace``,
which POSIX makes atomic.
"""
from __future__ import annotations

import contextlib
import os
import stat
import uuid
from pathlib import Path


class WriteFailed(Exception):
    """A report or baseline could not be written; the message is one line naming the file."""


def write_text(path, text: str, what: str = "file") -> Path:
    """Write ``text`` to ``path`` atomically; on failure the old file (if any) is untouched and the
    temporary file is removed. Raises WriteFailed with a one-line message."""
    target = Path(path).expanduser()
    # a symlinked baseline is updated where it points, not replaced by a plain file
    target = target.resolve() if target.is_symlink() else target
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))  # an existing file keeps its permissions
        os.replace(tmp, target)
    except BaseException as e:  # Ctrl-C mid-write included: no temporary file is left behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        if not isinstance(e, OSError):
            raise
        kept = "the previous file is unchanged" if target.exists() else "nothing was written"
        raise WriteFailed(f"{what} {target} not written ({e.strerror or e}); {kept}") from None
    return target
