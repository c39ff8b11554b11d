"""MSPN codec: the crop geometry, normalisation, flip test and decoding, against hand-computed values
and against a one-joint-at-a-time transcription of upstream's recipe (test.py get_results)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.mspn_2xstg import codec, recipe

pytestmark = pytest.mark.stage


# ------------------------------------------------------------------------------------------ geometry

def test_box_is_widened_and_fitted_to_the_input_aspect():
    center, scale = codec.boxes_to_center_scale([[10, 20, 100, 100], [0, 0, 60, 300]])
    np.testing.assert_allclose(center, [[60, 70], [30, 150]])
    # square box: 0.5 * 1.09 wide, which is wider than 3/4 of 0.5 * 1.135, so the height grows to match
    np.testing.assert_allclose(scale[0], [0.545, 0.545 / 0.75])
    # tall box: 1.5 * 1.135 high decides, the width grows to 3/4 of it
    np.testing.assert_allclose(scale[1], [1.5 * 1.135 * 0.75, 1.5 * 1.135])


def test_box_without_extent_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"\[5.0, 5.0, 0.0, 0.0\]"):
        codec.boxes_to_center_scale([[1, 1, 10, 10], [5, 5, 0, 0]])


def _three_point_affine(center, scale):
    """Upstream's construction: the centre, a point half the source width above it, and a third point
    at right angles, sent to the input's centre and the matching points there."""
    src_w = scale[0] * codec.PIXEL_STD
    src = np.float32([center, center + [0, -0.5 * src_w], center + [0.5 * src_w, -0.5 * src_w]])
    dw, dh = codec.INPUT_W, codec.INPUT_H
    dst = np.float32([[dw / 2, dh / 2], [dw / 2, dh / 2 - dw / 2], [dw, dh / 2 - dw / 2]])
    return cv2.getAffineTransform(src, dst)


def test_affine_equals_upstreams_three_point_construction():
    boxes = [[12.5, 40, 80, 210], [300, 10, 250, 90], [0, 0, 640, 480]]
    center, scale = codec.boxes_to_center_scale(boxes)
    mats = codec.affine_matrices(center, scale)
    for c, s, m in zip(center, scale, mats):
        np.testing.assert_allclose(m, _three_point_affine(c, s), rtol=1e-5, atol=1e-3)


