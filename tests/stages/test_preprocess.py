"""Stage 3, preprocess: dtype, layout and declared shape for every model; exact geometry records
where the input is an image (a letterbox pad or a person crop that must map back exactly)."""
from __future__ import annotations

import numpy as np
import pytest

STAGE = "preprocess"
pytestmark = pytest.mark.stage


def _batch(case, run_context, pipeline, n=4):
    spec, profile = case.spec, case.profile
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    samples = pipeline.samples(spec, profile, dataset)[:n]
    raws = [spec.flow.load(dataset, s) for s in samples]
    return dataset, samples, raws


@pytest.mark.cases("shape")
def test_preprocess(case, run_context, pipeline, record):
    spec, profile = case.spec, case.profile
    dataset, samples, raws = _batch(case, run_context, pipeline)
    x, records = spec.flow.preprocess(raws, profile)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    assert len(records) == len(samples), f"{len(records)} records for {len(samples)} samples"
    assert x.shape[0] % len(samples) == 0, f"engine batch {x.shape[0]} is no multiple of {len(samples)} samples"
    assert len(x.shape) == len(profile.dims) + 1
    assert all(d is None or d == got for d, got in zip(profile.dims, x.shape[1:])), \
        f"input {x.shape[1:]} does not fit the profile's {profile.dims}"
    assert np.isfinite(x).all()
    spec.check_input(x, "preprocess")
    buckets = [r.bucket for r in records if getattr(r, "bucket", None)]  # where a codec reports one
    record(input_shapes=[list(x.shape)], dataset=dataset.name, samples=len(samples),
           **({"buckets": buckets} if buckets else {}))


@pytest.mark.cases("shape")
def test_preprocess_is_deterministic(case, run_context, pipeline):
    dataset, samples, raws = _batch(case, run_context, pipeline, n=1)
    a, _ = case.spec.flow.preprocess(raws, case.profile)
    b, _ = case.spec.flow.preprocess([_copy(r) for r in raws], case.profile)
    assert np.array_equal(a, b)


def _copy(raw):
    if isinstance(raw, np.ndarray):
        return raw.copy()
    return type(raw)(_copy(r) for r in raw) if isinstance(raw, tuple) else raw


@pytest.mark.cases("shape", needs="image")
def test_channel_order(case):
    """A pure-blue image must light up the channel the spec says carries blue (BGR: 0, RGB: 2)."""
    spec, profile = case.spec, case.profile
    black = np.zeros((300, 400, 3), np.uint8)
    blue = black.copy()
    blue[..., 0] = 255  # OpenCV images are BGR
    (xb, _), (xk, _) = (spec.flow.preprocess([spec.flow.from_image(im)], profile) for im in (blue, black))
    gain = (xb - xk)[0].reshape(xb.shape[1], -1).mean(axis=1)
    assert int(np.argmax(gain)) == {"BGR": 0, "RGB": 2}[spec.color], f"per-channel response {gain}"


def _labelled_points(dataset, image_id) -> np.ndarray:
    pts = [np.asarray(a["keypoints"], float).reshape(-1, 3) for a in dataset.annotations(image_id)]
    pts = np.concatenate(pts) if pts else np.zeros((0, 3))
    return pts[pts[:, 2] > 0, :2]


@pytest.mark.cases("shape", needs="image")
def test_geometry_maps_back_exactly(case, run_context, pipeline):
    """Every record maps image points into the input and back exactly, and the image's corners
    (letterbox) or the box's corners (crop) land inside the input."""
    spec, profile = case.spec, case.profile
    dataset, samples, raws = _batch(case, run_context, pipeline)
    x, records = spec.flow.preprocess(raws, profile)
    for sample, raw, rec in zip(samples, raws, records):
        image = raw if isinstance(raw, np.ndarray) else raw[0]
        points = _labelled_points(dataset, sample if isinstance(sample, int) else sample["image_id"])
        if isinstance(raw, tuple):
            bx, by, bw, bh = raw[1]
            corners = np.array([[bx, by], [bx + bw, by + bh]], float)
        else:
            corners = np.array([[0, 0], [image.shape[1] - 1, image.shape[0] - 1]], float)
        for pts in (points, corners):
            back = rec.to_original(rec.to_input(pts))
            np.testing.assert_allclose(back, pts, atol=1e-6, err_msg="the record does not map back exactly")
        if {"letterbox", "crop"} & spec.flow.capabilities:  # an affine resize may crop (HigherHRNet)
            inside = rec.to_input(corners)
            h, w = x.shape[2:]
            assert inside.min() >= -0.5 and inside[1, 0] <= w and inside[1, 1] <= h, \
                f"corners land at {inside.tolist()}"


@pytest.mark.cases("shape", needs="letterbox")
def test_padding_is_exactly_zero(case, run_context, pipeline):
    spec, profile = case.spec, case.profile
    dataset, samples, raws = _batch(case, run_context, pipeline)
    x, records = spec.flow.preprocess(raws, profile)
    for image, rec, xi in zip(raws, records, x):
        assert (rec.orig_h, rec.orig_w) == image.shape[:2]
        assert (rec.input_h, rec.input_w) == xi.shape[1:]
        assert rec.input_h % spec.flow.stride == 0 and rec.input_w % spec.flow.stride == 0
        pad = [xi[:, : rec.top], xi[:, xi.shape[1] - rec.bottom:],
               xi[:, :, : rec.left], xi[:, :, xi.shape[2] - rec.right:]]
        assert all(not p.size or np.all(p == 0) for p in pad), "padding must be exactly zero"
