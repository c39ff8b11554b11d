"""Stage 8, accuracy, in three layers: decoder oracle, metric parity per backend, seed thresholds."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from models import MODELS
from posegate.backends import REFERENCE
from posegate.datasets import KINDS
from posegate.metrics import METRICS, margin
from posegate.metrics.parity import describe_nonfinite
from posegate.spec import Threshold
from posegate.weights import WeightsInfo

STAGE = "accuracy"
pytestmark = pytest.mark.accuracy
ORACLE_FLOOR = 0.99


def _dataset(run_context, case):
    return run_context.dataset(case.spec.flow.dataset_kind, case.dataset)


@pytest.mark.cases("oracle")
def test_decoder_oracle(case, run_context, record):
    """Ground truth encoded as network outputs and decoded by the suite must score (almost) perfectly."""
    spec, dataset = case.spec, _dataset(run_context, case)
    metric = METRICS[spec.metric]
    score = metric.evaluate(dataset, spec.flow.oracle(dataset))
    record(metric=f"oracle {metric.name}", value=score.value, threshold=ORACLE_FLOOR, direction="min",
           margin=score.value - ORACLE_FLOOR, dataset=dataset.name, dataset_id=dataset.identity)
    assert score.value >= ORACLE_FLOOR, \
        f"decoder oracle {metric.name} {score.value:.4f} < {ORACLE_FLOOR} on {dataset.identity}"


def _predictions(pipeline, case, dataset, backend, precision, needs):
    return needs(pipeline.predictions, case.spec, backend, precision, case.profile, dataset)


def _nonfinite(pipeline, case, dataset, record) -> str:
    """NaN/Inf the backend's outputs held over the dataset, recorded and as a message tail ('' if none)."""
    found = pipeline.nonfinite.get((case.model, case.backend, case.precision, case.profile.name, dataset.identity))
    if not found:
        return ""
    record(nonfinite=found, dataset=dataset.name)
    return f"; outputs not finite: {describe_nonfinite(found)}"


@pytest.mark.cases("parity")
def test_metric_parity(case, pipeline, run_context, needs, record):
    """A converted backend's metric equals the reference's on the same inputs, and its results agree."""
    spec, dataset = case.spec, _dataset(run_context, case)
    metric = METRICS[spec.metric]
    # measured even when tensor parity failed: only a backend that could not run makes it skip
    needs.stage("infer", ran=True, model=case.model, backend=case.backend, precision=case.precision, shape=case.shape)
    ref = _predictions(pipeline, case, dataset, REFERENCE, "fp32", needs)
    got = _predictions(pipeline, case, dataset, case.backend, case.precision, needs)
    bad = _nonfinite(pipeline, case, dataset, record)
    v_ref, v = metric.evaluate(dataset, ref).value, metric.evaluate(dataset, got).value
    tol = spec.metric_parity[case.precision]
    agree = metric.agreement(ref, got, dataset)
    weights = pipeline.weights_identity(spec)
    name = metric.name
    record(metric=f"|{name}-{name}_ref|", value=abs(v - v_ref), threshold=tol, direction="max",
           margin=tol - abs(v - v_ref), dataset=dataset.name, dataset_id=dataset.identity, weights=weights,
           measured=v, reference=v_ref)
    if agree is not None:
        bound = spec.agreement[case.precision]
        record(metric=metric.agreement_name, value=agree, threshold=bound, direction=metric.agreement_direction,
               margin=margin(agree, bound, metric.agreement_direction), dataset=dataset.name,
               dataset_id=dataset.identity, weights=weights)
    assert abs(v - v_ref) <= tol, f"{name} {v_ref:.4f} -> {v:.4f} (reference -> {case.backend}-{case.precision}) " \
                                  f"on {dataset.name}: change {v - v_ref:+.4f} beyond {tol}{bad}"
    if agree is None:
        assert not got, f"{case.backend}-{case.precision} finds {len(got)} people where the reference finds none"
        # name what is lacking: seeded weights, or (trained weights present) images with people in them
        need = (f"trained weights: put {spec.checkpoint.filename} in --weights-dir"
                if pipeline.weights_info(spec).synthetic else
                f"images with people: {weights} is loaded, but {dataset.name} has none it finds (pass --data-root "
                "with a COCO set's images)")
        pytest.skip(f"the reference finds no person on {dataset.identity} with {weights} "
                    f"({name} {v_ref:.4f} = {v:.4f}); metric parity needs {need}")
    assert margin(agree, spec.agreement[case.precision], metric.agreement_direction) >= 0, \
        f"{case.backend}-{case.precision} disagrees with the reference: {metric.agreement_name} {agree:.4f}"


def _on_data(spec, t, dataset, options) -> bool:
    if t.dataset == "official":
        return dataset.is_official and spec.flow.official_problem(dataset, options) is None
    return dataset.name == t.dataset


def _applicable(spec, case, dataset, weights_info, options):
    for t in spec.thresholds:
        if t.profiles and case.shape not in t.profiles:
            continue
        on_data = _on_data(spec, t, dataset, options)
        name = weights_info.path and Path(weights_info.path).name
        wanted = spec.checkpoint.filename if t.weights == "official" else t.weights
        on_weights = t.weights == "any" or (weights_info.kind == "official" and name == wanted)
        yield t, on_data and on_weights


