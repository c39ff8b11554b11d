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

import json
import os
import stat
import sys
import types

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from posegate.backends import BACKENDS, EngineIO, npu
from posegate.backends.ascend import backend as asc
from posegate.backends.probing import OrtProbe
from posegate.backends.tensorrt import backend as trt_backend
from posegate.compat.onnx_export import exporter_keywords
from posegate.diagnosis.localize import localize
from posegate.diagnosis.reduce import CannotReduce, reduce, replay, same_failure, write
from posegate.diagnosis.reduce.runners import SubgraphRunner, runner
from posegate.diagnosis.reduce.shape import Node, named_node
from tests.standins import HostBuffers, OnnxInferSession, OnnxTrt

STAGE = "convert"
pytestmark = pytest.mark.stage


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
                      opset_version=17, dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, **exporter_keywords())
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
    monkeypatch.setattr(trt_backend, "TorchCuda", HostBuffers)
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
    monkeypatch.setenv(npu.CHIP_ENV, "310P3")
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


def test_the_node_a_shape_error_names_is_read_in_each_engines_spelling():
    """OpenVINO's ONNX frontend names the node in "<Node(Reshape): X>": X is the node's name on 2024.4 and its
    output tensor on later releases; ONNX Runtime quotes the node name. A prefix of a longer name never wins."""
    nodes = [Node("/a/Reshape", "Reshape", ("x", "s"), ("/a/Reshape_output_0",)),
             Node("/a/Reshape_1", "Reshape", ("y", "s"), ("/a/Reshape_1_output_0",))]
    frontend = "[ONNX Frontend] Conversion failed for Reshape-17\nWhile validating ONNX node '<Node(Reshape): {}>'"
    assert named_node(frontend.format("/a/Reshape_1"), nodes) == "/a/Reshape_1"  # OpenVINO 2024.4
    assert named_node(frontend.format("/a/Reshape_output_0"), nodes) == "/a/Reshape"  # OpenVINO 2026
    assert named_node("Non-zero status code returned while running Reshape node. Name:'/a/Reshape_1' ...",
                      nodes) == "/a/Reshape_1"
    assert named_node("Reshape failed: input size mismatch", nodes) is None
