"""The ncnn backend (pnnx -> ncnn) on small networks built here, in seconds: the faithful conversion at
other batches and sizes than it saw, fp16 really reduced and reported as what it computes in, and the
detectors on broken inputs (a graph pnnx cannot lower, a truncated .bin, a .param that is not one, a
supplied model without its .bin, a missing converter). The stage tests run it on every model under
--full (the backend is full_only); --localize runs its probe (here through diagnose, on a broken layer)."""
from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models import MODELS
from posegate.backends import BACKENDS, EngineIO, ModelSource
from posegate.backends.ncnn import availability, convert, precision
from posegate.backends.ncnn import backend as backend_module
from posegate.backends.ncnn.probe import NcnnProbe, scoped_names
from posegate.backends.ncnn.session import NcnnSession, pnnx_io
from posegate.cases.target import Target
from posegate.compat.onnx_export import exporter_keywords
from posegate.diagnosis import diagnose
from posegate.metrics.rounding import reordered_sum_tolerance
from posegate.spec import InputProfile, Tolerance

STAGE = "convert"
pytestmark = pytest.mark.stage
NCNN = BACKENDS["ncnn"]


def _needs_ncnn():
    reason = NCNN.unavailable_reason()
    if reason:
        pytest.skip(f"ncnn unavailable: {reason}")


class Tiny(torch.nn.Module):
    """Two outputs, a stride, a residual sum and an upsampling whose size follows the input's."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.down = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.mix = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.head = torch.nn.Conv2d(8, 4, 1)
        self.act1, self.act2 = torch.nn.ReLU(), torch.nn.ReLU()

    def forward(self, x):
        y = self.act1(self.down(x))
        y = y + self.act2(self.mix(y))
        a = self.head(y)
        return a, torch.nn.functional.interpolate(a, scale_factor=2.0, mode="nearest")


class Sliced(torch.nn.Module):
    """VideoPose3D's residual pattern: a slice whose end is computed from the input's length."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 4, 3)

    def forward(self, x):
        return x[:, :, 1:x.shape[2] - 1] + self.conv(x)


class PassThrough(Sliced):
    """An output that is the input itself: pnnx 20261020 crashes on it (its ONNX loader rejects the graph)."""

    def forward(self, x):
        return self.conv(x), x


def _spec(net_type, dims, other, outputs=("a", "b"), axes=("batch", "channels", "height", "width")):
    """A real ModelSpec (the Lightweight OpenPose one with this network and interface): one profile at
    ``dims`` with a free last axis, one at ``other``."""
    free = (*dims[:-1], None)
    profiles = (InputProfile("free", free, "x", (1,), perf_dims=tuple(dims)),
                InputProfile("other", tuple(other), "x", (1,)))
    return replace(MODELS["lightweight_openpose"], name=f"tiny-{net_type.__name__.lower()}", build_network=net_type,
                   input_name="data", output_names=outputs, profiles=profiles, input_axes=axes, probe_dims=None,
                   artifacts=(), known_failures={},
                   # relative to each tensor's range: reordered sums of 3x3x8 terms through three convolutions
                   tolerances={"fp32": {o: Tolerance(max_rel=reordered_sum_tolerance(1.0, 3 * 3 * 8, np.float32,
                                                                                     layers=3)) for o in outputs}})


def _export(net, spec, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros((1, *spec.sample_dims)),), str(path), opset_version=NCNN.opset,
                          input_names=[spec.input_name], output_names=list(spec.output_names),
                          dynamic_axes=spec.dynamic_axes(), **exporter_keywords())
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The Tiny network, its spec, its ONNX export and its ncnn conversions at fp32 and fp16."""
    _needs_ncnn()
    folder = tmp_path_factory.mktemp("ncnn-tiny")
    net = Tiny().eval()
    spec = _spec(Tiny, (3, 32, 48), (3, 32, 40))
    onnx_path = _export(net, spec, folder / "tiny.onnx")
    source = ModelSource(spec, lambda: net, lambda opset: onnx_path)
    built = {}
    for p in ("fp32", "fp16"):
        built[p] = folder / p
        built[p].mkdir()
        NCNN.convert(source, built[p], p, None)
    return net, spec, source, built


def _reference(net, x):
    with torch.no_grad():
        return [o.numpy() for o in net(torch.from_numpy(x))]


def _bound(ref, dtype):
    """Reordered sums of 3x3x8 terms through three convolutions, at the reference's scale."""
    return reordered_sum_tolerance(float(np.abs(ref).max()), 3 * 3 * 8, dtype, layers=3)


