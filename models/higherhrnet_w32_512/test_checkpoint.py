"""The official container (plain state dict), the Ascend export's fallback ({'state_dict'} with
``module.``), and a file that is not the published one: loaded, but reported by size and sha384."""
from __future__ import annotations

import pytest
import torch

from models import MODELS

pytestmark = pytest.mark.stage
SPEC = MODELS["higherhrnet_w32_512"]


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(3)
    return {k: (v + torch.rand_like(v) if v.is_floating_point() else v) for k, v in SPEC.build().state_dict().items()}


@pytest.mark.parametrize("layout", ["plain", "state_dict-module"])
def test_both_layouts_load_strictly(layout, state, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(state if layout == "plain" else {"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    net = SPEC.build(path)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert net.posegate_weights.stripped_prefix == (None if layout == "plain" else "module.")


def test_a_file_named_as_the_official_one_but_different_is_reported(state, tmp_path):
    path = tmp_path / SPEC.checkpoint.filename
    torch.save(state, path)
    info = SPEC.build(path).posegate_weights
    assert info.kind == "checkpoint"  # not claimed official: the seed's threshold will not apply
    assert any("differs from the published 115172215" in n for n in info.notes)
    assert any("sha384 differs" in n for n in info.notes)