def test_record_maps_to_the_crop_and_back_exactly():
    center, scale = codec.boxes_to_center_scale([[33.3, 44.4, 120.5, 260.25]])
    rec = codec.CropRecord(1, 640, 480, tuple(center[0]), tuple(scale[0]), 0.9)
    pts = np.array([[33.3, 44.4], [153.8, 304.65], [100.0, 200.0]])
    np.testing.assert_allclose(rec.to_original(rec.to_input(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(rec.to_input(center), [[codec.INPUT_W / 2, codec.INPUT_H / 2]])
    x0, y0, x1, y1 = rec.window
    assert x0 < 33.3 and y0 < 44.4 and x1 > 153.8 and y1 > 304.65  # the widened crop holds the box


def test_a_marked_pixel_lands_where_the_record_says():
    image = np.zeros((300, 400, 3), np.uint8)
    image[120:123, 210:213] = 255  # a 3x3 spot centred on (211, 121)
    x, records = codec.preprocess_crops([(image, [150, 60, 120, 160], 0.8, 7)], "ascend")
    white = x[0, 0] == x[0, 0].max()
    ys, xs = np.nonzero(white)
    spot = records[0].to_input([[211, 121]])[0]
    assert abs(xs.mean() - spot[0]) < 0.5 and abs(ys.mean() - spot[1]) < 0.5


def test_normalisation_is_totensor_then_bgr_mean_std_and_outside_is_black():
    image = np.full((100, 100, 3), (10, 128, 250), np.uint8)  # B, G, R
    x, _ = codec.preprocess_crops([(image, [0, 0, 100, 100], 1.0, 1)], "ascend")
    want = (np.float32([10, 128, 250]) / np.float32(255) - codec.MEAN_BGR) / codec.STD_BGR
    np.testing.assert_array_equal(x[0, :, 128, 96], want)
    # the widened square box reaches above the image: those rows are black before normalisation
    np.testing.assert_array_equal(x[0, :, 0, 96], -codec.MEAN_BGR / codec.STD_BGR)
    assert x.dtype == np.float32 and x.shape == (1, 3, 256, 192) and x.flags.c_contiguous


def test_flip_profile_appends_the_mirrored_crops():
    rng = np.random.default_rng(0)
    raws = [(rng.integers(0, 256, (200, 150, 3), np.uint8), [10, 10, 100, 150], 0.5, i) for i in range(3)]
    plain, recs = codec.preprocess_crops(raws, "ascend")
    both, frecs = codec.preprocess_crops(raws, "upstream")
    assert both.shape == (6, 3, 256, 192) and not any(r.flip for r in recs) and all(r.flip for r in frecs)
    np.testing.assert_array_equal(both[:3], plain)
    np.testing.assert_array_equal(both[3:], plain[..., ::-1])


def test_unknown_profile_is_rejected():
    with pytest.raises(ValueError, match="unknown profile"):
        codec.preprocess_crops([(np.zeros((10, 10, 3), np.uint8), [0, 0, 5, 5], 1.0, 1)], "flip")


# ------------------------------------------------------------------------------------------ flip back

def test_flip_back_mirrors_and_swaps_left_right_pairs():
    h = np.zeros((1, 17, 64, 48), np.float32)
    h[0, 5, 10, 3] = 1  # left shoulder near the left edge of the mirrored crop
    h[0, 0, 20, 0] = 2  # the nose has no partner
    back = codec.flip_back(h)
    assert back[0, 6, 10, 44] == 1 and back[0, 5].sum() == 0
    assert back[0, 0, 20, 47] == 2


def test_merging_a_crop_with_its_flipped_back_self_gives_the_crop():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(2, 17, 64, 48)).astype(np.float32)
    recs = [codec.CropRecord(1, 10, 10, (5.0, 5.0), (1.0, 1.0), 1.0, flip=True)] * 2
    np.testing.assert_allclose(codec.merge_flip(np.concatenate([h, codec.flip_back(h)]), recs), h, atol=1e-6)


def test_output_shape_must_fit_the_records():
    recs = [codec.CropRecord(1, 10, 10, (5.0, 5.0), (1.0, 1.0), 1.0, flip=True)]
    with pytest.raises(ValueError, match=r"expected \[2, 17, 64, 48\]"):
        codec.decode_crops(np.zeros((1, 17, 64, 48), np.float32), recs)


# ----------------------------------------------------------------------------------------- decoding

def _upstream_one_by_one(heatmaps):
    """The recipe transcribed joint by joint from the facts: pad 10, blur, two argmaxes, quarter step."""
    n = len(heatmaps)
    xy, scores = np.zeros((n, 17, 2)), np.zeros((n, 17))
    for i in range(n):
        score_map = heatmaps[i] / np.float32(255) + np.float32(0.5)
        dr = np.zeros((17, 84, 68))
        dr[:, 10:-10, 10:-10] = heatmaps[i]
        for w in range(17):
            dr[w] = cv2.GaussianBlur(dr[w], (5, 5), 0)
            y, x = np.unravel_index(dr[w].argmax(), dr[w].shape)
            dr[w, y, x] = 0
            py, px = np.unravel_index(dr[w].argmax(), dr[w].shape)
            x, y = float(x - 10), float(y - 10)
            px, py = px - 10 - x, py - 10 - y
            ln = (px ** 2 + py ** 2) ** 0.5
            if ln > 1e-3:
                x += 0.25 * px / ln
                y += 0.25 * py / ln
            x, y = max(0.0, min(x, 47.0)), max(0.0, min(y, 63.0))
            xy[i, w] = x, y
            scores[i, w] = score_map[w, int(round(y) + 1e-9), int(round(x) + 1e-9)]
    return xy, scores


@pytest.mark.parametrize("values", ["float32", "float64", "wide-range"])
def test_batched_blur_is_bit_identical_to_upstreams_blur_of_each_map(values):
    """One call on the stacked batch equals cv2.GaussianBlur(map, (5, 5), 0) per zero-padded map."""
    rng = np.random.default_rng(2)
    maps = np.zeros((40, 84, 68))
    inside = rng.normal(size=(40, 64, 48)) * 40
    if values == "wide-range":  # sums whose rounding depends on the order they are taken in
        inside *= 10.0 ** rng.integers(-8, 9, size=(40, 64, 48))
    maps[:, 10:-10, 10:-10] = inside.astype(np.float32) if values == "float32" else inside
    for m, o in zip(maps, codec.blur(maps)):
        np.testing.assert_array_equal(o, cv2.GaussianBlur(m, (5, 5), 0))


@pytest.mark.parametrize("kind", ["noise", "integer_ties", "negative", "zeros", "gaussians"])
def test_batch_decoding_equals_the_recipe_joint_by_joint(kind):
    rng = np.random.default_rng(3)
    shape = (5, 17, 64, 48)
    if kind == "noise":
        h = rng.normal(size=shape) * 30
    elif kind == "integer_ties":  # plateaus: argmax must take the first index, as upstream's does
        h = rng.integers(0, 3, size=shape) * 50.0
    elif kind == "negative":  # all below the zero padding: the maximum lies outside the map
        h = -1 - rng.random(shape) * 10
    elif kind == "zeros":  # every pixel ties with the padding: upstream takes the padding's first pixel
        h = np.zeros(shape)
    else:
        yy, xx = np.mgrid[0:64, 0:48]
        cx, cy = rng.uniform(-3, 50, (2, 5, 17, 1, 1))
        h = 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8)
    h = h.astype(np.float32)
    xy, scores = codec.decode_heatmaps(h)
    want_xy, want_scores = _upstream_one_by_one(h)
    np.testing.assert_array_equal(xy, want_xy)
    np.testing.assert_array_equal(scores, want_scores)


def _two_spikes(first, second, v1=100.0, v2=60.0):
    h = np.zeros((1, 17, 64, 48), np.float32)
    h[0, :, first[1], first[0]] = v1
    h[0, :, second[1], second[0]] = v2
    return h


def test_quarter_step_toward_the_second_maximum():
    xy, scores = codec.decode_heatmaps(_two_spikes((10, 20), (11, 20)))
    np.testing.assert_allclose(xy[0, 0], [10.25, 20])
    np.testing.assert_allclose(scores[0, 0], 100 / np.float32(255) + np.float32(0.5), rtol=1e-7)
    xy, _ = codec.decode_heatmaps(_two_spikes((10, 20), (11, 21), v2=90.0))
    np.testing.assert_allclose(xy[0, 0], [10 + 0.25 / np.sqrt(2), 20 + 0.25 / np.sqrt(2)])


def test_position_is_clipped_to_the_map():
    h = np.zeros((1, 17, 64, 48), np.float32)
    h[0, :, 0, 0] = 100  # the blurred neighbours tie; the first in row order lies above, outside the map
    xy, _ = codec.decode_heatmaps(h)
    np.testing.assert_array_equal(xy[0, 0], [0, 0])


def test_results_map_to_the_image_with_the_person_score():
    center, scale = codec.boxes_to_center_scale([[100, 50, 90, 240]])
    rec = codec.CropRecord(42, 640, 480, tuple(center[0]), tuple(scale[0]), 0.8)
    res = codec.decode_crops(_two_spikes((10, 20), (11, 20)), [rec])
    assert len(res) == 1 and res[0]["image_id"] == 42 and res[0]["category_id"] == 1
    kp = np.array(res[0]["keypoints"]).reshape(17, 3)
    np.testing.assert_allclose(kp[:, :2], rec.to_original([[10.25 * 4 + 2, 20 * 4 + 2]] * 17))
    # test.py: kp / 192 * (s_w * 200) + c - s_w * 200 / 2
    s_w = scale[0, 0] * 200
    np.testing.assert_allclose(kp[0, 0], 43 / 192 * s_w + center[0, 0] - s_w / 2)
    kp_score = 100 / np.float32(255) + np.float32(0.5)
    np.testing.assert_allclose(kp[:, 2], kp_score, rtol=1e-6)
    np.testing.assert_allclose(res[0]["score"], 0.8 * kp_score, rtol=1e-6)


def test_a_crop_decodes_the_same_alone_and_in_a_batch():
    rng = np.random.default_rng(4)
    h = (rng.normal(size=(6, 17, 64, 48)) * 50).astype(np.float32)
    center, scale = codec.boxes_to_center_scale(rng.uniform(10, 200, (6, 4)))
    recs = [codec.CropRecord(i, 640, 480, tuple(c), tuple(s), 0.5) for i, (c, s) in enumerate(zip(center, scale))]
    batch = codec.decode_crops(h, recs)
    alone = [codec.decode_crops(h[i:i + 1], recs[i:i + 1])[0] for i in range(6)]
    assert batch == alone


# -------------------------------------------------------------------------------------------- oracle

def test_encoded_ground_truth_decodes_within_the_quarter_steps_reach():
    kp = np.zeros((17, 3))
    kp[:, 0] = np.linspace(120, 190, 17)
    kp[:, 1] = np.linspace(60, 330, 17)
    kp[:, 2] = 2
    kp[3] = 0  # unlabelled
    kp[16] = (200.5, 350.25, 1)  # labelled outside the box: the oracle's crop grows to hold it
    ann = {"bbox": [110, 50, 90, 290], "keypoints": kp.ravel().tolist(), "num_keypoints": 16, "iscrowd": 0}
    maps, recs = codec.encode_ground_truth([ann, {**ann, "iscrowd": 1}], 480, 640, 9)
    assert maps.shape == (1, 17, 64, 48) and len(recs) == 1 and maps[0, 3].max() == 0
    got = np.array(codec.decode_crops(maps, recs)[0]["keypoints"]).reshape(17, 3)
    heatmap_px = recs[0].scale[0] * codec.PIXEL_STD / codec.HEATMAP_W
    err = np.linalg.norm(got[:, :2] - kp[:, :2], axis=1)[kp[:, 2] > 0]
    # the step goes a quarter pixel along one of 8 directions: a point half a pixel off on both axes
    # is left (0.25, 0.5) away, at most 0.56 of a heatmap pixel
    assert err.max() <= 0.56 * heatmap_px, err / heatmap_px


@pytest.mark.parametrize("flip", [False, True])
def test_batched_decoder_equals_upstreams_steps_crop_by_crop(flip):
    """The whole decoder, flip merge and float32 centre and scale included, against recipe.py's
    one-crop-one-joint transcription of test.py: the same results to the bit."""
    rng = np.random.default_rng(5)
    n = 6
    yy, xx = np.mgrid[0:64, 0:48]
    cx, cy = rng.uniform(-3, 50, (2, n * (1 + flip), 17, 1, 1))
    maps = (255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8) + rng.normal(size=cx.shape[:2] + (64, 48)) * 20)
    center, scale = codec.boxes_to_center_scale(rng.uniform(10, 300, (n, 4)))
    recs = [codec.CropRecord(i, 640, 480, tuple(np.float32(c).tolist()), tuple(np.float32(s).tolist()), 0.7, flip)
            for i, (c, s) in enumerate(zip(center, scale))]
    assert codec.decode_crops(maps.astype(np.float32), recs) == recipe.decode_crops(maps.astype(np.float32), recs)


def test_finalize_keeps_every_person_as_upstream_does():
    # upstream's test.py runs no OKS-NMS: two near-duplicates of one image both reach COCOeval
    kp = np.c_[np.linspace(100, 200, 17), np.linspace(50, 300, 17), np.full(17, 0.9)]
    results = [{"image_id": 1, "category_id": 1, "keypoints": (kp + d).ravel().tolist(), "score": s}
               for d, s in (((0, 0, 0), 0.9), ((1, 1, 0), 0.7))]
    assert codec.finalize(results) == results
