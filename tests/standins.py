"""Stand-ins for the device libraries the plumbing tests run the backends on, where the device is absent:
ATC (an `atc` on PATH), ais_bench's InferSession, TensorRT's Python module, torch_aie with torch_npu, and
host memory in place of CUDA buffers. Each follows the real library's signatures and return values, with
the sources cited on it, so a backend that works against them calls the real one the same way.

Installed only through fixtures (tests/backends/conftest.py: ``monkeypatch.setitem(sys.modules, ...)``, PATH
and environment through monkeypatch), so none outlives its test.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import stat
import sys
import time
import types

import numpy as np
import onnx
import onnxruntime
import torch

import posegate.backends.ascend.backend as asc
from posegate.backends import npu

# ------------------------------------------------------------------------------------------ ATC

def install_atc(tmp_path, monkeypatch):
    """An `atc` on PATH that records its argv (and the log variables it ran with) and writes the OM, or fails
    when FAKE_ATC_FAIL is set. FAKE_ATC_OM names the file it writes ({stem}: the --output value; GE's
    model_helper.cc names an OM carrying its .so binaries <stem>_<os>_<cpu>.om, or none: FAKE_ATC_OM="");
    FAKE_ATC_HF32_LOG is a line it prints, as the INFO log that shows ge.exec.allow_hf32 would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "atc_calls.jsonl"
    script = bin_dir / "atc"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
env = {{k: os.environ.get(k) for k in ("ASCEND_SLOG_PRINT_TO_STDOUT", "ASCEND_GLOBAL_LOG_LEVEL")}}
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": env}}) + "\\n")
if os.environ.get("FAKE_ATC_FAIL"):
    print("ATC run failed, E19010: No parser is registered for Op [Conv_1818, optype [ai.onnx::11::Foo]]")
    sys.exit(255)
if os.environ.get("FAKE_ATC_HF32_LOG"):
    print(os.environ["FAKE_ATC_HF32_LOG"])
out = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--output=")][0]
name = os.environ.get("FAKE_ATC_OM", "{{stem}}.om").replace("{{stem}}", out)
if name:
    open(name, "wb").write(b"OM")
print("ATC run success")
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(npu.CHIP_ENV, "310P3")
    return calls


# ------------------------------------------------------------------------------------ ais_bench

def ais_bench_refuses(model_path) -> bool:
    """The later ais_bench's model-path rules, as its InferSession applies them (interface_check.py
    check_model_path_legality -> common/path_security_check.py check_path_legality(path, READ, suffix=["om"]),
    Ascend's tools repo, ais-bench_workload/tool/ais_bench, 2023-2025): written from that source, never by
    calling the adapter, so the two can disagree. The 32-'/' limit is issue 25's statement; no ais_bench
    source read for it has that rule."""
    path = os.path.abspath(str(model_path))  # FileStat.__init__
    if len(path) > 4096 or any(len(name) > 255 for name in path.split("/")):  # is_legal_path_length
        return True
    if re.search(r"[^_A-Za-z0-9/.-]", path):  # PATH_WHITE_LIST_REGEX
        return True
    if path.count("/") > 32:
        return True
    if not os.path.exists(path) or os.path.islink(path):  # check_linux_permission: exists, is_softlink
        return True
    st = os.stat(path)
    if not (st.st_uid == os.geteuid() or st.st_gid in os.getgroups()):  # is_user_or_group_owner
        return True
    if stat.S_IMODE(st.st_mode) & (stat.S_IWGRP | stat.S_IWOTH):  # READ_FILE_NOT_PERMITTED_STAT
        return True
    if not os.access(os.path.realpath(path), os.R_OK) or not st.st_mode & stat.S_IRUSR:
        return True
    return not stat.S_ISREG(st.st_mode) or os.path.splitext(path)[1] != ".om"  # is_file, suffix ["om"]


