"""NVIDIA backends' plumbing, checked against a stand-in tensorrt module that records the build, not
against a GPU: precision flags, the optimisation profile spanning every input profile, parser errors,
the provider options of ONNX Runtime's TensorRT provider, and the guard against ONNX Runtime's silent
fallback to the CPU."""
from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.util
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

import posegate.backends.onnxruntime_gpu.backend as gpu
from models import MODELS
from posegate.backends import BACKENDS, EngineIO, ModelSource, nvidia
from posegate.backends.onnxruntime import OrtSession
from posegate.backends.onnxruntime_gpu.backend import OrtGpuSession, trt_execution, trt_provider_options
from posegate.backends.tensorrt import EngineBuildError, TrtSession, build_engine
from posegate.spec import InputProfile
from tests.standins import FakeTrt, HostBuffers, install_tensorrt

STAGE = "convert"
pytestmark = pytest.mark.stage


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
    assert trt.log["profiles"] == [("data", *shapes)]
    assert got == {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [8, 3, 8, 8], "tf32": False}
    # TensorRT's configs start with TF32 on: fp32 must clear it, or Ampere+ GPUs compute 10-bit mantissas
    assert trt.log["flags"] == (["FP16"] if precision == "fp16" else [])
    assert (tmp_path / "model.engine").stat().st_size > 0 and trt.log["parsed"] > 0


def test_plumbing_trt_build_failures_say_why(tmp_path):
    shapes = ((1, 3, 8, 8),) * 3
    with pytest.raises(EngineBuildError, match="parser failed: In node 3 \\(Foo\\)"):
        build_engine(FakeTrt(parses=False), _onnx(tmp_path), tmp_path / "e", "data", "fp32", shapes)
    with pytest.raises(EngineBuildError, match="no fast fp16"):
        build_engine(FakeTrt(fp16=False), _onnx(tmp_path), tmp_path / "e", "data", "fp16", shapes)
    with pytest.raises(EngineBuildError, match="built no engine"):
        build_engine(FakeTrt(builds=False), _onnx(tmp_path), tmp_path / "e", "data", "fp32", shapes)
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("shapes, selector", [
    (((8, 3, 8, 8), (4, 3, 8, 8), (16, 3, 8, 8)), "opt"),  # opt below min
    (((1, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8)), "max"),  # max below opt
    (((1, 3, 8, 8), (4, 3, 8), (8, 3, 8, 8)), "opt"),  # another rank
])
def test_plumbing_trt_profile_set_shape_raises_and_becomes_an_engine_build_error(tmp_path, shapes, selector):
    """Issue 25, 6: set_shape raises RuntimeError (it never returns False); the error names shape and profile."""
    low, opt, high = shapes
    with pytest.raises(RuntimeError, match=f"Shape provided for {selector} is inconsistent"):
        FakeTrt().Builder(None).create_optimization_profile().set_shape("data", low, opt, high)
    with pytest.raises(EngineBuildError, match=rf"refused the profile data min \(.*\) opt \(.*\) max .*"
                                               rf"Shape provided for {selector} is inconsistent"):
        build_engine(FakeTrt(), _onnx(tmp_path), tmp_path / "e", "data", "fp32", shapes)
    assert not (tmp_path / "e").exists()


def test_plumbing_trt_convert_through_the_backend_uses_the_specs_range(tmp_path, monkeypatch):
    trt = install_tensorrt(monkeypatch)
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


@pytest.mark.parametrize("name", ["videopose3d_243", "mspn_2xstg", "higherhrnet_w32_512"])
def test_plumbing_shape_range_counts_flip_copies_in_engine_rows(name):
    """Every engine shape the suite feeds (batch x profile copies x flow copies) fits the profile."""
    spec = MODELS[name]
    (low, _, high) = nvidia.shape_range(spec)
    fed = [spec.engine_shape(p, b)[0] for p in spec.profiles for b in p.batch_sizes + p.full_batch_sizes]
    assert (low[0], high[0]) == (min(fed), max(fed))
    assert high[0] == {"videopose3d_243": 2, "mspn_2xstg": 128, "higherhrnet_w32_512": 4}[name]
    opts = trt_provider_options(spec, "fp32")
    assert opts["trt_profile_max_shapes"].split(":")[1].split("x")[0] == str(high[0])


