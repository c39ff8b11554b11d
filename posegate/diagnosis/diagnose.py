"""Which probe localises a failing case, and running it on the parity input (see posegate.diagnosis.localize)."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from posegate.backends import BACKENDS, EngineIO
from posegate.diagnosis import advice, device_probes
from posegate.diagnosis.localize import Localization, localize, tolerance_of
from posegate.diagnosis.probes import CannotLocalize, OrtProbe, OvProbe, ov_hint
from posegate.metrics.visuals import error_along_graph

__all__ = ["CannotLocalize", "PROBES", "advise", "artifact_of", "probe_for", "run"]


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
    files = [p for p in sorted(folder.iterdir()) if p.suffix in (".onnx", ".xml", ".om", ".engine", ".plan")]
    if not files:
        raise CannotLocalize(f"{folder}: no model file the probes read")
    return files[0], EngineIO.of(spec)


def _ort_probe(pipeline, spec, path: Path, io, precision: str):
    if path.suffix != ".onnx":
        raise CannotLocalize(f"{path}: onnxruntime localises ONNX files")
    return OrtProbe(path, io, precision)


def _ov_probe(pipeline, spec, path: Path, io, precision: str):
    if path.is_dir():
        path = next(iter(sorted(path.glob("*.xml"))), path)
    return OvProbe(path, io, precision)


# backend name -> (pipeline, spec, artifact path, EngineIO, precision) -> a probe of its intermediates
PROBES = {"onnxruntime": _ort_probe, "openvino": _ov_probe,
          "tensorrt": partial(device_probes.probe, "tensorrt"), "ascend": partial(device_probes.probe, "ascend")}


def probe_for(pipeline, target):
    path, io = artifact_of(pipeline, target)
    make = PROBES.get(target.backend)
    if make is None:
        raise CannotLocalize(f"{target.backend}: no probe exposes its intermediate tensors ({', '.join(PROBES)} have "
                             "one)")
    return make(pipeline, target.spec, path, io, target.precision)


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


REDUCED = {"openvino": "fp16", "tensorrt": "fp16", "ascend": "fp16"}


def advise(pipeline, spec, backend: str, precision: str, x, reference: dict, localization: Localization,
           folder: Path, target: float | None = None):
    """Precision advice for a reduced-precision case from its localisation, re-validated on OpenVINO (the
    backend every run here has); the files are written for every tool alike."""
    if REDUCED.get(backend) != precision:
        raise CannotLocalize(f"{backend}-{precision} is not a reduced precision the advice knows")
    bound = pipeline.artifacts.get((spec.name, backend, precision))
    source = Path(bound.path) if bound is not None and bound.path is not None else pipeline.onnx(spec, 17)
    if source.suffix != ".onnx":
        source = pipeline.onnx(spec, 17)  # the advice is applied to the ONNX the converter reads
    if BACKENDS["openvino"].unavailable_reason():
        raise CannotLocalize(f"no backend here re-validates the advice: {BACKENDS['openvino'].unavailable_reason()}")
    target = target if target is not None else localization.tolerance_output
    ref = {n: reference[n][: x.shape[0]] for n in spec.output_names}
    return advice.advise_openvino(source, localization, ref, x, spec.input_name, target, Path(folder),
                                  hint=ov_hint("fp16"))
