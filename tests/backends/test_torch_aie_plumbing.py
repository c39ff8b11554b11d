"""torch-aie plumbing against stand-ins for torch_aie and torch_npu, not an NPU: the compile call (one
static Input per engine shape, precision policy, soc_version from the chip), the saved module, the
device from POSEGATE_ASCEND_DEVICE, timing between stream synchronisations, and what the compiled
module rejects. The stand-ins follow the calls of Ascend/ModelZoo-PyTorch
AscendIE/TorchAIE/built-in/cv/detection/OpenPose/inference.py and the repository's other TorchAIE exports."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from posegate.backends import BACKENDS, ModelSource, npu
from posegate.backends.torch_aie import backend as aie_backend
from posegate.export import to_torchscript as torchscript
from posegate.spec import InputProfile

STAGE = "convert"
pytestmark = pytest.mark.stage


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y * 2


class _Spec:
    name = "tiny"
    output_names = ("a", "b")
    input_name = "x"


def _source(tmp_path, shape):
    ts = tmp_path / "m.ts"
    torchscript.export_torchscript(_Net().eval(), ts, shape)
    return ModelSource(_Spec, lambda: None, lambda opset: None, lambda s: ts if tuple(s) == tuple(shape) else None)


@pytest.mark.parametrize("precision,policy,chip", [("fp16", "PrecisionPolicy.FP16", "310P3"),
                                                   ("fp32", "PrecisionPolicy.FP32", "910B3")])
def test_plumbing_torch_aie_compiles_the_trace_for_its_static_shape(tmp_path, aie, precision, policy, chip,
                                                                    monkeypatch):
    monkeypatch.setenv(npu.CHIP_ENV, chip)  # fp32: an Atlas A2 chip; the 310P has no fp32 (next test)
    backend = BACKENDS["torch-aie"]
    assert backend.unavailable_reason() is None and backend.precision_problem(precision) is None
    out = tmp_path / "artifact"
    out.mkdir()
    backend.convert(_source(tmp_path, (2, 3, 8, 8)), out, precision, (2, 3, 8, 8))
    assert aie.calls["compile"] == [{"shape": (2, 3, 8, 8), "dtype": torch.float, "policy": policy,
                                     "soc": f"Ascend{chip}", "level": 0}]
    assert (out / aie_backend.COMPILED).is_file() and aie.npu.devices == ["npu:3"]


def test_plumbing_torch_aie_session_times_between_synchronisations_and_rejects_other_inputs(tmp_path, aie,
                                                                                           monkeypatch):
    monkeypatch.setattr(aie_backend.TorchAieSession, "to_device", lambda self, t: t)  # no NPU: stay on the host
    ts = torch.jit.trace(_Net().eval(), torch.zeros(1, 3, 8, 8))
    compiled = aie.module.compile(ts, inputs=[aie.module.Input((1, 3, 8, 8), dtype=torch.float)])
    spec = types.SimpleNamespace(name="tiny", input_name="x", output_names=("a", "b"), check_input=lambda x, who: None)
    session = aie_backend.TorchAieSession(spec, compiled, "fp16", "npu:3", aie.module, {})
    out = session.run({"x": np.ones((1, 3, 8, 8), np.float32)})
    assert list(out) == ["a", "b"] and np.allclose(out["b"], 2 * out["a"])
    assert aie.calls["sync"] == 2 and aie.calls["streams"] == ["npu:3"] and len(session.device_ms) == 1
    with pytest.raises(RuntimeError, match="compiled static shape"):
        session._run(np.ones((2, 3, 8, 8), np.float32))
    with pytest.raises(RuntimeError, match="compiled dtype"):
        session._run(np.ones((1, 3, 8, 8), np.float64))


def test_plumbing_torch_aie_skips_name_what_is_missing(monkeypatch, aie):
    backend = BACKENDS["torch-aie"]
    monkeypatch.setitem(sys.modules, "torch_npu", None)
    assert backend.unavailable_reason().startswith("torch_npu is not importable")
    assert "requirements-ascend.txt" in backend.unavailable_reason()
    monkeypatch.setitem(sys.modules, "torch_aie", None)
    assert backend.unavailable_reason().startswith("torch_aie is not importable")


def test_plumbing_torch_aie_static_shapes_only_and_310_310p_have_no_fp32(monkeypatch, aie):
    backend = BACKENDS["torch-aie"]
    spec = types.SimpleNamespace(name="tiny")
    assert "static shape" in backend.shape_problem(spec, InputProfile("368xW", (3, 368, None), "x", (1,)))
    assert backend.shape_problem(spec, InputProfile("368x640", (3, 368, 640), "x", (1,))) is None
    monkeypatch.setenv(npu.CHIP_ENV, "310")
    assert backend.precision_problem("fp32") and backend.precision_problem("fp16") is None
    # issue 25, 2: PrecisionPolicy.FP32 on the 310P meets the same cube units as ATC's fp32
    monkeypatch.setenv(npu.CHIP_ENV, "310P3")
    assert "not fp32 on its cube units" in backend.precision_problem("fp32")
    assert backend.precision_problem("fp16") is None
    monkeypatch.setenv(npu.DEVICE_ENV, "first")
    with pytest.raises(ValueError, match=npu.DEVICE_ENV):
        aie_backend.device_id()


def test_torch_aie_backend_reports_why_it_is_unavailable_here():
    reason = BACKENDS["torch-aie"].unavailable_reason()
    try:
        import torch_aie  # noqa: F401, PLC0415 (absent on CI: the probe is the point)
        import torch_npu  # noqa: F401, PLC0415 (absent on CI: the probe is the point)
    except ImportError:
        assert reason and "requirements-ascend.txt" in reason