class FakeInferSession:
    """ais_bench's InferSession over a pretend aclruntime, after github.com/Ascend/tools
    ais-bench_workload/tool/ais_bench: ais_bench/infer/interface.py and aclruntime's C++
    (PyInferenceSession.cpp, ModelInferenceProcessor.cpp). ``style`` picks the generation:

    - "2023": sumary()/reset_sumaryinfo(); infer() knows dymdims/dymshape and runs any other mode as
      static; no free_resource; finalize() is aclFinalize for the whole process.
    - "later": summary()/reset_summaryinfo(); infer() raises for an unknown mode and for dymhw on an
      input whose dims 2 and 3 are not both -1; free_resource(); a static finalize().

    - "2023": exec_time_list holds one float (ms) per call (InferSumaryInfo's std::vector<float>, Ascend/tools
      ModelInferenceProcessor.h); no path check in Python (interface.py hands model_path to aclruntime).
    - "later": exec_time_list holds (start, end) pairs in ms from the session's zero point
      (std::vector<pair<float, float>>, pushed as {start_time, end_time} in ModelInferenceProcessor::Execute;
      benchmark_process.py takes end - start), and InferSession refuses a model path by its own rules
      (ais_bench_refuses, written from its path_security_check.py, not from the adapter).

    Both: a feed whose byte size differs from the input's current size (the OM's, or the gear set by
    set_dynamic_hw/dims) is refused. OMs by name: "dyn" has dynamic H and W (--dynamic_image_size), "dims"
    a dynamic W (--dynamic_dims), others are static.
    """
    style = "later"
    instances = []
    process = {"finalized": 0}

    def __init__(self, device_id, model_path):
        if self.style == "later" and ais_bench_refuses(model_path):  # check_model_path_legality's wording
            raise RuntimeError(f"om path:{model_path} is illegal. Please check.")
        self.device_id, self.om, self.calls, self.freed = device_id, model_path, [], False
        name = os.path.basename(model_path)
        self.in_shape = [1, 3, -1, -1] if "dyn" in name else [1, 3, 368, -1] if "dims" in name else [1, 3, 368, 640]
        self.gears = {(368, 640), (368, 496)}
        self.realsize = 4 * int(np.prod(self.in_shape)) if -1 not in self.in_shape else 4 * 3 * 368 * 1488
        FakeInferSession.instances.append(self)
        if self.style == "2023":
            self.sumary, self.reset_sumaryinfo = self._summary, self._reset
        else:
            self.summary, self.reset_summaryinfo, self.free_resource = self._summary, self._reset, self._free
        self._times = []

    @staticmethod
    def finalize():  # later: static; 2023: an instance method; both end ACL for the whole process
        FakeInferSession.process["finalized"] += 1

    def get_inputs(self):
        return [types.SimpleNamespace(name="data", shape=list(self.in_shape), datatype="FLOAT")]

    def get_outputs(self):  # ATC decorates and reorders: PAFs first
        return [types.SimpleNamespace(name="Conv_9:0:stage2_pafs", shape=[1, 38, 1, 2]),
                types.SimpleNamespace(name="Conv_8:0:stage2_heatmaps", shape=[1, 19, 1, 2])]

    def _gear(self, h, w):
        if (h, w) not in self.gears:
            raise RuntimeError(f"gear {h}x{w} not in the OM's gears")
        self.realsize = 4 * 3 * h * w

    def set_dynamic_hw(self, a, b):  # the later release passes (shape[2], shape[3])
        self._gear(a, b)

    def set_dynamic_dims(self, dims):  # "data:1,3,368,640"
        self._gear(*[int(v) for v in dims.split(":")[1].split(",")[2:]])

    def set_dynamic_batchsize(self, n):
        raise RuntimeError("not a dymbatch model!")

    def infer(self, feeds, mode="static", custom_sizes=100000, out_array=True):
        if self.process["finalized"]:
            raise RuntimeError("aclrtSetDevice failed: ACL was finalized")
        shape = feeds[0].shape
        if self.style == "later":
            if mode not in ("static", "dymbatch", "dymhw", "dymdims", "dymshape"):
                raise RuntimeError(f"wrong infer_mode:{mode}")
            if mode == "dymhw":
                if not (self.in_shape[2] < 0 and self.in_shape[3] < 0):
                    raise RuntimeError("not a dymhw model!")
                self.set_dynamic_hw(shape[2], shape[3])
        if mode == "dymdims":
            self.set_dynamic_dims("data:" + ",".join(str(d) for d in shape))
        if feeds[0].nbytes != self.realsize:  # CheckInVectorAndFillBaseTensor
            raise RuntimeError(f"Check i:0 name:data in size:{feeds[0].nbytes} needsize:{self.realsize} not match")
        self.calls.append((mode, [f.shape for f in feeds]))
        if self.style == "later":  # (start, end) from the zero point; end - start = 2.5 ms
            start = 10.0 * len(self.calls)
            self._times.append((start, start + 2.5))
        else:
            self._times.append(2.5)
        return [np.full((1, 38, 1, 2), 38, np.float32), np.full((1, 19, 1, 2), 19, np.float32)]

    def _summary(self):
        return types.SimpleNamespace(exec_time_list=list(self._times))

    def _reset(self):
        self._times = []

    def _free(self):
        self.freed = True


