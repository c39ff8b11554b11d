"""Training pipeline stage checks (seed 003; facts: pipelines.md sections 1 and 5).

Targets and labels against hand-computed cases, then the machinery on the 4 real mini COCO images at a
small input on CPU: loss decreasing, bit-exact resume, 2-process DDP == one process on the whole
batch, AMP finite, and the three-step weight hand-over.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from models.lightweight_openpose import SPEC
from models.lightweight_openpose.network import mobilenet_backbone
from posegate.metrics.rounding import reordered_sum_tolerance
from posegate.training import augment, checkpoints, distributed, loss, optim, targets, validate
from posegate.training import labels as labels_mod
from posegate.training.__main__ import main as cli_main
from posegate.training.data import CocoTrainDataset, EndlessShardSampler, make_loader
from posegate.training.loop import TrainConfig, build_network, train
from posegate.training.parity import accumulation_lengths, gradient_tolerance, record_distributed
from posegate.training.validate import validation_ap
from posegate.weights import WeightsError, build_model

STAGE = "train"
pytestmark = pytest.mark.stage

S, SIGMA = targets.STRIDE, targets.SIGMA


def _person(points: dict, n=18):
    """An 18-point internal label; ``points`` maps index -> (x, y), the rest is not labelled (v=2)."""
    kpts = [[0.0, 0.0, 2] for _ in range(n)]
    for i, (x, y) in points.items():
        kpts[i] = [float(x), float(y), 1]
    return {"keypoints": kpts, "objpos": [0.0, 0.0], "processed_other_annotations": []}


# ------------------------------------------------------------------------------------------ heatmaps

def test_gaussian_peak_and_extent():
    # (43.5, 43.5) is exactly the centre cell (5, 5) stands for: 5*8 + 8/2 - 0.5.
    hm = targets.heatmaps(_person({0: (43.5, 43.5)}), 96, 96)
    assert hm.shape == (19, 12, 12)
    assert hm[0, 5, 5] == pytest.approx(1.0)
    assert hm[0, 5, 6] == pytest.approx(math.exp(-64 / 98), rel=1e-6)  # one cell = 8 px: d^2/(2 sigma^2)
    assert hm[0, 7, 6] == pytest.approx(math.exp(-(256 + 64) / 98), rel=1e-6)
    # Support: (8a)^2 + (8b)^2 <= 2 * 49 * ln(100) -> a^2 + b^2 <= 7.05: 1 + 4 + 4 + 4 + 8 cells.
    assert np.count_nonzero(hm[0]) == 21
    assert hm[0, 5, 8] == 0 and hm[0, 7, 7] == 0  # 24 px and (16, 16) px: below 1% of the peak
    assert np.count_nonzero(hm[1:18]) == 0
    np.testing.assert_allclose(hm[18], 1 - hm[0], atol=1e-7)  # background


def test_gaussians_of_people_sum_and_clip():
    main = _person({3: (43.5, 43.5)})
    main["processed_other_annotations"] = [_person({3: (43.5, 43.5)})]
    hm = targets.heatmaps(main, 96, 96)
    assert hm[3, 5, 5] == 1.0  # 2 clipped
    assert hm[3, 5, 6] == pytest.approx(1.0)  # 2 x 0.52 clipped
    assert hm[3, 5, 7] == pytest.approx(2 * math.exp(-256 / 98), rel=1e-6)


def test_heatmap_skips_unlabelled_and_clips_window_at_border():
    label = _person({0: (3.5, 3.5)})
    label["keypoints"][4] = [43.5, 43.5, 2]  # not labelled: not drawn
    hm = targets.heatmaps(label, 64, 64)
    assert np.count_nonzero(hm[4]) == 0
    assert hm[0, 0, 0] == pytest.approx(1.0) and np.count_nonzero(hm[0]) == 8  # the a, b >= 0 part of the 21


# ---------------------------------------------------------------------------------------------- PAFs

def test_paf_horizontal_limb_vectors_and_thickness():
    # Limb 0 is keypoints (1, 8); map coordinates (2, 5) -> (10, 5).
    paf = targets.pafs(_person({1: (16, 40), 8: (80, 40)}), 128, 128)
    assert paf.shape == (38, 16, 16)
    x, y = paf[0], paf[1]
    # |perpendicular distance| <= 1 within the bbox grown by 1 (x 1..10, y 4..5; upper bounds exclusive).
    expected = np.zeros((16, 16), bool)
    expected[4:6, 1:11] = True
    np.testing.assert_array_equal(x != 0, expected)
    assert np.all(x[expected] == 1.0) and np.all(y == 0)
    assert np.count_nonzero(paf[2:]) == 0


def test_paf_diagonal_limb():
    paf = targets.pafs(_person({8: (16, 16), 9: (48, 48)}), 64, 64)  # limb 1: (8, 9), channels 2, 3
    v = 1 / math.sqrt(2)
    assert paf[2, 2, 3] == pytest.approx(v) and paf[3, 2, 3] == pytest.approx(v)  # distance 0.71
    assert paf[2, 2, 4] == 0  # distance 1.41
    assert paf[2, 6, 6] == pytest.approx(v)  # endpoint b
    assert paf[2, 7, 7] == 0  # beyond the grown box's exclusive end int(6 + 1)


def test_paf_later_person_overwrites_and_degenerate_limb_is_skipped():
    main = _person({1: (16, 40), 8: (80, 40)})
    main["processed_other_annotations"] = [_person({1: (80, 40), 8: (16, 40)}), _person({9: (8, 8), 10: (8, 8)})]
    paf = targets.pafs(main, 128, 128)
    assert paf[0, 5, 5] == -1.0  # the other person's reversed limb was drawn last
    assert np.count_nonzero(paf[4:6]) == 0  # zero-length limb (9, 10)


def test_vectorised_targets_equal_the_cell_by_cell_rules():
    """Random points, borders included: the numpy targets equal a literal per-cell reading of the facts."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.uniform(-40, 110, 2)
        hm = np.zeros((1, 9, 10), np.float32)
        targets.add_gaussian(hm[0], x, y)
        ref = np.zeros_like(hm[0])
        x0, y0 = max(int(x - 28), 0), max(int(y - 28), 0)
        x1, y1 = min(int(x + 28), 10 * S), min(int(y + 28), 9 * S)
        for my in range(y0 // S, y1 // S):
            for mx in range(x0 // S, x1 // S):
                e = ((mx * S + 3.5 - x) ** 2 + (my * S + 3.5 - y) ** 2) / 2 / SIGMA ** 2
                if e <= 4.6052:
                    ref[my, mx] = min(ref[my, mx] + math.exp(-e), 1)
        np.testing.assert_allclose(hm[0], ref, rtol=1e-6, atol=1e-7)
        xa, ya, xb, yb = rng.uniform(-20, 100, 4)
        paf = np.zeros((2, 9, 10), np.float32)
        targets.set_paf(paf, xa, ya, xb, yb)
        ref = np.zeros_like(paf)
        ax, ay, bx, by = xa / S, ya / S, xb / S, yb / S
        n = math.hypot(bx - ax, by - ay)
        for my in range(int(max(min(ay, by) - 1, 0)), int(min(max(ay, by) + 1, 9))):
            for mx in range(int(max(min(ax, bx) - 1, 0)), int(min(max(ax, bx) + 1, 10))):
                if abs((mx - ax) * (by - ay) / n - (my - ay) * (bx - ax) / n) <= 1:
                    ref[:, my, mx] = (bx - ax) / n, (by - ay) / n
        np.testing.assert_allclose(paf, ref, atol=1e-6)


# ----------------------------------------------------------------------------------- masks and labels

def test_crowd_mask_polygon_and_rle():
    poly = [[16, 16, 40, 16, 40, 40, 16, 40]]
    mask = targets.crowd_mask([poly], 64, 64)
    assert mask.dtype == np.uint8 and mask[28, 28] == 0 and mask[8, 8] == 1 and mask[50, 50] == 1
    assert 24 * 24 <= np.count_nonzero(mask == 0) <= 25 * 25
    small = targets.map_mask(mask)
    assert small.shape == (8, 8) and small[3, 3] == 0 and small[0, 0] == 1 and set(np.unique(small)) <= {0, 1}
    rle = {"size": [64, 64], "counts": [8 * 64, 64, 64 * 64 - 9 * 64]}  # column 8 (column-major RLE)
    col = targets.crowd_mask([rle], 64, 64)
    assert np.all(col[:, 8] == 0) and np.count_nonzero(col == 0) == 64


def _coco(anns, w=400, h=300):
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": w, "height": h}], "annotations": anns}


def _ann(i, bbox, nk, iscrowd=0, seg=None, v=2):
    kp = []
    for k in range(17):
        kp += [bbox[0] + k, bbox[1] + k, v] if k < nk else [0, 0, 0]
    return {"id": i, "image_id": 1, "bbox": bbox, "area": bbox[2] * bbox[3], "num_keypoints": nk,
            "iscrowd": iscrowd, "keypoints": kp, "segmentation": seg or [[0, 0, 1, 0, 1, 1]]}


def test_label_preparation_main_people_others_and_crowds():
    crowd_seg = {"size": [300, 400], "counts": [0, 10, 119990]}
    anns = [_ann(1, [10, 10, 100, 100], 10), _ann(2, [30, 20, 100, 100], 8),  # centre 20 px away < 0.3 x 100
            _ann(3, [200, 10, 40, 100], 4), _ann(4, [250, 150, 20, 20], 12), _ann(5, [300, 100, 50, 80], 0),
            _ann(6, [0, 0, 400, 300], 0, iscrowd=1, seg=crowd_seg), _ann(7, [200, 150, 60, 120], 6, v=1)]
    prepared = labels_mod.prepare_labels(_coco(anns))
    assert [p["bbox"] for p in prepared] == [[10, 10, 100, 100], [200, 150, 60, 120]]  # 2 close, 3 few kpts, 4 small
    main = prepared[0]
    assert main["objpos"] == [60, 60] and main["scale_provided"] == 100 / 368
    assert main["segmentations"] == [crowd_seg]
    # Everyone with keypoints but the main person rides along; num_keypoints == 0 people nowhere.
    assert [o["bbox"][0] for o in main["processed_other_annotations"]] == [30, 200, 250, 200]
    assert main["keypoints"][0] == [10, 10, 1] and main["keypoints"][16] == [0, 0, 2]  # v 2 -> 1, 0 -> 2
    assert prepared[1]["keypoints"][0][2] == 0  # COCO v=1 (occluded) -> 0


def test_convert_keypoints_neck_and_visibility():
    coco = [[0.0, 0.0, 2] for _ in range(17)]
    coco[5], coco[6] = [20.0, 10.0, 1], [10.0, 30.0, 1]  # left, right shoulder
    coco[0] = [500.0, 5.0, 1]  # outside the 100-wide image
    label = {"keypoints": coco, "objpos": [0, 0], "processed_other_annotations": []}
    sample = augment.convert_keypoints({"image": np.zeros((50, 100, 3), np.uint8), "label": label})
    k = sample["label"]["keypoints"]
    assert len(k) == 18 and k[1] == [15.0, 20.0, 1]  # neck: mean of shoulders, visible when both are
    assert k[2] == [10.0, 30.0, 1] and k[5] == [20.0, 10.0, 1]  # right, left shoulder in the 18-point order
    assert k[0][2] == 2 and k[3][2] == 2  # outside; (0, 0)
    coco[6][2] = 0
    k = augment.convert_keypoints({"image": np.zeros((50, 100, 3), np.uint8),
                                   "label": {**label, "keypoints": copy.deepcopy(coco)}})["label"]["keypoints"]
    assert k[1][2] == 0  # one shoulder occluded -> neck occluded


def test_flip_mirrors_and_swaps_left_right():
    label = _person({2: (10, 20), 5: (50, 20), 0: (30, 5), 16: (12, 4)})
    label["objpos"] = [30.0, 20.0]
    image = np.zeros((40, 100, 3), np.uint8)
    image[:, :10] = 255
    mask = np.ones((40, 100), np.uint8)
    mask[:, 90:] = 0
    s = augment.Flip(prob=1.0)({"image": image, "mask": mask, "label": label}, random.Random(0))
    k = s["label"]["keypoints"]
    assert k[2][:2] == [49.0, 20.0] and k[5][:2] == [89.0, 20.0]  # x' = w - 1 - x, then right <-> left
    assert k[0][:2] == [69.0, 5.0] and k[17][:2] == [87.0, 4.0] and k[16][2] == 2  # r_ear -> l_ear slot
    assert s["label"]["objpos"] == [69.0, 20.0]
    assert np.all(s["image"][:, 90:] == 255) and np.all(s["mask"][:, :10] == 0)
    assert augment.swap_left_right(list(range(18))) == [0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16]


def test_augmentation_moves_image_mask_and_keypoints_together():
    """Bright blobs painted at the labelled points, crowd holes in the mask at the same places: after the
    whole random chain every labelled point that stays in the crop still sits on its blob and its hole."""
    coco = [[0.0, 0.0, 2] for _ in range(17)]
    points = {0: (150, 60), 5: (180, 100), 6: (120, 100), 9: (200, 170), 12: (130, 230)}
    image = np.zeros((300, 300, 3), np.uint8)
    mask = np.ones((300, 300), np.uint8)
    for i, (x, y) in [*points.items(), (None, (150, 100))]:  # the last: the neck, between the shoulders
        if i is not None:
            coco[i] = [float(x), float(y), 1]
        image[y - 4:y + 5, x - 4:x + 5] = 255
        mask[y - 4:y + 5, x - 4:x + 5] = 0
    label = {"keypoints": coco, "objpos": [150.0, 150.0], "scale_provided": 0.6, "processed_other_annotations": []}
    checked = 0
    for seed in range(12):
        sample = augment.apply({"image": image.copy(), "mask": mask.copy(), "label": copy.deepcopy(label)},
                               augment.train_chain((96, 96)), random.Random(seed))
        assert sample["image"].shape == (96, 96, 3) and sample["mask"].shape == (96, 96)
        for x, y, v in sample["label"]["keypoints"]:
            if v <= 1 and 8 <= x < 88 and 8 <= y < 88:
                xi, yi = int(round(x)), int(round(y))
                win = np.clip(sample["image"][yi - 7:yi + 8, xi - 7:xi + 8, 0].astype(float) - 140, 0, None)
                gy, gx = np.mgrid[yi - 7:yi + 8, xi - 7:xi + 8]
                centre = (gx * win).sum() / win.sum(), (gy * win).sum() / win.sum()
                # 0.5 px: within half a pixel of where the label says (cv2's pixel-centre convention in
                # resize vs upstream's x * scale accounts for up to 0.25 px)
                assert abs(centre[0] - x) < 0.5 and abs(centre[1] - y) < 0.5, (seed, (x, y), centre)
                assert sample["mask"][yi, xi] == 0, (seed, x, y)
                checked += 1
    assert checked >= 12


# ------------------------------------------------------------------------------------- loss, optimizer

def test_masked_l2_loss_by_hand():
    pred, target = torch.ones(2, 19, 4, 4), torch.zeros(2, 19, 4, 4)
    mask = torch.ones(2, 19, 4, 4)
    mask[:, :, :2] = 0
    assert loss.l2_loss(pred, target, mask, 2).item() == pytest.approx(2 * 19 * 8 / 2 / 2)
    outs = [torch.ones(2, 19, 4, 4), torch.zeros(2, 38, 4, 4)] * 2
    batch = {"image": torch.zeros(2, 3, 32, 32), "keypoint_maps": target, "keypoint_mask": mask,
             "paf_maps": torch.ones(2, 38, 4, 4), "paf_mask": torch.ones(2, 38, 4, 4)}
    assert [v.item() for v in loss.stage_losses(outs, batch)] == [76.0, 304.0, 76.0, 304.0]


def test_optimizer_groups_cover_every_parameter_once_with_the_upstream_multipliers():
    net = build_network(3)
    opt = optim.make_optimizer(net, base_lr=1.0)
    where = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert len(where) == sum(1 for _ in net.parameters())
    named = dict(net.named_parameters())

    def group(key):
        g = where[id(named[key])]
        return g["lr"], g["weight_decay"]
    assert group("model.0.0.weight") == (1.0, 5e-4)  # backbone conv
    assert group("model.1.0.weight") == (1.0, 0)  # depthwise
    assert group("model.1.1.weight") == (1.0, 0) and group("model.1.1.bias") == (2.0, 0)  # BN
    assert group("cpm.align.0.weight") == (1.0, 5e-4) and group("cpm.align.0.bias") == (2.0, 0)
    assert group("cpm.trunk.0.0.weight") == (1.0, 0)
    assert group("initial_stage.trunk.0.0.bias") == (2.0, 0)
    assert group("refinement_stages.2.trunk.0.initial.0.weight") == (4.0, 5e-4)
    assert group("refinement_stages.0.heatmaps.1.0.bias") == (8.0, 0)
    assert group("refinement_stages.1.trunk.4.trunk.0.1.weight") == (1.0, 0)
    assert group("refinement_stages.1.trunk.4.trunk.0.1.bias") == (2.0, 0)


def test_multistep_schedule_per_epoch():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=4e-5)
    sched = optim.make_scheduler(opt)
    lrs = []
    for _ in range(280):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[99] == 4e-5 and lrs[100] == pytest.approx(4e-5 * 0.333)
    assert lrs[200] == pytest.approx(4e-5 * 0.333 ** 2) and lrs[279] == pytest.approx(4e-5 * 0.333 ** 3)


def test_sampler_shards_like_distributed_sampler_and_resumes_mid_epoch():
    shards = [EndlessShardSampler(11, 2, rank=r, world=2, seed=5) for r in range(2)]
    assert shards[0].batches_per_epoch == 2  # 11 samples, 2 x 2 per step: drop_last keeps 8
    epoch0 = [shards[r].epoch_indices(0) for r in range(2)]
    assert not set(epoch0[0]) & set(epoch0[1]) and len(set(epoch0[0] + epoch0[1])) == 8
    assert shards[0].epoch_indices(1) != epoch0[0]  # reshuffled per epoch (set_epoch)
    it = iter(shards[0])
    run = [next(it) for _ in range(5)]
    late = EndlessShardSampler(11, 2, rank=0, world=2, seed=5, start_epoch=1, start_batch=1)
    assert [next(iter(late))] == run[3:4]  # starting at (epoch 1, batch 1) continues the same stream
    assert run[0][0][1] != run[2][0][1]  # an index gets a new augmentation seed every epoch


def test_static_loss_scale_skips_an_overflowing_step():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1)
    amp = distributed.Amp(torch.device("cpu"), "static", 16.0)
    amp.backward((p * 2).sum())
    assert torch.equal(p.grad, torch.full((3,), 32.0))  # scaled by 16
    assert amp.step(opt) and torch.equal(p.grad, torch.full((3,), 2.0)) and not torch.equal(p.data, torch.ones(3))
    before = p.detach().clone()
    opt.zero_grad()
    amp.backward((p * float("inf")).sum())
    assert not amp.step(opt) and torch.equal(p.data, before) and amp.skipped == 1


