"""Which stage test builds an artifact, as the very case the registry generates for that test.

A dependant that skips because an upstream build failed tells the user which test to read. Every build
carries its origin: the stage test (function and case kind) whose cases build it, and what it builds, keyed
the way the building cases' Targets key it (posegate.cases.target). The cases come from
``posegate.cases.generate.generate`` (never an id assembled here), indexed once per model and kind by what
each builds, so the name stays the name of a test that exists when the generator, a profile or a backend's
shape rule changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from posegate.cases.generate import Case, generate
from posegate.cases.target import Target
from posegate.pipeline.failures import StageFailed


def _builds(kind: str, case: Case) -> tuple:
    """What a case of a building kind builds, in the key its builder asks with."""
    if kind == "model":
        return ("weights",)
    if kind == "export":
        return ("onnx", case.variant)
    t = Target.from_case(case)
    if kind == "torchscript":
        return ("trace", t.engine_shape)
    if kind == "convert":
        return ("convert", t.backend, t.precision, t.artifact_shape)
    return ("supplied", t.backend, t.precision)


@dataclass(frozen=True)
class Origin:
    """The stage test that builds one artifact: ``stage`` is the stage name a skip reports ("weights",
    "export", "convert"), ``builds`` the artifact's key among its kind's cases. ``wanted`` and ``engine`` say
    what was being built when no case of ``test`` builds it."""
    stage: str
    test: str
    kind: str
    spec: object = field(repr=False, compare=False)
    builds: tuple
    wanted: tuple[tuple[str, object], ...] = ()
    engine: tuple | None = None
    index: Origins | None = field(default=None, repr=False, compare=False)

    def case(self) -> Case | None:
        """The generated case of ``test`` that builds this artifact; None when no case of it does."""
        return self.index.case(self.spec, self.kind, self.builds)

    def failure(self, error: BaseException | str) -> StageFailed:
        return StageFailed(self.stage, self.test, self.case(), error, self.describe())

    def describe(self) -> str:
        """What was being built, for a failure no stage test's case builds."""
        wanted = ", ".join(f"{k}={v}" for k, v in self.wanted if v is not None)
        at = f" at engine shape {tuple(self.engine)}" if self.engine is not None else ""
        return f"{self.spec.name} ({wanted or 'no case fields'}){at}"


class Origins:
    """Origins of a pipeline's builds. ``artifacts`` are the run's supplied artifacts: they decide which
    convert and artifact cases exist."""

    def __init__(self, artifacts: dict | None = None):
        self.artifacts = artifacts if artifacts is not None else {}
        self._index: dict[tuple[str, str], dict[tuple, Case]] = {}

    def case(self, spec, kind: str, builds: tuple) -> Case | None:
        """When cases of two profiles build the same artifact (a flip profile at half the batch), the default
        selection's case wins, so the user can run the test without --full."""
        if (spec.name, kind) not in self._index:
            index: dict[tuple, Case] = {}
            for c in generate(kind, [spec], artifacts=self.artifacts):
                key = _builds(kind, c)
                if key not in index or (index[key].full and not c.full):
                    index[key] = c
            self._index[(spec.name, kind)] = index
        return self._index[(spec.name, kind)].get(builds)

    def _origin(self, stage, test, kind, spec, builds, wanted=(), engine=None) -> Origin:
        return Origin(stage, test, kind, spec, builds, wanted, engine, self)

    def weights(self, spec, checkpoint) -> Origin:
        """The network's weights: with a checkpoint the load test reads it, without one the seeded network is
        built (and must load again) by the prefixed-checkpoint test."""
        test = "test_checkpoint_loads" if checkpoint is not None else "test_prefixed_checkpoint_loads_the_same"
        return self._origin("weights", test, "model", spec, ("weights",))

    def onnx_export(self, spec, opset: int) -> Origin:
        variant = f"opset{opset}"
        return self._origin("export", "test_export", "export", spec, ("onnx", variant), (("variant", variant),))

    def trace(self, spec, engine_shape: tuple) -> Origin:
        shape = tuple(engine_shape)
        return self._origin("export", "test_torchscript", "torchscript", spec, ("trace", shape), engine=shape)

    def conversion(self, target: Target) -> Origin:
        """A converted model (and the session loaded on it): one per backend and precision, and per engine
        shape on a backend that builds static shapes."""
        wanted = (("backend", target.backend), ("precision", target.precision))
        return self._origin("convert", "test_convert", "convert", target.spec,
                            ("convert", target.backend, target.precision, target.artifact_shape), wanted,
                            target.artifact_shape)

    def supplied(self, spec, contract) -> Origin:
        """A session on a supplied artifact: its interface check is the artifact test's."""
        p = contract.profile
        wanted = (("backend", contract.backend), ("precision", contract.precision), ("batch", p.batch_sizes[0]),
                  ("shape", p.name), ("variant", "artifact"))
        return self._origin("convert", "test_artifact", "artifact", spec,
                            ("supplied", contract.backend, contract.precision), wanted)
