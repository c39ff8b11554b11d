"""The fault zoo: broken ports of lightweight_openpose_omz0001 (graph surgery on its exported ONNX, with
the real weights under --weights-dir, else seeded ones) must fail parity, keep their metric measured, and
be localised to the node where the fault was injected; the faithful export passes with nothing localised.

Localisation runs on the middle 368x128 of the parity image (the width axis is dynamic) to stay fast; the
metric runs the real profile over the parity dataset through the pipeline, as test_metric_parity does.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from models import MODELS
from posegate.artifacts import bind
from posegate.backends import BACKENDS, EngineIO
from posegate.backends.onnxruntime import OrtSession
from posegate.backends.openvino import OvProbe
from posegate.backends.openvino import inference_hint as ov_hint
from posegate.backends.openvino.advice import IrValidator, ov_keep_fp32
from posegate.backends.openvino.advice import run_ir as _ov_run
from posegate.backends.probing import OrtProbe
from posegate.context import SYNTHETIC
from posegate.diagnosis.advice import _errors, advise
from posegate.diagnosis.faults import FAULTS
from posegate.diagnosis.localize import Node, localize, match, module_scope, tolerance_of
from posegate.metrics import METRICS
from posegate.metrics.parity import compare
from posegate.pipeline import Pipeline

STAGE = "infer"
pytestmark = pytest.mark.stage
SPEC = MODELS["lightweight_openpose_omz0001"]
WIDTH = 128
# Where each fault is expected to show. All but one are localised to the node they changed; every weight
# rounded to fp16 changes every convolution, and the first of them is where it shows.
ZOO = [f for f in FAULTS if f != "resize-mode"]


@pytest.fixture(scope="module")
def zoo(pipeline, run_context, tmp_path_factory):
    spec = SPEC
    model = pipeline.torch_model(spec)
    path = pipeline.onnx(spec, 17)
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    profile = spec.profile("368x640")
    full = pipeline.parity_batch(spec, profile, dataset, 1).x
    x = full[..., (full.shape[-1] - WIDTH) // 2:(full.shape[-1] + WIDTH) // 2].copy()  # the middle, not padding
    if dataset.name == SYNTHETIC:  # drawn figures on flat colours: a swapped channel order can hide in them
        x = np.random.default_rng(0).uniform(-0.5, 0.5, x.shape).astype(np.float32)
    io = EngineIO.of(spec)
    probe = OrtProbe(path, io)
    got = probe.run(x, sorted(probe.float_tensors()))
    ranges = {k: float(np.max(np.abs(v))) for k, v in got.items()}
    with torch.inference_mode():
        ref = {n: o.numpy() for n, o in zip(spec.output_names, model(torch.from_numpy(x)))}
    return SimpleNamespace(spec=spec, model=model, path=path, base=onnx.load(str(path)), x=x, io=io, ranges=ranges,
                           ref=ref, dataset=dataset, profile=profile, tmp=tmp_path_factory.mktemp("zoo"),
                           pipeline=pipeline, tolerance=tolerance_of(spec, "fp32", spec.output_names))


def _seeded(zoo) -> bool:
    return zoo.pipeline.checkpoint_path(zoo.spec) is None


def _parity(zoo, path) -> list[str]:
    out = OrtSession(zoo.spec, path, "fp32").run({zoo.spec.input_name: zoo.x})
    errors = {n: compare(out[n], zoo.ref[n], zoo.spec.tolerance("fp32", n)) for n in zoo.spec.output_names}
    return [f"{n}: {e.describe()}" for n, e in errors.items() if not e.ok]


def _localize(zoo, probe):
    return localize(zoo.model, probe, zoo.x, zoo.tolerance, tuple(zoo.spec.output_names),
                    {n: n for n in zoo.spec.output_names})


def _metric(zoo, path) -> tuple[float, float]:
    """(reference, port) task metric through the pipeline, with the broken file bound as a supplied artifact."""
    spec = zoo.spec
    bound = bind([spec], {(spec.name, "onnxruntime", None): path}, None, BACKENDS)
    p = Pipeline(zoo.pipeline.cache, zoo.pipeline.weights_dir, zoo.pipeline.options, artifacts=bound)
    try:
        profile = bound[(spec.name, "onnxruntime", "fp32")].contract.profile
        metric = METRICS[spec.metric]
        ref = metric.evaluate(zoo.dataset, p.predictions(spec, "torch", "fp32", profile, zoo.dataset)).value
        got = metric.evaluate(zoo.dataset, p.predictions(spec, "onnxruntime", "fp32", profile, zoo.dataset)).value
    finally:
        p.close()
    return ref, got


def test_faithful_export_passes_with_nothing_localised(zoo):
    assert not _parity(zoo, zoo.path)
    loc = _localize(zoo, OrtProbe(zoo.path, zoo.io))
    assert loc.first is None, loc.describe()
    assert loc.compared > 100 and loc.skipped["convolution folded with the BatchNorm after it " \
                                            "(compared as the BatchNorm's output)"] > 0


@pytest.mark.parametrize("fault", ZOO)
def test_fault_fails_parity_keeps_its_metric_and_is_localised(zoo, fault, record):
    widest = max(v for k, v in zoo.ranges.items() if any(k in n.output for n in zoo.base.graph.node
                                                             if n.op_type == "Relu"))
    if fault == "relu-as-relu6" and widest <= 6:
        pytest.skip(f"ReLU6 equals ReLU where no activation exceeds 6: the widest ReLU peaks at {widest:.3g} with "
                    f"{zoo.pipeline.weights_identity(zoo.spec)}; put {zoo.spec.checkpoint.filename} in --weights-dir")
    injected = FAULTS[fault](zoo.base, ranges=zoo.ranges)
    path = zoo.tmp / f"{fault}.onnx"
    onnx.save(injected.model, str(path))
    failing = _parity(zoo, path)
    if not failing and _seeded(zoo):
        pytest.skip(f"{fault} does not reach the outputs of seeded weights ({zoo.pipeline.weights_identity(zoo.spec)}: "
                    f"their backbone passes little signal on); put {zoo.spec.checkpoint.filename} in --weights-dir")
    assert failing, f"{fault} ({injected.note}) passes parity: the fault zoo lost its teeth"
    loc = _localize(zoo, OrtProbe(path, zoo.io))
    ref, got = _metric(zoo, path)
    record(fault=fault, note=injected.note, parity=failing, localization=loc.as_dict(), metric_ref=ref, metric=got)
    assert loc.first is not None, f"{fault}: {loc.describe()}"
    assert loc.first["node"] in injected.nodes[:1] + injected.nodes if fault != "weights-fp16" \
        else loc.first["node"] == injected.nodes[0], f"{fault} injected at {injected.nodes[:3]}; {loc.describe()}"
    assert np.isfinite(ref) and np.isfinite(got)  # measured, whatever parity said


def test_streamed_in_chunks_the_result_is_the_same(zoo):
    """A byte budget smaller than the network's intermediates splits them over several backend runs (how
    HigherHRNet's ~2000 fit); what is compared and found must not change."""
    injected = FAULTS["conv-scaled-3pct"](zoo.base)
    path = zoo.tmp / "chunks.onnx"
    onnx.save(injected.model, str(path))
    whole = _localize(zoo, OrtProbe(path, zoo.io))
    total = sum(OrtProbe(path, zoo.io).sizes(zoo.x).values())
    parts = localize(zoo.model, OrtProbe(path, zoo.io), zoo.x, zoo.tolerance, tuple(zoo.spec.output_names),
                     {n: n for n in zoo.spec.output_names}, budget=total // 3)
    assert whole.runs == 1 and parts.runs >= 3
    assert [(i.tensor, i.max_rel) for i in parts.items] == [(i.tensor, i.max_rel) for i in whole.items]
    assert parts.first["node"] == whole.first["node"] == injected.nodes[0]


def test_openvino_localises_onnx_and_ir_alike(zoo):
    import openvino as ov  # noqa: PLC0415 (optional device library: the suite imports it lazily everywhere)
    injected = FAULTS["conv-scaled-3pct"](zoo.base)
    path = zoo.tmp / "ov-conv-scaled.onnx"
    onnx.save(injected.model, str(path))
    ir = zoo.tmp / "ov-conv-scaled.xml"
    ov.save_model(ov.convert_model(str(path)), str(ir), compress_to_fp16=False)
    for source in (path, ir):
        loc = _localize(zoo, OvProbe(source, zoo.io, "fp32"))
        assert loc.first is not None and loc.first["node"] == injected.nodes[0], loc.describe()
        assert loc.first["module"] == module_scope(injected.nodes[0], dict(zoo.model.named_modules()))[-1]


def test_scope_names_resolve_to_module_paths_and_one_sided_tensors_are_counted():
    inner = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model = nn.Module()
    model.model = nn.Sequential(inner)
    model.stages = nn.ModuleList([nn.Sequential(nn.Conv2d(4, 4, 1))])
    modules = dict(model.named_modules())
    assert module_scope("/model/model.0/model.0.0/Conv", modules) == ["model", "model.0", "model.0.0"]
    assert module_scope("/stages.0/stages.0.0/Conv", modules) == ["stages.0", "stages.0.0"]
    assert module_scope("/model/nothing/Conv", modules) == ["model"]  # no guess past an unknown scope
    nodes = [Node("/model/model.0/model.0.0/Conv", "Conv", ("x",), ("a",)),
             Node("/model/model.0/model.0.2/Relu", "Relu", ("a",), ("b",)),
             Node("/Mul", "Mul", ("b",), ("c",))]
    matched, skipped = match(nodes, {"a", "b", "c"}, model)
    assert matched == {"model.0.1": (0, "a"), "model.0.2": (1, "b")}  # the folded BatchNorm owns the conv's tensor
    assert skipped["no torch module (functional op, or made by the exporter or converter)"] == 1


@pytest.mark.full
def test_wrong_resize_mode_is_localised_in_a_model_with_a_resize(pipeline):
    spec = MODELS["higherhrnet_w32_512"]
    model = pipeline.torch_model(spec)
    path = pipeline.onnx(spec, 17)
    base = onnx.load(str(path))
    injected = FAULTS["resize-mode"](base)
    broken = path.parent.parent / "resize-mode.onnx"
    onnx.save(injected.model, str(broken))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, *spec.sample_dims)).astype(np.float32)
    loc = localize(model, OrtProbe(broken, EngineIO.of(spec)), x, tolerance_of(spec, "fp32", spec.output_names),
                   tuple(spec.output_names), {n: n for n in spec.output_names})
    assert loc.first is not None and loc.first["node"] == injected.nodes[0], loc.describe()


