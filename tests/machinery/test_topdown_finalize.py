"""Top-down per-image finalisation (posegate/topdown.py): OKS-NMS on hand-made people, and that the pipeline
finalises a dataset's predictions after shards are merged, so a split image's crops meet.

Generic over the registered top-down specs; what each model's finalize does is tested in its own folder.
"""
from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from models import MODELS
from posegate.flows import topdown
from posegate.flows.kinds import TopDown
from posegate.pipeline import Pipeline, shards
from posegate.storage import serial

pytestmark = pytest.mark.stage

TOP_DOWN = [s for s in MODELS.values() if isinstance(s.flow, TopDown)]


def _ids(specs):
    return [s.name for s in specs]


KP = np.c_[np.linspace(100, 200, 17), np.linspace(50, 300, 17), np.full(17, 0.9)]


def _person(image_id, offset, score, area=40000.0):
    return {"image_id": image_id, "category_id": 1, "keypoints": (KP + [*offset, 0]).ravel().tolist(),
            "score": score, "area": area}


def test_oks_of_a_person_with_itself_is_one_and_falls_with_distance():
    kp = KP[None]
    assert topdown.oks(KP, kp, 40000.0, np.array([40000.0]))[0] == pytest.approx(1.0)
    near, far = topdown.oks(KP, np.stack([KP + [2, 0, 0], KP + [40, 0, 0]]), 40000.0, np.array([40000.0] * 2))
    assert 0.9 < near < 1 and far < 0.5


def test_oks_nms_keeps_the_better_of_two_duplicates_and_a_distinct_person():
    people = [_person(1, (1, 1), 0.7), _person(1, (0, 0), 0.9), _person(1, (150, 0), 0.8)]
    kpts = np.array([np.reshape(p["keypoints"], (17, 3)) for p in people])
    keep = topdown.oks_nms(kpts, np.array([p["score"] for p in people]), np.array([40000.0] * 3), 0.9)
    assert keep == [1, 2]  # best first; the 0.7 duplicate (OKS > 0.9 with the 0.9 one) is suppressed
    # at a threshold above their OKS nobody is suppressed
    assert topdown.oks_nms(kpts, np.array([0.7, 0.9, 0.8]), np.array([40000.0] * 3), 0.9999) == [1, 2, 0]


def test_oks_nms_ties_keep_upstreams_reversed_argsort_order():
    kpts = np.array([KP + [300 * i, 0, 0] for i in range(3)])
    assert topdown.oks_nms(kpts, np.array([0.5, 0.5, 0.5]), np.full(3, 40000.0), 0.9) == [2, 1, 0]


def test_rescoring_counts_only_joints_above_the_visibility_threshold():
    assert topdown.rescore(np.array([0.9, 0.5, 0.1, 0.2]), 0.5, 0.2) == pytest.approx(0.5 * 0.7)
    assert topdown.rescore(np.array([0.1, 0.2]), 0.5, 0.2) == 0.0


def test_nms_is_per_image_in_order_of_first_appearance():
    results = [_person(7, (0, 0), 0.6), _person(3, (0, 0), 0.9), _person(7, (1, 0), 0.8), _person(3, (200, 0), 0.4)]
    final = topdown.oks_nms_per_image(results, 0.9)
    assert [(r["image_id"], r["score"]) for r in final] == [(7, 0.8), (3, 0.9), (3, 0.4)]
    assert all("area" not in r for r in final)


class _Stub:
    """A pipeline whose engine is replaced by fixed decoded crops: the image's two duplicates fall in two
    different shards (and eval batches)."""
    SAMPLES = [{"image_id": 1, "i": 0}, {"image_id": 1, "i": 1}, {"image_id": 2, "i": 2}, {"image_id": 2, "i": 3}]
    DECODED = [_person(1, (0, 0), 0.9), _person(1, (1, 1), 0.7), _person(2, (0, 0), 0.5), _person(2, (200, 0), 0.6)]

    @classmethod
    def pipeline(cls, monkeypatch, cache, **kw):
        p = Pipeline(cache, **kw)
        monkeypatch.setattr(p, "samples", lambda spec, profile, dataset: list(cls.SAMPLES))

        def predict(spec, backend, precision, profile, dataset, samples, fields):
            return [cls.DECODED[s["i"]] for s in samples]
        monkeypatch.setattr(p.predictor, "predict", predict)
        return p


def _suppressing(spec):
    """``spec`` with a finalize that runs OKS-NMS, whatever its codec does: the shard test then always has a
    finalize that a per-shard run would get wrong, even if no registered model ran NMS."""
    flow = copy.copy(spec.flow)
    flow.finalize = lambda results: topdown.oks_nms_per_image(results, 0.9)
    return dataclasses.replace(spec, flow=flow)


# (spec, whether its finalize must drop image 1's duplicate): a registered model's may keep every person
FINALIZERS = [pytest.param(s, False, id=s.name) for s in TOP_DOWN] + [
    pytest.param(_suppressing(TOP_DOWN[0]), True, id="oks-nms-stand-in")]


@pytest.mark.parametrize("spec, must_suppress", FINALIZERS)
def test_finalize_over_merged_shards_equals_finalize_over_one_run(spec, must_suppress, monkeypatch, tmp_path):
    default = next(p for p in spec.profiles if p.default)
    profile = dataclasses.replace(default, eval_batch=1)  # shards cut on eval batches
    dataset = SimpleNamespace(identity="stub@0:2img", name="stub")
    cache = SimpleNamespace()  # the stubbed prediction never reaches the cache
    whole = _Stub.pipeline(monkeypatch, cache).predictions(spec, "onnxruntime", "fp32", profile, dataset)
    assert whole == spec.flow.finalize(list(_Stub.DECODED))
    for of in (2, 4):  # 4 shards put image 1's two crops apart
        folder = tmp_path / f"of{of}"
        for k in range(1, of + 1):
            with pytest.raises(shards.ShardWritten):
                _Stub.pipeline(monkeypatch, cache, shard=(k, of), predictions_dir=folder).predictions(
                    spec, "onnxruntime", "fp32", profile, dataset)
        assert len(list(folder.glob("*.npz"))) == of
        merged = _Stub.pipeline(monkeypatch, cache, merge_dir=folder).predictions(
            spec, "onnxruntime", "fp32", profile, dataset)
        assert merged == whole, f"{of} shards: finalize after the merge must equal one run's"
    # where finalize suppresses duplicates, finalising each shard alone would keep both of image 1's
    per_shard = spec.flow.finalize(_Stub.DECODED[:1]) + spec.flow.finalize(_Stub.DECODED[1:2])
    suppressed = len(whole) < len(_Stub.DECODED)
    assert suppressed or not must_suppress, "OKS-NMS stand-in kept image 1's duplicate; this test proves nothing"
    if suppressed:
        assert len(per_shard) == 2 and [r["image_id"] for r in whole].count(1) == 1


@pytest.mark.parametrize("spec", TOP_DOWN, ids=_ids(TOP_DOWN))
def test_records_of_each_geometry_are_stored_and_read_back(spec, tmp_path):
    CropRecord = spec.flow.codec.CropRecord
    rec = CropRecord(4, 640, 480, (100.0, 120.0), (0.9, 1.2), 0.8, True)
    serial.dump([rec], tmp_path / "r.npz")
    (got,) = serial.load(tmp_path / "r.npz")
    assert got == rec and type(got) is CropRecord and got.window == rec.window
