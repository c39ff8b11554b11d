"""The checkpoint layout. No manifest of upstream's file exists here (manifests/ holds none for it), so the
seeded network's keys are checked against the architecture the paper and pose_resnet.py describe, and
the official file is loaded only where it is supplied."""
from __future__ import annotations

import re

import pytest
import torch

from models import MODELS
from posegate.weights import WeightsError

pytestmark = pytest.mark.stage
SPEC = MODELS["simplebaseline_res50"]


def test_seeded_layout_is_resnet50_with_three_deconvolutions_and_a_1x1_head():
    net = SPEC.build()
    state = net.state_dict()
    blocks = {tuple(map(int, m.groups())) for k in state if (m := re.match(r"layer(\d)\.(\d+)\.conv1\.weight$", k))}
    assert sorted(blocks) == [(i, b) for i, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(n)]
    assert [k for k in state if k.startswith("layer") and "downsample.0" in k] == \
        [f"layer{i}.0.downsample.0.weight" for i in (1, 2, 3, 4)]
    # ConvTranspose2d weights are (in, out, kH, kW): 2048 -> 256, then 256 -> 256, 4x4, no bias
    assert [tuple(state[f"deconv_layers.{i}.weight"].shape) for i in (0, 3, 6)] == \
        [(2048, 256, 4, 4), (256, 256, 4, 4), (256, 256, 4, 4)]
    assert not any(f"deconv_layers.{i}.bias" in state for i in (0, 3, 6))
    assert all(f"deconv_layers.{i}.running_var" in state for i in (1, 4, 7))
    assert tuple(state["final_layer.weight"].shape) == (17, 256, 1, 1) and "final_layer.bias" in state
    assert sum(p.numel() for p in net.parameters()) == 33_999_697  # the paper's 34.0 M
    with torch.inference_mode():
        assert net(torch.zeros(1, 3, 256, 192))[0].shape == (1, 17, 64, 48)


@pytest.mark.parametrize("layout", ["state-dict", "data-parallel-container"])
def test_upstreams_layouts_load(layout, tmp_path):
    """The model zoo file is a plain state dict; training's checkpoint.pth.tar holds a DataParallel one."""
    state = {k: (v + 1 if v.is_floating_point() else v) for k, v in SPEC.build().state_dict().items()}
    path = tmp_path / SPEC.checkpoint.filename
    if layout == "state-dict":
        torch.save(state, path)
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 140}, path)
    net = SPEC.build(path)
    assert not net.posegate_weights.synthetic
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_official_checkpoint_loads(run_context):
    path = run_context.weights_dir / SPEC.checkpoint.filename if run_context.weights_dir else None
    if path is None or not path.exists():
        pytest.skip(f"supply {SPEC.checkpoint.filename} (upstream's model zoo, pose_coco/) in --weights-dir")
    net = SPEC.build(path)
    assert not net.posegate_weights.synthetic


def test_missing_checkpoint_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / SPEC.checkpoint.filename
    with pytest.raises(WeightsError, match=f"{path}: checkpoint file not found"):
        SPEC.build(path)
