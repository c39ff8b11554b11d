"""Localisation on Ascend: ATC rebuilds the OM with ``--out_nodes`` listing the suspect nodes ("name:index",
the form posegate.backends.ascend.atc.producer_nodes writes), then ais_bench runs it; the chunks of
posegate.diagnosis.localize keep each list short (msit's ``compare`` with an ATC dump is the alternative for
a whole network). The graph side (nodes, float tensors, sizes) is read from the ONNX file ATC converts.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from posegate.backends.ascend.atc import AtcSettings, atc_command, producer_nodes, run_atc
from posegate.backends.base import EngineIO
from posegate.backends.npu import DEVICE_ENV
from posegate.backends.probing import OrtProbe, ProbeSpec


class AscendProbe(OrtProbe):
    backend = "ascend"

    def __init__(self, path, io, precision, spec, chip: str | None = None, run_atc=None, session=None,
                 settings=None):
        super().__init__(path, io, precision)
        self.spec, self.chip, self.settings = spec, chip, settings or AtcSettings()  # the backend passes the spec's
        self._run_atc, self._session = run_atc, session  # injectable for the plumbing tests

    def atc_args(self, names: list[str], stem: str, shape: tuple) -> list[str]:
        """ATC's command for an OM whose outputs are the nodes writing ``names`` (the form atc_command takes)."""
        producers = producer_nodes(self.path, names)
        # the model's own ATC flags, as convert passes them
        return atc_command(self.spec, self.path, stem, shape, self.chip, self.precision, out_nodes=producers,
                           settings=self.settings)

    def run(self, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory() as d:
            om = (self._run_atc or run_atc)(self.atc_args(names, "marked", tuple(x.shape)), Path(d))
            io = EngineIO(self.io.input, tuple((n, n) for n in names), self.io.input_scale, self.io.input_offset)
            device = int(os.environ.get(DEVICE_ENV, "0"))
            s = self._session(ProbeSpec(self.spec, names), om, self.precision, device, io)
            try:
                return dict(zip(names, s._run(self.io.to_engine(x))))
            finally:
                s.close()
