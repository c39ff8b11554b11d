"""--reduce on TensorRT and Ascend, checked against stand-ins that compute: the reduction runner is generic
over Backend.run_subgraph, so a search on these backends converts and runs subgraphs fed at several named
inputs through each backend's own convert code (build_engine_for / ATC's command) and its own session calls
(set_input_shape, set_tensor_address, execute_async_v3 / ais_bench's InferSession.infer on a feeds list).

The stand-ins follow the real signatures (cited below) and run the ONNX they were given with ONNX Runtime on
the host, so a fault in the graph shows on them as it would on the device; what they cannot show is a
device's own numerics. A broken port of a small network with a residual block (its Add lowered to Sub, the
node fed by two module outputs) must reduce to that one node with two named inputs, on each backend.
"""
from __future__ import annotations

import ctypes
import json
import os
import stat
import sys
import types

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from posegate.backends import BACKENDS, EngineIO
from posegate.backends import ascend_backend as asc
from posegate.backends import atc as atc_tool
from posegate.backends import tensorrt_backend as trt_backend
from posegate.diagnosis.localize import localize
from posegate.diagnosis.probes import OrtProbe
from posegate.diagnosis.reduce import CannotReduce, reduce, replay, same_failure, write
from posegate.diagnosis.reduce.runners import SubgraphRunner, runner

STAGE = "convert"
pytestmark = pytest.mark.stage


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


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        a = self.conv1(x)
        return self.conv2(torch.relu(a)) + a


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.block, self.head = nn.Conv2d(3, 4, 3, padding=1), Block(), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


@pytest.fixture
def broken(tmp_path):
    """Net exported, its residual Add lowered to Sub; two parity inputs; the localisation of the break."""
    torch.manual_seed(0)
    net = Net().eval()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.from_numpy(x[:1]),), str(path), input_names=["x"], output_names=["y"],
                      opset_version=17, dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    model = onnx.load(str(path))
    node = next(n for n in model.graph.node if n.op_type == "Add")
    node.op_type = "Sub"
    path = tmp_path / "net-broken.onnx"
    onnx.save(model, str(path))
    io = EngineIO("x", (("y", "y"),))
    loc = localize(net, OrtProbe(path, io), x[:1], 1e-4, ("y",), {"y": "y"})
    assert loc.first is not None and loc.first["node"] == node.name, loc.describe()
    return types.SimpleNamespace(net=net, x=x, path=path, io=io, loc=loc, node=node.name, tmp=tmp_path)


def _reduce(case, run):
    result, data = reduce(case.path, case.net, case.loc, run, case.x, case.io, ("y",))
    assert data is not None and result.reproduces, result.describe()
    assert result.nodes == [case.node] and len(result.inputs) == 2, result.describe()  # two module outputs feed it
    assert result.conversions == 1, result.describe()
    return result, data


@pytest.fixture
def tensorrt_here(monkeypatch):
    """The stand-in as `tensorrt`, host buffers for TorchCuda, and the backend available: for this test only."""
    trt = OnnxTrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_backend, "TorchCuda", trt_backend.HostBuffers)
    monkeypatch.setattr(BACKENDS["tensorrt"], "unavailable_reason", lambda: None)
    return trt


def test_plumbing_tensorrt_reduction_feeds_several_named_inputs_and_replays(broken, tensorrt_here):
    result, data = _reduce(broken, runner("tensorrt", "fp32"))
    build, = tensorrt_here.builds
    feeds = data[1]
    # one profile, each input at its feed's exact shape as min, opt and max; TF32 cleared as convert clears it
    assert build["profile"] == {n: [list(a.shape)] * 3 for n, a in feeds.items()} and build["flags"] == []
    folder = write(broken.tmp / "bundle", result, data, "residual-add-as-sub", None)
    now, meta = replay(folder)
    assert same_failure(now, meta), now
    shapes = ",".join(f"{n}:{'x'.join(str(d) for d in a.shape)}" for n, a in feeds.items())
    assert meta["converter"]["command"] == ["trtexec", "--onnx=model.onnx", "--noTF32", f"--shapes={shapes}",
                                            "--saveEngine=model.engine"]


def test_plumbing_tensorrt_fp16_subgraph_sets_the_fp16_flag(broken, tensorrt_here):
    SubgraphRunner("tensorrt", "fp16").run(*_subgraph(broken))
    assert tensorrt_here.builds[0]["flags"] == ["FP16"]


def _subgraph(case):
    _, (sub, feeds, _) = _reduce(case, SubgraphRunner("onnxruntime", "fp32"))
    return sub, feeds


@pytest.fixture
def ascend_here(tmp_path, monkeypatch):
    """An `atc` on PATH that records its argv and writes the ONNX it was given as the OM, ais_bench importable
    as the stand-in, a chip named, and ACL's release hook kept off the process's exit: for this test only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "atc_calls.jsonl"
    script = bin_dir / "atc"
    script.write_text(f"""#!{sys.executable}
import json, shutil, sys
argv = sys.argv[1:]
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps(argv) + "\\n")
value = {{a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if "=" in a}}
shutil.copyfile(value["--model"], value["--output"] + ".om")
print("ATC run success")
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(atc_tool.CHIP_ENV, "310P3")
    interface = types.ModuleType("ais_bench.infer.interface")
    interface.InferSession = OnnxInferSession
    modules = (("ais_bench", types.ModuleType("ais_bench")), ("ais_bench.infer", types.ModuleType("ais_bench.infer")),
               ("ais_bench.infer.interface", interface))
    for name, mod in modules:
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(asc, "ACL", asc.AclProcess(register=lambda fn: None))
    monkeypatch.setattr(OnnxInferSession, "opened", [])
    return calls


def test_plumbing_ascend_reduction_runs_atc_with_every_input_shape_and_replays(broken, ascend_here):
    result, data = _reduce(broken, runner("ascend", "fp16"))
    feeds = data[1]
    argv, = [json.loads(line) for line in ascend_here.read_text().splitlines()]
    shapes = ";".join(f"{n}:{','.join(str(d) for d in a.shape)}" for n, a in feeds.items())
    assert f"--input_shape={shapes}" in argv and "--input_format=ND" in argv
    assert argv[-1] == "--soc_version=Ascend310P3"
    assert not any("precision_mode" in a for a in argv)  # fp16: ATC's default, as convert builds the seeds' OMs
    assert all(s.freed for s in OnnxInferSession.opened)  # each subgraph session released, ACL left running
    folder = write(broken.tmp / "bundle", result, data, "residual-add-as-sub", None)
    now, meta = replay(folder)
    assert same_failure(now, meta), now
    assert meta["converter"]["command"][:5] == ["atc", "--framework=5", "--model=model.onnx", "--output=model",
                                                "--input_format=ND"]
    assert f'--input_shape="{shapes}"' in meta["converter"]["command"]


def test_plumbing_ascend_fp32_subgraph_passes_the_chips_fp32_flags(broken, ascend_here):
    SubgraphRunner("ascend", "fp32").run(*_subgraph(broken))
    argv = json.loads(ascend_here.read_text().splitlines()[0])
    assert "--precision_mode=force_fp32" in argv  # the 310P's fp32 build, as atc_command's


def test_a_backend_without_a_subgraph_runner_is_refused_naming_it():
    without = sorted(n for n, b in BACKENDS.items() if b.subgraph_problem() is not None)
    assert {"onnxruntime", "openvino", "tensorrt", "ascend"}.isdisjoint(without) and "torch" in without
    for name in without:
        with pytest.raises(CannotReduce, match=f"^{name} has no subgraph runner"):
            runner(name, "fp32")
