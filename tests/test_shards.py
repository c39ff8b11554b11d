"""Sharded full-dataset evaluation: shards written apart, merged, scored as one run."""
from __future__ import annotations

import pytest

from fixtures.artifacts import skip_unavailable
from posegate import shards
from posegate.flows import MissingData
from posegate.metrics import METRICS
from posegate.pipeline import Pipeline

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
    with pytest.raises(MissingData, match="shard\\(s\\) 2/2 missing"):
        shards.merge(tmp_path, "m-ort", "d" * 16, [1, 2, 3])
    shards.write(tmp_path, "m-ort", "d" * 16, 2, 2, [3], ["r3"])
    assert shards.merge(tmp_path, "m-ort", "d" * 16, [1, 2, 3]) == ["r1", "r2", "r3"]
    with pytest.raises(ValueError, match="made from other data"):
        shards.merge(tmp_path, "m-ort", "d" * 16, [1, 2, 4])
    with pytest.raises(MissingData, match="no shard of m-trt"):
        shards.merge(tmp_path, "m-trt", "d" * 16, [1])


@pytest.mark.cases("shards")
def test_merged_shards_score_as_one_run(case, pipeline, run_context, needs, record, tmp_path):
    spec, profile = case.spec, case.profile
    dataset = run_context.dataset(spec.flow.dataset_kind, case.dataset)
    metric = METRICS[spec.metric]
    skip_unavailable(case.backend)
    whole = needs(pipeline.predictions, spec, case.backend, case.precision, profile, dataset)
    expected = metric.evaluate(dataset, whole).value
    for of in (2, 3):
        folder = tmp_path / f"of{of}"
        for k in range(1, of + 1):
            shard = Pipeline(pipeline.cache, pipeline.weights_dir, pipeline.options, shard=(k, of), predictions_dir=folder)
            with pytest.raises(shards.ShardWritten, match=f"shard {k}/{of} of "):
                shard.predictions(spec, case.backend, case.precision, profile, dataset)
            shard.close()
        merged = Pipeline(pipeline.cache, pipeline.weights_dir, pipeline.options, merge_dir=folder)
        got = merged.predictions(spec, case.backend, case.precision, profile, dataset)
        assert got == whole, f"{of} merged shards differ from the unsharded predictions"
        value = metric.evaluate(dataset, got).value
        assert value == expected, f"{metric.name} of {of} merged shards {value} != unsharded {expected}"
    record(metric=f"sharded {metric.name}", value=expected, dataset=dataset.name, dataset_id=dataset.identity,
           weights=pipeline.weights_identity(spec), results=len(whole))