def _engine(tmp_path, shapes=((1, 3, 8, 8), (2, 3, 8, 8), (2, 3, 8, 16))):
    trt = FakeTrt()
    build_engine(trt, _onnx(tmp_path), tmp_path / "model.engine", "data", "fp32", shapes)
    return trt, tmp_path / "model.engine"


def _identity_spec():
    return dataclasses.replace(MODELS["lightweight_openpose"], input_name="data", output_names=("out",),
                               profiles=(InputProfile("p", (3, 8, None), "openpose", batch_sizes=(1, 2),
                                                      perf_dims=(3, 8, 8)),))


def test_plumbing_trt_session_runs_an_engine_through_bound_addresses(tmp_path):
    trt, engine = _engine(tmp_path)
    session = TrtSession(_identity_spec(), engine, "fp32", trt=trt, device=HostBuffers(), execution="f32")
    x = np.arange(2 * 3 * 8 * 12, dtype=np.float32).reshape(2, 3, 8, 12)
    out = session.run({"data": x})
    np.testing.assert_array_equal(out["out"], x)  # the identity engine read the bound input, wrote the output
    assert len(session.device_ms) == 1 and session.info.execution == "f32"
    assert session.signature() == ({"data": [None, 3, 8, None]}, {"out": [None, 3, 8, None]})
    assert "outside the timer" in session.timing


def test_plumbing_trt_session_names_the_shape_and_the_profile_it_overflows(tmp_path):
    trt, engine = _engine(tmp_path)
    session = TrtSession(_identity_spec(), engine, "fp32", trt=trt, device=HostBuffers())
    with pytest.raises(ValueError, match=r"shape \(4, 3, 8, 8\) is outside .*\(1, 3, 8, 8\)\.\.\(2, 3, 8, 16\)"):
        session.run({"data": np.zeros((4, 3, 8, 8), np.float32)})  # 4 rows into a profile capped at 2
    assert session.device_ms == []
    context = session.context
    context.execute_async_v3 = lambda stream: False
    with pytest.raises(RuntimeError, match="execute_async_v3 failed"):
        session.run({"data": np.zeros((1, 3, 8, 8), np.float32)})
    with pytest.raises(RuntimeError, match="could not deserialize"):
        (tmp_path / "bad.engine").write_bytes(b"\x00")
        TrtSession(_identity_spec(), tmp_path / "bad.engine", "fp32", trt=trt, device=HostBuffers())


def test_plumbing_ort_gpu_options_turn_tf32_off_and_cache_trt_engines(tmp_path, monkeypatch):
    assert BACKENDS["onnxruntime-cuda"].options(MODELS["mspn_2xstg"], "fp32") == {"use_tf32": 0}
    opts = BACKENDS["onnxruntime-trt"].options(MODELS["mspn_2xstg"], "fp32", tmp_path / "engines")
    assert opts["trt_engine_cache_enable"] is True and opts["trt_engine_cache_path"] == str(tmp_path / "engines")
    assert (tmp_path / "engines").is_dir()
    # no TensorRT EP option clears TF32: the engine is named for what it computes in
    assert trt_execution("fp32", {}) == "tf32" and trt_execution("fp32", {"NVIDIA_TF32_OVERRIDE": "0"}) == "f32"
    assert trt_execution("fp16", {}) == "f16"
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    assert "NVIDIA_TF32_OVERRIDE=0" in BACKENDS["onnxruntime-trt"].precision_problem("fp32")
    assert BACKENDS["onnxruntime-trt"].precision_problem("fp16") is None
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    assert BACKENDS["onnxruntime-trt"].artifact_settings("fp32")["execution"] == "f32"
    assert BACKENDS["onnxruntime-trt"].precision_problem("fp32") is None


