"""What the engines say: the reference's outputs on the parity batch, and a whole dataset's decoded results
through one backend, predicted at once or in shards (posegate.pipeline.shards), finalised per image after the merge."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

# not `from posegate.pipeline import shards`: that names the package's __init__, which imports this module
import posegate.pipeline.shards as shards
from posegate import __version__
from posegate.backends import BACKENDS, REFERENCE
from posegate.cases.target import Target
from posegate.metrics.parity import nonfinite_counts
from posegate.pipeline.progress import Progress
from posegate.storage import serial
from posegate.weights import file_digest


class Predictor:
    """Upstream stages (samples, batches, sessions, weights) are asked of ``stages``, the Pipeline.

    ``nonfinite`` maps (model, backend, precision, profile, dataset id) to the NaN/Inf counts per output
    over a prediction run, which the accuracy tests report.
    """

    def __init__(self, cache, stages, options: dict, artifacts: dict, shard=None, predictions_dir=None,
                 merge_dir=None):
        self.cache, self.stages, self.options, self.artifacts = cache, stages, options, artifacts
        self.shard, self.predictions_dir, self.merge_dir = shard, predictions_dir, merge_dir
        self.nonfinite: dict[tuple, dict] = {}

    def reference_outputs(self, spec, profile, dataset, batch: int) -> dict[str, np.ndarray]:
        b = self.stages.parity_batch(spec, profile, dataset, batch)
        fields = {"model": spec.name, "weights": self.stages.weights_identity(spec), "spec_version": spec.version,
                  "dataset": dataset.identity, "profile": profile.name, "samples": b.samples,
                  "backend": REFERENCE, "backend_version": BACKENDS[REFERENCE].version()}

        def build(d: Path):
            outputs = self.stages.session(Target(spec, REFERENCE, "fp32")).run({spec.input_name: b.x})
            np.savez(d / "outputs.npz", **outputs)
        entry = self.cache.get_or_build("outputs", fields, build)
        with np.load(entry.file("outputs.npz")) as z:
            return {k: z[k] for k in spec.output_names}

    def decode(self, spec, outputs: dict, records: list, samples) -> list:
        return spec.flow.decode(outputs, records, list(samples))

    def predictions(self, spec, backend_name: str, precision: str, profile, dataset) -> list:
        """Results of a whole dataset through one backend, cached by every input of the result.

        With a shard set, only that shard is predicted and written, and ShardWritten says where; with a
        merge folder, the shards written there are merged instead of predicting anything.
        """
        samples = self.stages.samples(spec, profile, dataset)
        fields = {"model": spec.name, "weights": self.stages.weights_identity(spec), "spec_version": spec.version,
                  "dataset": dataset.identity, "profile": profile.name, "batch": profile.eval_batch,
                  "samples": digest(samples), "flow": spec.flow.identity(self.options),
                  "backend": self.engine_identity(spec, backend_name, precision), "posegate": __version__,
                  "storage": serial.FORMAT}
        label = f"{spec.name}-{backend_name}-{precision}-{profile.name}-{dataset.name}"
        if self.merge_dir is not None:
            return spec.flow.finalize(shards.merge(self.merge_dir, label, digest(fields), samples))
        if self.shard is None:
            return spec.flow.finalize(self.predict(spec, backend_name, precision, profile, dataset, samples, fields))
        k, of = self.shard
        part = samples[shards.block(len(samples), k, of, profile.eval_batch)]
        results = self.predict(spec, backend_name, precision, profile, dataset, part, {**fields, "shard": [k, of]})
        path = shards.write(self.predictions_dir, label, digest(fields), k, of, part, results)
        raise shards.ShardWritten(f"shard {k}/{of} of {label}: {len(part)} of {len(samples)} {spec.flow.unit} "
                                  f"predicted into {path}; score the merged shards with "
                                  f"--merge-predictions={self.predictions_dir}")

    def predict(self, spec, backend_name, precision, profile, dataset, samples, fields) -> list:
        """Decoded results of ``samples`` in eval batches, before the flow's per-image finalisation."""
        def build(d: Path):
            session = self.stages.session(Target(spec, backend_name, precision, profile, profile.eval_batch))
            results, tally = [], _NonfiniteTally()
            progress = Progress(len(samples), f"{spec.name} {backend_name}-{precision} {dataset.name}", spec.flow.unit)
            for b in self.stages.batches(spec, profile, dataset, profile.eval_batch, samples):
                outputs = session.run({spec.input_name: b.x})
                tally.add(outputs)
                results += self.stages.decode(spec, outputs, b.records, b.samples)
                progress.advance(len(b.samples))
            progress.close()
            serial.dump(results, d / "results.npz")
            (d / "nonfinite.json").write_text(json.dumps(tally.found()))
        entry = self.cache.get_or_build("predictions", fields, build)
        counted = entry.path / "nonfinite.json"
        if counted.is_file():
            key = (spec.name, backend_name, precision, profile.name, dataset.identity)
            self.nonfinite[key] = json.loads(counted.read_text())
        return serial.load(entry.file("results.npz"))

    def engine_identity(self, spec, backend_name: str, precision: str) -> dict:
        """The backend's settings, and a supplied artifact's file digests and contract when one fills the slot."""
        bound = self.artifacts.get((spec.name, backend_name, precision))
        settings = BACKENDS[backend_name].artifact_settings(precision, spec)
        if bound is None or bound.path is None:
            return settings
        files = sorted(bound.path.parent.glob(bound.path.stem + ".*")) if bound.path.is_file() else \
            sorted(p for p in bound.path.rglob("*") if p.is_file())
        return {**settings, "artifact": {p.name: file_digest(p) for p in files},
                "contract": repr(bound.contract)}


class _NonfiniteTally:
    """NaN and Inf counts per output over many batches, named in the accuracy tests' results."""

    def __init__(self):
        self.total: dict[str, dict] = {}

    def add(self, outputs: dict) -> None:
        found = nonfinite_counts(outputs)
        for name, v in outputs.items():
            t = self.total.setdefault(name, {"nan": 0, "inf": 0, "size": 0})
            c = found.get(name, {"nan": 0, "inf": 0})
            t.update(nan=t["nan"] + c["nan"], inf=t["inf"] + c["inf"], size=t["size"] + v.size)

    def found(self) -> dict:
        return {n: c for n, c in self.total.items() if c["nan"] or c["inf"]}


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
