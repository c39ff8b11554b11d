"""Small shims over what changed between the torch (and numpy) releases the suite supports: torch 2.0.1, the
torch of Ascend's TorchAIE samples, to today's. Each module adapts one thing and is named for it; each picks
its call from the version it is given (the installed one by default), so tests can fake either side of every
boundary. A feature that an old release cannot give fails with a message naming the release it needs.
"""
from __future__ import annotations

import re

import torch


class VersionLimit(RuntimeError):
    """A known limit of an installed release: what needs what, and what is installed."""


def release(text: str) -> tuple[int, int]:
    """(major, minor) of a version string: '2.0.1+cpu' -> (2, 0), '2.13.0a0+git' -> (2, 13)."""
    found = re.match(r"(\d+)\.(\d+)", str(text))
    if found is None:
        raise ValueError(f"not a version: {text!r}")
    return int(found.group(1)), int(found.group(2))


def torch_release() -> tuple[int, int]:
    return release(torch.__version__)


def requirement(what: str, needs: tuple[int, int], have: tuple[int, int], why: str) -> str | None:
    """None where ``have`` meets ``needs``; else the one line that says so."""
    if have >= needs:
        return None
    return (f"{what} needs torch >= {needs[0]}.{needs[1]} ({why}); this is torch {have[0]}.{have[1]} "
            "(requirements-min.txt lists what the oldest supported stack can do)")
