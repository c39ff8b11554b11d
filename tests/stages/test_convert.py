"""Stage 5, convert: each backend turns the export into its own artifact (cached) and loads it; a
supplied artifact is opened as given, after its interface check."""
from __future__ import annotations

import numpy as np
import pytest

from posegate.backends import BACKENDS
from posegate.metrics.parity import describe_nonfinite, nonfinite_counts

STAGE = "convert"
pytestmark = pytest.mark.stage


@pytest.mark.cases("convert")
def test_convert(case, target, pipeline, needs, record):
    spec = case.spec
    backend = BACKENDS[case.backend]
    needs(pipeline.exported, target)
    artifact = pipeline.converted(target)
    files = sorted(p.name for p in artifact.iterdir())
    session = pipeline.session(target)
    record(artifact_files=files, execution=session.info.execution, backend_version=backend.version())
    if target.engine_shape:  # a static engine: its own batch rows (flip copies included) and the profile's dims
        x = np.zeros((target.engine_shape[0], *target.profile.concrete_dims), np.float32)
    else:
        x = np.zeros((1, *spec.sample_dims), np.float32)
    out = session.run({spec.input_name: x})
    assert list(out) == list(spec.output_names)
    bad = nonfinite_counts(out)
    assert not bad, f"{case.backend}-{case.precision} on a zero input: {describe_nonfinite(bad)}"


@pytest.mark.cases("artifact")
def test_artifact(case, pipeline, needs, record):
    """A supplied converted model: its input/output names and shapes match its contract and the reference."""
    spec = case.spec
    bound = pipeline.artifacts[(case.model, case.backend, case.precision)]
    if bound.path is None:
        pytest.skip(bound.missing_reason())
    session = pipeline.artifact_session(spec, bound)  # a mismatch fails here, where it belongs
    inputs, outputs = session.signature()
    record(artifact=session.info.details["artifact"], inputs=inputs, outputs=outputs,
           execution=session.info.execution, backend_version=BACKENDS[case.backend].version())
    x = np.zeros((case.batch, *case.profile.concrete_dims), np.float32)
    out = session.run({spec.input_name: x})
    assert list(out) == list(session.output_names)
    bad = nonfinite_counts(out)
    assert not bad, f"{bound.path} on a zero input: {describe_nonfinite(bad)}"
