"""Minimal reproducers on the fault zoo: each broken port of lightweight_openpose_omz0001 (posegate/faults.py)
reduces to a subgraph that shows the same failure on ONNX Runtime, contains the node the fault changed,
is at most 10 nodes for a one-node fault, replays from its bundle alone, and costs at most 2 log2(N) + 10
conversions; the faithful export has nothing to reduce.

Inputs: two 368x128 windows of the parity image (the width axis is dynamic), so "every parity input" is
more than one; with the synthetic set, seeded noise as test_localize uses.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from models import MODELS
from posegate.backends import EngineIO
from posegate.backends.openvino import OvProbe
from posegate.backends.openvino.advice import ov_keep_fp32
from posegate.backends.probing import OrtProbe
from posegate.compat.onnx_export import exporter_keywords
from posegate.context import SYNTHETIC
from posegate.diagnosis.faults import FAULTS, PRECISION_FAULTS, SHAPE_FAULTS
from posegate.diagnosis.localize import localize, tolerance_of
from posegate.diagnosis.reduce import NOTHING, budget, reduce, replay, same_failure, write
from posegate.diagnosis.reduce import case as reduce_case
from posegate.diagnosis.reduce.reference import capture
from posegate.diagnosis.reduce.runners import SubgraphRunner
from posegate.diagnosis.reduce.search import SHAPE, judge
from posegate.diagnosis.reduce.shape import reduce_shape_error
from posegate.storage import serial

STAGE = "infer"
pytestmark = pytest.mark.stage
SPEC = MODELS["lightweight_openpose_omz0001"]
WIDTH = 128
ZOO = [f for f in FAULTS if f != "resize-mode"]  # resize-mode needs a model with a Resize: HigherHRNet, --full
ONE_NODE = {"channel-swap", "conv-scaled-3pct", "dilation-dropped", "elu-as-relu", "relu-as-relu6", "head-bias-0.01"}


@pytest.fixture(scope="module")
def zoo(pipeline, run_context, tmp_path_factory):
    spec = SPEC
    path = pipeline.onnx(spec, 17)
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    full = pipeline.parity_batch(spec, spec.profile("368x640"), dataset, 1).x
    w = full.shape[-1]
    x = np.concatenate([full[..., w // 2 - WIDTH:w // 2], full[..., w // 2:w // 2 + WIDTH]]).copy()
    if dataset.name == SYNTHETIC:
        x = np.random.default_rng(0).uniform(-0.5, 0.5, x.shape).astype(np.float32)
    io = EngineIO.of(spec)
    probe = OrtProbe(path, io)
    got = probe.run(x[:1], sorted(probe.float_tensors()))
    ranges = {k: float(np.max(np.abs(v))) for k, v in got.items()}
    held = x.shape[0] * sum(probe.sizes(x[:1]).values())  # every intermediate at once, what streaming avoids
    return SimpleNamespace(spec=spec, model=pipeline.torch_model(spec), path=path, base=onnx.load(str(path)), x=x,
                           io=io, held=held, ranges=ranges, tmp=tmp_path_factory.mktemp("reduce"), pipeline=pipeline,
                           tolerance=tolerance_of(spec, "fp32", spec.output_names))


def _reduce(zoo, path):
    loc = localize(zoo.model, OrtProbe(path, zoo.io), zoo.x[:1], zoo.tolerance, tuple(zoo.spec.output_names),
                   {n: n for n in zoo.spec.output_names})
    return reduce(path, zoo.model, loc, SubgraphRunner("onnxruntime", "fp32"), zoo.x, zoo.io,
                  tuple(zoo.spec.output_names))


def test_faithful_export_has_nothing_to_reduce(zoo):
    result, data = _reduce(zoo, zoo.path)
    assert data is None and result.nothing.startswith(NOTHING), result.describe()
    assert result.conversions == 0


@pytest.mark.parametrize("fault", ZOO)
def test_fault_reduces_to_a_bundle_that_replays_it(zoo, fault, record):
    injected = FAULTS[fault](zoo.base, ranges=zoo.ranges)
    path = zoo.tmp / f"{fault}.onnx"
    onnx.save(injected.model, str(path))
    result, data = _reduce(zoo, path)
    if data is None and result.nothing.startswith(NOTHING) and zoo.pipeline.checkpoint_path(zoo.spec) is None:
        pytest.skip(f"{fault} changes no compared tensor beyond its tolerance with seeded weights "
                    f"({zoo.pipeline.weights_identity(zoo.spec)}); put {zoo.spec.checkpoint.filename} in --weights-dir")
    record(fault=fault, reduction=result.as_dict())
    assert data is not None, result.describe()
    assert result.reproduces and all(r["first"] == result.target["tensor"] for r in result.rows), result.describe()
    assert set(injected.nodes) & set(result.nodes), f"{fault} injected at {injected.nodes[:3]}; {result.describe()}"
    if fault in ONE_NODE:
        assert len(result.nodes) <= 10, result.describe()
        assert result.peak_reference_bytes < zoo.held / 10, (result.peak_reference_bytes, zoo.held)
    assert result.backend_runs <= budget(len(zoo.base.graph.node)), result.describe()
    folder = write(zoo.tmp / f"bundle-{fault}", result, data, f"test_reduce[{fault}]", zoo.spec)
    now, meta = replay(folder)
    assert same_failure(now, meta), (now, result.rows)
    assert [(r["first"], r["class"]) for r in now] == [(r["first"], r["class"]) for r in result.rows]


def test_replay_on_a_clean_checkout_fails_while_broken_and_passes_once_fixed(zoo, tmp_path):
    """`pytest --replay` in a fresh process with an empty cache and no data or weights: the bundle alone.
    The same bundle with the fault undone in its model.onnx (ReLU back to ELU) must pass."""
    injected = FAULTS["elu-as-relu"](zoo.base)
    path = tmp_path / "elu.onnx"
    onnx.save(injected.model, str(path))
    result, data = _reduce(zoo, path)
    assert data is not None, result.describe()
    broken = write(tmp_path / "broken", result, data, "elu-as-relu", zoo.spec)
    fixed = write(tmp_path / "fixed", result, data, "elu-as-relu, fixed", zoo.spec)
    model = onnx.load(str(fixed / "model.onnx"))
    node = next(n for n in model.graph.node if n.name in injected.nodes)
    node.op_type = "Elu"
    node.attribute.extend([onnx.helper.make_attribute("alpha", 1.0)])
    onnx.save(model, str(fixed / "model.onnx"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEGATE_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                           f"--replay={broken}", f"--replay={fixed}", f"--cache-dir={tmp_path / 'empty-cache'}"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 failed, 1 passed" in out and "still fails the failure the bundle recorded" in out, out
    assert not any((tmp_path / "empty-cache").rglob("*.onnx")), "the replay built something in the cache"


def test_an_error_that_accumulates_is_bisected_back_to_where_it_enters(tmp_path, record):
    """Every convolution of a chain 0.1 % too large: none alone leaves its tolerance, their sum does at the
    third. The target's node alone does not reproduce it, so the start is bisected back until it does, and
    within the budget; tensors earlier in the subgraph stay within tolerance (the same failure, no drift)."""
    torch.manual_seed(0)
    layers = []
    for _ in range(12):  # near-identity 1x1 convolutions without bias: the error compounds, 0.1 % a layer
        conv = nn.Conv2d(4, 4, 1, bias=False)
        conv.weight.data = (torch.eye(4) + 0.01 * torch.rand(4, 4))[:, :, None, None]
        layers += [conv, nn.ReLU()]
    net = nn.Sequential(*layers).eval()
    x = torch.rand(2, 4, 16, 16)
    path = tmp_path / "chain.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"], opset_version=17,
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, **exporter_keywords())
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * np.float32(1.001), init.name))
    broken = tmp_path / "chain-broken.onnx"
    onnx.save(model, str(broken))
    io = EngineIO("x", (("y", "y"),))
    loc = localize(net, OrtProbe(broken, io), x[:1].numpy(), 2.5e-3, ("y",), {"y": "y"})
    assert loc.first is not None and loc.first["verdict"].startswith("error accumulated"), loc.describe()
    result, data = reduce(broken, net, loc, SubgraphRunner("onnxruntime", "fp32"), x.numpy(), io, ("y",))
    record(reduction=result.as_dict())
    assert data is not None and result.reproduces, result.describe()
    assert result.tried[0]["nodes"] == 1 and not result.tried[0]["reproduces"]  # the node alone: not the failure
    assert 1 < len(result.nodes) < len(model.graph.node) and result.nodes[-1] == loc.first["node"]
    assert result.conversions <= budget(len(model.graph.node)) - result.localisation_runs
    first = [r for r in result.rows]
    assert all(r["first"] == result.target["tensor"] for r in first), first


@pytest.mark.full
def test_higherhrnet_reduces_streaming(pipeline, tmp_path, record):
    """HigherHRNet's ~2000 intermediates: localisation streams them in chunks, the reduction asks torch for
    the few tensors each candidate needs; neither ever holds them all."""
    spec = MODELS["higherhrnet_w32_512"]
    model = pipeline.torch_model(spec)
    injected = FAULTS["resize-mode"](onnx.load(str(pipeline.onnx(spec, 17))))
    broken = tmp_path / "resize-mode.onnx"
    onnx.save(injected.model, str(broken))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, *spec.sample_dims)).astype(np.float32)
    io = EngineIO.of(spec)
    loc = localize(model, OrtProbe(broken, io), x[:1], tolerance_of(spec, "fp32", spec.output_names),
                   tuple(spec.output_names), {n: n for n in spec.output_names})
    result, data = reduce(broken, model, loc, SubgraphRunner("onnxruntime", "fp32"), x, io, tuple(spec.output_names))
    record(reduction=result.as_dict())
    assert data is not None and result.reproduces, result.describe()
    assert injected.nodes[0] in result.nodes and len(result.nodes) <= 10, result.describe()
    held = x.shape[0] * sum(OrtProbe(broken, io).sizes(x[:1]).values())
    assert result.peak_reference_bytes < held / 10, (result.peak_reference_bytes, held)
    assert result.backend_runs <= budget(len(injected.model.graph.node)), result.describe()


def test_openvino_fp16_failure_reduces_with_its_converter_call(zoo, tmp_path, record):
    """A failure of OpenVINO's 16-bit compute (bf16 or f16, as the backend asks this CPU) that fp32 does not
    have: a convolution whose signal 16-bit rounding loses (faults.rounded_away). It reduces on OpenVINO at
    fp16, and the bundle names the ovc call and the inference precision the suite uses."""
    pytest.importorskip("openvino", reason="openvino is not installed: pip install openvino")
    injected = PRECISION_FAULTS["rounded-away-in-16-bit"](zoo.base, ranges=zoo.ranges)
    source = tmp_path / "rounded.onnx"
    onnx.save(injected.model, str(source))
    ir = ov_keep_fp32(source, [], tmp_path / "fp16.xml", compress=True)
    tolerance = tolerance_of(zoo.spec, "fp16", zoo.spec.output_names)
    loc = localize(zoo.model, OvProbe(ir, zoo.io, "fp16"), zoo.x[:1], tolerance, tuple(zoo.spec.output_names),
                   {n: n for n in zoo.spec.output_names})
    assert loc.first is not None, loc.describe()
    # the parity inputs the full model fails on at that tensor (a marginal fp16 failure need not show on all)
    target = loc.first["tensor"]
    ref = capture(zoo.model, zoo.x, {target: loc.first["module"]}, {}, tuple(zoo.spec.output_names))[target]
    probe = OvProbe(ir, zoo.io, "fp16")
    rows = [r for r in range(len(zoo.x))
            if judge(probe.run(zoo.x[r:r + 1], [target])[target], ref[r:r + 1], tolerance)["class"]]
    assert rows
    result, data = reduce(source, zoo.model, loc, SubgraphRunner("openvino", "fp16"), zoo.x, zoo.io,
                          tuple(zoo.spec.output_names), rows)
    record(reduction=result.as_dict())
    assert data is not None and result.reproduces, result.describe()
    assert set(injected.nodes) & set(result.nodes) and len(result.nodes) <= 10, result.describe()
    folder = write(tmp_path / "bundle", result, data, "rounded-away-in-16-bit", zoo.spec)
    now, meta = replay(folder)
    assert same_failure(now, meta), now
    assert meta["converter"]["command"] == ["ovc", "model.onnx", "--output_model", "model.xml",
                                            "--compress_to_fp16=True"]
    assert "INFERENCE_PRECISION_HINT" in meta["converter"]["python"]


def _shape_fault(zoo, backend):
    """The reshape-baked-width port on ``backend``: the full export raises (a shape error, not numbers)."""
    injected = SHAPE_FAULTS["reshape-baked-width"](zoo.base)
    path = zoo.tmp / f"reshape-baked-width-{backend}.onnx"
    onnx.save(injected.model, str(path))
    with pytest.raises(Exception) as raised:
        SubgraphRunner(backend, "fp32").run(injected.model, {zoo.io.input: zoo.io.to_engine(zoo.x)})
    return injected, path, raised.value


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_shape_error_reduces_to_the_node_the_backend_names_and_replays(zoo, backend, record):
    pytest.importorskip(backend, reason=f"{backend} is not installed")
    injected, path, error = _shape_fault(zoo, backend)
    assert injected.nodes[0] in str(error), error  # both engines name the failing node
    result, data = reduce_shape_error(path, zoo.model, error, SubgraphRunner(backend, "fp32"), zoo.x, zoo.io,
                                      tuple(zoo.spec.output_names), zoo.tolerance)
    record(reduction=result.as_dict())
    assert data is not None and result.reproduces, result.describe()
    assert result.target["node"] == injected.nodes[0] and result.target["class"] == SHAPE, result.target
    assert injected.nodes[0] in result.nodes and len(result.nodes) <= 10, result.describe()
    assert result.backend_runs <= budget(len(injected.model.graph.node)), result.describe()
    folder = write(zoo.tmp / f"bundle-shape-{backend}", result, data, f"reshape-baked-width-{backend}", zoo.spec)
    now, meta = replay(folder)
    assert same_failure(now, meta) and all(v["class"] == SHAPE for v in now), now


def test_shape_error_without_a_node_name_is_found_by_bisecting_prefixes(zoo, record):
    """A backend whose message names no node: the first prefix of the graph that raises names it, within the
    budget (the prefixes' conversions included)."""
    injected, path, error = _shape_fault(zoo, "onnxruntime")
    names = [n.name for n in injected.model.graph.node]

    class Anonymous(SubgraphRunner):
        def run(self, model, feeds):
            try:
                return super().run(model, feeds)
            except Exception as e:
                text = str(e)
                for n in sorted(names, key=len, reverse=True):
                    text = text.replace(n, "<node>")
                raise RuntimeError(text) from None

    anonymous = Anonymous("onnxruntime", "fp32")
    with pytest.raises(RuntimeError) as raised:
        anonymous.run(injected.model, {zoo.io.input: zoo.io.to_engine(zoo.x)})
    assert injected.nodes[0] not in str(raised.value)
    result, data = reduce_shape_error(path, zoo.model, raised.value, anonymous, zoo.x, zoo.io,
                                      tuple(zoo.spec.output_names), zoo.tolerance)
    record(reduction=result.as_dict())
    assert data is not None and result.target["node"] == injected.nodes[0], result.describe()
    assert not result.target["named_by_backend"] and len(result.nodes) <= 10, result.describe()
    assert 1 < result.conversions <= budget(len(names)), result.describe()


def test_a_failing_case_whose_backend_raises_a_shape_error_gets_a_bundle_that_passes_once_fixed(zoo, tmp_path,
                                                                                               monkeypatch):
    """test_infer's --reduce path for a raised shape error (reduce.case.run_shape): the case's ONNX, its
    backend's runner, the spec's tolerance, a bundle that replays the error. The vendor's fix (the Reshape
    keeps the width it is given: 0 copies a dim) runs, its tensor then matches torch's: the replay passes."""
    injected, path, error = _shape_fault(zoo, "onnxruntime")
    monkeypatch.setattr(reduce_case, "source_onnx", lambda *a: (path, zoo.io))
    case = SimpleNamespace(spec=zoo.spec, backend="onnxruntime", precision="fp32", profile=zoo.spec.profile("368x640"),
                           batch=1)
    result, folder = reduce_case.run_shape(zoo.pipeline, case, error, zoo.x, tmp_path / "bundle", "test_infer[...]")
    assert folder is not None and injected.nodes[0] in result.nodes and result.tolerance == zoo.tolerance
    now, meta = replay(folder)
    assert same_failure(now, meta), now
    assert result.target["tensor"] in serial.load(folder / "expected.npz")  # torch has the value it is held to
    model = onnx.load(str(folder / "model.onnx"))
    shape = next(n for n in model.graph.node if n.name == injected.nodes[0]).input[1]
    init = next(i for i in model.graph.initializer if i.name == shape)
    init.CopyFrom(onnx.numpy_helper.from_array(np.array([0, 0, 0, -1], np.int64), shape))
    onnx.save(model, str(folder / "model.onnx"))
    now, meta = replay(folder)
    assert not any(v["class"] for v in now) and not same_failure(now, meta), now
