"""The model registry: every sub-package of ``models`` that defines ``SPEC`` is a model.

Adding a model means adding one folder here; no test names a model.
"""
from __future__ import annotations

import importlib
import pkgutil

from posegate.spec import ModelSpec


def _discover() -> dict[str, ModelSpec]:
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.ispkg:
            continue
        spec = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SPEC", None)
        if isinstance(spec, ModelSpec):
            if spec.name != info.name:
                raise ValueError(f"models/{info.name}: SPEC.name is {spec.name!r}; it must equal the folder name")
            found[spec.name] = spec
    return found


MODELS: dict[str, ModelSpec] = _discover()
