"""--reduce on a failing stage case: which ONNX the backend converted, which parity inputs fail, the search,
the bundle (test_infer calls ``run`` after localising the case)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posegate.backends import BACKENDS
from posegate.diagnosis.diagnose import artifact_of
from posegate.diagnosis.localize import tolerance_of
from posegate.diagnosis.reduce.bundle import write
from posegate.diagnosis.reduce.reference import CannotReduce
from posegate.diagnosis.reduce.runners import runner
from posegate.diagnosis.reduce.search import reduce
from posegate.diagnosis.reduce.shape import reduce_shape_error
from posegate.metrics.parity import compare


def source_onnx(pipeline, target):
    """The ONNX file the backend's artifact was made from, and the engine's input naming."""
    path, io = artifact_of(pipeline, target)
    if path.suffix == ".onnx":
        return path, io
    if pipeline.artifacts.get((target.model, target.backend, target.precision)) is not None:
        raise CannotReduce(f"{path}: a supplied {path.suffix} artifact holds no ONNX graph to cut; supply the ONNX "
                           "it was converted from as the --artifact")
    return pipeline.onnx(target.spec, BACKENDS[target.backend].opset), io


def failing_rows(spec, precision: str, outputs: dict, reference: dict) -> list[int]:
    """The parity inputs (batch rows) on which the full model's outputs fail their tolerance."""
    rows = next(iter(outputs.values())).shape[0]
    return [r for r in range(rows) if any(
        not compare(outputs[n][r:r + 1], reference[n][r:r + 1], spec.tolerance(precision, n)).ok for n in outputs)]


def run_shape(pipeline, target, error: BaseException, x: np.ndarray, folder: Path, test_id: str):
    """(Reduction, bundle folder or None) for a case's target whose backend raised ``error``, a shape error."""
    spec = target.spec
    source, io = source_onnx(pipeline, target)
    result, data = reduce_shape_error(source, pipeline.torch_model(spec), error,
                                      runner(target.backend, target.precision), x, io, tuple(spec.output_names),
                                      tolerance_of(spec, target.precision, spec.output_names))
    if data is None:
        return result, None
    return result, write(folder, result, data, test_id, spec)


def run(pipeline, target, loc, x: np.ndarray, outputs: dict, reference: dict, folder: Path, test_id: str):
    """(Reduction, bundle folder or None) for a failing case's target localised as ``loc``."""
    spec = target.spec
    source, io = source_onnx(pipeline, target)
    rows = failing_rows(spec, target.precision, outputs, reference)
    result, data = reduce(source, pipeline.torch_model(spec), loc, runner(target.backend, target.precision), x, io,
                          tuple(spec.output_names), rows or None)
    if data is None:
        return result, None
    return result, write(folder, result, data, test_id, spec)