# ------------------------------------------------------------------ the machinery on real mini images

SMALL = 64  # input side of the machinery checks: 8x8 maps, enough to exercise every path on 2 CPU cores


def _config(mini, tmp_path, **kw):
    dataset, labels = mini
    base = dict(labels=labels, images=dataset.root / "val2017", out_dir=tmp_path, batch_size=2, crop=SMALL,
                checkpoint_every=0, port_every=0, log_every=1000, log=_Sink())
    return TrainConfig(**{**base, **kw})


class _Sink(list):
    def write(self, text):
        self.append(text)

    def flush(self):
        pass


def test_dataset_sample_shapes_and_ranges(mini, tmp_path):
    dataset, labels = mini
    item = CocoTrainDataset(labels, dataset.root / "val2017", augment.train_chain((SMALL, SMALL)))[(0, 123)]
    n = SMALL // S
    assert item["image"].shape == (3, SMALL, SMALL) and item["image"].abs().max() <= 0.5
    assert item["keypoint_maps"].shape == (19, n, n) and item["paf_maps"].shape == (38, n, n)
    assert item["keypoint_mask"].shape == (19, n, n) and item["paf_mask"].shape == (38, n, n)
    assert 0 <= item["keypoint_maps"].min() and item["keypoint_maps"].max() <= 1
    assert set(item["keypoint_mask"].unique().tolist()) <= {0.0, 1.0}
    again = CocoTrainDataset(labels, dataset.root / "val2017", augment.train_chain((SMALL, SMALL)))[(0, 123)]
    assert all(torch.equal(item[k], again[k]) for k in item)  # a sample is a function of its seed


