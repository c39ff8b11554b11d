"""Sharded full-dataset evaluation: shards written apart, merged, scored as one run."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from models.mspn_2xstg.codec import CropRecord
from posegate.metrics import METRICS
from posegate.pipeline import Pipeline, shards

STAGE = "accuracy"
pytestmark = pytest.mark.accuracy


def test_shard_blocks_cover_every_sample_once_on_batch_edges():
    for n, of, batch in [(5000, 4, 1), (4, 3, 1), (10, 3, 4), (1, 2, 8), (0, 2, 1)]:
        blocks = [shards.block(n, k, of, batch) for k in range(1, of + 1)]
        assert [i for b in blocks for i in range(n)[b]] == list(range(n))
        assert all(b.start % batch == 0 or b.start == n for b in blocks)


def test_shard_option_is_checked():
    assert shards.parse("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "2-4", "a/b"):
        with pytest.raises(ValueError, match="expected K/N"):
            shards.parse(bad)


def test_merge_names_missing_and_foreign_shards(tmp_path):
    shards.write(tmp_path, "m-ort", "d" * 16, 1, 2, [1, 2], ["r1", "r2"])
    with pytest.raises(shards.ShardError, match="shard\\(s\\) 2/2 missing"):
        shards.merge(tmp_path, "m-ort", "d" * 16, [1, 2, 3])
    shards.write(tmp_path, "m-ort", "d" * 16, 2, 2, [3], ["r3"])
    assert shards.merge(tmp_path, "m-ort", "d" * 16, [1, 2, 3]) == ["r1", "r2", "r3"]
    with pytest.raises(shards.ShardError, match="made from other data"):
        shards.merge(tmp_path, "m-ort", "d" * 16, [1, 2, 4])
    with pytest.raises(shards.ShardError, match="no shard of m-trt"):
        shards.merge(tmp_path, "m-trt", "d" * 16, [1])
    # a shard of the same evaluation made from other data (another digest) is named and refused
    shards.write(tmp_path, "m-ort", "e" * 16, 1, 2, [1, 2], ["x1", "x2"])
    with pytest.raises(shards.ShardError, match=r"m-ort\.eeee.*shard1of2\.npz .*made from other data"):
        shards.merge(tmp_path, "m-ort", "d" * 16, [1, 2, 3])


def test_shards_hold_arrays_tuples_and_records_without_pickle(tmp_path):
    value = [{"image_id": 3, "keypoints": [1.5, float("nan")], "pose": np.arange(6.0).reshape(2, 3)},
             ("S9", "Walking", 2), CropRecord(1, 640, 480, (1.0, 2.0), (0.5, 0.5), 0.9), np.float32(0.25)]
    shards.write(tmp_path, "m", "f" * 16, 1, 1, [("S9", "Walking", 2)], value)
    got = shards.merge(tmp_path, "m", "f" * 16, [("S9", "Walking", 2)])
    assert np.isnan(got[0]["keypoints"][1]) and got[3].dtype == np.float32
    got[0]["keypoints"][1] = value[0]["keypoints"][1] = 0.0  # NaN != NaN
    assert _same(got, value) and isinstance(got[1], tuple) and got[2] == value[2]
    assert b"pickle" not in (tmp_path / shards.name("m", "f" * 16, 1, 1)).read_bytes()


def test_a_pickle_in_the_merge_folder_is_never_unpickled(tmp_path):

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)
    (tmp_path / "m.dddddddddddddddd.shard1of1.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(shards.ShardError, match="pickle shards .*never read"):
        shards.merge(tmp_path, "m", "d" * 16, [1])
    # the same bytes under the npz name are refused as a damaged file, without running
    (tmp_path / "m.dddddddddddddddd.shard1of1.npz").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(shards.ShardError, match="unreadable or foreign"):
        shards.merge(tmp_path, "m", "d" * 16, [1])
    assert not (tmp_path / "ran").exists()


@pytest.mark.cases("shards")
def test_merged_shards_score_as_one_run(case, pipeline, run_context, needs, record, tmp_path):
    spec, profile = case.spec, case.profile
    dataset = run_context.dataset(spec.flow.dataset_kind, case.dataset)
    metric = METRICS[spec.metric]
    whole = needs(pipeline.predictions, spec, case.backend, case.precision, profile, dataset)
    expected = metric.evaluate(dataset, whole).value
    for of in (2, 3):
        folder = tmp_path / f"of{of}"
        for k in range(1, of + 1):
            shard = Pipeline(pipeline.cache, pipeline.weights_dir, pipeline.options, shard=(k, of),
                             predictions_dir=folder)
            with pytest.raises(shards.ShardWritten, match=f"shard {k}/{of} of "):
                shard.predictions(spec, case.backend, case.precision, profile, dataset)
            shard.close()
        merged = Pipeline(pipeline.cache, pipeline.weights_dir, pipeline.options, merge_dir=folder)
        got = merged.predictions(spec, case.backend, case.precision, profile, dataset)
        assert _same(got, whole), f"{of} merged shards differ from the unsharded predictions"
        value = metric.evaluate(dataset, got).value
        assert value == expected, f"{metric.name} of {of} merged shards {value} != unsharded {expected}"
    record(metric=f"sharded {metric.name}", value=expected, dataset=dataset.name, dataset_id=dataset.identity,
           weights=pipeline.weights_identity(spec), results=len(whole))


def _same(a, b) -> bool:
    """Exact equality of results that may hold arrays (sequence poses) beside plain values."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
