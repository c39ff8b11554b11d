"""Build and run a subgraph on the failing backend, counting conversions, and write the converter call a
vendor would type for it.

One runner for every backend: each converts and runs an ONNX subgraph fed at several named inputs through
its own ``Backend.run_subgraph`` (its convert code, its precision flags). A backend without that capability,
or unavailable here, is refused with the reason.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import onnx

from posegate.backends import BACKENDS
from posegate.diagnosis.reduce.reference import CannotReduce


class SubgraphRunner:
    """``run(model, feeds)``: one conversion and run of ``model`` on ``backend``; ``options`` reach its
    run_subgraph (the plumbing tests' host buffers)."""

    def __init__(self, backend, precision: str = "fp32", **options):
        self.engine = BACKENDS[backend] if isinstance(backend, str) else backend
        self.backend, self.precision, self.options, self.conversions = self.engine.name, precision, options, 0

    def run(self, model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.conversions += 1
        with tempfile.TemporaryDirectory(prefix="posegate-reduce-") as d:
            path = Path(d) / "model.onnx"
            onnx.save(model, str(path))
            work = Path(d) / "build"
            work.mkdir()
            got = self.engine.run_subgraph(path, feeds, self.precision, work, **self.options)
        missing = [o.name for o in model.graph.output if o.name not in got]
        if missing:
            raise RuntimeError(f"{self.backend}: the subgraph's outputs {missing} did not come back (got {list(got)})")
        return {o.name: np.asarray(got[o.name]) for o in model.graph.output}


def runner(backend: str, precision: str) -> SubgraphRunner:
    engine = BACKENDS.get(backend)
    if engine is None:
        raise CannotReduce(f"no backend named {backend}")
    problem = engine.subgraph_problem()
    if problem:
        raise CannotReduce(problem)
    reason = engine.unavailable_reason()
    if reason:
        raise CannotReduce(f"{backend} unavailable: {reason}")
    return SubgraphRunner(engine, precision)


def converter_call(backend: str, precision: str, feeds: dict[str, np.ndarray], spec=None) -> dict:
    """What builds ``model.onnx`` of a bundle on ``backend``: the suite's own conversion, as one command."""
    engine = BACKENDS.get(backend)
    settings = engine.settings_of(spec) if spec is not None and engine is not None else None
    return {"settings": asdict(settings) if is_dataclass(settings) else None,
            **(engine.subgraph_call(precision, feeds) if engine is not None else {})}
