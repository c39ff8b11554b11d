"""Stage 5, convert: each backend turns the export into its own artifact (cached) and loads it."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures.artifacts import skip_unavailable
from posegate.backends import BACKENDS

STAGE = "convert"
pytestmark = pytest.mark.stage


@pytest.mark.cases("convert")
def test_convert(case, pipeline, needs, record):
    spec = case.spec
    skip_unavailable(case.backend)
    backend = BACKENDS[case.backend]
    needs(pipeline.onnx, spec, backend.opset)
    shape = None if case.shape is None else spec.engine_shape(case.profile, case.batch)
    artifact = pipeline.converted(spec, case.backend, case.precision, shape)
    files = sorted(p.name for p in artifact.iterdir())
    session = pipeline.session(spec, case.backend, case.precision, shape)
    record(artifact_files=files, execution=session.info.execution, backend_version=backend.version())
    x = np.zeros(shape or (1, *spec.sample_dims), np.float32)
    out = session.run({spec.input_name: x})
    assert list(out) == list(spec.output_names)
    assert all(np.isfinite(v).all() for v in out.values())