def install_ais_bench(monkeypatch):
    """ais_bench importable as the stand-in, a fresh process, and the ACL release hook not at exit."""
    FakeInferSession.instances = []
    FakeInferSession.process = {"finalized": 0}
    interface = types.ModuleType("ais_bench.infer.interface")
    interface.InferSession = FakeInferSession
    modules = (("ais_bench", types.ModuleType("ais_bench")), ("ais_bench.infer", types.ModuleType("ais_bench.infer")),
               ("ais_bench.infer.interface", interface))
    for name, mod in modules:
        monkeypatch.setitem(sys.modules, name, mod)
    process = asc.AclProcess(register=lambda fn: None)
    monkeypatch.setattr(asc, "ACL", process)
    return process


# ------------------------------------------------------------------------------------- TensorRT

class FakeTrt:
    """The parts of the tensorrt module (TensorRT 10 Python API) the backend uses, following the real
    signatures and return values (docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api):
    a builder config starts with BuilderFlag.TF32 set; add_optimization_profile returns the profile's
    index, -1 for an invalid one; build_serialized_network returns None on failure;
    IExecutionContext.set_input_shape / set_tensor_address / execute_async_v3 return False instead of
    raising, and an output's shape has -1 dims until the input shape is set. Its "engine" is an
    identity network, run on host memory by the backend's HostBuffers."""

    def __init__(self, parses=True, fp16=True, builds=True):
        self.log = {"flags": None, "profiles": [], "parsed": None}
        log = self.log
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level=None: None})
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", TF32="TF32")
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        self.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")

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
            """IOptimizationProfile. set_shape as its binding (NVIDIA/TensorRT python/src/infer/pyCore.cpp,
            lambdas::opt_profile_set_shape): setDimensions for MIN, OPT, MAX in turn, a RuntimeError
            "Shape provided for <sel> is inconsistent with other shapes." at the first that fails (a rank
            unlike the others', or a dim below the selector before it), None otherwise."""

            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, low, opt, high):
                log["profiles"].append((name, tuple(low), tuple(opt), tuple(high)))
                given = []
                for selector, dims in (("min", low), ("opt", opt), ("max", high)):
                    before = given[-1] if given else None
                    if before is not None and (len(dims) != len(before) or any(d < b for d, b in zip(dims, before))):
                        raise RuntimeError(f"Shape provided for {selector} is inconsistent with other shapes.")
                    given.append(list(dims))
                self.shapes[name] = given

            def __bool__(self):
                return bool(self.shapes) and all(
                    len(lo) == len(o) == len(hi) and all(a <= b <= c for a, b, c in zip(lo, o, hi))
                    for lo, o, hi in self.shapes.values())

        class Config:
            def __init__(self):
                self.flags, self.profiles = {"TF32"}, []

            def set_memory_pool_limit(self, pool, size):
                log["workspace"] = size

            def set_flag(self, flag):
                self.flags.add(flag)

            def clear_flag(self, flag):
                self.flags.discard(flag)

            def get_flag(self, flag):
                return flag in self.flags

            def add_optimization_profile(self, p):
                if not p:
                    return -1
                self.profiles.append(p)
                return len(self.profiles) - 1

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
                log["flags"] = sorted(config.flags)
                if not builds or not config.profiles:
                    return None
                (name, shapes), = config.profiles[0].shapes.items()
                return json.dumps({"input": name, "output": "out", "profile": shapes}).encode()

        trt = self

        class Context:
            def __init__(self, engine):
                self.engine, self.shape, self.addresses = engine, None, {}

            def set_input_shape(self, name, shape):
                lo, _, hi = self.engine.profile
                if name != self.engine.input or len(shape) != len(lo):
                    return False
                if not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
                    return False
                self.shape = tuple(shape)
                return True

            def get_tensor_shape(self, name):
                return self.shape if self.shape is not None else self.engine.get_tensor_shape(name)

            def set_tensor_address(self, name, ptr):
                if name not in (self.engine.input, self.engine.output):
                    return False
                self.addresses[name] = ptr
                return True

            def execute_async_v3(self, stream):
                if self.shape is None or len(self.addresses) != 2:
                    return False
                nbytes = 4 * int(np.prod(self.shape))
                ctypes.memmove(self.addresses[self.engine.output], self.addresses[self.engine.input], nbytes)
                return True

        class Engine:
            def __init__(self, meta):
                self.input, self.output, self.profile = meta["input"], meta["output"], meta["profile"]
                self.num_io_tensors = 2

            def get_tensor_name(self, i):
                return (self.input, self.output)[i]

            def get_tensor_mode(self, name):
                return trt.TensorIOMode.INPUT if name == self.input else trt.TensorIOMode.OUTPUT

            def get_tensor_shape(self, name):
                lo, _, hi = self.profile
                return tuple(a if a == b else -1 for a, b in zip(lo, hi))

            def get_tensor_profile_shape(self, name, index):
                return [tuple(s) for s in self.profile]

            def create_execution_context(self):
                return Context(self)

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                try:
                    return Engine(json.loads(bytes(data)))
                except ValueError:
                    return None  # TensorRT returns None for an engine it cannot read

        self.OnnxParser, self.Builder, self.Runtime = Parser, Builder, Runtime