@pytest.fixture
def one_thread():
    """One intra-op thread for a long training run (two xdist workers share 2 cores); the caller's count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_loss_decreases_overfitting_mini_images(mini, tmp_path, one_thread):
    steps = 24
    result = train(_config(mini, tmp_path, batch_size=4, crop=SMALL, augment=False, base_lr=1e-3, max_iters=steps))
    first, last = result.losses[:3], result.losses[-3:]
    assert all(math.isfinite(v) for v in result.losses)
    assert sum(last) / 3 < 0.4 * sum(first) / 3, result.losses
    assert min(result.losses[-10:]) < min(result.losses[:10]), result.losses  # still going down, not a jump


def test_resume_continues_bit_exactly(mini, tmp_path):
    """Upstream checkpoint mid-epoch and port checkpoint at an epoch end both resume into the same run."""
    full = train(_config(mini, tmp_path / "a", max_iters=6, checkpoint_every=1, port_every=2,
                         milestones=(1, 2), base_lr=1e-3))
    final = torch.load(tmp_path / "a" / "checkpoint_iter_6.pth", weights_only=True)
    up = torch.load(tmp_path / "a" / "checkpoint_iter_3.pth", weights_only=True)
    port = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=True)
    assert set(up) == {"state_dict", "optimizer", "scheduler", "iter", "current_epoch"}
    assert (up["iter"], up["current_epoch"]) == (3, 1) and not any(k.startswith("module.") for k in up["state_dict"])
    assert set(port) == {"epoch", "arch", "state_dict", "optimizer", "amp", "scheduler", "ap"}
    assert port["epoch"] == 2 and all(k.startswith("module.") for k in port["state_dict"])
    for name, start in (("checkpoint_iter_3.pth", 3), ("checkpoint.pth", 4)):
        out = tmp_path / f"resumed_{start}"
        resumed = train(_config(mini, out, max_iters=6, checkpoint_every=6, milestones=(1, 2), base_lr=1e-3,
                                resume=tmp_path / "a" / name))
        assert resumed.losses == full.losses[start:], name
        got = torch.load(out / "checkpoint_iter_6.pth", weights_only=True)
        assert got["scheduler"] == final["scheduler"]
        for key, value in final["state_dict"].items():
            assert torch.equal(got["state_dict"][key], value), f"{name}: {key} differs after resume"


def test_ddp_two_processes_match_one_process_on_the_whole_batch(mini, tmp_path):
    cfg = _config(mini, tmp_path, batch_size=2, freeze_bn=True, scale_lr=False, log=None)
    ranks = record_distributed(cfg, tmp_path, 2)
    (tmp_path / "single").mkdir()
    single, = record_distributed(dataclasses.replace(cfg, batch_size=4), tmp_path / "single", 1)
    assert [r["world"] for r in ranks] == [2, 2] and single["world"] == 1
    whole = torch.zeros(4, 3, SMALL, SMALL)
    lengths = accumulation_lengths(build_network(1), whole)
    for rank in ranks:
        for key, grad in single["grads"].items():
            torch.testing.assert_close(rank["grads"][key], grad, rtol=0, atol=gradient_tolerance(grad, lengths[key]),
                                       msg=lambda m, key=key: f"gradient {key} (sums {lengths[key]} terms): {m}")
        for key, weight in single["weights"].items():
            # Adam's first step is about lr x sign(g): where g is at rounding level the sign may differ
            # between summation orders, so the weights agree to a small fraction of the step only.
            torch.testing.assert_close(rank["weights"][key], weight, rtol=0, atol=0.01 * 8 * optim.BASE_LR,
                                       msg=f"weight {key}")
    # One process's loss is over its half of the batch: the two halves add up to the whole. A sum of squares has no
    # cancellation: relative to itself it rounds like its gradients do relative to their scale.
    terms = sum(out.numel() for out in build_network(1).eval()(whole))
    rel = reordered_sum_tolerance(1.0, terms)
    assert sum(r["loss"] for r in ranks) / 2 == pytest.approx(single["loss"], rel=rel)


@pytest.mark.parametrize("mode", ["auto", "static"])
def test_amp_runs_and_stays_finite(mini, tmp_path, mode):
    amp = distributed.Amp(torch.device("cpu"), mode)
    with amp.autocast():
        out = build_network(1)(torch.zeros(1, 3, SMALL, SMALL))
    assert out[-1].dtype == torch.bfloat16  # CPU autocast is bf16
    seen = []
    result = train(_config(mini, tmp_path, amp=mode, max_iters=2),
                   on_step=lambda i, net: seen.append(all(torch.isfinite(p.grad).all() for p in net.parameters()
                                                          if p.grad is not None)))
    assert seen == [True, True] and all(math.isfinite(v) for v in result.losses) and result.skipped_steps == 0


# ---------------------------------------------------------------------------- three-step hand-over

def _fake_mobilenet(path: Path) -> dict:
    """A file in the ImageNet MobileNetV1 layout: 'module.model.*' backbone keys plus a classifier."""
    torch.manual_seed(7)
    backbone = mobilenet_backbone().state_dict()
    state = {f"module.model.{k}": v for k, v in backbone.items()}
    state["module.fc.weight"] = torch.zeros(1000, 1024)
    torch.save({"state_dict": state, "epoch": 90, "best_prec1": 68.848}, path)
    return backbone


def test_three_step_hand_over(mini, tmp_path):
    backbone = _fake_mobilenet(tmp_path / checkpoints.MOBILENET_FILE)
    one = train(_config(mini, tmp_path / "s1", step=1, mobilenet=tmp_path / checkpoints.MOBILENET_FILE,
                        max_iters=1, checkpoint_every=1))
    rep = one.load_report
    assert sorted(rep.loaded) == sorted(f"model.{k}" for k in backbone)  # the whole backbone, nothing else
    assert rep.not_loaded and all(not k.startswith("model.") for k in rep.not_loaded)
    assert rep.unused == ["fc.weight"]
    s1 = tmp_path / "s1" / "checkpoint_iter_1.pth"
    two = train(_config(mini, tmp_path / "s2", step=2, init_weights=s1, max_iters=1, checkpoint_every=1))
    assert two.load_report.not_loaded == [] and two.load_report.unused == []
    assert two.iteration == 1  # weights only: optimizer, scheduler and counters restart
    s2 = tmp_path / "s2" / "checkpoint_iter_1.pth"
    three = train(_config(mini, tmp_path / "s3", step=3, init_weights=s2, max_iters=1, checkpoint_every=1))
    extra = {k.split(".")[1] for k in three.load_report.not_loaded}
    fresh = three.load_report.not_loaded
    assert fresh and all(k.startswith("refinement_stages.") for k in fresh)
    assert extra == {"1", "2"} and three.load_report.unused == []
    assert "not loaded (kept freshly initialised)" in str(three.load_report)
    # Evaluation keeps one refinement stage: the suite's loader takes step 3's file and reports the rest.
    net = build_model(SPEC, tmp_path / "s3" / "checkpoint_iter_1.pth")
    assert net.posegate_weights.ignored_keys and all(k.startswith(("refinement_stages.1.", "refinement_stages.2."))
                                                     for k in net.posegate_weights.ignored_keys)


def test_step_two_without_previous_weights_is_refused(mini, tmp_path):
    with pytest.raises(ValueError, match="--init-weights"):
        train(_config(mini, tmp_path, step=2, max_iters=1))


def test_foreign_file_is_refused_not_loaded_randomly(tmp_path):
    torch.save({"state_dict": {"fc.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="no tensor matches"):
        checkpoints.load_weights(build_network(1), tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="no 'model.\\*' backbone"):
        checkpoints.load_mobilenet(build_network(1), tmp_path / "other.pth")


def test_step_one_from_the_real_mobilenet(run_context):
    name = checkpoints.MOBILENET_FILE
    path = run_context.weights_dir / name if run_context.weights_dir else None
    if path is None or not path.is_file():
        pytest.skip(f"needs the ImageNet MobileNetV1 weights: put {name} in --weights-dir "
                    f"({'not given' if run_context.weights_dir is None else run_context.weights_dir})")
    net = build_network(1)
    report = checkpoints.load_mobilenet(net, path)
    expected = [k for k in net.state_dict() if k.startswith("model.")]
    assert sorted(report.loaded) == sorted(expected), str(report)


# ------------------------------------------------------------------- validation and the best model

def test_validation_keeps_the_best_checkpoint(mini, tmp_path, monkeypatch):
    dataset, _ = mini
    aps = iter([0.10, 0.30, 0.20])
    snapshots = {}

    def fake_ap(net, ds, ids, device, recipe=None):
        snapshots[len(snapshots) + 1] = {k: v.clone() for k, v in net.state_dict().items()}
        return next(aps)
    monkeypatch.setattr(validate, "validation_ap", fake_ap)
    result = train(_config(mini, tmp_path, max_iters=6, port_every=1, val_dataset=dataset, base_lr=1e-3))
    assert result.aps == [(1, 0.10), (2, 0.30), (3, 0.20)] and result.best_ap == 0.30
    best = torch.load(tmp_path / "model_best.pth", weights_only=True)
    assert best["ap"] == 0.30 and best["epoch"] == 2
    for key, value in snapshots[2].items():
        assert torch.equal(best["state_dict"][f"module.{key}"], value)
    assert torch.load(tmp_path / "checkpoint.pth", weights_only=True)["epoch"] == 3


def test_validation_ap_on_real_images(mini):
    dataset, _ = mini
    torch.manual_seed(0)
    ap = validation_ap(build_network(1), dataset, dataset.image_ids[:1])
    assert 0.0 <= ap <= 1.0  # random weights find nobody: the port reports 0 then


def test_persistent_loader_crosses_epochs_with_the_same_samples_as_without_workers(mini):
    dataset, labels = mini
    ds = CocoTrainDataset(labels, dataset.root / "val2017", augment.train_chain((SMALL, SMALL)))

    def batches(workers, n=5):  # 2 batches per epoch: 5 batches run into the third epoch
        loader = make_loader(ds, EndlessShardSampler(len(labels), 2, seed=3), workers)
        it = iter(loader)
        return [next(it) for _ in range(n)], loader
    plain, _ = batches(0)
    pooled, loader = batches(1)
    assert loader.persistent_workers and loader.num_workers == 1  # one endless iterator: its worker never restarts
    for a, b in zip(plain, pooled):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(plain[0]["image"], plain[2]["image"])  # a new epoch draws new augmentations


def test_command_prepares_labels_and_trains(mini, tmp_path, capsys):
    dataset, _ = mini
    labels = tmp_path / "prepared.json"
    assert cli_main(["prepare-labels", "--labels", str(dataset.annotation_file), "--out", str(labels)]) == 0
    assert labels_mod.load_labels(labels) == labels_mod.load_labels(dataset.annotation_file)
    out = tmp_path / "run"
    cli_main(["train", "--labels", str(labels), "--images", str(dataset.root / "val2017"), "--out", str(out),
          "--crop", str(SMALL), "--batch-size", "2", "--workers", "0", "--max-iters", "1", "--checkpoint-every", "1",
          "--log-every", "1", "--device", "cpu"])
    assert (out / "checkpoint_iter_1.pth").is_file()
    assert "iter 1/1 loss" in capsys.readouterr().err
