"""What one stage test builds and runs, made once from its case: a model on a backend at a precision, the
input profile and batch it feeds, and the engine input shape that follows from them.

This is also the one place that decides which engine shape an artifact is built for: a backend with static
shapes (ATC's OM, TorchAIE, inductor here) builds one artifact per engine shape, any other one artifact that
serves every shape. The case kinds, the pipeline's builds and sessions, and the stage tests all ask here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from posegate.backends import BACKENDS


def per_engine_shape(backend: str | None) -> bool:
    """Whether ``backend`` builds one artifact per engine shape (static shapes) rather than one for all."""
    return backend in BACKENDS and BACKENDS[backend].static_shapes


@dataclass(frozen=True)
class Target:
    """``profile`` and ``batch`` are None where the case has none (a shape-generic conversion); then so is the
    engine shape. ``supplied``: the engine is a converted model given with --artifact, not one built here."""
    spec: object
    backend: str | None = None
    precision: str | None = None
    profile: object = None
    batch: int | None = None
    dataset: str | None = None
    supplied: bool = False
    engine_shape: tuple | None = field(init=False, default=None)

    def __post_init__(self):
        # flip copies (of the profile or of the flow) multiply the rows: ModelSpec.engine_shape knows both
        shape = (None if self.profile is None or self.batch is None
                 else tuple(self.spec.engine_shape(self.profile, self.batch)))
        object.__setattr__(self, "engine_shape", shape)

    @classmethod
    def from_case(cls, case) -> Target:
        return cls(case.spec, case.backend, case.precision, case.profile if case.shape is not None else None,
                   case.batch, case.dataset, case.variant == "artifact")

    @property
    def model(self) -> str:
        return self.spec.name

    @property
    def artifact_shape(self) -> tuple | None:
        """The engine shape the backend's artifact is built for; None where one artifact serves every shape."""
        return self.engine_shape if per_engine_shape(self.backend) else None

    @property
    def fixed_batch(self) -> bool:
        """The engine runs only at the batch it was built or supplied for (else any batch, one row included)."""
        return self.supplied or self.artifact_shape is not None
