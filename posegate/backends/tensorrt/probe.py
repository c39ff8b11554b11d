"""Localisation on TensorRT: the ONNX file's intermediate tensors become graph outputs before parsing, so
the parser marks them as network outputs (what Polygraphy's ``--onnx-outputs mark all`` / ``--trt-outputs
mark all`` do, docs.nvidia.com/deeplearning/tensorrt/polygraphy, ModifyNetworkOutputs); the engine is built
with the backend's own build_engine at the case's precision and the exact input shape. Marked outputs keep
TensorRT from fusing across them: a fault that exists only inside a fused kernel can hide, which the report's
skipped counts do not show; compare with the unmarked engine's outputs (test_infer) first.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from posegate.backends.base import EngineIO
from posegate.backends.probing import OrtProbe, ProbeSpec


class TrtProbe(OrtProbe):
    backend = "tensorrt"

    def __init__(self, path, io, precision, spec, build=None, session=None):
        super().__init__(path, io, precision)
        self.spec = spec
        # build_engine(onnx, engine, input name, precision, shapes) without its trt argument, and TrtSession
        self._build, self._session = build, session

    def run(self, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory() as d:
            marked = Path(d) / "marked.onnx"
            onnx.save(self.with_outputs(names), str(marked))
            engine = Path(d) / "marked.engine"
            shape = tuple(x.shape)
            self._build(marked, engine, self.io.input, self.precision, (shape, shape, shape))
            io = EngineIO(self.io.input, tuple((n, n) for n in names), self.io.input_scale, self.io.input_offset)
            s = self._session(ProbeSpec(self.spec, names), engine, self.precision, io)
            try:
                return dict(zip(names, s._run(self.io.to_engine(x))))
            finally:
                s.close()
