"""Both published layouts load into the one network: upstream's training container (``model_pos``
beside an optimizer and a numpy RNG state) and the Ascend port's Conv2d (k, 1) weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import MODELS
from models.videopose3d_243 import adapt_ascend_layout
from models.videopose3d_243.network import TemporalModel
from posegate.compat import torch_release
from posegate.compat.safe_load import ADD_SAFE_GLOBALS
from posegate.metrics.rounding import reordered_sum_tolerance
from posegate.pipeline import Pipeline
from posegate.storage.cache import ArtifactCache
from posegate.weights import WeightsError

pytestmark = pytest.mark.stage
SPEC = MODELS["videopose3d_243"]


def _trained_like(seed=1) -> dict:
    torch.manual_seed(seed)
    return {k: (v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v + 7)
            for k, v in SPEC.build().state_dict().items()}


def _as_ascend(state: dict) -> dict:
    """The port's layout: every Conv1d weight gains a trailing dim (Conv2d (k, 1)), DataParallel's prefix."""
    return {f"module.{k}": (v.unsqueeze(-1) if k.endswith(".weight") and v.ndim == 3 else v) for k, v in state.items()}


@pytest.mark.skipif(torch_release() < ADD_SAFE_GLOBALS, reason=f"the official container holds numpy arrays: "
                    f"reading it safely needs torch >= 2.4, this is {torch.__version__} "
                    "(tests/machinery/test_compat.py checks the message it gets instead)")
def test_official_container_loads_model_pos(tmp_path):
    state = _trained_like()
    path = tmp_path / SPEC.checkpoint.filename
    torch.save({"epoch": 80, "lr": 0.000153, "random_state": np.random.RandomState(1234).get_state(),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.000153, "params": [0, 1]}]},
                "model_pos": state}, path)
    net = SPEC.build(path)
    assert net.posegate_weights.kind == "official" and net.posegate_weights.stripped_prefix is None
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_numpy_is_the_only_extra_the_container_may_carry(tmp_path):
    """Admitting numpy arrays must not admit arbitrary globals."""
    path = tmp_path / SPEC.checkpoint.filename
    torch.save({"model_pos": _trained_like(), "hook": torch.nn.ReLU()}, path)
    with pytest.raises(WeightsError, match="refused to unpickle"):
        SPEC.build(path)


@pytest.mark.parametrize("container", ["model_pos", None])
def test_ascend_conv2d_layout_loads_into_the_same_network(tmp_path, container):
    state = _trained_like()
    ascend = _as_ascend(state)
    path = tmp_path / "model_best.bin"
    torch.save({container: ascend, "epoch": 3} if container else ascend, path)
    net = SPEC.build(path)
    assert net.posegate_weights.stripped_prefix == "module."
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_ascend_weight_with_a_real_second_kernel_dim_is_rejected(tmp_path):
    ascend = _as_ascend(_trained_like())
    ascend["module.layers_conv.0.weight"] = torch.zeros(1024, 1024, 3, 2)
    path = tmp_path / "model_best.bin"
    torch.save(ascend, path)
    with pytest.raises(WeightsError, match=r"wrong shape.*layers_conv\.0\.weight"):
        SPEC.build(path)


class _Conv2dPort(torch.nn.Module):
    """The port's graph: [B, 34, T, 1] through Conv2d (k, 1) and BatchNorm2d, weights in its layout."""

    def __init__(self, state: dict, pads, dilations):
        super().__init__()
        self.s, self.pads, self.dilations = state, pads, dilations

    def _conv(self, name, x, dilation=1):
        return F.conv2d(x, self.s[f"{name}.weight"], self.s.get(f"{name}.bias"), dilation=(dilation, 1))

    def _bn(self, name, x):
        s = self.s
        return F.batch_norm(x, s[f"{name}.running_mean"], s[f"{name}.running_var"], s[f"{name}.weight"],
                            s[f"{name}.bias"], False, 0.0, 1e-5)

    def forward(self, x):
        b, t = x.shape[:2]
        x = x.reshape(b, t, -1).permute(0, 2, 1).unsqueeze(-1)
        x = torch.relu(self._bn("expand_bn", self._conv("expand_conv", x)))
        for i, (pad, d) in enumerate(zip(self.pads, self.dilations)):
            res = x[:, :, pad:x.shape[2] - pad]
            x = torch.relu(self._bn(f"layers_bn.{2 * i}", self._conv(f"layers_conv.{2 * i}", x, d)))
            x = res + torch.relu(self._bn(f"layers_bn.{2 * i + 1}", self._conv(f"layers_conv.{2 * i + 1}", x)))
        x = self._conv("shrink", x)[..., 0].permute(0, 2, 1)
        return x.reshape(b, -1, 17, 3)


def test_ascend_weights_compute_what_the_port_computes(tmp_path):
    """Not only shapes: the port's Conv2d graph on its own weights equals our network on the adapted ones."""
    torch.manual_seed(0)
    small = TemporalModel(channels=32).eval()
    for m in small.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ascend = {k[len("module."):]: v for k, v in _as_ascend(small.state_dict()).items()}
    ours = TemporalModel(channels=32).eval()
    ours.load_state_dict(adapt_ascend_layout(ascend))
    x = torch.randn(2, 300, 17, 2)
    with torch.inference_mode():
        want = _Conv2dPort(ascend, small.pads, (3, 9, 27, 81))(x)
        got = ours(x)[0]
    assert got.shape == (2, 300 - 242, 17, 3)
    # Conv1d against Conv2d (k, 1): other kernels, the same terms. Each of the 10 convolutions sums at most
    # 34 x 3 inputs (the expanding one); measured: equal here (max error 0), on AVX-512 and AVX2 kernels alike.
    longest = small.expand_conv.in_channels * small.expand_conv.kernel_size[0]
    convs = sum(isinstance(m, torch.nn.Conv1d) for m in small.modules())
    tol = reordered_sum_tolerance(want.abs().max().item(), longest, want.dtype, layers=convs)
    torch.testing.assert_close(got, want, rtol=0, atol=tol)


def test_the_ports_own_weights_are_found_and_gated_by_their_own_figure(tmp_path):
    """model_best.bin stands in when the upstream file is absent; the 46.6 mm gate names it, 46.8 mm upstream's."""
    torch.save({"model_pos": _as_ascend(_trained_like()), "epoch": 1}, tmp_path / "model_best.bin")
    pipeline = Pipeline(ArtifactCache(tmp_path / "cache"), tmp_path)
    assert pipeline.checkpoint_path(SPEC) == tmp_path / "model_best.bin"
    assert pipeline.weights_info(SPEC).kind == "official"
    assert {t.weights: t.value for t in SPEC.thresholds} == {"official": 46.8, "model_best.bin": 46.6}