def test_ncnn_fp32_matches_torch_at_batches_and_widths_the_conversion_never_saw(tiny):
    net, spec, source, built = tiny
    with NCNN.load(built["fp32"], source, "fp32") as session:
        assert session.info.execution == "f32"
        for shape in ((1, 3, 32, 48), (3, 3, 32, 40), (2, 3, 32, 64)):  # 64: neither profile's width
            x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
            got = session.run({spec.input_name: x})
            for name, ref in zip(spec.output_names, _reference(net, x)):
                assert got[name].shape == ref.shape, (shape, name)
                err = float(np.abs(got[name] - ref).max())
                assert err <= _bound(ref, np.float32), f"{shape} {name}: max_abs {err:.3g}"


def test_ncnn_fp16_is_really_reduced_and_reports_what_it_computes_in(tiny):
    import ncnn  # noqa: PLC0415 (optional engine: skipped above where it is absent)
    net, spec, source, built = tiny
    arm_fp16 = bool(ncnn.cpu_support_arm_asimdhp())
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 48)).astype(np.float32)
    refs = _reference(net, x)
    with NCNN.load(built["fp16"], source, "fp16") as session:
        assert session.info.execution == ("f16" if arm_fp16 else "bf16")
        got = session.run({spec.input_name: x})
    # fp16 weights in the .bin: half the bytes of the fp32 one, less the shared framing
    assert (built["fp16"] / convert.BIN).stat().st_size < 0.6 * (built["fp32"] / convert.BIN).stat().st_size
    # 8 mantissa bits (bf16) or 11 (fp16): off the fp32 bound, inside the reduced type's own
    reduced = 2.0 ** -8 if not arm_fp16 else 2.0 ** -11
    for name, ref in zip(spec.output_names, refs):
        err = float(np.abs(got[name] - ref).max())
        assert err > _bound(ref, np.float32), f"{name}: fp16 as exact as fp32 ({err:.3g}): not reduced"
        assert err <= 8 * reduced * math.sqrt(3 * 3 * 8 * 3) * float(np.abs(ref).max()), f"{name}: {err:.3g}"


def test_ncnn_precision_plan_sets_every_option_and_refuses_int8():
    _needs_ncnn()
    import ncnn  # noqa: PLC0415 (optional engine, lazy)
    opt = ncnn.Option()  # the binding's defaults turn fp16 storage on: fp32 must turn it off
    precision.plan("fp32", arm_fp16=True).apply(opt)
    assert not (opt.use_fp16_storage or opt.use_fp16_arithmetic or opt.use_bf16_storage)
    assert precision.plan("fp16", arm_fp16=True).execution == "f16"
    x86 = precision.plan("fp16", arm_fp16=False)
    x86.apply(opt)
    assert x86.execution == "bf16" and opt.use_bf16_storage and not opt.use_fp16_storage
    with pytest.raises(ValueError, match="ncnn has no int8 path"):
        precision.plan("int8", arm_fp16=False)
    assert NCNN.artifact_settings("fp16")["fp16_weights"] and not NCNN.artifact_settings("fp32")["fp16_weights"]


def test_ncnn_conversion_asks_pnnx_for_each_dynamic_axis_at_two_sizes():
    lop, mspn = MODELS["lightweight_openpose"], MODELS["mspn_2xstg"]
    assert convert.input_shapes(lop) == ([1, 3, 368, 640], [1, 3, 368, 496])  # the 368xW profile's width
    assert convert.input_shapes(mspn) == ([1, 3, 256, 192], None)
    with pytest.raises(convert.ConvertError, match="no profile gives it a size other than 48"):
        convert.input_shapes(_spec(Tiny, (3, 32, 48), (3, 32, 48)))


def test_ncnn_graph_pnnx_cannot_lower_fails_naming_the_layers(tmp_path):
    _needs_ncnn()
    spec = _spec(Sliced, (4, 16), (4, 24), outputs=("y",), axes=("batch", "channels", "frames"))
    onnx_path = _export(Sliced().eval(), spec, tmp_path / "sliced.onnx")
    with pytest.raises(convert.ConvertError) as e:
        NCNN.convert(ModelSource(spec, Sliced, lambda opset: onnx_path), tmp_path, "fp32", None)
    text = str(e.value)
    assert str(onnx_path) in text and "pnnx.Expression" in text and "sub(size(@0,2),1)" in text


