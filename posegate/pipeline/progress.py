"""Progress of long evaluations, drawn on the real terminal so pytest's own output stays intact.

On a terminal one line is redrawn in place and erased when done; otherwise (CI logs) a plain line is
written at most every ``interval`` seconds. Short jobs print nothing.
"""
from __future__ import annotations

import os
import sys
import time

MIN_ITEMS = int(os.environ.get("POSEGATE_PROGRESS_MIN", "50"))


class Progress:
    def __init__(self, total: int, label: str, unit: str = "images", interval: float = 30.0, stream=None):
        self.total, self.label, self.unit, self.interval = total, label, unit, interval
        self.stream = stream or sys.__stderr__
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = total >= MIN_ITEMS and os.environ.get("PYTEST_XDIST_WORKER") is None
        self.done = 0
        self.start = self.last = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left == left else "--:--:--"
        return f"[posegate] {self.label}: {self.done}/{self.total} {self.unit}, {rate:.1f}/s, {eta} left"

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
        elif now - self.last >= self.interval or self.done == self.total:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self.last = now

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