def _wanted(spec, t, on_data: bool = False, info=None) -> str:
    """What a gate still needs, naming only what this run lacks: a file that is present is never said to be
    missing (it is named with why it does not count)."""
    op = ">=" if t.direction == "min" else "<="
    need = [] if on_data else [KINDS[spec.flow.dataset_kind].official if t.dataset == "official"
                               else f"dataset {t.dataset}"]
    if t.weights != "any":
        wanted = spec.checkpoint.filename if t.weights == "official" else t.weights
        have = info is not None and info.path and Path(info.path).name == wanted
        if not have:
            need.append(f"{wanted} in --weights-dir")
        elif info.kind != "official":
            need.append(f"the published {wanted} (the one in --weights-dir differs: {'; '.join(info.notes)})")
    return f"{t.metric} {op} {t.value} ({t.source}) needs {' and '.join(need) or 'nothing more'}"


@pytest.mark.cases("accuracy")
def test_accuracy(case, pipeline, run_context, needs, record, visuals):
    """The task metric on a dataset; where the spec's gate applies (dataset and weights), it is asserted."""
    spec, dataset = case.spec, _dataset(run_context, case)
    metric = METRICS[spec.metric]
    if case.backend != REFERENCE:
        needs.stage("infer", ran=True, model=case.model, backend=case.backend, precision=case.precision,
                    shape=case.shape)
    results = _predictions(pipeline, case, dataset, case.backend, case.precision, needs)
    bad = _nonfinite(pipeline, case, dataset, record)
    score = metric.evaluate(dataset, results)
    info = pipeline.weights_info(spec)
    gates = list(_applicable(spec, case, dataset, info, pipeline.options))
    active = [t for t, applies in gates if applies]
    base = dict(dataset=dataset.name, dataset_id=dataset.identity, weights=info.identity, count=score.count,
                **score.details)
    strata = spec.flow.strata(dataset, pipeline.samples(spec, case.profile, dataset))
    for label, members in (strata or {}).items():  # e.g. AP per input shape bucket
        record(metric=f"{metric.name} {label}", value=metric.evaluate(dataset, results, members).value,
               dataset=dataset.name, samples=len(members))
    if not active:
        regressed = record(metric=metric.name, value=score.value, **base)
        visuals(metric, dataset, results, failing=regressed)
        wanted = "; ".join(_wanted(spec, t, _on_data(spec, t, dataset, pipeline.options), info) for t, _ in gates)
        problem = spec.flow.official_problem(dataset, pipeline.options)
        pytest.skip(f"{metric.name} {score.value:.4f}{metric.unit and ' ' + metric.unit} measured on "
                    f"{dataset.identity} with {info.identity}; no gate claimed"
                    + (f": {wanted}" if wanted else f": {spec.name} declares no threshold for this dataset")
                    + (f" ({problem})" if problem and dataset.is_official else "") + bad)
    regressed = False
    for t in active:
        regressed |= record(metric=t.metric, value=score.value, threshold=t.value, direction=t.direction,
                            margin=t.margin(score.value), source=t.source, **base)
    failing = [f"{t.metric} {score.value:.4f} vs {t.value} ({t.source}): margin {t.margin(score.value):+.4f}"
               for t in active if not t.passes(score.value)]
    visuals(metric, dataset, results, failing=bool(failing) or regressed)
    assert not failing, "; ".join(failing) + bad



def test_a_gate_applies_only_with_the_weights_it_names():
    """A port's own weights meet the port's figure, the upstream file upstream's (VideoPose3D: 46.6 / 46.8 mm)."""

    base = next(iter(MODELS.values()))
    spec = replace(base, checkpoint=replace(base.checkpoint, alternatives={"port.bin": "the port's own training"}),
                   flow=SimpleNamespace(official_problem=lambda d, o: None, dataset_kind=base.flow.dataset_kind),
                   thresholds=(Threshold("m", 1.0, "min", "official", "official", "upstream"),
                               Threshold("m", 2.0, "min", "official", "port.bin", "port")))
    official, other = SimpleNamespace(is_official=True, name="x"), SimpleNamespace(is_official=False, name="x")
    upstream = f"/w/{base.checkpoint.filename}"

    def active(info, dataset=official):
        return [t.value for t, on in _applicable(spec, SimpleNamespace(shape="s"), dataset, info, {}) if on]
    assert active(WeightsInfo("official", "a", path=upstream)) == [1.0]
    assert active(WeightsInfo("official", "b", path="/w/port.bin")) == [2.0]
    assert active(WeightsInfo("checkpoint", "c", path=upstream)) == []  # size or digest differs from the published
    assert active(WeightsInfo("synthetic", "d")) == []
    assert active(WeightsInfo("official", "a", path=upstream), other) == []
    assert _wanted(spec, spec.thresholds[1]).endswith("and port.bin in --weights-dir")
    # a file that is present is never reported missing: only what the run lacks is named
    present = WeightsInfo("official", "p", path=str(Path("/w") / "port.bin"))
    assert "--weights-dir" not in _wanted(spec, spec.thresholds[1], info=present)
    assert _wanted(spec, spec.thresholds[1], on_data=True, info=present).endswith("needs nothing more")
