"""The training checkpoint layout: 3 refinement stages and a ``module.`` prefix load into the 1-stage net."""
from __future__ import annotations

import pytest
import torch

from models import MODELS
from models.lightweight_openpose.network import PoseEstimationWithMobileNet
from posegate.weights import WeightsError

pytestmark = pytest.mark.stage


def test_three_stage_checkpoint_drops_and_reports_extra_stages(tmp_path):
    spec = MODELS["lightweight_openpose"]
    trained = PoseEstimationWithMobileNet(num_refinement_stages=3)
    state = {f"module.{k}": v for k, v in trained.state_dict().items()}
    path = tmp_path / "checkpoint_iter_370000.pth"
    torch.save({"state_dict": state, "optimizer": {}, "scheduler": {}, "iter": 370000, "current_epoch": 1}, path)
    net = spec.build(path)
    info = net.posegate_weights
    assert info.ignored_keys
    assert all(k.startswith(("refinement_stages.1.", "refinement_stages.2.")) for k in info.ignored_keys)
    assert len(info.ignored_keys) == 2 * len([k for k in trained.state_dict() if k.startswith("refinement_stages.0.")])
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[f"module.{k}"])


def test_extra_stages_are_not_ignorable_for_the_omz_variant(tmp_path):
    """Only the spec's declared keys may be dropped; the OMZ file has no extra stages to forgive."""
    spec = MODELS["lightweight_openpose_omz0001"]
    state = spec.build().state_dict()
    state["refinement_stages.1.heatmaps.0.0.bias"] = torch.zeros(128)
    path = tmp_path / "omz.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightsError, match="unexpected"):
        spec.build(path)
