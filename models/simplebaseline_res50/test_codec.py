"""SimpleBaseline codec against transcriptions of upstream's steps (microsoft/human-pose-estimation.pytorch:
lib/dataset/coco.py _xywh2cs, lib/utils/transforms.py get_affine_transform / transform_preds, lib/core/inference.py
get_final_preds, lib/core/function.py validate's flip test) and hand-computed values."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.simplebaseline_res50 import codec

pytestmark = pytest.mark.stage


def _xywh2cs(x, y, w, h):
    """Upstream's box -> centre, scale, step by step (float32 arrays, aspect 0.75, pixel_std 200, x 1.25)."""
    center = np.float32([x + w * 0.5, y + h * 0.5])
    if w > 0.75 * h:
        h = w / 0.75
    elif w < 0.75 * h:
        w = h * 0.75
    return center, np.array([w / 200, h / 200], np.float32) * 1.25


def _three_point(center, scale, size, inv=False):
    """get_affine_transform, rotation 0: the centre, a point half the source width above it, a third at
    right angles; so both axes scale by the width's ratio."""
    src_w, (dw, dh) = scale[0] * 200, size
    src = np.float32([center, center + [0, -0.5 * src_w], center + [0.5 * src_w, -0.5 * src_w]])
    dst = np.float32([[dw / 2, dh / 2], [dw / 2, dh / 2 - dw / 2], [dw, dh / 2 - dw / 2]])
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


BOXES = [[12.5, 40, 80, 210], [300, 10, 250, 90], [0, 0, 640, 480], [5, 5, 75, 100]]


def test_box_is_fitted_to_the_aspect_then_padded_by_a_quarter():
    center, scale = codec.GEOMETRY.boxes_to_center_scale(BOXES)
    for box, c, s in zip(BOXES, center, scale):
        want_c, want_s = _xywh2cs(*box)
        np.testing.assert_allclose(c, want_c, rtol=1e-7)
        np.testing.assert_allclose(s, want_s, rtol=1e-6)  # upstream's float32 rounding only
    np.testing.assert_allclose(scale[3], [0.375 * 1.25, 0.5 * 1.25])  # already 3:4: only the padding


def test_affine_and_its_inverse_equal_upstreams_three_point_construction():
    center, scale = codec.GEOMETRY.boxes_to_center_scale(BOXES)
    mats = codec.GEOMETRY.affine_matrices(center, scale)
    for c, s, m in zip(center, scale, mats):
        np.testing.assert_allclose(m, _three_point(c, s, (192, 256)), rtol=1e-5, atol=1e-3)
    records = [codec.CropRecord(1, 640, 480, tuple(c), tuple(s), 0.9) for c, s in zip(center, scale)]
    hm = np.float32([[0, 0], [47, 63], [23.75, 31.25], [10.5, 50.25]])
    ours = codec.heatmap_to_image(np.broadcast_to(hm, (len(records), 4, 2)), records)
    for r, got in zip(records, ours):
        inv = _three_point(np.float32(r.center), np.float32(r.scale), (48, 64), inv=True)
        want = np.c_[hm, np.ones(4)] @ inv.T
        np.testing.assert_allclose(got, want, atol=1e-3)  # transform_preds, within 1e-3 px


def test_normalisation_applies_rgb_ordered_statistics_to_bgr_channels():
    image = np.full((100, 100, 3), (10, 128, 250), np.uint8)  # B, G, R
    x, _ = codec.preprocess_crops([(image, [0, 0, 100, 100], 1.0, 1)], "no-flip")
    want = (np.float32([10, 128, 250]) / np.float32(255) - np.float32([0.485, 0.456, 0.406])) / \
        np.float32([0.229, 0.224, 0.225])
    np.testing.assert_array_equal(x[0, :, 128, 96], want)
    assert x.dtype == np.float32 and x.shape == (1, 3, 256, 192) and x.flags.c_contiguous


def test_a_marked_pixel_lands_where_the_record_says():
    image = np.zeros((300, 400, 3), np.uint8)
    image[120:123, 210:213] = 255
    x, records = codec.preprocess_crops([(image, [150, 60, 120, 160], 0.8, 7)], "no-flip")
    ys, xs = np.nonzero(x[0, 0] == x[0, 0].max())
    spot = records[0].to_input([[211, 121]])[0]
    assert abs(xs.mean() - spot[0]) < 0.5 and abs(ys.mean() - spot[1]) < 0.5


def test_flip_profile_appends_mirrored_crops_and_unknown_profiles_are_refused():
    rng = np.random.default_rng(0)
    raws = [(rng.integers(0, 256, (200, 150, 3), np.uint8), [10, 10, 100, 150], 0.5, i) for i in range(3)]
    x, records = codec.preprocess_crops(raws, "upstream")
    assert x.shape == (6, 3, 256, 192) and all(r.flip for r in records)
    np.testing.assert_array_equal(x[3:], x[:3, :, :, ::-1])
    with pytest.raises(ValueError, match="unknown profile 'ascend'"):
        codec.preprocess_crops(raws, "ascend")


def _records(n, flip=False):
    return [codec.CropRecord(i, 640, 480, (320.0, 240.0), (1.0, 4 / 3), 0.9, flip) for i in range(n)]


