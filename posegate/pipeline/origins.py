"""Which stage test builds an artifact, as the very case the registry generates for that test.

A dependant that skips because an upstream build failed tells the user which test to read. The case
comes from ``posegate.cases.generate.generate`` (never an id assembled here), so the name stays the name of a
test that exists when the generator, a profile or a backend's shape rule changes.
"""
from __future__ import annotations

from dataclasses import dataclass

from posegate.backends import BACKENDS
from posegate.cases.generate import Case, generate


@dataclass(frozen=True)
class Origin:
    """The stage test (function and case kind) whose cases build one artifact.

    ``fields`` are case fields the case must have; ``engine`` an engine input shape that the case's
    profile and batch must give (a static-shape backend or a trace builds one artifact per shape).
    """
    stage: str  # the stage name a skip reports: "weights", "export", "convert"
    test: str
    kind: str
    model: str
    fields: tuple[tuple[str, object], ...] = ()
    engine: tuple | None = None

    def case(self, spec, artifacts=None) -> Case | None:
        """The generated case of ``test`` that builds this artifact; None when no case of it does.

        When cases of two profiles build the same engine shape (a flip profile at half the batch), the
        default selection's case wins, so the user can run the test without --full.
        """
        if spec.name != self.model:
            raise ValueError(f"an origin of {self.model} resolved against spec {spec.name}")
        found = [c for c in generate(self.kind, [spec], artifacts=artifacts or {}) if self._builds(spec, c)]
        return min(found, key=lambda c: c.full, default=None)

    def _builds(self, spec, case: Case) -> bool:
        if any(getattr(case, k) != v for k, v in self.fields):
            return False
        if self.engine is None:
            return True
        if case.shape is None or case.batch is None:
            return False
        return tuple(spec.engine_shape(spec.profile(case.shape), case.batch)) == tuple(self.engine)

    def describe(self) -> str:
        """What was being built, for a failure no stage test's case builds."""
        wanted = ", ".join(f"{k}={v}" for k, v in self.fields if v is not None)
        at = f" at engine shape {tuple(self.engine)}" if self.engine is not None else ""
        return f"{self.model} ({wanted or 'no case fields'}){at}"

    @classmethod
    def weights(cls, spec, checkpoint) -> Origin:
        """The network's weights: with a checkpoint the load test reads it, without one the seeded network is
        built (and must load again) by the prefixed-checkpoint test."""
        test = "test_checkpoint_loads" if checkpoint is not None else "test_prefixed_checkpoint_loads_the_same"
        return cls("weights", test, "model", spec.name)

    @classmethod
    def onnx_export(cls, spec, opset: int) -> Origin:
        return cls("export", "test_export", "export", spec.name, (("variant", f"opset{opset}"),))

    @classmethod
    def trace(cls, spec, engine_shape: tuple) -> Origin:
        return cls("export", "test_torchscript", "torchscript", spec.name, engine=tuple(engine_shape))

    @classmethod
    def conversion(cls, spec, backend: str, precision: str, engine_shape: tuple | None) -> Origin:
        """A converted model (and the session loaded on it): one per backend and precision, and per engine
        shape on a backend that builds static shapes."""
        fields = (("backend", backend), ("precision", precision), ("variant", None))
        if BACKENDS[backend].static_shapes:
            if engine_shape is None:  # every case of a static backend has a shape: none builds this
                return cls("convert", "test_convert", "convert", spec.name, fields + (("shape", None),))
            return cls("convert", "test_convert", "convert", spec.name, fields, engine=tuple(engine_shape))
        return cls("convert", "test_convert", "convert", spec.name, fields + (("batch", None), ("shape", None)))

    @classmethod
    def supplied(cls, spec, contract) -> Origin:
        """A session on a supplied artifact: its interface check is the artifact test's."""
        p = contract.profile
        fields = (("backend", contract.backend), ("precision", contract.precision), ("batch", p.batch_sizes[0]),
                  ("shape", p.name), ("variant", "artifact"))
        return cls("convert", "test_artifact", "artifact", spec.name, fields)
