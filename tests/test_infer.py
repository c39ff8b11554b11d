"""Stage 6, infer: every backend's outputs against the PyTorch reference on real preprocessed inputs."""
from __future__ import annotations

import pytest

from posegate.context import SYNTHETIC
from posegate.parity import compare
from posegate.spec import CALIBRATED
from fixtures.artifacts import skip_unavailable

STAGE = "infer"
pytestmark = pytest.mark.stage


@pytest.mark.cases("infer")
def test_infer(case, pipeline, run_context, needs, record):
    spec, profile = case.spec, case.profile
    skip_unavailable(case.backend, case)
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    if case.precision in CALIBRATED and dataset.name == SYNTHETIC:
        pytest.skip(f"{case.precision} parity needs real inputs (its quantisation was calibrated on them): give "
                    f"--data-root a {spec.flow.dataset_kind} dataset with inputs")
    reference = needs(pipeline.reference_outputs, spec, profile, dataset, case.batch)
    session = needs(pipeline.session, spec, case.backend, case.precision, spec.engine_shape(profile, case.batch))
    batch = pipeline.parity_batch(spec, profile, dataset, case.batch)
    outputs = session.run({spec.input_name: batch.x})
    errors = {name: compare(outputs[name], reference[name], spec.tolerance(case.precision, name))
              for name in session.output_names}  # a supplied artifact may keep only some outputs
    record(parity={n: e.as_dict() for n, e in errors.items()}, dataset=dataset.name, dataset_id=dataset.identity,
           weights=pipeline.weights_identity(spec), execution=session.info.execution)
    failing = [f"{n}: {e.describe()}" for n, e in errors.items() if not e.ok]
    assert not failing, f"{case.backend}-{case.precision} off the torch reference:\n" + "\n".join(failing)
