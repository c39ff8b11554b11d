"""TorchScript export and the torch-family device choice, on small networks built here: the detectors
on deliberately broken traces and the faithful case."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from models import MODELS
from posegate.backends import BACKENDS, ModelSource, torch_runtime
from posegate.backends import torch_compile as tc
from posegate.export import to_torchscript as torchscript
from posegate.export.to_onnx import ExportError
from posegate.metrics.rounding import reordered_sum_tolerance
from posegate.spec import Tolerance

STAGE = "export"
pytestmark = pytest.mark.stage
FP32 = Tolerance(max_rel=2e-5, min_cosine=0.99999)


class Faithful(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y.mean(dim=1, keepdim=True)


class DataDependent(Faithful):
    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # Python control flow on a value: the trace keeps one branch
            y = -y
        return y, y


class BakesBatch(Faithful):
    def forward(self, x):
        y = self.conv(x)
        return y, y.reshape(2, 4 * 8 * 8).sum(dim=1)  # literal sizes: fine at batch 2, fail at 3


class _Spec:
    output_names = ("a", "b")


def test_torchscript_tracer_warning_fails_naming_the_source_line():
    line = next(i for i, text in enumerate(inspect.getsourcelines(DataDependent)[0]) if "y.sum() > 0" in text)
    where = f"{__file__}:{inspect.getsourcelines(DataDependent)[1] + line}"
    with pytest.raises(ExportError, match="TracerWarning") as e:
        torchscript.trace(DataDependent().eval(), (1, 3, 8, 8))
    assert where in str(e.value)


def test_torchscript_faithful_trace_round_trips_and_takes_another_batch(tmp_path):
    net = Faithful().eval()
    path = tmp_path / "m.ts"
    torchscript.export_torchscript(net, path, (2, 3, 8, 8))
    module = torchscript.load(path)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = dict(zip(_Spec.output_names, (o.numpy() for o in net(torch.from_numpy(x)))))
    assert torchscript.other_batch(module, x, ref, _Spec.output_names, lambda n: FP32) == "works"


def test_torchscript_baked_batch_is_reported_as_the_fixed_shape(tmp_path):
    net = BakesBatch().eval()
    torchscript.export_torchscript(net, tmp_path / "m.ts", (2, 3, 8, 8))
    module = torchscript.load(tmp_path / "m.ts")
    x = np.ones((2, 3, 8, 8), np.float32)
    with torch.no_grad():
        ref = dict(zip(_Spec.output_names, (o.numpy() for o in net(torch.from_numpy(x)))))
    assert torchscript.other_batch(module, x, ref, _Spec.output_names, lambda n: FP32).startswith("fixed batch 2:")


def test_torchscript_other_batch_computing_other_values_is_an_error():
    x = np.ones((2, 3), np.float32)
    ref = {"a": x.copy()}

    def wrong_beyond_two(t):  # right at the traced batch, silently wrong at any other
        return (t * 2 if t.shape[0] != 2 else t,)
    with pytest.raises(ExportError, match="computes other values"):
        torchscript.other_batch(wrong_beyond_two, x, ref, ("a",), lambda n: FP32)


def test_torchscript_unreadable_archive_names_the_file(tmp_path):
    bad = tmp_path / "broken.ts"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ExportError, match="broken.ts"):
        torchscript.load(bad)


def test_torchscript_dynamic_profile_traces_at_its_benchmark_dims():
    spec = next(s for s in MODELS.values() if any(p.dynamic for p in s.profiles))
    p = next(p for p in spec.profiles if p.dynamic)
    shape = spec.engine_shape(p, 1)
    assert None in shape and None not in torchscript.trace_shape(spec, shape)
    assert torchscript.trace_shape(spec, shape)[1:] == p.concrete_dims


# ------------------------------------------------------------------ device choice (#19), CPU-only checks


def test_torch_device_follows_cuda_availability():
    assert torch_runtime.pick_device({}, lambda: True, lambda: 1) == "cuda"
    assert torch_runtime.pick_device({}, lambda: False, lambda: 0) == "cpu"


def test_torch_device_override_and_its_errors():
    env = torch_runtime.DEVICE_ENV
    assert torch_runtime.pick_device({env: "cpu"}, lambda: True, lambda: 1) == "cpu"
    assert torch_runtime.pick_device({env: "cuda:1"}, lambda: True, lambda: 2) == "cuda:1"
    with pytest.raises(ValueError, match="sees no CUDA"):
        torch_runtime.pick_device({env: "cuda"}, lambda: False, lambda: 0)
    with pytest.raises(ValueError, match="sees 1 CUDA"):
        torch_runtime.pick_device({env: "cuda:3"}, lambda: True, lambda: 1)
    with pytest.raises(ValueError, match=env):
        torch_runtime.pick_device({env: "gpu0"}, lambda: True, lambda: 1)


def test_torch_reference_is_not_moved_off_the_cpu():
    net = Faithful()
    assert torch_runtime.for_device(net, "cpu") is net
    moved = torch_runtime.for_device(net, "meta")  # a device every build has: stands in for cuda
    assert moved is not net and next(net.parameters()).device.type == "cpu"
    assert next(moved.parameters()).device.type == "meta"


@pytest.mark.full
def test_torch_compile_second_compile_comes_from_the_cache_in_the_artifact_cache(tmp_path, monkeypatch):
    """A fresh compile of the same network and shape, after dynamo forgot the first, hits inductor's
    FX graph cache in the artifact cache's folder: nothing is compiled again."""
    monkeypatch.setenv(torch_runtime.DEVICE_ENV, "cpu")
    for env in tc.CACHE_ENVS:  # recorded, so the folder the backend points them at is undone afterwards
        monkeypatch.setenv(env, str(tmp_path / "elsewhere"))
    backend = BACKENDS["torch-compile"]
    if backend.unavailable_reason():
        pytest.skip(backend.unavailable_reason())
    net = Faithful().eval()
    spec = type("Spec", (), {"name": "tiny", "input_name": "x", "output_names": ("a", "b"),
                             "check_input": staticmethod(lambda x, who: None)})
    entry = tmp_path / "root" / "convert" / "ab" / "key"
    entry.mkdir(parents=True)
    source = ModelSource(spec, lambda: net, lambda opset: None)
    backend.convert(source, entry, "fp32", (1, 3, 8, 8))
    assert tc.inductor_cache(entry) == (tmp_path / "root" / "inductor").resolve()
    assert (tmp_path / "root" / "inductor").is_dir()
    torch._dynamo.reset()
    session = backend.load(entry, source, "fp32")
    assert session.info.details["fxgraph_cache_miss"] == 0 and session.info.details["fxgraph_cache_hit"] >= 1
    out = session.run({"x": np.ones((1, 3, 8, 8), np.float32)})
    with torch.no_grad():
        want = net(torch.ones(1, 3, 8, 8))
    # inductor's kernel against eager's: one 3x3 convolution over 3 channels, 27 terms (+ the bias)
    tol = reordered_sum_tolerance(want[0].abs().max().item(), 3 * 3 * 3 + 1, want[0].dtype)
    np.testing.assert_allclose(out["a"], want[0].numpy(), rtol=0, atol=tol)