def test_plumbing_ort_iobinding_session_times_the_run_alone(tmp_path):
    """IOBinding on this CPU build's own device: the same calls the CUDA session makes, run for real."""
    session = OrtGpuSession(_identity_spec(), _onnx(tmp_path), "fp32", providers=("CPUExecutionProvider",),
                            device_type="cpu")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    out = session.run({"data": x})
    np.testing.assert_array_equal(out["out"], x)
    assert "IOBinding" not in OrtSession.timing and "host<->device copies outside" in session.timing


def test_plumbing_seed_device_names():
    assert nvidia.seed_device_name("Tesla T4") == "T4" == nvidia.seed_device_name("NVIDIA T4")
    assert nvidia.seed_device_name(None) is None


def test_plumbing_ort_gpu_session_refuses_the_silent_cpu_fallback(tmp_path, monkeypatch):
    """This CPU build lacks the CUDA provider: made to look available, the session must not pass as CUDA."""
    backend = BACKENDS["onnxruntime-cuda"]
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(nvidia, "cuda_device", lambda: ("Tesla T4", ""))
    monkeypatch.setattr("posegate.backends.onnxruntime_gpu.backend.cuda_device", lambda: ("Tesla T4", ""))
    assert backend.unavailable_reason() is None and backend.device() == "T4"
    spec = dataclasses.replace(MODELS["lightweight_openpose"], input_name="data", output_names=("out",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # ONNX Runtime's own reason travels with the error (and the log)
        with pytest.raises(RuntimeError, match=r"started \['CPUExecutionProvider'\], not CUDAExecutionProvider: "
                                               r".*CUDAExecutionProvider.*not in available provider"):
            backend.open(_onnx(tmp_path), spec, "fp32", EngineIO.of(spec))


@pytest.fixture
def cuda_looks_available(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(nvidia, "cuda_device", lambda: ("Tesla T4", ""))
    monkeypatch.setattr("posegate.backends.onnxruntime_gpu.backend.cuda_device", lambda: ("Tesla T4", ""))
    return dataclasses.replace(MODELS["lightweight_openpose"], input_name="data", output_names=("out",))


def test_plumbing_ort_provider_that_raises_is_an_error_with_its_reason(tmp_path, monkeypatch, cuda_looks_available):
    """Issue 25, 5: a provider failing while the session is created makes this onnxruntime (its own
    InferenceSession.__init__, run for real) print "EP Error ..." to stdout and retry on the CPU; the
    adapter must fail with that reason and never run on the fallback."""
    real = onnxruntime.InferenceSession._create_inference_session
    tried = []

    def create(self, providers, provider_options, disabled_optimizers=None):
        names = [p[0] if isinstance(p, tuple) else p for p in providers or []]
        tried.append(names)
        if "CUDAExecutionProvider" in names:  # what a broken CUDA install raises from initialize_session
            raise RuntimeError("CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version")
        return real(self, providers, provider_options, disabled_optimizers)

    monkeypatch.setattr(onnxruntime.InferenceSession, "_create_inference_session", create)
    spec = cuda_looks_available
    with pytest.raises(RuntimeError, match=r"could not start CUDAExecutionProvider: .*CUDA driver version is "
                                           r"insufficient"):
        BACKENDS["onnxruntime-cuda"].open(_onnx(tmp_path), spec, "fp32", EngineIO.of(spec))
    assert tried == [["CUDAExecutionProvider", "CPUExecutionProvider"]]  # no second, CPU-only session


def test_plumbing_ort_fallback_printed_to_stdout_is_the_reason(tmp_path, monkeypatch, cuda_looks_available):
    """Issue 25, 5/7: an onnxruntime that falls back anyway prints why to stdout only; the error carries it."""

    class FellBack:
        def __init__(self, spec, path, precision, io, providers, provider_options, **kw):
            print("*************** EP Error ***************")
            print(f"EP Error CUDA failure 100: no CUDA-capable device is detected when using {providers}")
            print("Falling back to ['CPUExecutionProvider'] and retrying.")
            self.info = types.SimpleNamespace(details={"providers": ["CPUExecutionProvider"]})

        def close(self):
            pass

    monkeypatch.setattr(gpu, "OrtGpuSession", FellBack)
    spec = cuda_looks_available
    with pytest.raises(RuntimeError, match=r"started \['CPUExecutionProvider'\], not CUDAExecutionProvider: "
                                           r".*no CUDA-capable device is detected.*Falling back"):
        BACKENDS["onnxruntime-cuda"].open(_onnx(tmp_path), spec, "fp32", EngineIO.of(spec))


@pytest.mark.parametrize("name", ["tensorrt", "onnxruntime-cuda", "onnxruntime-trt"])
def test_nvidia_backends_report_why_they_are_unavailable_here(name):
    reason = BACKENDS[name].unavailable_reason()
    if reason is None:
        pytest.skip(f"{name} is usable here: the stage tests run on it")
    assert any(w in reason for w in ("not installed", "no CUDA", "has no", "nvidia-smi", "torch has no CUDA"))


def test_plumbing_ort_trt_imports_tensorrt_first_and_keeps_cuda_for_the_rest(tmp_path, monkeypatch):
    """The pip TensorRT wheels' libraries load with `import tensorrt`: it must come before the session."""

    order = []

    class Loader(importlib.abc.Loader):
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            order.append("import tensorrt")

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            return importlib.util.spec_from_loader(name, Loader()) if name == "tensorrt" else None

    class Recorded:
        def __init__(self, spec, path, precision, io, providers, provider_options, **kw):
            order.append(("session", tuple(providers)))
            self.options = provider_options
            self.info = types.SimpleNamespace(details={"providers": list(providers)})

    # Absent for the test and after it: setitem records that "tensorrt" had no entry (undo deletes the one the
    # finder's import leaves), delitem clears the way for that import. delitem alone records nothing for an
    # absent key, and the stand-in imported here (no __version__) would outlive the test.
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.delitem(sys.modules, "tensorrt")
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    monkeypatch.setattr(gpu, "OrtGpuSession", Recorded)
    spec = MODELS["mspn_2xstg"]
    session = BACKENDS["onnxruntime-trt"].open(_onnx(tmp_path), spec, "fp32", EngineIO.of(spec))
    assert order == ["import tensorrt", ("session", ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                     "CPUExecutionProvider"))]
    assert session.options[1] == {"use_tf32": 0} and session.options[0]["trt_fp16_enable"] is False


def test_requirements_nvidia_pin_one_cuda_major_and_tensorrt_10():
    lines = [ln.split("#")[0].strip() for ln in (Path(__file__).parents[2] / "requirements-nvidia.txt").read_text()
             .splitlines()]
    pins = dict(ln.split("==") for ln in lines if ln)
    assert not any(name.split("[")[0] == "tensorrt" for name in pins)  # the bare name follows NVIDIA's newest CUDA
    trt = [n for n in pins if n.startswith("tensorrt-cu")]
    assert len(trt) == 1 and pins[trt[0]].startswith("10.")
    torch_pin = (Path(__file__).parents[2] / "requirements.txt").read_text()
    assert "torch==2.13.0" in torch_pin  # PyPI's 2.13.0 Linux wheel is CUDA 13.0: the suffix must agree
    assert trt[0] == "tensorrt-cu13"
    assert pins["onnxruntime-gpu[cuda,cudnn]"] == "1.31.1"  # CUDA 13, TensorRT provider on libnvinfer.so.10
