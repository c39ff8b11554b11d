"""The stages of a port, as lazily built, cached artifacts.

Every stage test asks this object for what it needs (a model, an ONNX file, a converted model, a
session, preprocessed inputs, reference outputs, predictions); each artifact is built at most once
per cache key, across runs and across xdist workers.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from posegate import __version__
from posegate.artifacts import BoundArtifact, check_signature
from posegate.backends import BACKENDS, REFERENCE, EngineIO, ModelSource
from posegate.cache import ArtifactCache
from posegate.export import export_onnx
from posegate.torchscript import default_trace_shape, export_torchscript, stage_id, trace_shape
from posegate.flows import MissingData
from posegate.parity import nonfinite_counts
from posegate.progress import Progress
from posegate import serial, shards
from posegate.weights import WeightsInfo, build_model, file_digest


class StageFailed(RuntimeError):
    """An upstream stage failed: dependants skip with this message instead of failing again."""

    def __init__(self, stage: str, test_id: str, error: BaseException | str):
        self.stage, self.test_id = stage, test_id
        detail = error if isinstance(error, str) else f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        super().__init__(f"{stage} failed (see {test_id}): {detail}")


@dataclass(frozen=True)
class Batch:
    samples: tuple
    x: np.ndarray
    records: list


class Pipeline:
    def __init__(self, cache: ArtifactCache, weights_dir: Path | None = None, options: dict | None = None,
                 shard: tuple[int, int] | None = None, predictions_dir: Path | None = None,
                 merge_dir: Path | None = None, artifacts: dict[tuple, BoundArtifact] | None = None):
        self.cache = cache
        # full-dataset predictions: this run's shard (k, N) written to predictions_dir, or all shards merged
        self.shard, self.predictions_dir, self.merge_dir = shard, predictions_dir, merge_dir
        self.artifacts = dict(artifacts or {})  # (model, backend, precision) -> a supplied converted model
        self.weights_dir = Path(weights_dir) if weights_dir else None
        self.options = dict(options or {})  # run options flows read, e.g. {"boxes": "ground-truth"}
        self._models: dict[str, torch.nn.Module] = {}
        self._samples: dict[tuple, list] = {}
        self._sessions: dict[tuple, object] = {}
        self._failures: dict[tuple, StageFailed] = {}
        # (model, backend, precision, profile, dataset id) -> NaN/Inf counts per output over a prediction run
        self.nonfinite: dict[tuple, dict] = {}

    # ---- weights -------------------------------------------------------------------------------
    def checkpoint_path(self, spec) -> Path | None:
        if self.weights_dir is None:
            return None
        for name in (spec.checkpoint.filename, *spec.checkpoint.alternatives):
            if (self.weights_dir / name).exists():
                return self.weights_dir / name
        return None

    def weights_identity(self, spec) -> str:
        path = self.checkpoint_path(spec)
        return f"{path.name}@{file_digest(path)[:12]}" if path else f"synthetic-seed{spec.seed}"

    def torch_model(self, spec) -> torch.nn.Module:
        """The reference network; dependants of a failed weights stage skip instead of failing."""
        if spec.name not in self._models:
            self._models[spec.name] = self._once(("weights", spec.name), "weights", f"test_weights[{spec.name}]",
                                                 lambda: build_model(spec, self.checkpoint_path(spec)))
        return self._models[spec.name]

    def weights_info(self, spec) -> WeightsInfo:
        return self.torch_model(spec).posegate_weights

    # ---- export / convert ------------------------------------------------------------------------
    def onnx(self, spec, opset: int) -> Path:
        sample = (1, *spec.sample_dims)
        fields = {"model": spec.name, "spec_version": spec.version, "weights": self.weights_identity(spec),
                  "opset": opset, "dynamic_axes": spec.dynamic_axes(), "sample": sample,
                  "torch": torch.__version__, "onnx": onnx.__version__, "posegate": __version__}

        def build():
            model = self.torch_model(spec)
            return self.cache.get_or_build("onnx", fields, lambda d: export_onnx(model, spec, d / "model.onnx", opset, sample))
        entry = self._once(("onnx", spec.name, opset), "export", f"test_export[{spec.name}-opset{opset}]", build)
        return entry.file("model.onnx")

    def torchscript(self, spec, shape: tuple) -> Path:
        """The network traced at one engine shape (a dynamic axis at its profile's benchmark size), checked."""
        traced = trace_shape(spec, shape)
        fields = {"model": spec.name, "spec_version": spec.version, "weights": self.weights_identity(spec),
                  "shape": traced, "torch": torch.__version__, "posegate": __version__}

        def build():
            model = self.torch_model(spec)
            return self.cache.get_or_build("torchscript", fields,
                                           lambda d: export_torchscript(model, d / "model.ts", traced))
        entry = self._once(("torchscript", spec.name, traced), "export", stage_id(spec, shape), build)
        return entry.file("model.ts")

    def exported(self, spec, backend_name: str, shape: tuple | None = None) -> Path | None:
        """What a backend converts from: its ONNX export, its trace (a static backend's at ``shape``), or
        None for one that compiles the network itself."""
        backend = BACKENDS[backend_name]
        if backend.exports == "module":
            self.torch_model(spec)
            return None
        if backend.exports == "torchscript":
            return self.torchscript(spec, shape if backend.static_shapes and shape else default_trace_shape(spec))
        return self.onnx(spec, backend.opset)

    def source(self, spec) -> ModelSource:
        return ModelSource(spec, lambda: self.torch_model(spec), lambda opset: self.onnx(spec, opset),
                           lambda shape: self.torchscript(spec, shape))

    def converted(self, spec, backend_name: str, precision: str, shape: tuple | None = None) -> Path | None:
        backend = BACKENDS[backend_name]
        if not backend.converts:
            return None
        shape = shape if backend.static_shapes else None
        exported = self.exported(spec, backend_name, shape)
        fields = {backend.exports: file_digest(exported) if exported else self.weights_identity(spec),
                  "settings": backend.artifact_settings(precision),
                  "shape": shape, "spec_version": spec.version}
        test_id = f"test_convert[{spec.name}-{backend_name}-{precision}]"

        def build():
            return self.cache.get_or_build(
                "convert", fields, lambda d: backend.convert(self.source(spec), d, precision, shape))
        return self._once(("convert", spec.name, backend_name, precision, shape), "convert", test_id, build).path

    def session(self, spec, backend_name: str, precision: str, shape: tuple | None = None):
        bound = self.artifacts.get((spec.name, backend_name, precision))
        if bound is not None:
            return self.artifact_session(spec, bound)
        backend = BACKENDS[backend_name]
        key = (spec.name, backend_name, precision, shape if backend.static_shapes else None)
        if key not in self._sessions:
            artifact = self.converted(spec, backend_name, precision, shape)
            self._sessions[key] = self._once(("load",) + key, "convert",
                                             f"test_convert[{spec.name}-{backend_name}-{precision}]",
                                             lambda: backend.load(artifact, self.source(spec), precision))
        return self._sessions[key]

    def artifact_session(self, spec, bound: BoundArtifact):
        """A session on a supplied file, after its names and shapes passed the contract's check."""
        if bound.path is None:
            raise MissingData(bound.missing_reason())
        c = bound.contract
        key = ("artifact", spec.name, c.backend, c.precision)
        if key not in self._sessions:
            def load():
                io = EngineIO.of(spec, c)
                want_input = (c.profile.batch_sizes[0], *c.profile.concrete_dims)
                model = self.torch_model(spec)  # built outside inference mode: its parameters serve export too
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
            test_id = f"test_artifact[{spec.name}-{c.backend}-{c.precision}-bs{c.profile.batch_sizes[0]}-{c.profile.name}-artifact]"
            self._sessions[key] = self._once(key, "convert", test_id, load)
        return self._sessions[key]

    def close(self):
        for s in self._sessions.values():
            s.close()
        self._sessions.clear()

    # ---- data ----------------------------------------------------------------------------------
    def samples(self, spec, profile, dataset) -> list:
        key = (spec.name, profile.name, dataset.identity)
        if key not in self._samples:
            self._samples[key] = spec.flow.samples(dataset, profile, self.options)
        return self._samples[key]

    def batches(self, spec, profile, dataset, batch: int, samples=None):
        """Preprocessed batches of a dataset's samples, in order (not cached: full-size sets)."""
        flow = spec.flow
        samples = list(samples if samples is not None else self.samples(spec, profile, dataset))
        for i in range(0, len(samples), batch):
            chunk = samples[i:i + batch]
            x, records = flow.preprocess([flow.load(dataset, s) for s in chunk], profile)
            yield Batch(tuple(chunk), x, records)

    def parity_batch(self, spec, profile, dataset, batch: int) -> Batch:
        """The first ``batch`` samples of a dataset (cycled if it has fewer), preprocessed and cached."""
        every = self.samples(spec, profile, dataset)
        if not every:
            raise MissingData(f"{dataset.identity} yields no {spec.flow.unit} for {spec.name}")
        samples = tuple(every[i % len(every)] for i in range(batch))
        fields = {"dataset": dataset.identity, "model": spec.name, "spec_version": spec.version,
                  "profile": profile.name, "preprocess": profile.preprocess, "samples": samples,
                  "storage": serial.FORMAT}

        def build(d: Path):
            b = next(self.batches(spec, profile, dataset, batch, samples))
            np.save(d / "x.npy", b.x)
            serial.dump(b.records, d / "records.npz")
        entry = self.cache.get_or_build("inputs", fields, build)
        return Batch(samples, np.load(entry.file("x.npy")), serial.load(entry.file("records.npz")))

    def reference_outputs(self, spec, profile, dataset, batch: int) -> dict[str, np.ndarray]:
        b = self.parity_batch(spec, profile, dataset, batch)
        fields = {"model": spec.name, "weights": self.weights_identity(spec), "spec_version": spec.version,
                  "dataset": dataset.identity, "profile": profile.name, "samples": b.samples,
                  "backend": REFERENCE, "backend_version": BACKENDS[REFERENCE].version()}

        def build(d: Path):
            np.savez(d / "outputs.npz", **self.session(spec, REFERENCE, "fp32").run({spec.input_name: b.x}))
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
        samples = self.samples(spec, profile, dataset)
        fields = {"model": spec.name, "weights": self.weights_identity(spec), "spec_version": spec.version,
                  "dataset": dataset.identity, "profile": profile.name, "batch": profile.eval_batch,
                  "samples": _digest(samples), "flow": spec.flow.identity(self.options),
                  "backend": self._engine_identity(spec, backend_name, precision), "posegate": __version__,
                  "storage": serial.FORMAT}
        label = f"{spec.name}-{backend_name}-{precision}-{profile.name}-{dataset.name}"
        if self.merge_dir is not None:
            return spec.flow.finalize(shards.merge(self.merge_dir, label, _digest(fields), samples))
        if self.shard is None:
            return spec.flow.finalize(self._predict(spec, backend_name, precision, profile, dataset, samples, fields))
        k, of = self.shard
        part = samples[shards.block(len(samples), k, of, profile.eval_batch)]
        results = self._predict(spec, backend_name, precision, profile, dataset, part, {**fields, "shard": [k, of]})
        path = shards.write(self.predictions_dir, label, _digest(fields), k, of, part, results)
        raise shards.ShardWritten(f"shard {k}/{of} of {label}: {len(part)} of {len(samples)} {spec.flow.unit} predicted "
                                  f"into {path}; score the merged shards with --merge-predictions={self.predictions_dir}")

    def _predict(self, spec, backend_name, precision, profile, dataset, samples, fields) -> list:
        def build(d: Path):
            session = self.session(spec, backend_name, precision, spec.engine_shape(profile, profile.eval_batch))
            results, bad = [], {}
            progress = Progress(len(samples), f"{spec.name} {backend_name}-{precision} {dataset.name}", spec.flow.unit)
            for b in self.batches(spec, profile, dataset, profile.eval_batch, samples):
                outputs = session.run({spec.input_name: b.x})
                found = nonfinite_counts(outputs)  # named in the accuracy tests' results
                for name, v in outputs.items():
                    total = bad.setdefault(name, {"nan": 0, "inf": 0, "size": 0})
                    c = found.get(name, {"nan": 0, "inf": 0})
                    total.update(nan=total["nan"] + c["nan"], inf=total["inf"] + c["inf"], size=total["size"] + v.size)
                results += self.decode(spec, outputs, b.records, b.samples)
                progress.advance(len(b.samples))
            progress.close()
            serial.dump(results, d / "results.npz")
            (d / "nonfinite.json").write_text(json.dumps({n: c for n, c in bad.items() if c["nan"] or c["inf"]}))
        entry = self.cache.get_or_build("predictions", fields, build)
        counted = entry.path / "nonfinite.json"
        if counted.is_file():
            self.nonfinite[(spec.name, backend_name, precision, profile.name, dataset.identity)] = \
                json.loads(counted.read_text())
        return serial.load(entry.file("results.npz"))

    def _engine_identity(self, spec, backend_name: str, precision: str) -> dict:
        bound = self.artifacts.get((spec.name, backend_name, precision))
        settings = BACKENDS[backend_name].artifact_settings(precision)
        if bound is None or bound.path is None:
            return settings
        files = sorted(bound.path.parent.glob(bound.path.stem + ".*")) if bound.path.is_file() else \
            sorted(p for p in bound.path.rglob("*") if p.is_file())
        return {**settings, "artifact": {p.name: file_digest(p) for p in files},
                "contract": repr(bound.contract)}

    # ---- failure memo ----------------------------------------------------------------------------
    def _once(self, key: tuple, stage: str, test_id: str, fn):
        """Run ``fn`` once per key; a failure is remembered and re-raised as StageFailed for dependants."""
        if key in self._failures:
            raise self._failures[key]
        try:
            return fn()
        except StageFailed as e:
            self._failures[key] = e
            raise
        except Exception as e:
            failure = StageFailed(stage, test_id, e)
            failure.__cause__ = e
            self._failures[key] = failure
            raise failure from e


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