class HostBuffers:
    """TrtSession's device interface (upload, empty, download, timed; posegate.backends.tensorrt.backend.TorchCuda)
    over host memory: raw addresses of numpy arrays, which the FakeTrt engine reads and writes."""
    name = "host stand-in"
    handle = 0

    def upload(self, x):
        a = np.ascontiguousarray(x, dtype=np.float32).copy()
        return a, a.ctypes.data

    def empty(self, shape):
        a = np.zeros(shape, np.float32)
        return a, a.ctypes.data

    def download(self, buf):
        return buf.copy()

    def timed(self, launch):
        start = time.perf_counter()
        launch()
        return (time.perf_counter() - start) * 1000


# ----------------------------------------------------------------------------- torch_aie, torch_npu

class FakeAie:
    """torch_aie as the examples call it: Input(shape, dtype=), compile(ts, inputs=, precision_policy=,
    soc_version=, optimization_level=), npu.Stream / npu.stream; records every call."""

    def __init__(self):
        self.calls = {"compile": [], "sync": 0, "streams": []}
        aie = self

        class PrecisionPolicy:
            FP16, FP32 = "PrecisionPolicy.FP16", "PrecisionPolicy.FP32"

        class Input:
            def __init__(self, shape=None, dtype=torch.float, min_shape=None, max_shape=None):
                if shape is None and (min_shape is None or max_shape is None):
                    raise ValueError("torch_aie.Input needs shape, or min_shape and max_shape")
                self.shape, self.dtype = tuple(shape), dtype

        class Compiled(torch.nn.Module):
            """The compiled module refuses what an AIE engine built for one static input refuses."""

            def __init__(self, ts, spec_in):
                super().__init__()
                self.ts, self.shape, self.dtype = ts, spec_in.shape, spec_in.dtype

            def forward(self, x):
                if tuple(x.shape) != self.shape:
                    raise RuntimeError(f"input shape {tuple(x.shape)} != compiled static shape {self.shape}")
                if x.dtype != self.dtype:
                    raise RuntimeError(f"input dtype {x.dtype} != compiled dtype {self.dtype}")
                return self.ts(x)

        class Stream:
            def __init__(self, device):
                aie.calls["streams"].append(device)

            def synchronize(self):
                aie.calls["sync"] += 1

        class _StreamCtx:
            def __init__(self, stream):
                self.stream = stream

            def __enter__(self):
                return self.stream

            def __exit__(self, *exc):
                return False

        def compile(module, inputs, precision_policy=None, soc_version=None, optimization_level=0, **kw):
            if not isinstance(module, torch.jit.ScriptModule):
                raise TypeError("torch_aie.compile takes a TorchScript module")
            if len(inputs) != 1:
                raise ValueError("one Input per forward argument")
            aie.calls["compile"].append({"shape": inputs[0].shape, "dtype": inputs[0].dtype, "policy": precision_policy,
                                         "soc": soc_version, "level": optimization_level})
            compiled = Compiled(module, inputs[0])
            compiled.save = lambda path: torch.jit.save(
                torch.jit.trace(module, torch.zeros(inputs[0].shape)), path)
            return compiled

        self.enums = types.ModuleType("torch_aie._enums")
        self.enums.PrecisionPolicy = PrecisionPolicy
        self.module = types.ModuleType("torch_aie")
        self.module.Input, self.module.compile, self.module._enums = Input, compile, self.enums
        self.module.npu = types.SimpleNamespace(Stream=Stream, stream=_StreamCtx)
        self.Compiled = Compiled


