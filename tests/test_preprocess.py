"""Stage 3, preprocess: shapes, dtype, layout, channel order and an exact padding record."""
from __future__ import annotations

import numpy as np
import pytest

STAGE = "preprocess"
pytestmark = pytest.mark.stage


def _labelled_points(dataset, image_id) -> np.ndarray:
    pts = [np.asarray(a["keypoints"], float).reshape(-1, 3) for a in dataset.annotations(image_id)]
    pts = np.concatenate(pts) if pts else np.zeros((0, 3))
    return pts[pts[:, 2] > 0, :2]


@pytest.mark.cases("shape")
def test_preprocess(case, run_context, record):
    spec, profile = case.spec, case.profile
    dataset = run_context.parity_dataset()
    ids = dataset.image_ids[:4]
    images = [dataset.load_image(i) for i in ids]
    x, records = spec.codec.preprocess_batch(images, profile.preprocess)

    assert x.dtype == np.float32 and x.flags.c_contiguous
    assert x.shape[:2] == (len(images), spec.channels), f"NCHW expected, got {x.shape}"
    assert x.shape[2] == (profile.height or x.shape[2]) and x.shape[3] == (profile.width or x.shape[3])
    assert x.shape[2] % spec.output_stride == 0 and x.shape[3] % spec.output_stride == 0
    assert np.isfinite(x).all()
    record(input_shapes=[list(x.shape)], dataset=dataset.name)

    for image_id, image, rec, xi in zip(ids, images, records, x):
        assert (rec.orig_h, rec.orig_w) == image.shape[:2]
        assert (rec.input_h, rec.input_w) == xi.shape[1:]
        pad = [xi[:, : rec.top], xi[:, xi.shape[1] - rec.bottom:], xi[:, :, : rec.left], xi[:, :, xi.shape[2] - rec.right:]]
        assert all(not p.size or np.all(p == 0) for p in pad), "padding must be exactly zero"
        points = _labelled_points(dataset, image_id)
        corners = np.array([[0, 0], [image.shape[1] - 1, image.shape[0] - 1]], float)
        for pts in (points, corners):
            back = rec.to_original(rec.to_input(pts))
            np.testing.assert_allclose(back, pts, atol=1e-6, err_msg="padding record does not map back exactly")
        inside = rec.to_input(corners)
        assert inside.min() >= -0.5 and inside[1, 0] < rec.input_w and inside[1, 1] < rec.input_h


@pytest.mark.cases("shape")
def test_channel_order(case):
    """A pure-blue image must light up the channel the spec says carries blue (BGR: 0, RGB: 2)."""
    spec, profile = case.spec, case.profile
    black = np.zeros((300, 400, 3), np.uint8)
    blue = black.copy()
    blue[..., 0] = 255  # OpenCV images are BGR
    (xb, _), (xk, _) = (spec.codec.preprocess_batch([im], profile.preprocess) for im in (blue, black))
    gain = (xb - xk)[0].reshape(spec.channels, -1).mean(axis=1)
    assert int(np.argmax(gain)) == {"BGR": 0, "RGB": 2}[spec.color], f"per-channel response {gain}"


@pytest.mark.cases("shape")
def test_preprocess_is_deterministic(case, run_context):
    dataset = run_context.parity_dataset()
    image = dataset.load_image(dataset.image_ids[0])
    a, _ = case.spec.codec.preprocess_batch([image], case.profile.preprocess)
    b, _ = case.spec.codec.preprocess_batch([image.copy()], case.profile.preprocess)
    assert np.array_equal(a, b)
