"""A session on an ncnn .param/.bin: the whole batch as one Mat of n rows, through one Extractor."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posegate.backends.base import EngineIO, Session, SessionInfo
from posegate.backends.lazy import load
from posegate.backends.ncnn.availability import INSTALL, RUNTIME
from posegate.backends.ncnn.precision import Plan


def threads() -> int:
    """The cores this process may use: ncnn's default (get_physical_big_cpu_count) counts the host's,
    32 on a 2-core container, and would oversubscribe it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity call (macOS): every core is ours
        return os.cpu_count() or 1


def pnnx_io(spec) -> EngineIO:
    """The blob names of a model pnnx converted from the spec's export (see convert.py)."""
    return EngineIO("in0", tuple((f"out{i}", n) for i, n in enumerate(spec.output_names)))


class NcnnSession(Session):
    # Mat(array, batch_index=0) copies the batch into an n-row Mat and Mat.numpy(batch_index=0) stacks
    # the rows back (Tencent/ncnn python/src/main.cpp, NCNN_BATCH on in the wheels): both outside the timer.
    timing = "the engine call (Extractor.input + extract of every output, the whole batch as one Mat)"

    def __init__(self, spec, param: Path, model: Path, precision: str, plan: Plan, io: EngineIO,
                 backend: str = "ncnn"):
        ncnn = load(RUNTIME, INSTALL)
        self._ncnn = ncnn
        self.net = ncnn.Net()
        plan.apply(self.net.opt)
        self.net.opt.num_threads = threads()
        # Net.load_param/load_model return non-zero on failure and only log the cause to stderr
        if self.net.load_param(str(param)) != 0:
            raise ValueError(f"{param}: ncnn could not load this .param (a layer type it lacks, or not a "
                             f".param file); its log above names the line")
        if self.net.load_model(str(model)) != 0:
            raise ValueError(f"{model}: ncnn could not read the weights of {param.name} (truncated, or the "
                             f".bin of another .param)")
        super().__init__(spec, SessionInfo(backend, precision, plan.execution,
                                           {"threads": self.net.opt.num_threads, "param": str(param),
                                            "fp16_weights": plan.fp16_weights}), io)
        have_in, have_out = list(self.net.input_names()), list(self.net.output_names())
        missing = [n for n in [self.io.input, *self.io.engine_outputs] if n not in have_in + have_out]
        if missing:
            raise ValueError(f"{param}: no blobs {missing}; its inputs are {have_in}, its outputs {have_out}")

    def _stage(self, x):
        return self._ncnn.Mat(np.ascontiguousarray(x), batch_index=0)

    def _run(self, staged):
        ex = self.net.create_extractor()
        try:
            rc = ex.input(self.io.input, staged)
            if rc != 0:
                raise RuntimeError(f"ncnn: Extractor.input({self.io.input!r}) returned {rc}")
            mats = []
            for name in self.io.engine_outputs:
                rc, mat = ex.extract(name)
                if rc != 0:
                    raise RuntimeError(f"ncnn: extract({name!r}) returned {rc}")
                mats.append(mat)
            return mats
        finally:
            ex.clear()

    def _fetch(self, mats):
        return [m.numpy(batch_index=0) for m in mats]

    def extract(self, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """Any blobs of the graph, not only its outputs (the probe's intermediate tensors)."""
        ex = self.net.create_extractor()
        try:
            if ex.input(self.io.input, self._stage(self.io.to_engine(x))) != 0:
                raise RuntimeError(f"ncnn: Extractor.input({self.io.input!r}) failed")
            out = {}
            for name in names:
                rc, mat = ex.extract(name)
                if rc != 0:
                    raise RuntimeError(f"ncnn: extract({name!r}) returned {rc}")
                out[name] = mat.numpy(batch_index=0)
            return out
        finally:
            ex.clear()

    def signature(self):
        # a .param carries no shapes for its input (pnnx writes a bare Input layer): every dim is the run's
        rank = len(self.spec.input_axes)
        return ({self.io.input: [None] * rank}, {n: [None] * rank for n in self.io.engine_outputs})

    def close(self):
        if self.net is not None:
            self.net.clear()
        self.net = None
