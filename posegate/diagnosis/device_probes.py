"""Probes for the device backends: the same interface as posegate.diagnosis.probes, built on their converters.

- TensorRT: the ONNX file's intermediate tensors become graph outputs before parsing, so the parser marks
  them as network outputs (what Polygraphy's ``--onnx-outputs mark all`` / ``--trt-outputs mark all`` do,
  docs.nvidia.com/deeplearning/tensorrt/polygraphy, ModifyNetworkOutputs); the engine is built with the
  backend's own build_engine at the case's precision and the exact input shape. Marked outputs keep
  TensorRT from fusing across them: a fault that exists only inside a fused kernel can hide, which the
  report's skipped counts do not show; compare with the unmarked engine's outputs (test_infer) first.
- Ascend: ATC rebuilds the OM with ``--out_nodes`` listing the suspect nodes ("name:index", the form
  posegate.backends.atc.producer_nodes writes), then ais_bench runs it; the chunks of posegate.diagnosis.localize
  keep each list short (msit's ``compare`` with an ATC dump is the alternative for a whole network).

Without the device (or its Python packages) a probe cannot be built and says why.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx

from posegate.backends import BACKENDS, EngineIO, atc, tensorrt_backend
from posegate.backends.ascend_backend import AisSession
from posegate.diagnosis.probes import CannotLocalize, OrtProbe


class _OnnxGraph(OrtProbe):
    """The graph side of a device probe: nodes, float tensors and sizes read from the ONNX file."""


class TrtProbe(_OnnxGraph):
    backend = "tensorrt"

    def __init__(self, path, io, precision, spec, build=None, session=None):
        super().__init__(path, io, precision)
        self.spec = spec
        self._build, self._session = build, session  # injectable for the plumbing tests

    def run(self, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        build = self._build or (lambda *a, **k: tensorrt_backend.build_engine(__import__("tensorrt"), *a, **k))
        session = self._session or tensorrt_backend.TrtSession
        with tempfile.TemporaryDirectory() as d:
            marked = Path(d) / "marked.onnx"
            onnx.save(self.with_outputs(names), str(marked))
            engine = Path(d) / "marked.engine"
            shape = tuple(x.shape)
            build(marked, engine, self.io.input, self.precision, (shape, shape, shape))
            io = EngineIO(self.io.input, tuple((n, n) for n in names), self.io.input_scale, self.io.input_offset)
            s = session(_Unchecked(self.spec, names), engine, self.precision, io)
            try:
                return dict(zip(names, s._run(self.io.to_engine(x))))
            finally:
                s.close()


class AscendProbe(_OnnxGraph):
    backend = "ascend"

    def __init__(self, path, io, precision, spec, chip: str | None = None, run_atc=None, session=None):
        super().__init__(path, io, precision)
        self.spec, self.chip = spec, chip
        self._run_atc, self._session = run_atc, session

    def atc_args(self, names: list[str], stem: str, shape: tuple) -> list[str]:
        """ATC's command for an OM whose outputs are the nodes writing ``names`` (the form atc_command takes)."""
        producers = atc.producer_nodes(self.path, names)
        settings = BACKENDS["ascend"].settings_of(self.spec)  # the model's own ATC flags, as convert passes them
        return atc.atc_command(self.spec, self.path, stem, shape, self.chip, self.precision, out_nodes=producers,
                               settings=settings)

    def run(self, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        run_atc = self._run_atc or atc.run_atc
        with tempfile.TemporaryDirectory() as d:
            om = run_atc(self.atc_args(names, "marked", tuple(x.shape)), Path(d))
            io = EngineIO(self.io.input, tuple((n, n) for n in names), self.io.input_scale, self.io.input_offset)
            device = int(os.environ.get("POSEGATE_ASCEND_DEVICE", "0"))
            s = (self._session or AisSession)(_Unchecked(self.spec, names), om, self.precision, device, io)
            try:
                return dict(zip(names, s._run(self.io.to_engine(x))))
            finally:
                s.close()


class _Unchecked:
    """The spec as a probe session sees it: its own output names, the spec's input checks."""

    def __init__(self, spec, names):
        self._spec, self.output_names = spec, tuple(names)

    def __getattr__(self, name):
        return getattr(self._spec, name)


def probe(backend: str, pipeline, spec, path: Path, io, precision: str):
    reason = BACKENDS[backend].unavailable_reason()
    if reason:
        raise CannotLocalize(f"{backend} unavailable: {reason}")
    source = Path(path)
    if source.suffix != ".onnx":  # an engine or OM cannot grow outputs: rebuild from the suite's ONNX
        source = pipeline.onnx(spec, BACKENDS[backend].opset)
    if backend == "tensorrt":
        return TrtProbe(source, io, precision, spec)
    chip, why = atc.chip_name()
    if chip is None:
        raise CannotLocalize(f"ascend: no chip to build for ({why})")
    return AscendProbe(source, io, precision, spec, chip=chip)
