"""Lightweight OpenPose codec: hand-computed cases for pre/post-processing, and the decoder oracle's AP."""
from __future__ import annotations

import numpy as np
import pytest

from models.lightweight_openpose import codec


def _map_with_peaks(shape, peaks):
    heat = np.zeros(shape, dtype=np.float32)
    for x, y, v in peaks:
        heat[y, x] = v
    return heat


# ------------------------------------------------------------------------------------- extract_keypoints

@pytest.mark.stage
def test_single_gaussian_peak_is_found_at_its_pixel_with_its_value():
    yy, xx = np.mgrid[0:20, 0:30]
    heat = (0.8 * np.exp(-((xx - 7) ** 2 + (yy - 5) ** 2) / 4.0)).astype(np.float32)
    assert codec.extract_keypoints(heat).tolist() == [[7, 5, np.float32(0.8)]]


@pytest.mark.stage
def test_peaks_closer_than_6_px_keep_only_the_first_in_x_order():
    close = codec.extract_keypoints(_map_with_peaks((20, 30), [(10, 10, 0.5), (15, 10, 0.9)]))
    assert close[:, :2].tolist() == [[10, 10]]  # 5 px: the lower-x one wins despite its lower score
    apart = codec.extract_keypoints(_map_with_peaks((20, 30), [(10, 10, 0.5), (17, 10, 0.9)]))
    assert apart.tolist() == [[10, 10, 0.5], [17, 10, np.float32(0.9)]]
    exactly_6 = codec.extract_keypoints(_map_with_peaks((20, 30), [(10, 10, 0.5), (10, 16, 0.5)]))
    assert len(exactly_6) == 2


@pytest.mark.stage
def test_suppressed_peaks_do_not_suppress_others():
    # 0 suppresses 4 (4 px); 4 would suppress 8 but was suppressed itself, so 8 survives.
    found = codec.extract_keypoints(_map_with_peaks((10, 20), [(0, 5, 0.5), (4, 5, 0.5), (8, 5, 0.5)]))
    assert found[:, 0].tolist() == [0, 8]


@pytest.mark.stage
def test_values_below_threshold_are_ignored():
    assert len(codec.extract_keypoints(_map_with_peaks((9, 9), [(4, 4, 0.09)]))) == 0
    assert codec.extract_keypoints(_map_with_peaks((9, 9), [(4, 4, 0.1), (0, 0, 0.05)]))[:, :2].tolist() == [[4, 4]]


@pytest.mark.stage
def test_plateau_is_not_a_peak_but_image_borders_are_allowed():
    assert len(codec.extract_keypoints(_map_with_peaks((9, 9), [(3, 4, 0.5), (4, 4, 0.5)]))) == 0
    assert len(codec.extract_keypoints(np.full((9, 9), 0.7, np.float32))) == 0
    corner = codec.extract_keypoints(_map_with_peaks((9, 9), [(0, 0, 0.3), (8, 8, 0.4)]))
    assert corner[:, :2].tolist() == [[0, 0], [8, 8]]


# -------------------------------------------------------------------------------------- group_keypoints