def install_torch_aie(monkeypatch):
    """torch_aie, its _enums and torch_npu as the stand-ins, a 310P3 chip and NPU 3; the FakeAie, with .npu."""
    fake = FakeAie()
    npu_module = types.ModuleType("torch_npu")
    npu_module.devices = []
    npu_module.npu = types.SimpleNamespace(set_device=lambda d: npu_module.devices.append(d))
    monkeypatch.setitem(sys.modules, "torch_aie", fake.module)
    monkeypatch.setitem(sys.modules, "torch_aie._enums", fake.enums)
    monkeypatch.setitem(sys.modules, "torch_npu", npu_module)
    monkeypatch.setenv(npu.CHIP_ENV, "310P3")
    monkeypatch.setenv(npu.DEVICE_ENV, "3")
    fake.npu = npu_module
    return fake


def install_tensorrt(monkeypatch, trt=None):
    """``import tensorrt`` gives the FakeTrt (a new one unless given); returns it."""
    trt = trt or FakeTrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


# ---- stand-ins that compute: they run the ONNX they were given with ONNX Runtime on the host, so a fault in
# the graph shows on them as on the device (tests/backends/test_reduce_plumbing.py) ----

def _ort(data: bytes):
    opts = onnxruntime.SessionOptions()
    opts.log_severity_level = 3
    return onnxruntime.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _io_names(data: bytes) -> tuple[list, list]:
    g = onnx.load_from_string(data).graph
    inits = {i.name for i in g.initializer}
    return [v.name for v in g.input if v.name not in inits], [v.name for v in g.output]


class OnnxTrt:
    """The tensorrt module (TensorRT 10 Python API, docs.nvidia.com/deeplearning/tensorrt/latest/_static/
    python-api) as far as the backend calls it, over engines that run their ONNX on the host: the parser keeps
    the bytes, build_serialized_network returns None without a valid profile, a config starts with TF32 set,
    IExecutionContext.set_input_shape / set_tensor_address / execute_async_v3 return False instead of raising,
    and get_tensor_shape has -1 dims until every input shape is set. Buffers are host addresses (HostBuffers)."""

    def __init__(self):
        self.builds = []
        builds = self.builds
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level=None: None})
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace()  # TensorRT 10: explicit batch implied
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", TF32="TF32")
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        self.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
        trt = self

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network

            def parse(self, data):
                self.network.onnx = bytes(data)
                return True

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, low, opt, high):  # pyCore.cpp opt_profile_set_shape: raises, returns None
                if not (len(low) == len(opt) == len(high)) or any(a > b for a, b in zip(low, opt)) or \
                        any(a > b for a, b in zip(opt, high)):
                    raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
                self.shapes[name] = [list(low), list(opt), list(high)]

            def __bool__(self):
                return bool(self.shapes)

        class Config:
            def __init__(self):
                self.flags, self.profiles = {"TF32"}, []

            def set_memory_pool_limit(self, pool, size):
                pass

            def set_flag(self, flag):
                self.flags.add(flag)

            def clear_flag(self, flag):
                self.flags.discard(flag)

            def add_optimization_profile(self, p):
                if not p:
                    return -1
                self.profiles.append(p)
                return len(self.profiles) - 1

        class Builder:
            platform_has_fast_fp16 = True

            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return types.SimpleNamespace(onnx=None)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                inputs, _ = _io_names(network.onnx)
                if not config.profiles or set(config.profiles[0].shapes) != set(inputs):
                    return None  # every dynamic input needs its dims in the profile
                builds.append({"flags": sorted(config.flags), "profile": config.profiles[0].shapes})
                return json.dumps({"onnx": network.onnx.hex(), "profile": config.profiles[0].shapes}).encode()

        class Context:
            def __init__(self, engine):
                self.engine, self.shapes, self.addresses, self._out = engine, {}, {}, None

            def set_input_shape(self, name, shape):
                if name not in self.engine.inputs:
                    return False
                lo, _, hi = self.engine.profile[name]
                if len(shape) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
                    return False
                self.shapes[name], self._out = tuple(shape), None
                return True

            def _outputs(self, feeds):
                return dict(zip(self.engine.outputs, self.engine.session.run(self.engine.outputs, feeds)))

            def get_tensor_shape(self, name):
                if name in self.engine.inputs:
                    return self.shapes.get(name, self.engine.get_tensor_shape(name))
                if set(self.shapes) != set(self.engine.inputs):
                    return self.engine.get_tensor_shape(name)
                if self._out is None:  # shapes resolved as TensorRT's shape inference would: a run on zeros
                    zeros = {n: np.zeros(s, np.float32) for n, s in self.shapes.items()}
                    self._out = {n: v.shape for n, v in self._outputs(zeros).items()}
                return self._out[name]

            def set_tensor_address(self, name, ptr):
                if name not in (*self.engine.inputs, *self.engine.outputs):
                    return False
                self.addresses[name] = ptr
                return True

            def execute_async_v3(self, stream):
                names = (*self.engine.inputs, *self.engine.outputs)
                if set(self.shapes) != set(self.engine.inputs) or any(n not in self.addresses for n in names):
                    return False
                feeds = {n: np.ctypeslib.as_array((ctypes.c_float * int(np.prod(s))).from_address(
                    self.addresses[n])).reshape(s).copy() for n, s in self.shapes.items()}
                for n, v in self._outputs(feeds).items():
                    v = np.ascontiguousarray(v, np.float32)
                    ctypes.memmove(self.addresses[n], v.ctypes.data, v.nbytes)
                return True

        class Engine:
            def __init__(self, meta):
                data = bytes.fromhex(meta["onnx"])
                self.inputs, self.outputs = _io_names(data)
                self.profile, self.session = meta["profile"], _ort(data)
                self.num_io_tensors = len(self.inputs) + len(self.outputs)

            def get_tensor_name(self, i):
                return (*self.inputs, *self.outputs)[i]

            def get_tensor_mode(self, name):
                return trt.TensorIOMode.INPUT if name in self.inputs else trt.TensorIOMode.OUTPUT

            def get_tensor_shape(self, name):
                if name in self.profile:
                    lo, _, hi = self.profile[name]
                    return tuple(a if a == b else -1 for a, b in zip(lo, hi))
                return (-1,)

            def get_tensor_profile_shape(self, name, index):
                return [tuple(s) for s in self.profile[name]]

            def create_execution_context(self):
                return Context(self)

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                return Engine(json.loads(bytes(data)))

        self.OnnxParser, self.Builder, self.Runtime = Parser, Builder, Runtime


