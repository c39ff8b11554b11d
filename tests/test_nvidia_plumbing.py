"""NVIDIA backends' plumbing, checked against a stand-in tensorrt module that records the build, not
against a GPU: precision flags, the optimisation profile spanning every input profile, parser errors,
the provider options of ONNX Runtime's TensorRT provider, and the guard against ONNX Runtime's silent
fallback to the CPU."""
from __future__ import annotations

import dataclasses
import types
import warnings

import onnx
import pytest
from onnx import TensorProto, helper

from models import MODELS
from posegate.backends import BACKENDS, ModelSource
from posegate.backends import nvidia
from posegate.backends.onnxruntime_gpu_backend import trt_provider_options
from posegate.backends.tensorrt_backend import EngineBuildError, build_engine
from posegate.spec import InputProfile

STAGE = "convert"
pytestmark = pytest.mark.stage


class FakeTrt:
    """Just enough of the tensorrt module for build_engine; records what it was asked."""

    def __init__(self, parses=True, fp16=True, builds=True):
        self.log = {"flags": [], "profiles": [], "parsed": None}
        log = self.log
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level=None: None})
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16")
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")

        class Parser:
            num_errors = 0 if parses else 1

            def __init__(self, network, logger):
                pass

            def parse(self, data):
                log["parsed"] = len(data)
                return parses

            def get_error(self, i):
                return "In node 3 (Foo): UNSUPPORTED_NODE"

        class Profile:
            def set_shape(self, name, low, opt, high):
                log["profiles"].append((name, tuple(low), tuple(opt), tuple(high)))

        class Config:
            def set_memory_pool_limit(self, pool, size):
                log["workspace"] = size

            def set_flag(self, flag):
                log["flags"].append(flag)

            def add_optimization_profile(self, p):
                pass

        class Builder:
            platform_has_fast_fp16 = fp16

            def __init__(self, logger):
                pass

            def create_network(self, flags):
                log["network_flags"] = flags
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"ENGINE" if builds else None

        self.OnnxParser, self.Builder = Parser, Builder


def _onnx(tmp_path):
    g = helper.make_graph([helper.make_node("Identity", ["data"], ["out"])], "g",
                          [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 8, 8])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_plumbing_trt_build_sets_precision_and_profile(tmp_path, precision):
    trt = FakeTrt()
    shapes = ((1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8))
    got = build_engine(trt, _onnx(tmp_path), tmp_path / "model.engine", "data", precision, shapes)
    assert trt.log["profiles"] == [("data", *shapes)] and got == {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [8, 3, 8, 8]}
    assert trt.log["flags"] == (["FP16"] if precision == "fp16" else [])
    assert (tmp_path / "model.engine").read_bytes() == b"ENGINE" and trt.log["parsed"] > 0


def test_plumbing_trt_build_failures_say_why(tmp_path):
    shapes = ((1, 3, 8, 8),) * 3
    with pytest.raises(EngineBuildError, match="parser failed: In node 3 \\(Foo\\)"):
        build_engine(FakeTrt(parses=False), _onnx(tmp_path), tmp_path / "e", "data", "fp32", shapes)
    with pytest.raises(EngineBuildError, match="no fast fp16"):
        build_engine(FakeTrt(fp16=False), _onnx(tmp_path), tmp_path / "e", "data", "fp16", shapes)
    with pytest.raises(EngineBuildError, match="built no engine"):
        build_engine(FakeTrt(builds=False), _onnx(tmp_path), tmp_path / "e", "data", "fp32", shapes)
    assert not (tmp_path / "e").exists()


def test_plumbing_trt_convert_through_the_backend_uses_the_specs_range(tmp_path, monkeypatch):
    trt = FakeTrt()
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    spec = MODELS["lightweight_openpose"]
    out = tmp_path / "artifact"
    out.mkdir()
    BACKENDS["tensorrt"].convert(ModelSource(spec, lambda: None, lambda opset: _onnx(tmp_path)), out, "fp16", None)
    assert trt.log["profiles"] == [("data", *nvidia.shape_range(spec))] and (out / "model.engine").is_file()


def test_plumbing_shape_range_spans_batches_static_dims_and_gears():
    spec = MODELS["lightweight_openpose"]  # 368x640 at bs 1, 4 (8 under --full); 368xW perf width 496
    assert nvidia.shape_range(spec) == ((1, 3, 368, 248), (4, 3, 368, 640), (8, 3, 368, 1488))
    hrnet = dataclasses.replace(spec, profiles=(
        InputProfile("512xW", (3, None, None), "ascend", batch_sizes=(1,), perf_dims=(3, 512, 768),
                     gears=((1024, 512), (512, 512), (512, 1024))),))
    assert nvidia.shape_range(hrnet) == ((1, 3, 512, 512), (1, 3, 512, 768), (1, 3, 1024, 1024))
    opts = trt_provider_options(hrnet, "fp16")
    assert opts == {"trt_fp16_enable": True, "trt_profile_min_shapes": "data:1x3x512x512",
                    "trt_profile_opt_shapes": "data:1x3x512x768", "trt_profile_max_shapes": "data:1x3x1024x1024"}


def test_plumbing_seed_device_names():
    assert nvidia.seed_device_name("Tesla T4") == "T4" == nvidia.seed_device_name("NVIDIA T4")
    assert nvidia.seed_device_name(None) is None


def test_plumbing_ort_gpu_session_refuses_the_silent_cpu_fallback(tmp_path, monkeypatch):
    """This CPU build lacks the CUDA provider: made to look available, the session must not pass as CUDA."""
    import onnxruntime
    backend = BACKENDS["onnxruntime-cuda"]
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(nvidia, "cuda_device", lambda: ("Tesla T4", ""))
    monkeypatch.setattr("posegate.backends.onnxruntime_gpu_backend.cuda_device", lambda: ("Tesla T4", ""))
    assert backend.unavailable_reason() is None and backend.device() == "T4"
    spec = dataclasses.replace(MODELS["lightweight_openpose"], input_name="data", output_names=("out",))
    from posegate.backends import EngineIO
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match=r"started \['CPUExecutionProvider'\], not CUDAExecutionProvider"):
            backend.open(_onnx(tmp_path), spec, "fp32", EngineIO.of(spec))


@pytest.mark.parametrize("name", ["tensorrt", "onnxruntime-cuda", "onnxruntime-trt"])
def test_nvidia_backends_report_why_they_are_unavailable_here(name):
    reason = BACKENDS[name].unavailable_reason()
    if reason is None:
        pytest.skip(f"{name} is usable here: the stage tests run on it")
    assert any(w in reason for w in ("not installed", "no CUDA", "has no", "nvidia-smi", "torch has no CUDA"))