def test_flip_merge_flips_back_swaps_shifts_one_pixel_and_averages():
    rng = np.random.default_rng(1)
    maps = rng.random((2, 17, 64, 48), np.float32)
    mirrored = maps[:, codec.FLIP_ORDER, :, ::-1]  # what the network gives for the mirrored crops
    merged = codec.merge_flip(np.concatenate([maps, mirrored]), _records(2, flip=True))
    # flip_back(mirrored) == maps; SHIFT_HEATMAP moves it one column right, column 0 kept
    np.testing.assert_allclose(merged[..., 1:], (maps[..., 1:] + maps[..., :-1]) * 0.5, rtol=1e-6)
    np.testing.assert_allclose(merged[..., 0], maps[..., 0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"do not fit 2 crop records \(flip test True\)"):
        codec.merge_flip(maps, _records(2, flip=True))


def test_quarter_step_toward_the_higher_neighbour_and_none_at_the_border():
    maps = np.zeros((1, 17, 64, 48), np.float32)
    maps[0, 0, 30, 20], maps[0, 0, 30, 21], maps[0, 0, 29, 20] = 1.0, 0.5, 0.2  # right and up
    maps[0, 1, 10, 1], maps[0, 1, 10, 2] = 1.0, 0.9  # px = 1: no step (1 < px fails)
    maps[0, 2] = -1.0  # nothing above 0: get_max_preds puts it at (0, 0)
    maps[0, 2, 5, 5] = -0.5
    xy, maxval = codec.decode_heatmaps(maps)
    np.testing.assert_array_equal(xy[0, 0], [20.25, 29.75])
    np.testing.assert_array_equal(xy[0, 1], [1, 10])
    np.testing.assert_array_equal(xy[0, 2], [0, 0])
    assert maxval[0, 2] == -0.5 and maxval[0, 0] == 1.0


def test_person_score_is_the_detection_times_the_mean_of_visible_joints():
    maps = np.zeros((1, 17, 64, 48), np.float32)
    for j in range(17):
        maps[0, j, 20 + j, 10 + j] = 0.9 if j < 5 else 0.1  # five joints above IN_VIS_THRE 0.2
    (result,) = codec.decode_crops(maps, [codec.CropRecord(3, 640, 480, (320.0, 240.0), (1.0, 4 / 3), 0.5)])
    assert result["score"] == pytest.approx(0.5 * np.float32(0.9))
    assert result["area"] == pytest.approx(200 * 200 * 4 / 3, rel=1e-6)
    kp = np.asarray(result["keypoints"]).reshape(17, 3)
    np.testing.assert_allclose(kp[:, 2], [0.9] * 5 + [0.1] * 12, rtol=1e-6)


def test_random_heatmaps_decode_inside_their_crop_windows():
    """Border peaks included: the window is the decoder's own image of the heatmap's corners."""
    rng = np.random.default_rng(2)
    center, scale = codec.GEOMETRY.boxes_to_center_scale(rng.uniform(1, 300, (32, 4)))
    records = [codec.CropRecord(i, 640, 480, tuple(c), tuple(s), 0.9) for i, (c, s) in enumerate(zip(center, scale))]
    maps = rng.random((32, 17, 64, 48), np.float32)
    maps[:8, :, 0, 0] = maps[8:16, :, -1, -1] = 2.0  # peaks on the corners
    for r, res in zip(records, codec.decode_crops(maps, records)):
        kp = np.asarray(res["keypoints"]).reshape(17, 3)
        x0, y0, x1, y1 = r.window
        assert ((kp[:, 0] >= x0) & (kp[:, 0] <= x1) & (kp[:, 1] >= y0) & (kp[:, 1] <= y1)).all()


def test_encoded_ground_truth_decodes_within_the_quarter_steps_reach():
    kps = np.zeros((17, 3))
    kps[:, 0], kps[:, 1], kps[:, 2] = np.linspace(110, 190, 17), np.linspace(60, 330, 17), 2
    kps[4, 2] = 0  # unlabelled: an empty map
    ann = {"bbox": [100, 50, 100, 290], "keypoints": kps.ravel().tolist(), "num_keypoints": 16, "iscrowd": 0}
    maps, records = codec.encode_ground_truth([ann], 480, 640, 9)
    assert maps.shape == (1, 17, 64, 48) and maps.max() <= 1 and not maps[0, 4].any()
    (res,) = codec.decode_crops(maps, records)
    got = np.asarray(res["keypoints"]).reshape(17, 3)
    per_hm_px = records[0].scale[0] * 200 / 48
    err = np.abs(got[:, :2] - kps[:, :2])[kps[:, 2] > 0]
    assert err.max() <= 0.5 * per_hm_px + 1e-6  # rounding to a pixel, then a quarter step toward the peak


def test_finalize_suppresses_a_duplicate_person_and_drops_the_area():
    kp = np.c_[np.linspace(100, 200, 17), np.linspace(50, 300, 17), np.full(17, 0.9)]
    person = {"image_id": 1, "category_id": 1, "area": 40000.0}
    results = [{**person, "keypoints": kp.ravel().tolist(), "score": 0.8},
               {**person, "keypoints": (kp + [1, 1, 0]).ravel().tolist(), "score": 0.9},  # the better duplicate
               {**person, "keypoints": (kp + [300, 0, 0]).ravel().tolist(), "score": 0.5}]
    final = codec.finalize(results)
    assert [r["score"] for r in final] == [0.9, 0.5] and all("area" not in r for r in final)
