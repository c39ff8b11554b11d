"""The registries and case ids: the only lists of models and backends, and readable stable ids."""
from __future__ import annotations

import re

import pytest

from models import MODELS
from posegate.backends import BACKENDS, REFERENCE
from posegate.cases import generate

STAGE = "weights"
pytestmark = pytest.mark.stage


def test_every_model_folder_is_registered_under_its_name():
    assert MODELS and all(name == spec.name for name, spec in MODELS.items())


def test_infer_ids_read_model_backend_precision_batch_shape():
    cases = generate("infer", MODELS.values())
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    # a shape may carry its profile's variant (256x192-flip, HxW-ascend); capitals name a free axis (368xW, T)
    pattern = re.compile(r"^[a-z0-9_]+-(%s)-(fp32|fp16|int8)-bs\d+-[\dxA-Z]+(-[a-z0-9]+)?$" % "|".join(BACKENDS))
    assert all(pattern.match(i) for i in ids), ids
    assert not any(c.backend == REFERENCE for c in cases), "the reference is not compared with itself"


def test_cases_follow_declared_capabilities():
    for spec in MODELS.values():
        for c in generate("infer", [spec]):
            assert c.precision in BACKENDS[c.backend].precisions and c.precision in spec.precisions
            profile = spec.profile(c.shape)
            assert c.batch in profile.batch_sizes + profile.full_batch_sizes
            slow = BACKENDS[c.backend].full_only  # a backend whose builds take minutes runs under --full only
            assert c.full == (c.batch not in profile.batch_sizes or not profile.default or slow)


def test_ids_are_identical_across_collections():
    """xdist workers collect independently; their ids must agree."""
    assert [c.id for c in generate("perf", MODELS.values())] == [c.id for c in generate("perf", MODELS.values())]


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_version_is_plain_text(name):
    # results travel back from xdist workers through execnet, which refuses objects such as torch's TorchVersion
    backend = BACKENDS[name]
    if backend.unavailable_reason():
        pytest.skip(f"{name}: {backend.unavailable_reason()}")
    version = backend.version()
    assert type(version) is str, f"{name}.version() returned {type(version).__name__}"