def test_ncnn_converter_crash_fails_naming_the_file_and_pnnx_words(tmp_path):
    _needs_ncnn()
    spec = _spec(PassThrough, (4, 16), (4, 24), outputs=("y", "x_out"), axes=("batch", "channels", "frames"))
    onnx_path = _export(PassThrough().eval(), spec, tmp_path / "passthrough.onnx")
    with pytest.raises(convert.ConvertError, match="passthrough.onnx: pnnx exited .* without an ncnn model: .*"):
        NCNN.convert(ModelSource(spec, PassThrough, lambda opset: onnx_path), tmp_path, "fp32", None)
    assert not (tmp_path / convert.PARAM).exists()


@pytest.mark.full
def test_ncnn_videopose3d_known_failure_is_the_converters_own_message(pipeline, tmp_path):
    """The backend's declared known failure says what pnnx really does to VideoPose3D."""
    _needs_ncnn()
    spec = MODELS["videopose3d_243"]
    source = ModelSource(spec, lambda: None, lambda opset: pipeline.onnx(spec, opset))
    with pytest.raises(convert.ConvertError) as e:
        NCNN.convert(source, tmp_path, "fp32", None)
    assert "pnnx.Expression" in str(e.value) and "sub(size(@0,2),3)" in str(e.value)
    assert any("videopose3d_243-ncnn-" in pattern for pattern in NCNN.known_failures)


def test_ncnn_broken_artifacts_fail_naming_the_file(tiny, tmp_path):
    _, spec, _, built = tiny
    param, weights = built["fp32"] / convert.PARAM, built["fp32"] / convert.BIN
    plan = precision.plan("fp32", arm_fp16=False)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.bin"):
        NcnnSession(spec, param, truncated, "fp32", plan, pnnx_io(spec))
    not_param = tmp_path / "not.param"
    not_param.write_text("<?xml version='1.0'?>\n<net/>\n")
    with pytest.raises(ValueError, match="not.param"):
        NcnnSession(spec, not_param, weights, "fp32", plan, pnnx_io(spec))
    with pytest.raises(convert.ConvertError, match="not.param: not an ncnn text .param"):
        convert.layers(not_param)
    renamed = EngineIO("in0", (("out0", "a"), ("heatmaps", "b")))
    with pytest.raises(ValueError, match=r"no blobs \['heatmaps'\]; its inputs are \['in0'\]"):
        NcnnSession(spec, param, weights, "fp32", plan, renamed)


def test_ncnn_supplied_model_is_a_param_with_its_bin(tiny, tmp_path):
    _, spec, _, built = tiny
    lone = tmp_path / "lone.param"
    lone.write_text((built["fp32"] / convert.PARAM).read_text())
    assert "with its .bin beside it" in NCNN.supplied_path_problem(lone)
    assert "found []" in NCNN.supplied_path_problem(tmp_path / "..")
    assert NCNN.supplied_path_problem(built["fp32"]) is None
    with pytest.raises(ValueError, match="lone.param: an ncnn model is a .param file"):
        NCNN.open(lone, spec, "fp32", pnnx_io(spec))
    with NCNN.open(built["fp32"], spec, "fp32", pnnx_io(spec)) as session:
        assert session.info.details["threads"] == len(os.sched_getaffinity(0))


def test_ncnn_availability_names_what_is_missing(monkeypatch):
    """Each half missing in turn, whatever this machine has installed (the min stack has neither)."""
    monkeypatch.setattr(backend_module, "runtime_problem", lambda: None)  # a runtime, and no converter
    monkeypatch.setattr(availability, "CONVERTER", "posegate_no_such_pnnx")
    assert "pnnx converter is not installed" in NCNN.unavailable_reason()
    assert NCNN.open_unavailable_reason() is None  # opening a supplied .param/.bin needs no converter
    monkeypatch.setattr(backend_module, "runtime_problem", availability.runtime_problem)
    monkeypatch.setitem(sys.modules, "ncnn", None)  # import ncnn now raises ImportError
    assert NCNN.unavailable_reason().startswith("ncnn is not importable")
    assert "pip install ncnn==" in NCNN.open_unavailable_reason()


def _localize(net, spec, folder, onnx_path, x, precision="fp32"):
    """--localize's own path on a converted folder: diagnose.probe_for picks the .param by the backend's
    artifact_suffixes and asks NcnnBackend.probe, diagnose.run compares it with torch."""
    pipeline = SimpleNamespace(artifacts={}, converted=lambda target: folder, onnx=lambda spec, opset: onnx_path,
                               torch_model=lambda spec: net)
    target = Target(spec, "ncnn", precision)
    assert isinstance(diagnose.probe_for(pipeline, target), NcnnProbe)
    return diagnose.run(pipeline, target, x)


