"""The model registry: the one dict of model specs, filled by the ``models`` package as it imports.

posegate never imports ``models`` (tests/machinery/test_layering.py holds it to that); code here that needs a
spec by name reads ``MODELS`` after whoever runs it (the conftest plugins, a test) imported ``models``.
A spec is checked as it registers, so a model with settings no backend takes fails at import, naming it.
"""
from __future__ import annotations

import importlib

from posegate.backends import BACKENDS
from posegate.spec import ModelSpec

MODELS: dict[str, ModelSpec] = {}


class SpecError(ValueError):
    """A model spec that cannot register; the message names the model and what is wrong."""


def spec_problems(spec: ModelSpec, backends=None) -> list[str]:
    """What is wrong with ``spec``'s per-backend settings (empty: nothing)."""
    backends = BACKENDS if backends is None else backends
    problems = []
    for name, value in dict(spec.backend_settings).items():
        backend = backends.get(name)
        if backend is None:
            problems.append(f"backend_settings names backend {name!r}, which is not one of {sorted(backends)}")
            continue
        problem = backend.settings_problem(value)
        if problem:
            problems.append(f"backend_settings[{name!r}]: {problem}")
    return problems


def register(spec: ModelSpec, registry: dict | None = None, backends=None) -> ModelSpec:
    """Add ``spec`` to ``registry`` (the global MODELS by default) after checking it; returns it."""
    registry = MODELS if registry is None else registry
    if not isinstance(spec, ModelSpec):
        raise SpecError(f"{spec!r} is not a ModelSpec")
    problems = spec_problems(spec, backends)
    if problems:
        raise SpecError(f"model {spec.name}: " + "; ".join(problems))
    if registry.get(spec.name, spec) is not spec:
        raise SpecError(f"model {spec.name} is registered twice")
    registry[spec.name] = spec
    return spec


def load_package(package: str = "models") -> dict[str, ModelSpec]:
    """Import the package whose sub-packages register the model specs, by name, for an entry point that
    runs outside pytest (``python -m posegate.training``); the conftest plugins import ``models`` themselves."""
    importlib.import_module(package)
    if not MODELS:
        raise SpecError(f"importing {package!r} registered no model spec")
    return MODELS