def test_precision_advice_reduces_the_openvino_fp16_error(zoo, tmp_path, record):
    """OpenVINO fp16 (bf16 or f16 compute, as the backend asks this CPU) passes its tolerance here; the advice
    is asked for half its error and must cut the error it targets, re-validated on OpenVINO."""
    if _seeded(zoo):
        pytest.skip(f"advice needs trained weights (seeded ones leave the fp16 error in ops no layer choice moves): "
                    f"put {zoo.spec.checkpoint.filename} in --weights-dir")
    hint = ov_hint("fp16")
    reduced = ov_keep_fp32(zoo.path, [], tmp_path / "fp16.xml", compress=True)
    out, _ = _ov_run(reduced, zoo.x, zoo.spec.input_name, hint)
    before = max(_errors(out, zoo.ref).values())
    loc = localize(zoo.model, OvProbe(reduced, zoo.io, "fp16"), zoo.x,
                   tolerance_of(zoo.spec, "fp16", zoo.spec.output_names), tuple(zoo.spec.output_names),
                   {n: n for n in zoo.spec.output_names})
    got = advise(IrValidator(hint), zoo.path, loc, zoo.ref, zoo.x, zoo.spec.input_name, before / 2,
                 tmp_path / "advice", rounds=2)
    record(advice=got.as_dict())
    assert got.ranked and got.keep and max(got.before.values()) == pytest.approx(before, rel=1e-6)
    assert max(got.after.values()) < before, got.describe()
    assert max(got.after.values()) < max(got.weights_only.values()), got.describe()  # the layers, not just the weights
    assert (tmp_path / "advice" / "keep_dtype.cfg").read_text().splitlines() == got.keep
