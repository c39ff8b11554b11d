"""The official container ({'model': ..., 'optimizer': ..., ...}) loads; a missing or mismatched file
is an error naming it, never a random network (upstream's pitfall: test.py skips a missing file)."""
from __future__ import annotations

import pytest
import torch

from models import MODELS
from models.mspn_2xstg.network import MSPN
from posegate.weights import WeightsError

pytestmark = pytest.mark.stage
SPEC = MODELS["mspn_2xstg"]


def test_official_container_loads_its_model_entry(tmp_path):
    state = {k: (v + 1 if v.is_floating_point() else v) for k, v in SPEC.build().state_dict().items()}
    path = tmp_path / SPEC.checkpoint.filename
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4}]},
                "scheduler": {"last_epoch": 3}, "iteration": 96000}, path)
    net = SPEC.build(path)
    assert not net.posegate_weights.synthetic
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_missing_checkpoint_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / SPEC.checkpoint.filename
    with pytest.raises(WeightsError, match=f"{path}: checkpoint file not found"):
        SPEC.build(path)


def test_single_stage_checkpoint_is_refused(tmp_path):
    """A 1-stage MSPN lacks stage1 and carries no skips: nothing of it may load silently."""
    path = tmp_path / "mspn_1stg.pth"
    torch.save({"model": MSPN(stages=1).state_dict()}, path)
    with pytest.raises(WeightsError, match=f"{path}: does not match.*missing: stage0.upsample.up1.skip1"):
        SPEC.build(path)
