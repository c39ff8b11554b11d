"""Stage 6, infer: every backend's outputs against the PyTorch reference on real preprocessed inputs."""
from __future__ import annotations

import pytest

from fixtures.diagnosis import localize_case, reduce_case
from posegate.diagnosis import diagnose
from posegate.diagnosis.reduce.shape import is_shape_error
from posegate.metrics.parity import compare

STAGE = "infer"
pytestmark = pytest.mark.stage


@pytest.mark.cases("infer")
def test_infer(case, target, pipeline, run_context, needs, record, request):
    spec, profile = case.spec, case.profile
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    reference = needs(pipeline.reference_outputs, spec, profile, dataset, case.batch)
    session = needs(pipeline.session, target)
    if session.info.precision_problem:  # known once built, e.g. an Ascend OM whose ATC log kept HF32 on
        pytest.skip(f"{case.backend}-{case.precision} parity: {session.info.precision_problem}")
    batch = pipeline.parity_batch(spec, profile, dataset, case.batch)
    try:
        outputs = session.run({spec.input_name: batch.x})
    except Exception as e:  # a shape error under --reduce is reduced like a numeric failure; others as they are
        if not (request.config.option.reduce and is_shape_error(e)):
            raise
        pytest.fail(f"{case.backend}-{case.precision} raised a shape error: {str(e).strip()[:600]}"
                    + reduce_case(pipeline, target, e, (batch.x, None, None), record, request), pytrace=False)
    errors = {name: compare(outputs[name], reference[name], spec.tolerance(case.precision, name))
              for name in session.output_names}  # a supplied artifact may keep only some outputs
    record(parity={n: e.as_dict() for n, e in errors.items()}, dataset=dataset.name, dataset_id=dataset.identity,
           weights=pipeline.weights_identity(spec), execution=session.info.execution)
    failing = [f"{n}: {e.describe()}" for n, e in errors.items() if not e.ok]
    where = ""
    advise = request.config.option.advise_precision and diagnose.advisable(case.backend, case.precision)
    if failing or request.config.option.localize or advise:
        x = batch.x if target.fixed_batch else batch.x[:1]
        where = localize_case(pipeline, target, x, record, request, reference if advise else None,
                              (batch.x, outputs, reference) if failing and request.config.option.reduce else None,
                              dataset)
    assert not failing, f"{case.backend}-{case.precision} off the torch reference: " + "; ".join(failing) + where
