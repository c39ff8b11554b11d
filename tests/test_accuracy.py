"""Stage 8, accuracy, in three layers: decoder oracle, metric parity per backend, seed thresholds."""
from __future__ import annotations

import pytest

from fixtures.artifacts import skip_unavailable
from posegate.backends import REFERENCE
from posegate.metrics.coco_ap import agreement_ap, evaluate_keypoints

STAGE = "accuracy"
pytestmark = pytest.mark.accuracy
ORACLE_FLOOR = 0.99


@pytest.mark.cases("oracle")
def test_decoder_oracle(case, run_context, record):
    """Ground truth encoded as network outputs and decoded by the suite must score (almost) perfectly."""
    spec, dataset = case.spec, run_context.dataset(case.dataset)
    results = []
    for image_id in dataset.image_ids:
        info = dataset.image_info(image_id)
        *maps, rec, stride = spec.codec.encode_ground_truth(dataset.annotations(image_id), info.height, info.width)
        results += [{"image_id": image_id, "category_id": 1, **p} for p in spec.codec.decode(*maps, rec, stride=stride)]
    score = evaluate_keypoints(dataset, results)
    record(metric="oracle AP", value=score.ap, threshold=ORACLE_FLOOR, direction="min",
           margin=score.ap - ORACLE_FLOOR, dataset=dataset.name)
    assert score.ap >= ORACLE_FLOOR, f"decoder oracle AP {score.ap:.4f} < {ORACLE_FLOOR} on {dataset.identity}"


def _predictions(pipeline, case, dataset, backend, precision, needs):
    return needs(pipeline.predictions, case.spec, backend, precision, case.profile, dataset)


@pytest.mark.cases("parity")
def test_metric_parity(case, pipeline, run_context, needs, record):
    """A converted backend's AP equals the reference's on the same images, and its people agree."""
    spec, dataset = case.spec, run_context.dataset(case.dataset)
    skip_unavailable(case.backend)
    needs.stage("infer", model=case.model, backend=case.backend, precision=case.precision, shape=case.shape)
    ref = _predictions(pipeline, case, dataset, REFERENCE, "fp32", needs)
    got = _predictions(pipeline, case, dataset, case.backend, case.precision, needs)
    ap_ref, ap = evaluate_keypoints(dataset, ref).ap, evaluate_keypoints(dataset, got).ap
    tol = spec.metric_parity[case.precision]
    agree = agreement_ap(ref, got, dataset.image_ids, {i: dataset.image_info(i) for i in dataset.image_ids})
    weights = pipeline.weights_identity(spec)
    record(metric="|AP-AP_ref|", value=abs(ap - ap_ref), threshold=tol, direction="max", margin=tol - abs(ap - ap_ref),
           dataset=dataset.name, weights=weights, ap=ap, ap_reference=ap_ref)
    if agree is not None:
        floor = spec.agreement_floor[case.precision]
        record(metric="agreement AP", value=agree, threshold=floor, direction="min", margin=agree - floor,
               dataset=dataset.name, weights=weights)
    assert abs(ap - ap_ref) <= tol, f"AP {ap:.4f} vs reference {ap_ref:.4f} on {dataset.name}: beyond {tol}"
    if agree is None:
        assert not got, f"{case.backend}-{case.precision} finds {len(got)} people where the reference finds none"
        pytest.skip(f"the reference finds no person on {dataset.identity} with {weights} (AP {ap_ref:.4f} = {ap:.4f}); "
                    f"metric parity needs trained weights: put {spec.checkpoint.filename} in --weights-dir")
    assert agree >= spec.agreement_floor[case.precision], \
        f"{case.backend}-{case.precision} finds other people than the reference: agreement AP {agree:.4f}"


def _applicable(spec, case, dataset, weights_info):
    for t in spec.thresholds:
        if t.profiles and case.shape not in t.profiles:
            continue
        on_data = dataset.is_official_val2017 if t.dataset == "official:coco-val2017" else dataset.name == t.dataset
        on_weights = t.weights == "any" or weights_info.kind == "official"
        yield t, on_data and on_weights


@pytest.mark.cases("accuracy")
def test_accuracy(case, pipeline, run_context, needs, record):
    """The task metric on a dataset; where the spec's gate applies (dataset and weights), it is asserted."""
    spec, dataset = case.spec, run_context.dataset(case.dataset)
    skip_unavailable(case.backend)
    if case.backend != REFERENCE:
        needs.stage("infer", model=case.model, backend=case.backend, precision=case.precision, shape=case.shape)
    results = _predictions(pipeline, case, dataset, case.backend, case.precision, needs)
    score = evaluate_keypoints(dataset, results)
    info = pipeline.weights_info(spec)
    gates = list(_applicable(spec, case, dataset, info))
    active = [t for t, applies in gates if applies]
    base = dict(dataset=dataset.name, weights=info.identity, images=score.num_images, people=score.num_results)
    if not active:
        record(metric=spec.metric, value=score.ap, **base)
        wanted = "; ".join(f"{t.metric} {'>=' if t.direction == 'min' else '<='} {t.value} ({t.source}) needs "
                           + ("the full COCO val2017 (annotations/person_keypoints_val2017.json and its 5000 images in val2017/) "
                              "as a folder under --data-root" if t.dataset.startswith("official") else f"dataset {t.dataset}")
                           + (f" and {spec.checkpoint.filename} in --weights-dir" if t.weights == "official" else "")
                           for t, _ in gates)
        pytest.skip(f"{spec.metric} {score.ap:.4f} measured on {dataset.identity} with {info.identity}; no gate claimed"
                    + (f": {wanted}" if wanted else f": {spec.name} declares no threshold for this dataset"))
    for t in active:
        record(metric=t.metric, value=score.ap, threshold=t.value, direction=t.direction, margin=t.margin(score.ap),
               source=t.source, **base)
    failing = [f"{t.metric} {score.ap:.4f} vs {t.value} ({t.source}): margin {t.margin(score.ap):+.4f}"
               for t in active if not t.passes(score.ap)]
    assert not failing, "; ".join(failing)
