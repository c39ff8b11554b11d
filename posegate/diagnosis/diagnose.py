"""Which probe localises a failing case, and running it on the parity input (see posegate.diagnosis.localize)."""
from __future__ import annotations

from pathlib import Path

from posegate.backends import BACKENDS, EngineIO
from posegate.backends.probing import CannotLocalize
from posegate.diagnosis import advice
from posegate.diagnosis.localize import Localization, localize, tolerance_of
from posegate.metrics.visuals import error_along_graph

__all__ = ["CannotLocalize", "advisable", "advise", "artifact_of", "probe_for", "run"]


def artifact_of(pipeline, target) -> tuple[Path, EngineIO]:
    """The file the case's target ran (a supplied one or the suite's conversion) and its engine-side names."""
    spec, backend = target.spec, target.backend
    bound = pipeline.artifacts.get((spec.name, backend, target.precision))
    if bound is not None:
        if bound.path is None:
            raise CannotLocalize(bound.missing_reason())
        return Path(bound.path), EngineIO.of(spec, bound.contract)
    if not BACKENDS[backend].converts:
        raise CannotLocalize(f"{backend} is the reference itself")
    folder = pipeline.converted(target)
    files = [p for p in sorted(folder.iterdir()) if p.suffix in BACKENDS[backend].artifact_suffixes]
    if not files:
        raise CannotLocalize(f"{folder}: no model file the probes read")
    return files[0], EngineIO.of(spec)


def probe_for(pipeline, target):
    path, io = artifact_of(pipeline, target)
    probe = BACKENDS[target.backend].probe(pipeline, target.spec, path, io, target.precision)
    if probe is None:
        having = ", ".join(name for name, b in BACKENDS.items() if b.has_probe)
        raise CannotLocalize(f"{target.backend}: no probe exposes its intermediate tensors ({having} have one)")
    return probe


def run(pipeline, target, x, plot_dir: Path | None = None) -> Localization:
    spec, precision = target.spec, target.precision
    probe = probe_for(pipeline, target)
    names = dict(probe.io.outputs)
    tolerance = tolerance_of(spec, precision, list(names.values()))
    model = pipeline.torch_model(spec)
    result = localize(model, probe, x, tolerance, tuple(spec.output_names), names)
    result.tolerance_output = tolerance  # the outputs' own bound: the advice's default target
    if plot_dir is not None:
        result.plot = error_along_graph(result.as_dict(), Path(plot_dir) / "error-along-graph.png")
    return result


def advisable(backend: str, precision: str) -> bool:
    """Whether the precision advice applies to this case: a precision its backend calls reduced."""
    return precision in BACKENDS[backend].reduced


def advise(pipeline, spec, backend: str, precision: str, x, reference: dict, localization: Localization,
           folder: Path, target: float | None = None):
    """Precision advice for a reduced-precision case from its localisation, re-validated on the backend here
    that offers to (OpenVINO's CPU plugin, which every run here has); the files are written for every tool."""
    if not advisable(backend, precision):
        raise CannotLocalize(f"{backend}-{precision} is not a reduced precision the advice knows")
    bound = pipeline.artifacts.get((spec.name, backend, precision))
    source = Path(bound.path) if bound is not None and bound.path is not None else pipeline.onnx(spec, 17)
    if source.suffix != ".onnx":
        source = pipeline.onnx(spec, 17)  # the advice is applied to the ONNX the converter reads
    try:
        check = advice.validator(precision)
    except advice.CannotAdvise as e:
        raise CannotLocalize(str(e)) from None
    target = target if target is not None else localization.tolerance_output
    ref = {n: reference[n][: x.shape[0]] for n in spec.output_names}
    return advice.advise(check, source, localization, ref, x, spec.input_name, target, Path(folder))
