"""Stage 7, postprocess: decoding the reference outputs yields valid COCO keypoint results."""
from __future__ import annotations

import numpy as np
import pytest

STAGE = "postprocess"
pytestmark = pytest.mark.stage


@pytest.mark.cases("postprocess")
def test_postprocess(case, pipeline, run_context, needs, record):
    spec, profile = case.spec, case.profile
    dataset = run_context.parity_dataset()
    outputs = needs(pipeline.reference_outputs, spec, profile, dataset, case.batch)
    batch = pipeline.parity_batch(spec, profile, dataset, case.batch)
    results = pipeline.decode(spec, outputs, batch.records, batch.image_ids)
    again = pipeline.decode(spec, outputs, batch.records, batch.image_ids)
    assert results == again, "decoding is not deterministic"
    record(people=len(results), dataset=dataset.name, weights=pipeline.weights_identity(spec))
    sizes = {i: (r.orig_w, r.orig_h) for i, r in zip(batch.image_ids, batch.records)}
    for r in results:
        kp = np.asarray(r["keypoints"], float).reshape(17, 3)
        found = kp[:, 2] > 0
        w, h = sizes[r["image_id"]]
        assert r["category_id"] == 1 and np.isfinite(r["score"]) and r["score"] >= 0
        assert set(np.unique(kp[:, 2])) <= {0.0, 1.0}
        assert np.all(kp[~found] == 0), "missing keypoints must be (0, 0, 0)"
        assert np.all((kp[found, 0] >= 0) & (kp[found, 0] <= w) & (kp[found, 1] >= 0) & (kp[found, 1] <= h)), \
            "keypoints outside the original image"
