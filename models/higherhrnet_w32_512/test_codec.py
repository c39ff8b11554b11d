"""HigherHRNet codec: hand-computed geometry, preprocessing, and each decoding step against the facts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import MODELS
from models.higherhrnet_w32_512 import codec
from models.higherhrnet_w32_512.oracle import encode_ground_truth
from posegate.metrics.rounding import reordered_sum_tolerance

pytestmark = pytest.mark.stage


# ------------------------------------------------------------------------------------------ geometry

def test_seventeen_buckets_in_the_seed_order():
    atc = ("1024,512;960,512;896,512;832,512;768,512;704,512;640,512;576,512;512,512;512,576;512,640;"
           "512,704;512,768;512,832;512,896;512,960;512,1024")
    assert [f"{h},{w}" for h, w in codec.BUCKETS] == atc.split(";")


@pytest.mark.parametrize("hw, upstream, ascend", [
    ((480, 640), (512, 704), (512, 704)),   # 682.7: up to 704, nearest 704
    ((425, 640), (512, 832), (512, 768)),   # 771.0: up to 832, nearest 768
    ((640, 427), (768, 512), (768, 512)),   # portrait 767.4
    ((512, 800), (512, 832), (512, 768)),   # 800 lies halfway: the smaller side
    ((200, 1000), (512, 2560), (512, 1024)),  # aspect 5: the Ascend port clamps to 1024
    ((512, 512), (512, 512), (512, 512)),
])
def test_input_sizes(hw, upstream, ascend):
    assert codec.upstream_size(*hw) == upstream
    assert codec.ascend_bucket(*hw) == ascend


def test_affine_scales_the_short_side_to_512_about_the_centre():
    rec = codec.make_record(425, 640, (512, 768))
    assert rec.center == (320, 213)  # int(w / 2 + 0.5), int(h / 2 + 0.5)
    np.testing.assert_allclose(rec.forward[:, :2], np.eye(2) * 512 / 425, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(rec.to_input([[320, 213]]), [[384, 256]], atol=1e-4)
    assert rec.bucket == "512x768"


def test_bucket_profile_pads_or_crops_the_long_side_only():
    rec = codec.make_record(425, 640, codec.input_size("bucket:512x512", 425, 640))
    assert (rec.input_h, rec.input_w) == (512, 512)
    np.testing.assert_allclose(rec.forward[:, :2], np.eye(2) * 512 / 425, rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="17 buckets"):
        codec.input_size("bucket:500x500", 425, 640)


def test_warp_puts_a_dot_where_the_record_says():
    image = np.zeros((300, 400, 3), np.uint8)
    image[100, 250] = 255
    x, rec = codec.preprocess(image, "upstream")
    bright = np.unravel_index(np.argmax(x[0]), x[0].shape)
    np.testing.assert_allclose(rec.to_input([[250, 100]])[0], bright[::-1], atol=1.0)


# ------------------------------------------------------------------------------------- preprocessing

def test_rgb_imagenet_normalisation_black_padding_and_flipped_copies():
    image = np.zeros((300, 500, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # B, G, R
    x, (rec,) = codec.preprocess_batch([image], "bucket:512x1024")
    assert x.shape == (2, 3, 512, 1024) and x.dtype == np.float32
    centre = x[0, :, 256, 512]
    np.testing.assert_allclose(centre, (np.array([30, 20, 10]) / 255 - codec.MEAN) / codec.STD, rtol=1e-6)
    np.testing.assert_array_equal(x[0, :, 256, 0], -codec.MEAN / codec.STD)  # the image spans 853 of 1024 px
    np.testing.assert_array_equal(x[1], x[0][:, :, ::-1])


def test_mixed_sizes_share_the_largest_input_and_keep_their_geometry():
    a, b = np.full((300, 400, 3), 90, np.uint8), np.full((400, 300, 3), 90, np.uint8)
    x, recs = codec.preprocess_batch([a, b], "upstream")
    assert x.shape == (4, 3, 704, 704)
    assert [(r.input_h, r.input_w) for r in recs] == [(512, 704), (704, 512)]
    alone, _ = codec.preprocess(a, "upstream")
    np.testing.assert_array_equal(x[0, :, :512, :704], alone)
    np.testing.assert_array_equal(x[2:], x[:2, :, :, ::-1])  # then both flipped, in the same order


# -------------------------------------------------------------------------------------- postprocess

def test_nms_equals_upstream_max_pool():
    det = torch.from_numpy(np.random.default_rng(0).random((1, 17, 40, 56), dtype=np.float32))
    det[0, 2, 10:13, 10:13] = 2.0  # a plateau: every pixel of it is a maximum, as with MaxPool2d
    assert torch.equal(codec._max_filter(det), F.max_pool2d(det, 5, 1, 2))


def _peaks(h, w, joints):
    """Heatmaps (1, 17, h, w) and tags (17, 2, h, w) with a single-pixel peak per (joint, x, y, value, tag)."""
    det = torch.zeros(1, 17, h, w)
    tags = torch.zeros(17, 2, h, w)
    for j, x, y, v, t in joints:
        det[0, j, y, x] = v
        tags[j, :, y, x] = t
    return det, tags


def test_grouping_by_tag_with_threshold_and_value():
    det, tags = _peaks(40, 60, [(0, 10, 10, 0.9, 0.0), (0, 40, 10, 0.8, 5.0),   # two noses start two people
                                (1, 12, 8, 0.7, 0.3), (1, 42, 8, 0.6, 5.2),     # eyes join by tag
                                (2, 20, 30, 0.5, 2.5)])                          # 2.5 * sqrt(2) > 1: new
    people = codec.match_by_tag(*codec.top_k(det, tags))
    assert people.shape == (3, 17, 5)
    first, second, third = people
    assert first[0, :3].tolist() == [10, 10, pytest.approx(0.9)] and first[1, :2].tolist() == [12, 8]
    assert second[1, :2].tolist() == [42, 8]
    assert third[2, :2].tolist() == [20, 30] and third[0, 2] == 0


def test_hungarian_prefers_the_higher_value_at_equal_rounded_distance():
    # both eyes are within 0.5 of the single nose's tag (round 0): cost -value picks the stronger one
    det, tags = _peaks(40, 60, [(0, 10, 10, 0.9, 1.0), (1, 30, 30, 0.3, 1.2), (1, 50, 20, 0.7, 0.9)])
    people = codec.match_by_tag(*codec.top_k(det, tags))
    assert len(people) == 2
    assert people[0][1, :2].tolist() == [50, 20]  # the weaker eye starts its own person
    assert people[1][1, :2].tolist() == [30, 30]


def test_adjust_quarter_step_toward_the_larger_neighbour_then_half():
    det = np.zeros((17, 10, 10), np.float32)
    det[0, 5, 5], det[0, 5, 6], det[0, 4, 5] = 1.0, 0.5, 0.3  # right larger; up larger than down
    people = np.zeros((1, 17, 5), np.float32)
    people[0, 0, :3] = (5, 5, 1.0)
    out = codec.adjust(people, det)
    assert out[0, 0, :2].tolist() == [5.75, 5.25]
    det[0, 5, 6] = 0.0  # equal neighbours step down/left, as upstream's strict comparison does
    people[0, 0, :3] = (5, 5, 1.0)
    assert codec.adjust(people, det)[0, 0, :2].tolist() == [5.25, 5.25]


def test_refine_fills_missing_joints_only_at_the_best_tag_consistent_peak():
    det = np.zeros((17, 20, 20), np.float32)
    tag = np.zeros((17, 2, 20, 20), np.float32)
    det[0, 5, 5] = 1.0
    tag[0, :, 5, 5] = 3.0
    det[1, 10, 10], tag[1, :, 10, 10] = 0.9, 3.0  # consistent with the person's tag
    det[1, 15, 15], tag[1, :, 15, 15] = 0.95, 9.0  # stronger, but 6 * sqrt(2) off in tag
    # elsewhere tag 0 (3 * sqrt(2) off) and det 0: the other joints stay missing
    person = np.zeros((17, 5), np.float32)
    person[0, :3] = (5.25, 5.25, 1.0)
    codec.refine(det, tag, person)
    assert person[1, :3].tolist() == [10.25, 10.25, pytest.approx(0.9)]
    assert person[0, :3].tolist() == [5.25, 5.25, 1.0]  # detected joints are left alone
    assert np.all(person[2:, 2] == 0)


def test_flip_outputs_are_flipped_back_and_reindexed():
    rng = np.random.default_rng(1)
    quarter = rng.random((34, 16, 24), dtype=np.float32)
    half = rng.random((17, 32, 48), dtype=np.float32)
    flip_channels = list(codec.FLIP_INDEX) + [17 + i for i in codec.FLIP_INDEX]
    pair_q = np.stack([quarter, quarter[flip_channels][:, :, ::-1]])
    pair_h = np.stack([half, half[list(codec.FLIP_INDEX)][:, :, ::-1]])
    rec = codec.make_record(64, 96, (64, 96))
    heat, tags = codec.aggregate(pair_q, pair_h, rec)
    assert heat.shape == (1, 17, 64, 96) and tags.shape == (17, 2, 64, 96)
    up = F.interpolate(torch.from_numpy(quarter[None]), size=(32, 48), mode="bilinear", align_corners=False)
    alone = F.interpolate((up[:, :17] + torch.from_numpy(half[None])) / 2, size=(64, 96), mode="bilinear",
                          align_corners=False)
    # Two bilinear resizes (4 weighted terms each) and two means of 2 in each path, in another grouping (the codec
    # resizes all four maps in one call): sums of at most 4 terms, 4 layers deep.
    tol = reordered_sum_tolerance(alone.abs().max().item(), 4, alone.dtype, layers=4)
    torch.testing.assert_close(heat, alone, rtol=0, atol=tol)
    torch.testing.assert_close(tags[:, 0], tags[:, 1], rtol=0, atol=tol)


def test_decode_maps_back_to_the_image_and_reports_missing_joints_at_input_pixel_zero():
    rec = codec.make_record(300, 400, codec.upstream_size(300, 400))
    kp = np.zeros((17, 3))
    kp[[0, 5, 6, 11, 12]] = [[200, 80, 2], [180, 120, 2], [220, 120, 2], [185, 200, 2], [215, 200, 2]]
    ann = {"keypoints": kp.ravel().tolist(), "num_keypoints": 5, "iscrowd": 0}
    q, h, rec2, stride = encode_ground_truth([ann], 300, 400)
    assert rec2 == rec
    (person,) = codec.decode(q, h, rec, stride=stride)
    got = np.array(person["keypoints"]).reshape(17, 3)
    labelled = kp[:, 2] > 0
    assert np.abs(got[labelled, :2] - kp[labelled, :2]).max() <= 0.25 * 300 / 512 + 1e-6
    # upstream's format: a missing joint is input pixel (0, 0) through the inverse affine, v = 0
    x0, y0, _, _ = codec.result_window(rec)
    assert (x0, y0) == pytest.approx((200 - 100 * rec.scale[0], 150 - 100 * rec.scale[1]), abs=1e-4)
    np.testing.assert_array_equal(got[~labelled], np.tile([[x0, y0, 0.0]], (int((~labelled).sum()), 1)))
    assert np.all(got[:, :2] == got[:, :2].astype(np.float32))  # kept in float32, as upstream keeps them
    assert person["score"] == pytest.approx(got[labelled, 2].sum() / 17, rel=1e-5)
    (zeroed,) = codec.decode(q, h, rec, stride=stride, zero_missing=True)  # the departure, off by default
    assert np.all(np.array(zeroed["keypoints"]).reshape(17, 3)[~labelled] == 0)


def test_refined_joints_may_lie_in_the_padding_unless_clipping_is_asked_for():
    rec = codec.make_record(300, 400, codec.upstream_size(300, 400))  # input 512x704: padding left and right
    people = np.zeros((1, 17, 5), np.float32)
    people[0, 0, :3] = (2.25, 100.25, 0.8)  # input x 2.25 lies left of the image
    (plain,) = codec.to_coco(people, np.array([0.8], np.float32), rec)
    (clipped,) = codec.to_coco(people, np.array([0.8], np.float32), rec, clip=True)
    assert plain["keypoints"][0] < 0 and clipped["keypoints"][0] == 0
    assert plain["keypoints"][0] == pytest.approx(rec.to_original([[2.25, 100.25]])[0, 0], abs=1e-4)


def test_empty_maps_decode_to_nobody():
    rec = codec.make_record(256, 256, (512, 512))
    assert codec.decode(np.zeros((2, 34, 128, 128), np.float32), np.zeros((2, 17, 256, 256), np.float32), rec) == []
    with pytest.raises(ValueError, match="flipped copy"):
        codec.decode(np.zeros((1, 34, 128, 128), np.float32), np.zeros((1, 17, 256, 256), np.float32), rec)


def test_images_are_reported_per_bucket():
    class Info:
        def __init__(self, h, w):
            self.height, self.width = h, w

    class Dataset:
        sizes = {1: (480, 640), 2: (425, 640), 3: (640, 427), 4: (333, 500)}

        def image_info(self, i):
            return Info(*self.sizes[i])
    strata = MODELS["higherhrnet_w32_512"].flow.strata(Dataset(), [1, 2, 3, 4])
    assert strata == {"512x704": [1], "512x768": [2, 4], "768x512": [3]}


def _person(offset):
    kp = np.zeros((17, 3))
    kp[[0, 5, 6, 11, 12]] = [[200, 80, 2], [180, 120, 2], [220, 120, 2], [185, 200, 2], [215, 200, 2]]
    kp[:, 0] += offset
    return {"keypoints": kp.ravel().tolist(), "num_keypoints": 5, "iscrowd": 0}


def test_a_batch_holds_the_images_then_their_flipped_copies():
    """Decoding a 2-image engine batch [a, b, flip a, flip b] equals decoding each image alone."""
    spec = MODELS["higherhrnet_w32_512"]
    assert spec.engine_shape(spec.profile("512x512"), 2) == (4, 3, 512, 512)
    (qa, ha, ra, _), (qb, hb, rb, _) = (encode_ground_truth([_person(o)], 300, 400) for o in (0, 60))
    outputs = {"out_quarter": np.stack([qa[0], qb[0], qa[1], qb[1]]),
               "out_half": np.stack([ha[0], hb[0], ha[1], hb[1]])}
    together = spec.flow.decode(outputs, [ra, rb], [1, 2])
    alone = [r for i, (q, h, rec) in enumerate(((qa, ha, ra), (qb, hb, rb)), start=1)
             for r in spec.flow.decode({"out_quarter": q, "out_half": h}, [rec], [i])]
    assert together == alone and [r["image_id"] for r in together] == [1, 2]


def test_result_check_takes_upstreams_format_and_rejects_others():
    """Results may lie in the input's padding and missing joints sit at its corner; (0, 0, 0) or a joint
    beyond the input's extent is flagged."""
    flow = MODELS["higherhrnet_w32_512"].flow
    q, h, rec, stride = encode_ground_truth([_person(0)], 300, 400)
    results = [{"image_id": 7, "category_id": 1, **p} for p in codec.decode(q, h, rec, stride=stride)]
    assert flow.check_results(results, [rec], [7]) == []
    kp = np.array(results[0]["keypoints"]).reshape(17, 3)
    x0, y0, x1, _ = codec.result_window(rec)
    in_padding = kp.copy()
    in_padding[0, 0] = x0 / 2  # left of the image, inside the input
    zeroed = np.where(kp[:, 2:3] > 0, kp, 0.0)
    beyond = kp.copy()
    beyond[0, 0] = x1 + 1
    check = [flow.check_results([{**results[0], "keypoints": k.ravel().tolist()}], [rec], [7])
             for k in (in_padding, zeroed, beyond)]
    assert check[0] == [] and "missing keypoints must be" in check[1][0] and "outside" in check[2][0]