def _render(people, shape=(120, 160), peak=1.0, paf=1.0):
    """Single-pixel peaks and unit PAF bands (1 px thick) for people given as {18-slot: (x, y)}."""
    h, w = shape
    heat = np.zeros((h, w, 19), np.float32)
    pafs = np.zeros((h, w, 38), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for person in people:
        for k, (x, y) in person.items():
            heat[y, x, k] = peak
        for limb, (ka, kb) in enumerate(codec.BODY_PARTS_KPT_IDS):
            if ka in person and kb in person:
                a, b = np.array(person[ka], float), np.array(person[kb], float)
                u = (b - a) / np.linalg.norm(b - a)
                t = np.clip(((xx - a[0]) * u[0] + (yy - a[1]) * u[1]) / np.linalg.norm(b - a), 0, 1)
                near = np.hypot(xx - a[0] - t * (b - a)[0], yy - a[1] - t * (b - a)[1]) <= 1
                cx, cy = codec.BODY_PARTS_PAF_IDS[limb]
                pafs[near, cx], pafs[near, cy] = paf * u[0], paf * u[1]
    return heat, pafs


def _group(heat, pafs):
    return codec.group_keypoints([codec.extract_keypoints(heat[:, :, k]) for k in range(18)], pafs)


# Slots: 0 nose, 1 neck, 2 r_sho, 3 r_elb, 5 l_sho, 8 r_hip.
ALICE = {1: (40, 30), 2: (25, 32), 3: (20, 55), 5: (55, 32), 0: (40, 15), 8: (32, 80)}
BOB = {1: (110, 40), 2: (95, 42), 3: (92, 66), 5: (125, 42), 0: (111, 24)}


@pytest.mark.stage
def test_two_people_group_into_two_entries_with_their_keypoints():
    entries, kpts = _group(*_render([ALICE, BOB]))
    assert entries.shape == (2, 20)
    people = []
    for entry in entries:
        people.append({k: tuple(kpts[int(i), :2].astype(int)) for k, i in enumerate(entry[:18]) if i >= 0})
        assert entry[-1] == len(people[-1])
    assert sorted(people, key=lambda p: p[1]) == [ALICE, BOB]
    assert kpts.shape == (11, 4) and kpts[:, 3].tolist() == list(range(11))


@pytest.mark.stage
def test_entry_score_sums_keypoint_and_limb_scores():
    entries, _ = _group(*_render([{1: (40, 30), 2: (20, 30), 3: (20, 60)}], peak=0.5))
    # three keypoints of 0.5 and two limbs aligned with a unit field (score 1 - tiny epsilon)
    assert entries[0, -1] == 3 and entries[0, -2] == pytest.approx(3.5, abs=1e-5)


@pytest.mark.stage
def test_entries_with_fewer_than_3_keypoints_or_weak_scores_are_dropped():
    entries, kpts = _group(*_render([{1: (40, 30), 2: (20, 30)}]))
    assert entries.shape == (0, 20) and len(kpts) == 2
    # 3 keypoints of 0.1 and 2 limbs of 0.06: (0.3 + 0.12) / 3 = 0.14 < 0.2
    weak, _ = _group(*_render([{1: (40, 30), 2: (20, 30), 3: (20, 60)}], peak=0.1, paf=0.06))
    assert weak.shape == (0, 20)


@pytest.mark.stage
def test_ear_shoulder_limbs_only_fill_missing_ears_without_counting():
    person = {1: (40, 30), 2: (25, 32), 3: (20, 55), 16: (30, 10)}  # r_ear reachable only from r_sho
    entries, kpts = _group(*_render([person]))
    assert entries.shape == (1, 20)
    assert tuple(kpts[int(entries[0, 16]), :2]) == (30, 10)
    assert entries[0, -1] == 3  # the filled ear is not counted, as upstream


# ------------------------------------------------------------------------------------------------ to_coco

@pytest.mark.stage
def test_to_coco_maps_slots_adds_half_pixel_skips_neck_and_scales_score():
    kpts = np.array([[10, 20, 0.9, 0], [30, 40, 0.8, 1], [50, 60, 0.7, 2]], float)
    entry = np.full(20, -1.0)
    entry[[0, 1, 2]] = [0, 1, 2]  # nose, neck, r_sho
    entry[-2:] = [2.5, 3]
    lone = np.full(20, -1.0)
    lone[0], lone[-2:] = 0, [0.9, 1]
    (person, single) = codec.to_coco(np.stack([entry, lone]), kpts)
    expected = [0.0] * 51
    expected[0:3] = [10.5, 20.5, 1.0]   # nose -> COCO 0
    expected[18:21] = [50.5, 60.5, 1.0]  # r_sho -> COCO 6 (right_shoulder)
    assert person == {"keypoints": expected, "score": 2.5 * 2}
    assert single["score"] == 0.0


# --------------------------------------------------------------------------------------------- preprocess

# (h, w) -> upstream (resized w, padded w, left), ascend (resized h, resized w, top, left)
SIZES = {
    (480, 640): ((491, 496, 2), (368, 491, 0, 74)),
    (600, 300): ((184, 368, 92), (368, 184, 0, 228)),  # tall
    (200, 900): ((1656, 1656, 0), (142, 640, 113, 0)),  # wide
}


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.stage
@pytest.mark.parametrize("hw", list(SIZES), ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_preprocess_shapes_padding_and_record(hw):
    h, w = hw
    (up_w, up_padded, up_left), (as_h, as_w, as_top, as_left) = SIZES[hw]
    for profile, (rh, rw, iw, top, left) in (("upstream", (368, up_w, up_padded, 0, up_left)),
                                            ("ascend", (as_h, as_w, 640, as_top, as_left))):
        x, rec = codec.preprocess(_image(h, w), profile)
        assert x.dtype == np.float32 and x.shape == (3, 368, iw)
        assert (rec.orig_h, rec.orig_w, rec.resized_h, rec.resized_w, rec.top, rec.left) == (h, w, rh, rw, top, left)
        assert (rec.input_h, rec.input_w) == (368, iw)
        inside = np.zeros(x.shape[1:], bool)
        inside[top:top + rh, left:left + rw] = True
        assert (x[:, ~inside] == 0).all()
        assert x[:, inside].std() > 0.1


@pytest.mark.stage
@pytest.mark.parametrize("profile", list(codec.PROFILES))
def test_preprocess_keeps_bgr_order(profile):
    blue = np.zeros((240, 320, 3), np.uint8)
    blue[:, :, 0] = 255
    x, rec = codec.preprocess(blue, profile)
    region = x[:, rec.top:rec.top + rec.resized_h, rec.left:rec.left + rec.resized_w]
    np.testing.assert_allclose(region[0], (255 - 128) / 256, atol=1e-6)
    np.testing.assert_allclose(region[1:], -0.5, atol=1e-6)


@pytest.mark.stage
@pytest.mark.parametrize("profile", list(codec.PROFILES))
def test_pad_record_maps_keypoints_back_exactly(profile):
    _, rec = codec.preprocess(_image(427, 640), profile)
    points = np.random.default_rng(1).uniform(-10, 700, (100, 2))
    np.testing.assert_allclose(rec.to_original(rec.to_input(points)), points, rtol=0, atol=1e-9)
    np.testing.assert_allclose(rec.to_input(rec.to_original(points)), points, rtol=0, atol=1e-9)
    # The image's outer pixel edges land on the resized region's edges (pixel centres on integers).
    corners = rec.to_input([[-0.5, -0.5], [rec.orig_w - 0.5, rec.orig_h - 0.5]])
    np.testing.assert_allclose(corners[0], [rec.left - 0.5, rec.top - 0.5])
    np.testing.assert_allclose(corners[1], [rec.left + rec.orig_w * rec.scale - 0.5,
                                             rec.top + codec.PROFILES[profile].height - 0.5])


@pytest.mark.stage
def test_batch_pads_to_the_common_width_and_batch_of_one_equals_single():
    images = [_image(h, w, i) for i, (h, w) in enumerate(SIZES)]
    x, records = codec.preprocess_batch(images, "upstream")
    assert x.shape == (3, 3, 368, 1656) and x.dtype == np.float32
    for img, xi, rec in zip(images, x, records):
        single, own = codec.preprocess(img, "upstream")
        assert rec.input_w == 1656 and rec.left == (1656 - own.resized_w) // 2
        np.testing.assert_array_equal(xi[:, :, rec.left:rec.left + rec.resized_w],
                                      single[:, :, own.left:own.left + own.resized_w])
        assert (xi[:, :, :rec.left] == 0).all() and (xi[:, :, rec.left + rec.resized_w:] == 0).all()
    one, _ = codec.preprocess_batch(images[:1], "upstream")
    np.testing.assert_array_equal(one[0], codec.preprocess(images[0], "upstream")[0])
    assert codec.preprocess_batch(images, "ascend")[0].shape == (3, 3, 368, 640)


# ------------------------------------------------------------------------------------------------- decode

def _annotation(keypoints17, **extra):
    kp = []
    for x, y, v in keypoints17:
        kp += [x, y, v]
    return {"keypoints": kp, "num_keypoints": sum(v > 0 for *_, v in keypoints17), "iscrowd": 0,
            "area": 5000.0, **extra}


def _person(dx, dy):
    """17 COCO keypoints of a standing person, all labelled."""
    xy = [(50, 20), (55, 15), (45, 15), (60, 18), (40, 18), (65, 40), (35, 40), (70, 65), (30, 65),
          (72, 90), (28, 90), (60, 100), (40, 100), (62, 130), (38, 130), (63, 160), (37, 160)]
    return [(x + dx, y + dy, 2) for x, y in xy]


@pytest.mark.stage
def test_decode_of_oracle_recovers_every_person_exactly():
    alice, bob = _person(0, 0), _person(80, 10)
    carol = _person(160, 0)
    carol[7] = (0, 0, 0)  # left elbow unlabelled: her wrist is reachable only through a placed elbow
    annotations = [_annotation(p) for p in (alice, bob, carol)]
    annotations += [_annotation(_person(240, 0), iscrowd=1), _annotation([(0, 0, 0)] * 17)]
    heat, pafs, rec, stride = codec.encode_ground_truth(annotations, 200, 320)
    assert heat.shape == (19, 200, 320) and pafs.shape == (38, 200, 320) and stride == 1
    np.testing.assert_allclose(heat[18], 1 - heat[:18].max(0))
    found = sorted(codec.decode(heat, pafs, rec, stride), key=lambda r: r["keypoints"][0])
    assert len(found) == 3
    for truth, result in zip((alice, bob, carol), found):
        got = np.reshape(result["keypoints"], (17, 3))
        for (x, y, v), (gx, gy, gv) in zip(truth, got):
            if v:
                assert (gx, gy, gv) == (x + 0.5, y + 0.5, 1)
    assert found[2]["keypoints"][7 * 3 + 2] == 1  # the placed elbow is reported, invisible to OKS


@pytest.mark.stage
def test_decode_checks_the_map_size_and_returns_nothing_for_empty_maps():
    _, rec = codec.preprocess(_image(480, 640), "ascend")
    assert codec.decode(np.zeros((19, 46, 80), np.float32), np.zeros((38, 46, 80), np.float32), rec) == []
    with pytest.raises(ValueError, match="do not match"):
        codec.decode(np.zeros((19, 46, 62), np.float32), np.zeros((38, 46, 62), np.float32), rec)
