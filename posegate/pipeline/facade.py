"""The stages of a port, as lazily built, cached artifacts, behind one object the stage tests share.

Every stage test asks the Pipeline for what it needs (a model, an ONNX file, a converted model, a
session, preprocessed inputs, reference outputs, predictions); each artifact is built at most once
per cache key, across runs and across xdist workers. The work is done by parts named for their jobs;
the parts ask the Pipeline (not each other) for upstream stages, so replacing a stage on it replaces
it for every dependant.
"""
from __future__ import annotations

from pathlib import Path

from posegate.artifacts import BoundArtifact
from posegate.pipeline.batches import Inputs
from posegate.pipeline.builds import Builds, Weights
from posegate.pipeline.failures import StageOutcomes
from posegate.pipeline.origins import Origins
from posegate.pipeline.predictions import Predictor
from posegate.pipeline.sessions import Sessions
from posegate.storage.cache import ArtifactCache


class Pipeline:
    """``shard`` (k, N) predicts only that shard of a full dataset into ``predictions_dir``; ``merge_dir``
    scores the shards written there instead. ``artifacts`` maps (model, backend, precision) to a supplied
    converted model; ``options`` are the run options flows read, e.g. {"boxes": "ground-truth"}; ``outcomes``
    the run's store of failed stages (the pytest session shares its own; a new one by default)."""

    def __init__(self, cache: ArtifactCache, weights_dir: Path | None = None, options: dict | None = None,
                 shard: tuple[int, int] | None = None, predictions_dir: Path | None = None,
                 merge_dir: Path | None = None, artifacts: dict[tuple, BoundArtifact] | None = None,
                 outcomes: StageOutcomes | None = None):
        self.cache = cache
        self.shard, self.predictions_dir, self.merge_dir = shard, predictions_dir, merge_dir
        self.artifacts = dict(artifacts or {})
        self.options = dict(options or {})
        self.outcomes = outcomes if outcomes is not None else StageOutcomes()
        self.origins = Origins(self.artifacts)
        self.weights = Weights(weights_dir, self.outcomes, self.origins)
        self.weights_dir = self.weights.weights_dir
        self.builds = Builds(cache, self, self.outcomes, self.origins)
        self.sessions = Sessions(self, self.outcomes, self.origins, self.artifacts)
        self.inputs = Inputs(cache, self, self.options)
        self.predictor = Predictor(cache, self, self.options, self.artifacts, shard, predictions_dir, merge_dir)
        self.nonfinite = self.predictor.nonfinite

    # ---- weights, exports, conversions (posegate.pipeline.builds) ---------------------------------
    def checkpoint_path(self, spec):
        return self.weights.checkpoint_path(spec)

    def weights_identity(self, spec):
        return self.weights.weights_identity(spec)

    def torch_model(self, spec):
        return self.weights.torch_model(spec)

    def weights_info(self, spec):
        return self.weights.weights_info(spec)

    def onnx(self, spec, opset):
        return self.builds.onnx(spec, opset)

    def torchscript(self, spec, shape):
        return self.builds.torchscript(spec, shape)

    def exported(self, target):
        return self.builds.exported(target)

    def source(self, spec):
        return self.builds.source(spec)

    def converted(self, target):
        return self.builds.converted(target)

    # ---- sessions (posegate.pipeline.sessions) ---------------------------------------------------
    def session(self, target):
        return self.sessions.session(target)

    def artifact_session(self, spec, bound):
        return self.sessions.artifact_session(spec, bound)

    def close(self):
        self.sessions.close()

    # ---- inputs (posegate.pipeline.batches) ------------------------------------------------------
    def samples(self, spec, profile, dataset):
        return self.inputs.samples(spec, profile, dataset)

    def batches(self, spec, profile, dataset, batch, samples=None):
        return self.inputs.batches(spec, profile, dataset, batch, samples)

    def parity_batch(self, spec, profile, dataset, batch):
        return self.inputs.parity_batch(spec, profile, dataset, batch)

    # ---- outputs and predictions (posegate.pipeline.predictions) ---------------------------------
    def reference_outputs(self, spec, profile, dataset, batch):
        return self.predictor.reference_outputs(spec, profile, dataset, batch)

    def decode(self, spec, outputs, records, samples):
        return self.predictor.decode(spec, outputs, records, samples)

    def predictions(self, spec, backend_name, precision, profile, dataset):
        return self.predictor.predictions(spec, backend_name, precision, profile, dataset)
