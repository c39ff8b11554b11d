"""The model registry: every sub-package of ``models`` that defines ``SPEC`` is a model.

Adding a model means adding one folder here; no test names a model. The specs register in
posegate.registry (checked there), and ``MODELS`` is that same dict.
"""
from __future__ import annotations

import importlib
import pkgutil

from posegate.registry import MODELS, register
from posegate.spec import ModelSpec


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.ispkg:
            continue
        spec = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SPEC", None)
        if isinstance(spec, ModelSpec):
            if spec.name != info.name:
                raise ValueError(f"models/{info.name}: SPEC.name is {spec.name!r}; it must equal the folder name")
            register(spec)


_discover()

__all__ = ["MODELS"]
