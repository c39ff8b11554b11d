"""What a port is built from: the reference network's weights, its exports, and each backend's conversion.

Each build is cached by every input of its result and runs at most once per run; a failed one makes its
dependants skip, naming the stage test that builds it (posegate.pipeline.origins).
"""
from __future__ import annotations

import os
from pathlib import Path

import onnx
import torch

from posegate import __version__
from posegate.backends import BACKENDS, ModelSource
from posegate.cases.target import Target
from posegate.export.to_onnx import export_onnx
from posegate.export.to_torchscript import default_trace_shape, export_torchscript, trace_shape
from posegate.weights import WeightsInfo, build_model, file_digest


def stack_versions() -> dict:
    """The releases every artifact is built under, part of each key under its own field ``stack``: an export
    or a conversion made under one torch or onnx is never reused under another (the engine's own release is in
    its backend's settings). Nested, never spread into the key: a field named ``onnx`` there would replace the
    exported file's digest and make every model's conversion one cache entry. Read at each build, not at
    import."""
    return {"stack": {"torch": torch.__version__, "onnx": onnx.__version__, "posegate": __version__}}


class Weights:
    """The reference network: the spec's checkpoint from the weights folder, or seeded random weights."""

    def __init__(self, weights_dir: Path | None, outcomes, origins):
        self.weights_dir = Path(weights_dir) if weights_dir else None
        self.outcomes, self.origins = outcomes, origins
        self._models: dict[str, torch.nn.Module] = {}

    def checkpoint_path(self, spec) -> Path | None:
        if self.weights_dir is None:
            return None
        for name in (spec.checkpoint.filename, *spec.checkpoint.alternatives):
            if os.path.lexists(self.weights_dir / name):  # a link to nothing is an error, never seeded weights
                return self.weights_dir / name
        return None

    def weights_identity(self, spec) -> str:
        path = self.checkpoint_path(spec)
        return f"{path.name}@{file_digest(path)[:12]}" if path else f"synthetic-seed{spec.seed}"

    def torch_model(self, spec) -> torch.nn.Module:
        """The reference network; dependants of a failed weights stage skip instead of failing."""
        if spec.name not in self._models:
            path = self.checkpoint_path(spec)
            self._models[spec.name] = self.outcomes.once(("weights", spec.name), self.origins.weights(spec, path),
                                                         lambda: build_model(spec, path))
        return self._models[spec.name]

    def weights_info(self, spec) -> WeightsInfo:
        return self.torch_model(spec).posegate_weights


class Builds:
    """Exports (ONNX per opset, a TorchScript trace per engine shape) and backend conversions.

    Upstream builds are asked of ``stages`` (the Pipeline), not of this object, so that a test which
    replaces one stage on the pipeline (say its ONNX export) replaces it for every dependant.
    """

    def __init__(self, cache, stages, outcomes, origins):
        self.cache, self.stages, self.outcomes, self.origins = cache, stages, outcomes, origins

    def onnx(self, spec, opset: int) -> Path:
        sample = (1, *spec.sample_dims)
        fields = {"model": spec.name, "spec_version": spec.version, "weights": self.stages.weights_identity(spec),
                  "opset": opset, "dynamic_axes": spec.dynamic_axes(), "sample": sample,
                  **stack_versions()}

        def build():
            model = self.stages.torch_model(spec)
            return self.cache.get_or_build("onnx", fields,
                                           lambda d: export_onnx(model, spec, d / "model.onnx", opset, sample))
        entry = self.outcomes.once(("onnx", spec.name, opset), self.origins.onnx_export(spec, opset), build)
        return entry.file("model.onnx")

    def torchscript(self, spec, shape: tuple) -> Path:
        """The network traced at one engine shape (a dynamic axis at its profile's benchmark size), checked."""
        traced = trace_shape(spec, shape)
        fields = {"model": spec.name, "spec_version": spec.version, "weights": self.stages.weights_identity(spec),
                  "shape": traced, **stack_versions()}

        def build():
            model = self.stages.torch_model(spec)
            return self.cache.get_or_build("torchscript", fields,
                                           lambda d: export_torchscript(model, d / "model.ts", traced))
        entry = self.outcomes.once(("torchscript", spec.name, traced), self.origins.trace(spec, shape), build)
        return entry.file("model.ts")

    def exported(self, target: Target) -> Path | None:
        """What a backend converts from: its ONNX export, its trace (a static backend's at the target's engine
        shape), or None for one that compiles the network itself."""
        spec, backend = target.spec, BACKENDS[target.backend]
        if backend.exports == "module":
            self.stages.torch_model(spec)
            return None
        if backend.exports == "torchscript":
            return self.stages.torchscript(spec, target.artifact_shape or default_trace_shape(spec))
        return self.stages.onnx(spec, backend.opset)

    def source(self, spec) -> ModelSource:
        return ModelSource(spec, lambda: self.stages.torch_model(spec), lambda opset: self.stages.onnx(spec, opset),
                           lambda shape: self.stages.torchscript(spec, shape))

    def converted(self, target: Target) -> Path | None:
        spec, precision, backend = target.spec, target.precision, BACKENDS[target.backend]
        if not backend.converts:
            return None
        shape = target.artifact_shape
        exported = self.stages.exported(target)
        fields = {backend.exports: file_digest(exported) if exported else self.stages.weights_identity(spec),
                  "settings": backend.artifact_settings(precision, spec),
                  "shape": shape, "spec_version": spec.version, **stack_versions()}

        def build():
            return self.cache.get_or_build(
                "convert", fields, lambda d: backend.convert(self.stages.source(spec), d, precision, shape))
        key = ("convert", spec.name, target.backend, precision, shape)
        return self.outcomes.once(key, self.origins.conversion(target), build).path
