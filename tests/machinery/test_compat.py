"""The version shims (posegate/compat/) pick the right call on both sides of each boundary, the version faked:
torch 2.0.1 (the TorchAIE samples' pin) up to the installed one."""
from __future__ import annotations

import collections
import pickle
import zipfile
from importlib import metadata
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from posegate.backends import BACKENDS
from posegate.compat import VersionLimit, release, requirement, torch_release
from posegate.compat.grad_scaler import DEVICE_GENERIC, grad_scaler
from posegate.compat.inductor import FX_GRAPH_CACHE, compile_options, unavailable_reason
from posegate.compat.numpy_pickle import multiarray
from posegate.compat.onnx_export import DYNAMO_KEYWORD, exporter_keywords
from posegate.compat.safe_load import ADD_SAFE_GLOBALS, SCOPED_SAFE_GLOBALS, load_weights_only
from posegate.gate import machine
from posegate.training import checkpoints, optim
from posegate.weights import WeightsError, read_checkpoint

STAGE = "weights"
pytestmark = pytest.mark.stage

TORCH_AIE = (2, 0)  # torch 2.0.1


def _before(boundary):
    return (boundary[0], boundary[1] - 1)


def test_release_reads_local_and_pre_release_suffixes():
    assert release("2.0.1+cpu") == (2, 0) and release("2.13.0a0+git1234") == (2, 13) and release("1.26.4") == (1, 26)
    assert torch_release() == release(torch.__version__)
    with pytest.raises(ValueError, match="not a version"):
        release("nightly")


def test_onnx_export_asks_for_the_torchscript_exporter_only_where_the_keyword_exists():
    assert exporter_keywords(TORCH_AIE) == {} == exporter_keywords(_before(DYNAMO_KEYWORD))
    assert exporter_keywords(DYNAMO_KEYWORD) == {"dynamo": False} == exporter_keywords((2, 13))


class _Recorder:
    """A stand-in GradScaler class that records how it was made."""

    def __init__(self, where, made):
        self.where, self.made = where, made

    def __call__(self, *args):
        self.made.append((self.where, args))
        return self.where


def _fake_torch(made):
    return SimpleNamespace(amp=SimpleNamespace(GradScaler=_Recorder("torch.amp", made)),
                           cuda=SimpleNamespace(amp=SimpleNamespace(GradScaler=_Recorder("torch.cuda.amp", made))),
                           npu=SimpleNamespace(amp=SimpleNamespace(GradScaler=_Recorder("torch.npu.amp", made))))


def test_grad_scaler_is_device_generic_from_2_3_and_per_device_before():
    made = []
    fake = _fake_torch(made)
    assert grad_scaler("cuda", DEVICE_GENERIC, fake) == "torch.amp" and made[-1] == ("torch.amp", ("cuda",))
    assert grad_scaler("npu", (2, 13), fake) == "torch.amp" and made[-1] == ("torch.amp", ("npu",))
    assert grad_scaler("cuda", _before(DEVICE_GENERIC), fake) == "torch.cuda.amp" and made[-1][1] == ()
    assert grad_scaler("npu", TORCH_AIE, fake) == "torch.npu.amp"


def _fake_serialization(calls, has_scoped=True):
    allowed = ["already"]

    class Scoped:
        def __init__(self, extra):
            calls.append(("safe_globals", list(extra)))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def load(path, map_location=None, weights_only=None):
        calls.append(("load", path, map_location, weights_only, list(allowed)))
        return {"w": 1}

    serialization = SimpleNamespace(
        get_safe_globals=lambda: list(allowed),
        add_safe_globals=lambda extra: allowed.extend(extra),
        clear_safe_globals=lambda: allowed.clear())
    if has_scoped:
        serialization.safe_globals = Scoped
    return SimpleNamespace(load=load, serialization=serialization), allowed


def test_safe_load_scopes_its_globals_where_it_can_and_puts_the_process_list_back_where_not():
    calls = []
    fake, allowed = _fake_serialization(calls)
    assert load_weights_only("ck.pth", ["np.ndarray"], SCOPED_SAFE_GLOBALS, fake) == {"w": 1}
    assert calls == [("safe_globals", ["np.ndarray"]), ("load", "ck.pth", "cpu", True, ["already"])]

    calls.clear()
    fake, allowed = _fake_serialization(calls, has_scoped=False)
    load_weights_only("ck.pth", ["np.ndarray"], ADD_SAFE_GLOBALS, fake)
    assert calls == [("load", "ck.pth", "cpu", True, ["already", "np.ndarray"])]
    assert allowed == ["already"]  # the process-wide list is as before

    calls.clear()
    fake, _ = _fake_serialization(calls, has_scoped=False)
    load_weights_only("ck.pth", [], TORCH_AIE, fake)  # tensors only: the fixed list of torch 2.0 suffices
    load_weights_only("ck.pth", [np.ndarray], TORCH_AIE, fake)  # numpy admitted, none in the file: the same
    assert calls == [("load", "ck.pth", "cpu", True, ["already"])] * 2

    def refusing(message):
        def load(path, map_location=None, weights_only=None):
            raise pickle.UnpicklingError(f"Weights only load failed. ... WeightsUnpickler error: {message}")
        return SimpleNamespace(load=load, serialization=None)

    with pytest.raises(VersionLimit, match=r"ck.pth: reading a checkpoint that holds numpy arrays needs torch >= 2.4 "
                                           r"\(.*\); this is torch 2.3"):
        load_weights_only("ck.pth", [np.ndarray], _before(ADD_SAFE_GLOBALS),
                          refusing("Unsupported class numpy.ndarray"))
    with pytest.raises(pickle.UnpicklingError, match="posix.system"):  # code stays refused as code
        load_weights_only("ck.pth", [np.ndarray], TORCH_AIE, refusing("Unsupported class posix.system"))


