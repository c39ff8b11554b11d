"""--advise-precision on a stage case, against the metric: each candidate IR is bound as a supplied OpenVINO
artifact and scored on the parity dataset through the pipeline, as test_metric_parity scores a backend."""
from __future__ import annotations

from pathlib import Path

from posegate.artifacts import bind
from posegate.backends import BACKENDS
from posegate.backends.openvino.advice import run_ir as _ov_run
from posegate.backends.openvino.precision import inference_hint as ov_hint
from posegate.diagnosis import advice_metric
from posegate.diagnosis.advice import rank
from posegate.metrics import METRICS
from posegate.pipeline import Pipeline


def metric_of_ir(pipeline, spec, dataset, xml: Path, hint: str) -> float:
    """The task metric of an OpenVINO IR on ``dataset``, compiled at ``hint`` (f32: the fp32 slot)."""
    precision = "fp32" if hint == "f32" else "fp16"
    bound = bind([spec], {(spec.name, "openvino", precision): xml}, None, BACKENDS)
    p = Pipeline(pipeline.cache, pipeline.weights_dir, pipeline.options, artifacts=bound)
    try:
        profile = bound[(spec.name, "openvino", precision)].contract.profile
        return METRICS[spec.metric].evaluate(dataset, p.predictions(spec, "openvino", precision, profile,
                                                                    dataset)).value
    finally:
        p.close()


def source_of(pipeline, spec, backend: str, precision: str) -> Path:
    """The ONNX the advice applies to: a supplied ONNX artifact, else the suite's export (diagnose.advise's rule)."""
    bound = pipeline.artifacts.get((spec.name, backend, precision))
    if bound is not None and bound.path is not None and Path(bound.path).suffix == ".onnx":
        return Path(bound.path)
    return pipeline.onnx(spec, 17)


def advise(pipeline, spec, precision: str, source: Path, loc, x, dataset, profile, folder: Path,
           tensor_keep: list[str] | None = None) -> advice_metric.MetricAdvice:
    """The metric-proven advice for ``source`` (the ONNX the converter reads) from its localisation ``loc``."""
    reference = METRICS[spec.metric].evaluate(dataset, pipeline.predictions(spec, "torch", "fp32", profile,
                                                                            dataset)).value
    return advice_metric.advise(
        Path(source), rank(loc), lambda xml, hint: metric_of_ir(pipeline, spec, dataset, xml, hint),
        lambda xml, hint: _ov_run(xml, x, spec.input_name, hint, rounds=5)[1], reference,
        spec.metric_parity[precision], spec.metric, Path(folder), ov_hint(precision), tensor_keep)
