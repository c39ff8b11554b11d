"""Optional device libraries, imported only when a backend is asked for them: the module, or why not.

The one place a backend turns a missing package into the sentence its tests skip with; every backend
states its own install hint (and how it names the library) and nothing else.
"""
from __future__ import annotations

import importlib
from types import ModuleType


class Unavailable(ImportError):
    """An optional library is missing here; the message is the skip reason, install hint included."""


def load(module: str, install: str | None = None, shown_as: str | None = None,
         verb: str = "is not importable") -> ModuleType:
    """``module`` imported, or Unavailable: "<shown_as> <verb> (<import error>); <install>"."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = f"; {install}" if install else ""
        raise Unavailable(f"{shown_as or module} {verb} ({e}){hint}") from None


def reason(module: str, install: str | None = None, shown_as: str | None = None,
           verb: str = "is not importable") -> str | None:
    """Why ``module`` cannot be imported here (None: it can), in load's words."""
    try:
        load(module, install, shown_as, verb)
    except Unavailable as e:
        return str(e)
    return None


def version(module: str) -> str | None:
    """``module.__version__`` when it imports here, else None (a cache key must not fail on its absence).
    Importing it is the point where a wheel's libraries must be loaded before another library's (TensorRT's
    before ONNX Runtime's TensorRT provider)."""
    try:
        return getattr(importlib.import_module(module), "__version__", None)
    except ImportError:
        return None
