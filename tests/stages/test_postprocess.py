"""Stage 7, postprocess: decoding the reference outputs yields valid results, deterministically."""
from __future__ import annotations

import numpy as np
import pytest

STAGE = "postprocess"
pytestmark = pytest.mark.stage


@pytest.mark.cases("postprocess")
def test_postprocess(case, pipeline, run_context, needs, record):
    spec, profile = case.spec, case.profile
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    outputs = needs(pipeline.reference_outputs, spec, profile, dataset, case.batch)
    batch = pipeline.parity_batch(spec, profile, dataset, case.batch)
    results = pipeline.decode(spec, outputs, batch.records, batch.samples)
    again = pipeline.decode(spec, outputs, batch.records, batch.samples)
    assert _same(results, again), "decoding is not deterministic"
    record(results=len(results), dataset=dataset.name, weights=pipeline.weights_identity(spec))
    problems = spec.flow.check_results(results, batch.records, list(batch.samples))
    assert not problems, "; ".join(problems[:5])


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b
