"""Open sessions: one per converted model and engine shape, or one on a supplied artifact after its check."""
from __future__ import annotations

import torch

from posegate.artifacts import BoundArtifact, check_signature
from posegate.backends import BACKENDS, EngineIO
from posegate.cases.target import Target
from posegate.flows.kinds import MissingData


class Sessions:
    """Loaded engines, kept open for the run; upstream builds are asked of ``stages`` (the Pipeline)."""

    def __init__(self, stages, outcomes, origins, artifacts: dict):
        self.stages, self.outcomes, self.origins, self.artifacts = stages, outcomes, origins, artifacts
        self._open: dict[tuple, object] = {}

    def session(self, target: Target):
        spec, precision = target.spec, target.precision
        bound = self.artifacts.get((spec.name, target.backend, precision))
        if bound is not None:
            return self.stages.artifact_session(spec, bound)
        backend = BACKENDS[target.backend]
        key = (spec.name, target.backend, precision, target.artifact_shape)
        if key not in self._open:
            artifact = self.stages.converted(target)
            self._open[key] = self.outcomes.once(("load",) + key, self.origins.conversion(target),
                                                 lambda: backend.load(artifact, self.stages.source(spec), precision))
        return self._open[key]

    def artifact_session(self, spec, bound: BoundArtifact):
        """A session on a supplied file, after its names and shapes passed the contract's check."""
        if bound.path is None:
            raise MissingData(bound.missing_reason())
        c = bound.contract
        key = ("artifact", spec.name, c.backend, c.precision)
        if key not in self._open:
            self._open[key] = self.outcomes.once(key, self.origins.supplied(spec, c),
                                                 lambda: self._checked(spec, bound))
        return self._open[key]

    def _checked(self, spec, bound: BoundArtifact):
        c = bound.contract
        io = EngineIO.of(spec, c)
        want_input = (c.profile.batch_sizes[0], *c.profile.concrete_dims)
        model = self.stages.torch_model(spec)  # built outside inference mode: its parameters serve export too
        with torch.inference_mode():
            ref = model(torch.zeros(want_input))
        want_outputs = {n: (want_input[0], *o.shape[1:]) for n, o in zip(spec.output_names, ref)}
        session = BACKENDS[c.backend].open(bound.path, spec, c.precision, io)
        try:
            check_signature(bound.path, session.signature(), io, want_input, want_outputs)
        except Exception:
            session.close()
            raise
        session.info.details["artifact"] = {"path": str(bound.path), "origin": bound.origin}
        return session

    def close(self):
        for s in self._open.values():
            s.close()
        self._open.clear()
