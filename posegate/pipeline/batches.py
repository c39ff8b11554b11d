"""A dataset's samples and their preprocessed batches: streamed for full sets, cached for the parity batch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posegate.flows.kinds import MissingData
from posegate.storage import serial


@dataclass(frozen=True)
class Batch:
    samples: tuple
    x: np.ndarray
    records: list


class Inputs:
    """Samples are listed once per (model, profile, dataset); ``stages`` (the Pipeline) is asked for them,
    so a test that replaces the pipeline's samples replaces them for its batches too."""

    def __init__(self, cache, stages, options: dict):
        self.cache, self.stages, self.options = cache, stages, options
        self._samples: dict[tuple, list] = {}

    def samples(self, spec, profile, dataset) -> list:
        key = (spec.name, profile.name, dataset.identity)
        if key not in self._samples:
            self._samples[key] = spec.flow.samples(dataset, profile, self.options)
        return self._samples[key]

    def batches(self, spec, profile, dataset, batch: int, samples=None):
        """Preprocessed batches of a dataset's samples, in order (not cached: full-size sets)."""
        flow = spec.flow
        samples = list(samples if samples is not None else self.stages.samples(spec, profile, dataset))
        for i in range(0, len(samples), batch):
            chunk = samples[i:i + batch]
            x, records = flow.preprocess([flow.load(dataset, s) for s in chunk], profile)
            yield Batch(tuple(chunk), x, records)

    def parity_batch(self, spec, profile, dataset, batch: int) -> Batch:
        """The first ``batch`` samples of a dataset (cycled if it has fewer), preprocessed and cached."""
        every = self.stages.samples(spec, profile, dataset)
        if not every:
            raise MissingData(f"{dataset.identity} yields no {spec.flow.unit} for {spec.name}")
        samples = tuple(every[i % len(every)] for i in range(batch))
        fields = {"dataset": dataset.identity, "model": spec.name, "spec_version": spec.version,
                  "profile": profile.name, "preprocess": profile.preprocess, "samples": samples,
                  "storage": serial.FORMAT}

        def build(d: Path):
            b = next(self.stages.batches(spec, profile, dataset, batch, samples))
            np.save(d / "x.npy", b.x)
            serial.dump(b.records, d / "records.npz")
        entry = self.cache.get_or_build("inputs", fields, build)
        return Batch(samples, np.load(entry.file("x.npy")), serial.load(entry.file("records.npz")))