def test_a_numpy_checkpoint_on_a_torch_without_safe_globals_names_the_release_it_needs(tmp_path, monkeypatch):
    path = tmp_path / "model_best.bin"
    torch.save({"w": torch.zeros(1), "rng": np.zeros(3)}, path)
    if torch_release() >= ADD_SAFE_GLOBALS:
        assert set(read_checkpoint(path, allow_numpy=True)) == {"w", "rng"}
        monkeypatch.setattr(torch, "__version__", "2.0.1")
    with pytest.raises(WeightsError, match=r"model_best.bin: reading a checkpoint that holds numpy arrays needs "
                                           r"torch >= 2.4 .*; this is torch 2.0"):
        read_checkpoint(path, allow_numpy=True)


def test_torch_compile_needs_the_fx_graph_cache_of_2_2(monkeypatch):
    assert unavailable_reason(FX_GRAPH_CACHE) is None and compile_options() == {"fx_graph_cache": True}
    reason = unavailable_reason(TORCH_AIE)
    assert reason.startswith("torch-compile needs torch >= 2.2 (inductor's FX graph cache") and "torch 2.0" in reason
    monkeypatch.setattr(torch, "__version__", "2.0.1")
    assert BACKENDS["torch-compile"].unavailable_reason() == reason


def test_requirement_is_silent_when_met():
    assert requirement("x", (2, 2), (2, 2), "why") is None
    assert requirement("x", (2, 2), (2, 1), "why") == ("x needs torch >= 2.2 (why); this is torch 2.1 "
                                                       "(requirements-min.txt lists what the oldest supported stack "
                                                       "can do)")


def test_numpy_pickle_helpers_come_from_core_on_numpy_1_and_from_underscore_core_on_2():
    one = SimpleNamespace(core=SimpleNamespace(multiarray="numpy.core.multiarray"))
    two = SimpleNamespace(_core=SimpleNamespace(multiarray="numpy._core.multiarray"), core=None)
    assert multiarray(one) == "numpy.core.multiarray" and multiarray(two) == "numpy._core.multiarray"
    assert multiarray()._reconstruct is np.ndarray.__reduce__(np.zeros(1))[0]


def test_the_session_header_names_torch_its_cpu_kernels_numpy_onnx_and_each_engine_installed():
    installed = {"torch": "2.0.1", "numpy": "1.26.4", "onnx": "1.16.0", "onnxruntime": "1.18.0",
                 "openvino": "2024.4.0", "tensorrt-cu13": "10.13.0"}

    def lookup(name):
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    line = machine.stack_line(lookup)
    assert line.startswith(f"posegate stack: torch 2.0.1 (CPU kernels {machine.cpu_capability()}, "
                           f"{torch.get_num_threads()} threads), ")
    for name in ("numpy 1.26.4", "onnx 1.16.0", "onnxruntime 1.18.0", "openvino 2024.4.0", "tensorrt-cu13 10.13.0"):
        assert name in line
    assert machine.cpu_capability() in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256", "SVE128", "SVE"} \
        or machine.cpu_capability().startswith("not reported")


def test_a_training_checkpoint_written_here_resumes_on_torch_2_0_and_an_upstream_one_names_the_release(tmp_path,
                                                                                                      monkeypatch):
    """MultiStepLR keeps its milestones in a collections.Counter, which weights_only admits only from torch 2.4."""
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = optim.make_scheduler(opt, (2, 2, 5))
    mine = checkpoints.save(tmp_path / "mine.pth", "port", net, opt, sched, iteration=3, epoch=1)
    with zipfile.ZipFile(mine) as archive:
        pickled = b"".join(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    assert pickled and b"Counter" not in pickled  # nothing torch 2.0's weights_only unpickler refuses
    again = optim.make_scheduler(torch.optim.SGD(net.parameters(), lr=0.1), (9,))
    checkpoints.restore(mine, net, torch.optim.SGD(net.parameters(), lr=0.1), again, 3)
    assert again.milestones == sched.milestones and isinstance(again.milestones, collections.Counter)
    upstream = tmp_path / "upstream.pth"
    torch.save({"state_dict": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "iter": 3, "current_epoch": 1}, upstream)
    new_torch = torch_release() >= ADD_SAFE_GLOBALS
    if new_torch:
        checkpoints.restore(upstream, net, opt, optim.make_scheduler(opt), 3)
        monkeypatch.setattr(torch, "__version__", "2.0.1")
    real_load = torch.load

    def load_of_2_0(path, map_location=None, weights_only=None):  # torch 2.0's fixed allow-list: no Counter
        raise pickle.UnpicklingError("Weights only load failed. WeightsUnpickler error: "
                                     "Unsupported class collections.Counter")
    if new_torch:
        monkeypatch.setattr(torch, "load", load_of_2_0)
    with pytest.raises(WeightsError, match=r"upstream.pth: reading a checkpoint that holds collections.Counter "
                                           r"needs torch >= 2.4"):
        checkpoints.restore(upstream, net, opt, optim.make_scheduler(opt), 3)
    monkeypatch.setattr(torch, "load", real_load)
    assert checkpoints.restore(mine, net, opt, optim.make_scheduler(opt), 3).epoch == 1  # plain dict: any torch