class OnnxInferSession:
    """ais_bench's InferSession (Ascend's tools repo, ais-bench_workload/tool/ais_bench/ais_bench/infer/
    interface.py, the later release) over an "OM" that is the ONNX the stand-in atc copied: get_inputs /
    get_outputs with ATC's decorated output names, infer(feeds, mode) on a list in the OM's input order
    (the ait benchmark API guide's add_model samples feed [ndata0, ndata1]), each feed's byte size checked
    against the input's as aclruntime's CheckInVectorAndFillBaseTensor does."""
    opened = []

    def __init__(self, device_id, model_path):
        data = open(model_path, "rb").read()
        self.model, self.session = onnx.load_from_string(data), _ort(data)
        self.freed = False
        OnnxInferSession.opened.append(self)

    def get_inputs(self):
        inits = {i.name for i in self.model.graph.initializer}
        return [types.SimpleNamespace(name=v.name, shape=[d.dim_value for d in v.type.tensor_type.shape.dim],
                                      datatype="FLOAT") for v in self.model.graph.input if v.name not in inits]

    def get_outputs(self):
        made = {t: n.name for n in self.model.graph.node for t in n.output}
        return [types.SimpleNamespace(name=f"{made[o.name]}:0:{o.name}", shape=[]) for o in self.model.graph.output]

    def infer(self, feeds, mode="static", custom_sizes=100000, out_array=True):
        ins = self.get_inputs()
        if len(feeds) != len(ins):
            raise RuntimeError(f"input num {len(feeds)} not match model input num {len(ins)}")
        for i, (f, v) in enumerate(zip(feeds, ins)):
            if f.nbytes != 4 * int(np.prod(v.shape)):
                raise RuntimeError(f"Check i:{i} name:{v.name} in size:{f.nbytes} needsize:{4 * np.prod(v.shape)} "
                                   "not match")
        names = [o.name for o in self.model.graph.output]
        return self.session.run(names, {v.name: f for v, f in zip(ins, feeds)})

    def summary(self):
        return types.SimpleNamespace(exec_time_list=[])

    def reset_summaryinfo(self):
        pass

    def free_resource(self):
        self.freed = True

    @staticmethod
    def finalize():
        pass