def test_ncnn_localize_ties_convolutions_to_modules_and_finds_a_broken_layer(tiny, tmp_path):
    net, spec, source, built = tiny
    onnx_path = source.onnx_path(17)
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 48)).astype(np.float32)
    faithful = _localize(net, spec, built["fp32"], onnx_path, x)
    # down and mix are fused with their ReLU (convrelu): compared as the ReLU modules' outputs
    assert {"act1", "act2", "head"} <= {i.module for i in faithful.items} and faithful.first is None
    # the fault: the head convolution loses its bias (5=0: its bias bytes, last in the .bin, go unread)
    lines = (built["fp32"] / convert.PARAM).read_text().splitlines()
    head = max(i for i, line in enumerate(lines) if line.startswith("Convolution"))
    assert " 5=1" in lines[head]
    lines[head] = lines[head].replace(" 5=1", " 5=0")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / convert.PARAM).write_text("\n".join(lines) + "\n")
    (broken / convert.BIN).write_bytes((built["fp32"] / convert.BIN).read_bytes())
    found = _localize(net, spec, broken, onnx_path, x)
    assert found.first is not None and found.first["module"] == "head", found.describe()
    assert "the fault is in this node" in found.first["verdict"]


def test_ncnn_probe_is_refused_without_its_bin(tiny, tmp_path):
    net, spec, source, built = tiny
    (tmp_path / convert.PARAM).write_text((built["fp32"] / convert.PARAM).read_text())
    with pytest.raises(diagnose.CannotLocalize, match=r"ncnn localises a .param with its .bin beside it"):
        _localize(net, spec, tmp_path, source.onnx_path(17), np.zeros((1, 3, 32, 48), np.float32))


def test_ncnn_probe_refuses_a_graph_it_cannot_pair(tiny, tmp_path):
    _, _, source, built = tiny
    lines = (built["fp32"] / convert.PARAM).read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Convolution"))
    lines[first] = lines[first].replace(" 0=8 ", " 0=9 ")
    other = tmp_path / "other.param"
    other.write_text("\n".join(lines) + "\n")
    with pytest.raises(diagnose.CannotLocalize, match=r"other.param: convolution #0 .* is not /down/Conv"):
        scoped_names(other, source.onnx_path(17))



class TwoFed(torch.nn.Module):
    """A reduction's subgraph: two named inputs (a cut inside the network), two outputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(4, 6, 3, padding=1)

    def forward(self, skip, deep):
        y = torch.relu(self.conv(deep))
        return y, y[:, :4] + skip


def test_ncnn_runs_a_subgraph_fed_at_two_named_inputs_as_onnxruntime_does(tmp_path):
    _needs_ncnn()
    assert NCNN.subgraph_problem() is None
    path = tmp_path / "sub.onnx"
    rng = np.random.default_rng(4)
    # fed in the other order than the graph lists them: matched by name, not position
    feeds = {"deep": rng.standard_normal((2, 4, 8, 12)).astype(np.float32),
             "skip": rng.standard_normal((2, 4, 8, 12)).astype(np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TwoFed().eval(), (torch.from_numpy(feeds["skip"]), torch.from_numpy(feeds["deep"])),
                          str(path), opset_version=NCNN.opset, input_names=["skip", "deep"],
                          output_names=["act", "sum"], **exporter_keywords())
    want = BACKENDS["onnxruntime"].run_subgraph(path, feeds, "fp32", tmp_path / "ort")
    got = NCNN.run_subgraph(path, feeds, "fp32", tmp_path / "ncnn")
    assert sorted(got) == ["act", "sum"]
    for name in got:
        assert got[name].shape == want[name].shape, name
        bound = reordered_sum_tolerance(float(np.abs(want[name]).max()), 3 * 3 * 4, np.float32)
        assert float(np.abs(got[name] - want[name]).max()) <= bound, name
    # the fault: a swapped pair of feeds changes what the subgraph computes, so a mismatch would show
    swapped = NCNN.run_subgraph(path, {"deep": feeds["skip"], "skip": feeds["deep"]}, "fp32", tmp_path / "swap")
    assert float(np.abs(swapped["sum"] - want["sum"]).max()) > 1e-2
    call = NCNN.subgraph_call("fp16", feeds)
    assert "inputshape=[2,4,8,12]f32,[2,4,8,12]f32" in call["command"] and "fp16=1" in call["command"]
    with pytest.raises(ValueError, match=r"sub.onnx: feeds \['deep'\] are not the graph's inputs"):
        NCNN.run_subgraph(path, {"deep": feeds["deep"]}, "fp32", tmp_path / "short")
