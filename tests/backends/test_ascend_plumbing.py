"""Ascend backend plumbing, checked against stand-ins that record calls (a fake `atc` on PATH, a fake
ais_bench InferSession), not against a device: the ATC command lines the seeds type, gears, feeds
and modes, output order, API drift between ais_bench versions, and the throughput arithmetic."""
from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models import MODELS
from posegate.backends import BACKENDS, Backend, EngineIO, ModelSource, Session, SessionInfo, npu
from posegate.backends.ascend import atc as atc_tool
from posegate.backends.ascend import backend as asc
from posegate.backends.ascend.atc import AtcSettings
from posegate.cases.target import Target
from posegate.gate.throughput import expected, per_second
from posegate.pipeline import Pipeline
from posegate.spec import InputProfile
from posegate.storage.cache import ArtifactCache
from tests import standins
from tests.standins import FakeInferSession

STAGE = "convert"
pytestmark = pytest.mark.stage

# The seeds' commands, verbatim but for the chip variable (001 HigherHRNet, 002 MSPN, 004 VideoPose3D).
GEARS = ("1024,512;960,512;896,512;832,512;768,512;704,512;640,512;576,512;512,512;512,576;512,640;512,704;"
         "512,768;512,832;512,896;512,960;512,1024")
SEED_HIGHERHRNET = ('atc --framework=5 --model=models/pose_higher_hrnet_w32_512_bs1_dynamic.onnx  '
                    '--output=models/pose_higher_hrnet_w32_512_bs1_dynamic '
                    '--input_format=NCHW --input_shape="input:1,3,-1,-1" --dynamic_image_size="' + GEARS + '"  '
                    '--out_nodes="Conv_1818:0;Conv_1851:0" --soc_version=Ascend${chip_name}')
SEED_HIGHERHRNET_TUNED = SEED_HIGHERHRNET.replace("--soc_version", '--auto_tune_mode="RL,GA" --soc_version')
SEED_MSPN = ('atc --framework=5 --model=MSPN.onnx --output=MSPN_bs1 --input_format=NCHW '
             '--input_shape="input:1,3,256,192" '
             '--log=error --soc_version=Ascend${chip_name}')
SEED_VP3D = ('atc --framework=5 --model=vp3d/vp3d.onnx --output=vp3d/vp3d_seq6115 --input_format=NCHW '
             '--input_shape="2d_poses:2,6115,17,2" --log=error --soc_version=Ascend${chip_name}')
NPU_SMI = """+------------------------------------------------------------------------------------------------+
| npu-smi 22.0.0                   Version: 22.0.2                                               |
+----------------------+---------------+----------------------------------------------------------+
| NPU     Name      | Health          | Power(W)     Temp(C)           Hugepages-Usage(page) |
| Chip    Device    | Bus-Id          | AICore(%)    Memory-Usage(MB)                        |
+===================+=================+======================================================+
| 0       310P3     | OK              | 15.8         42                0    / 0              |
| 0       0         | 0000:82:00.0    | 0            1074 / 21534                            |
+===================+=================+======================================================+
"""


DEFAULT_ATC = AtcSettings()


def _seed(cmd: str) -> list[str]:
    return cmd.replace("${chip_name}", "310P3").split()


def _spec(input_name, dims, gears=(), atc=DEFAULT_ATC, axes=("batch", "channels", "height", "width"),
          outputs=("out",)):
    base = MODELS["lightweight_openpose"]
    profile = InputProfile("p", dims, preprocess="ascend", batch_sizes=(1,), gears=gears,
                           perf_dims=tuple(d or 8 for d in dims))
    return dataclasses.replace(base, input_name=input_name, profiles=(profile,), backend_settings={"ascend": atc},
                               input_axes=axes,
                               output_names=outputs, artifacts=())


def _atc_command(spec, *args, out_nodes=()):
    """The command the ascend backend builds: with the settings the spec gives it."""
    return atc_tool.atc_command(spec, *args, out_nodes=out_nodes, settings=BACKENDS["ascend"].settings_of(spec))


def _onnx(tmp_path, names=("Conv_1818", "Conv_1851"), outputs=("heatmaps", "tagmaps")):
    nodes = [helper.make_node("Identity", ["input"], [o], name=n) for n, o in zip(names, outputs)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 3, 4, 4]) for o in outputs])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))
    return path


def _with_paths(args, model, output):
    return [f"--model={model}" if a.startswith("--model=") else f"--output={output}" if a.startswith("--output=") else a
            for a in args]


def test_plumbing_atc_command_equals_seed_higherhrnet_dynamic_image_size(tmp_path):
    gears = tuple(tuple(int(v) for v in g.split(",")) for g in GEARS.split(";"))
    spec = _spec("input", (3, None, None), gears, AtcSettings(out_nodes=("heatmaps", "tagmaps"), log=None),
                 outputs=("heatmaps", "tagmaps"))
    settings = BACKENDS["ascend"].settings_of(spec)
    nodes = atc_tool.producer_nodes(_onnx(tmp_path), settings.out_nodes)
    args = _atc_command(spec, "x.onnx", "y", (1, 3, None, None), "310P3", "fp16", out_nodes=nodes)
    seed = _seed(SEED_HIGHERHRNET)
    assert _with_paths(args, "M", "O") == _with_paths(seed, "M", "O")
    tuned_settings = dataclasses.replace(settings, auto_tune_mode="RL,GA")
    tuned = dataclasses.replace(spec, backend_settings={"ascend": tuned_settings})
    args = _atc_command(tuned, "x.onnx", "y", (1, 3, None, None), "310P3", "fp16", out_nodes=nodes)
    assert _with_paths(args, "M", "O") == _with_paths(_seed(SEED_HIGHERHRNET_TUNED), "M", "O")


def test_plumbing_atc_command_equals_seed_mspn_per_batch():
    spec = _spec("input", (3, 256, 192))
    assert _atc_command(spec, "MSPN.onnx", "MSPN_bs1", (1, 3, 256, 192), "310P3", "fp16") == _seed(SEED_MSPN)
    bs8 = _atc_command(spec, "MSPN.onnx", "MSPN_bs8", (8, 3, 256, 192), "310P3", "fp16")
    assert '--input_shape="input:8,3,256,192"' in bs8 and "--output=MSPN_bs8" in bs8


def test_plumbing_atc_command_equals_seed_videopose3d_static_frames():
    spec = _spec("2d_poses", (6115, 17, 2), axes=("batch", "frames", "joints", "xy"))
    args = _atc_command(spec, "vp3d/vp3d.onnx", "vp3d/vp3d_seq6115", (2, 6115, 17, 2), "310P3", "fp16")
    assert args == _seed(SEED_VP3D)
    # the registered spec asks for that engine: batch 1 of the padded profile is 2 rows (original and mirrored)
    vp3d = MODELS["videopose3d_243"]
    shape = vp3d.profile("6115").engine_shape(1)
    assert shape == (2, 6115, 17, 2)
    assert _atc_command(vp3d, "vp3d/vp3d.onnx", "vp3d/vp3d_seq6115", shape, "310P3", "fp16") == _seed(SEED_VP3D)


def test_plumbing_atc_other_gears_use_dynamic_dims_nd_and_precision_flag():
    spec = _spec("2d_poses", (None, 17, 2), gears=((243,), (6115,)), axes=("batch", "frames", "joints", "xy"))
    args = _atc_command(spec, "v.onnx", "o", (2, None, 17, 2), "310", "fp32")
    assert "--input_format=ND" in args and '--input_shape="2d_poses:2,-1,17,2"' in args
    assert '--dynamic_dims="243;6115"' in args and "--precision_mode=force_fp32" in args
    assert args[-1] == "--soc_version=Ascend310"
    with pytest.raises(ValueError, match="need gears"):
        _atc_command(_spec("x", (3, 368, None)), "a", "b", (1, 3, 368, None), "310P3", "fp16")


def test_plumbing_atc_commands_of_every_registered_model_shape_and_precision():
    """What the suite would run on a device for each model, static profile, batch and precision."""
    seen = 0
    for spec in MODELS.values():
        for p in spec.profiles:
            if p.dynamic and not p.gears:
                continue
            for bs in p.batch_sizes + p.full_batch_sizes:
                for prec in BACKENDS["ascend"].precisions:
                    args = _atc_command(spec, "m.onnx", "model", spec.engine_shape(p, bs), "310P3", prec)
                    rows = bs * p.copies * getattr(spec.flow, "copies", 1)  # a flip test doubles the rows
                    shape = ",".join(str(d) for d in (rows, *p.dims))
                    assert f'--input_shape="{spec.input_name}:{shape}"' in args
                    assert ("--precision_mode=force_fp32" in args) == (prec == "fp32")  # a 310P3: no origin
                    seen += 1
    assert seen


def test_plumbing_npu_smi_table_gives_the_chip():
    assert npu.parse_npu_smi(NPU_SMI) == "310P3"
    assert npu.parse_npu_smi("no devices") is None


def _source(spec, onnx_path):
    return ModelSource(spec, lambda: None, lambda opset: onnx_path)


def test_plumbing_convert_runs_atc_with_the_built_command(tmp_path, fake_atc):
    spec = _spec("input", (3, 4, 4), outputs=("heatmaps", "tagmaps"))
    out = tmp_path / "artifact"
    out.mkdir()
    onnx_path = _onnx(tmp_path)
    BACKENDS["ascend"].convert(_source(spec, onnx_path), out, "fp16", (1, 3, 4, 4))
    call = json.loads(fake_atc.read_text().splitlines()[0])
    assert call["argv"][:3] == ["--framework=5", f"--model={onnx_path}", "--output=model"]
    assert call["cwd"] == str(out) and '"' not in "".join(call["argv"])  # exec gets no shell quotes
    assert (out / "model.om").read_bytes() == b"OM" and "ATC run success" in (out / "atc.log").read_text()
    assert (out / "atc_command.txt").read_text().startswith("atc --framework=5")
    assert "--log=error" in call["argv"]


def test_plumbing_convert_takes_the_specs_atc_settings(tmp_path, fake_atc):
    spec = _spec("input", (3, 4, 4), atc=AtcSettings(out_nodes=("tagmaps",), log=None, auto_tune_mode="RL,GA"),
                 outputs=("heatmaps", "tagmaps"))
    out = tmp_path / "artifact"
    out.mkdir()
    BACKENDS["ascend"].convert(_source(spec, _onnx(tmp_path)), out, "fp16", (1, 3, 4, 4))
    argv = json.loads(fake_atc.read_text().splitlines()[0])["argv"]
    assert "--out_nodes=Conv_1851:0" in argv and "--auto_tune_mode=RL,GA" in argv
    assert not any(a.startswith("--log") for a in argv)


def test_plumbing_failing_atc_is_an_error_with_its_log(tmp_path, fake_atc, monkeypatch):
    monkeypatch.setenv("FAKE_ATC_FAIL", "1")
    spec = _spec("input", (3, 4, 4), outputs=("heatmaps", "tagmaps"))
    with pytest.raises(atc_tool.AtcError, match=r"(?s)atc failed \(exit 255\).*E19010: No parser"):
        BACKENDS["ascend"].convert(_source(spec, _onnx(tmp_path)), tmp_path, "fp16", (1, 3, 4, 4))


def test_plumbing_unavailable_reasons_name_what_is_missing(tmp_path, monkeypatch, fake_atc):
    monkeypatch.setitem(sys.modules, "ais_bench", None)
    assert "ais_bench is not importable" in BACKENDS["ascend"].unavailable_reason()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert "atc is not on PATH" in BACKENDS["ascend"].unavailable_reason()


def test_ascend_backend_reports_why_it_is_unavailable_here():
    reason = BACKENDS["ascend"].unavailable_reason()
    if reason is None:
        pytest.skip("an Ascend toolchain and NPU are present: the stage tests run on them")
    assert any(w in reason for w in ("atc", "ais_bench", "npu-smi", "NPU"))


def _om(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"OM")
    path.chmod(0o640)
    return path


def _io(spec):
    return EngineIO(spec.input_name, (("stage2_heatmaps", "stage2_heatmaps"), ("stage2_pafs", "stage2_pafs")))


@pytest.mark.parametrize("style", ["2023", "later"])
def test_plumbing_ais_session_feeds_modes_order_and_timing(style, ais, tmp_path, monkeypatch):
    FakeInferSession.style = style
    spec = MODELS["lightweight_openpose"]
    io = _io(spec)
    monkeypatch.setenv(asc.DEVICE_ENV, "3")
    static = BACKENDS["ascend"].open(_om(tmp_path, "static.om"), spec, "fp16", io)
    dynamic = asc.AisSession(spec, _om(tmp_path, "dyn.om"), "fp16", 0, io)
    dims = asc.AisSession(spec, _om(tmp_path, "dims.om"), "fp16", 0, io)
    x = np.zeros((1, 3, 368, 640), np.float32)
    out = static.run({"data": x})
    dynamic.run({"data": x})
    dynamic.run({"data": x[..., :496].copy()})
    dims.run({"data": x})
    fake_static, fake_dyn, fake_dims = FakeInferSession.instances
    assert (fake_static.device_id, static.mode, dynamic.mode, dims.mode) == (3, "static", "dymhw", "dymdims")
    assert fake_static.calls == [("static", [(1, 3, 368, 640)])]
    # the 2023 release has no dymhw: the session sets the gear itself and runs static
    assert [c[0] for c in fake_dyn.calls] == (["static"] * 2 if style == "2023" else ["dymhw"] * 2)
    assert [c[0] for c in fake_dims.calls] == ["dymdims"]
    assert list(out) == ["stage2_heatmaps", "stage2_pafs"]
    assert out["stage2_heatmaps"].shape[1] == 19 and out["stage2_pafs"].shape[1] == 38
    assert static.device_ms == [2.5] and dynamic.device_ms == [2.5, 2.5]  # reset between calls, both API styles
    with pytest.raises(ValueError, match="an .om file"):
        BACKENDS["ascend"].open(tmp_path / "model.onnx", spec, "fp16", io)


def test_plumbing_ais_stand_in_refuses_what_aclruntime_refuses(ais, tmp_path):
    later = FakeInferSession(0, str(_om(tmp_path, "dims.om")))
    with pytest.raises(RuntimeError, match="not a dymhw model"):  # a --dynamic_dims OM
        later.infer([np.zeros((1, 3, 368, 640), np.float32)], mode="dymhw")
    with pytest.raises(RuntimeError, match="wrong infer_mode"):
        later.infer([np.zeros((1, 3, 368, 640), np.float32)], mode="dynamic")
    static = FakeInferSession(0, str(_om(tmp_path, "static.om")))
    with pytest.raises(RuntimeError, match="in size:1130496 needsize:2826240 not match"):
        static.infer([np.zeros((1, 3, 368, 256), np.float32)])
    FakeInferSession.style = "2023"
    old = FakeInferSession(0, str(_om(tmp_path, "dyn.om")))
    assert not hasattr(old, "free_resource")
    with pytest.raises(RuntimeError, match="not match"):  # dymhw unknown: run as static, no gear set
        old.infer([np.zeros((1, 3, 368, 640), np.float32)], mode="dymhw")


@pytest.mark.parametrize("style", ["2023", "later"])
def test_plumbing_closing_a_session_leaves_the_others_running(style, ais, tmp_path):
    """Per-session close never ends ACL for the process; the release at the end does, once."""
    FakeInferSession.style = style
    spec = MODELS["lightweight_openpose"]
    first = asc.AisSession(spec, _om(tmp_path, "a.om"), "fp16", 0, _io(spec))
    second = asc.AisSession(spec, _om(tmp_path, "b.om"), "fp16", 0, _io(spec))
    x = np.zeros((1, 3, 368, 640), np.float32)
    first.close()
    second.run({"data": x})  # still alive
    assert FakeInferSession.process["finalized"] == 0
    assert FakeInferSession.instances[0].freed == (style == "later")
    second.close()
    ais.release()
    assert FakeInferSession.process["finalized"] == 1
    ais.release()  # at most once
    assert FakeInferSession.process["finalized"] == 1


def test_plumbing_ais_path_rules_fail_early_with_the_reason(ais, tmp_path, monkeypatch):
    spec = MODELS["lightweight_openpose"]
    odd = tmp_path / "my models"
    odd.mkdir()
    with pytest.raises(ValueError, match=r"only \[A-Za-z0-9_/.-\] .* has \[' '\]"):
        asc.AisSession(spec, _om(odd, "m.om"), "fp16", 0, _io(spec))
    link = tmp_path / "link.om"
    link.symlink_to(_om(tmp_path, "real.om"))
    with pytest.raises(ValueError, match="symlink"):
        asc.AisSession(spec, link, "fp16", 0, _io(spec))
    loose = _om(tmp_path, "loose.om")
    loose.chmod(0o664)
    with pytest.raises(ValueError, match="group- or other-writable"):
        asc.AisSession(spec, loose, "fp16", 0, _io(spec))
    assert FakeInferSession.instances == []  # refused before ais_bench saw it
    # the cache is checked before ATC runs
    monkeypatch.setenv(npu.CHIP_ENV, "310P3")
    with pytest.raises(atc_tool.AtcError, match="cannot hold OMs for ais_bench"):
        BACKENDS["ascend"].convert(_source(spec, tmp_path / "x.onnx"), odd, "fp16", (1, 3, 368, 640))


def test_plumbing_written_om_passes_the_permission_rule(tmp_path, fake_atc):
    old = os.umask(0o002)  # a shared-group umask: files come out group-writable
    try:
        spec = _spec("input", (3, 4, 4), outputs=("heatmaps", "tagmaps"))
        out = tmp_path / "artifact"
        out.mkdir()
        BACKENDS["ascend"].convert(_source(spec, _onnx(tmp_path)), out, "fp16", (1, 3, 4, 4))
    finally:
        os.umask(old)
    assert asc.ais_path_problem(out / "model.om") is None


def test_plumbing_output_matching_and_duration_forms():
    assert asc.match_outputs(["a:0:hm", "b:0:paf"], ["paf", "hm"]) == [1, 0]
    assert asc.match_outputs(["Conv_1:0", "Conv_2:0"], ["hm", "paf"]) == [0, 1]  # renamed: graph order kept
    with pytest.raises(ValueError, match="cannot find 'x'"):
        asc.match_outputs(["a", "b", "c"], ["x"])
    assert asc.durations_ms([(1.0, 3.5), 2.0, [0, 1]]) == [2.5, 2.0, 1.0]


def test_plumbing_throughput_arithmetic_as_the_seeds_compute_it():
    # seed 004: 2 x 6115 frames per call; 310P at 280257 fps means a 43.64 ms mean compute time
    assert per_second(2 * 6115, [43.0, 44.28]) == pytest.approx(1000 * 12230 / 43.64)
    assert per_second(1, [2.952]) == pytest.approx(338.75, abs=0.01)  # seed 000's 338.76 FPS at bs1
    assert per_second(8, [10.0]) == 800.0
    with pytest.raises(ValueError):
        per_second(1, [])
    table = MODELS["lightweight_openpose"].expected_throughput
    assert expected(table, "Ascend310P3", "368x640", 1) == 338.76
    assert expected(table, "Ascend310", "368x640", 1) is None and expected(table, None, "368x640", 1) is None


def test_plumbing_chip_from_a_fake_npu_smi_makes_the_backend_available(tmp_path, monkeypatch, fake_atc):
    monkeypatch.delenv(npu.CHIP_ENV)
    smi = tmp_path / "bin" / "npu-smi"
    smi.write_text(f"#!{sys.executable}\nimport sys\nassert sys.argv[1:] == ['info']\nprint({NPU_SMI!r})\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    for name in ("ais_bench", "ais_bench.infer", "ais_bench.infer.interface"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    backend = BACKENDS["ascend"]
    assert backend.unavailable_reason() is None
    assert backend.device() == "Ascend310P3" and backend.artifact_settings("fp16")["soc"] == "Ascend310P3"
    smi.write_text(f"#!{sys.executable}\nprint('no NPU')\n")
    npu._smi_chip.cache_clear()
    assert "lists no healthy NPU" in backend.unavailable_reason()


def test_plumbing_supplied_om_needs_no_atc(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv(npu.CHIP_ENV, "310P3")
    for name in ("ais_bench", "ais_bench.infer", "ais_bench.infer.interface"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    assert "atc is not on PATH" in BACKENDS["ascend"].unavailable_reason()
    assert BACKENDS["ascend"].open_unavailable_reason() is None


def test_plumbing_static_shape_backend_builds_and_caches_one_artifact_per_engine_shape(tmp_path, monkeypatch):
    """The path an OM takes through the pipeline: one conversion per (precision, batch, shape), cached."""
    calls = []

    class Echo(Session):
        def _run(self, x):
            return [np.zeros((x.shape[0], 1)) for _ in self.io.outputs]

    class StandIn(Backend):
        name, static_shapes, precisions = "stand-in", True, ("fp16",)

        def convert(self, source, out_dir, precision, shape):
            calls.append(("convert", precision, shape))
            (out_dir / "model.om").write_text(repr(shape))

        def load(self, artifact_dir, source, precision):
            calls.append(("load", (artifact_dir / "model.om").read_text()))
            return Echo(source.spec, SessionInfo(self.name, precision))

    monkeypatch.setitem(BACKENDS, "stand-in", StandIn())
    spec = MODELS["lightweight_openpose"]
    onnx_path = _onnx(tmp_path)

    def pipeline():
        p = Pipeline(ArtifactCache(tmp_path / "cache"))
        monkeypatch.setattr(p, "onnx", lambda spec, opset: onnx_path)
        return p
    p = pipeline()
    static, wide = spec.profile("368x640"), spec.profile("368xW")
    one = p.session(Target(spec, "stand-in", "fp16", static, 1))
    assert p.session(Target(spec, "stand-in", "fp16", static, 1)) is one
    four = p.session(Target(spec, "stand-in", "fp16", static, 4))
    p.session(Target(spec, "stand-in", "fp16", wide, 1))
    assert four is not one
    assert [c for c in calls if c[0] == "convert"] == [("convert", "fp16", (1, 3, 368, 640)),
                                                      ("convert", "fp16", (4, 3, 368, 640)),
                                                      ("convert", "fp16", (1, 3, 368, None))]
    calls.clear()
    pipeline().session(Target(spec, "stand-in", "fp16", static, 4))  # a new run: the cache answers
    assert calls == [("load", "(4, 3, 368, 640)")]


def test_plumbing_fp32_skips_on_the_fp16_only_310(monkeypatch):
    monkeypatch.setenv(npu.CHIP_ENV, "310")
    assert "fp16" in BACKENDS["ascend"].precision_problem("fp32")
    assert BACKENDS["ascend"].precision_problem("fp16") is None
    monkeypatch.setenv(npu.CHIP_ENV, "310P3")  # force_fp32 = cube_fp16in_fp32out: not fp32 parity
    assert "cube_fp16in_fp32out" in BACKENDS["ascend"].precision_problem("fp32")
    monkeypatch.setenv(npu.CHIP_ENV, "910B3")
    assert BACKENDS["ascend"].precision_problem("fp32") is None


@pytest.mark.parametrize("chip, flags, execution", [
    ("310P3", ["--precision_mode=force_fp32"], "f16-in f32-out cube (force_fp32)"),
    ("910B3", ["--precision_mode_v2=origin", "--allow_hf32=false"], "f32"),
])
def test_plumbing_atc_fp32_is_named_for_what_the_chip_computes(chip, flags, execution):
    spec = _spec("input", (3, 256, 192))
    args = _atc_command(spec, "m.onnx", "o", (1, 3, 256, 192), chip, "fp32")
    assert [a for a in args if a.startswith(("--precision_mode", "--allow_hf32"))] == flags
    assert atc_tool.execution(chip, "fp32", hf32_off=True) == execution and atc_tool.execution(chip, "fp16") == "f16"


# ------------------------------------------------------------------------------ issue 25, second reading

def _convert(tmp_path, precision="fp16", name="artifact"):
    spec = _spec("input", (3, 4, 4), outputs=("heatmaps", "tagmaps"))
    out = tmp_path / name
    out.mkdir()
    BACKENDS["ascend"].convert(_source(spec, _onnx(tmp_path)), out, precision, (1, 3, 4, 4))
    return spec, out


@pytest.mark.parametrize("log_line, execution", [
    ("[INFO] GE(1234,atc):2026-12-07 [option] ge.exec.allow_hf32 = false", "f32"),
    ("", "hf32"),  # the log does not show the option took effect
    ("[INFO] GE(1234,atc):2026-12-07 [option] ge.exec.allow_hf32 = true", "hf32"),
])
def test_plumbing_a2_fp32_turns_hf32_off_and_believes_only_the_atc_log(tmp_path, fake_atc, monkeypatch, ais,
                                                                       log_line, execution):
    """Issue 25, 1: on Atlas A2/A3 ATC converts fp32 Conv to HF32 by default; fp32 passes --allow_hf32=false
    and is f32 only where the ATC log shows ge.exec.allow_hf32, else hf32 with fp32 parity skipped."""
    monkeypatch.setenv(npu.CHIP_ENV, "910B3")
    monkeypatch.setenv("FAKE_ATC_HF32_LOG", log_line)
    spec, out = _convert(tmp_path, "fp32")
    call = json.loads(fake_atc.read_text().splitlines()[0])
    assert "--precision_mode_v2=origin" in call["argv"] and "--allow_hf32=false" in call["argv"]
    assert "--log=info" in call["argv"]  # the option's log line is not an error-level line
    assert call["env"] == {"ASCEND_SLOG_PRINT_TO_STDOUT": "1", "ASCEND_GLOBAL_LOG_LEVEL": "1"}  # log to stdout
    (out / "model.om").chmod(0o640)
    session = BACKENDS["ascend"].load(out, _source(spec, None), "fp32")
    assert session.info.execution == execution
    if execution == "hf32":
        assert "HF32" in session.info.precision_problem and "ge.exec.allow_hf32" in session.info.precision_problem
    else:
        assert session.info.precision_problem is None
    # the flags are part of the cache key: an OM built before --allow_hf32=false is not reused for fp32
    assert BACKENDS["ascend"].artifact_settings("fp32")["precision_flags"] == ["--precision_mode_v2=origin",
                                                                               "--allow_hf32=false"]


def test_plumbing_310p_fp32_skip_names_both_atc_modes(monkeypatch):
    """Issue 25, 1: the 310P accepts --precision_mode_v2=origin (the ATC guide lists the inference series),
    with fp32 convolutions on AI CPU kernels: the skip says so instead of claiming origin is refused."""
    monkeypatch.setenv(npu.CHIP_ENV, "310P3")
    why = BACKENDS["ascend"].precision_problem("fp32")
    assert "force_fp32" in why and "origin" in why and "AI CPU" in why
    assert atc_tool.fp32_flags("310P3") == ["--precision_mode=force_fp32"]


@pytest.mark.parametrize("chip", ["310", "310P3", "Ascend310P3", "910B3", "910_9391"])
def test_plumbing_one_fp32_rule_for_every_ascend_backend(chip, monkeypatch):
    """Issue 25, 2: ascend and torch-aie refuse fp32 on the same chips, with the same reason."""
    monkeypatch.setenv(npu.CHIP_ENV, chip)
    got = {name: BACKENDS[name].precision_problem("fp32") for name in ("ascend", "torch-aie")}
    refused = not npu.computes_fp32(chip)
    assert all(bool(v) == refused for v in got.values()), got
    if refused:
        assert got["ascend"].removeprefix("ascend") == got["torch-aie"].removeprefix("torch-aie")
    assert all(BACKENDS[n].precision_problem("fp16") is None for n in got)


def test_plumbing_atc_output_with_the_host_tag_is_accepted(tmp_path, fake_atc, monkeypatch, ais):
    """Issue 25, 3: GE writes <stem>_<os>_<cpu>.om for an OM carrying its .so binaries (model_helper.cc)."""
    monkeypatch.setenv("FAKE_ATC_OM", "{stem}_linux_x86_64.om")
    spec, out = _convert(tmp_path)
    assert (out / "model_linux_x86_64.om").is_file() and not (out / "model.om").exists()
    assert asc.ais_path_problem(out / "model_linux_x86_64.om") is None  # written go-w like model.om
    session = BACKENDS["ascend"].load(out, _source(spec, None), "fp16")
    assert session.info.details["om"] == str(out / "model_linux_x86_64.om")


@pytest.mark.parametrize("written, named", [("", "none"), ("other.om", "other.om")])
def test_plumbing_atc_without_its_om_names_what_it_wrote(tmp_path, fake_atc, monkeypatch, written, named):
    monkeypatch.setenv("FAKE_ATC_OM", written)
    with pytest.raises(atc_tool.AtcError, match=rf"no model\.om or model_<os>_<cpu>\.om written .*{named}"):
        _convert(tmp_path)


A3_ROWS = ["| 0       910_9391          | OK            | 95.3         42                0    / 0       |",
           "| 0     Ascend910_9392      | OK            | 178.7       37                0    / 0       |"]


@pytest.mark.parametrize("row, chip", zip(A3_ROWS, ["910_9391", "910_9392"]))
def test_plumbing_npu_smi_names_atlas_a3_chips(row, chip, tmp_path, monkeypatch, fake_atc):
    """Issue 25, 4: both forms of an A3 row (bare and Ascend-prefixed) give the soc_version ATC takes."""
    table = "\n".join(row if "310P3" in ln else ln for ln in NPU_SMI.splitlines())
    assert npu.parse_npu_smi(table) == chip
    monkeypatch.delenv(npu.CHIP_ENV)
    smi = tmp_path / "bin" / "npu-smi"
    smi.write_text(f"#!{sys.executable}\nprint({table!r})\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    npu._smi_chip.cache_clear()
    try:
        assert BACKENDS["ascend"].device() == f"Ascend{chip}"
        args = _atc_command(_spec("input", (3, 256, 192)), "m.onnx", "o", (1, 3, 256, 192), chip, "fp32")
        assert args[-1] == f"--soc_version=Ascend{chip}" and "--precision_mode_v2=origin" in args
    finally:
        npu._smi_chip.cache_clear()


def test_plumbing_ais_stand_in_path_rules_are_its_own(ais, tmp_path, monkeypatch):
    """Issue 25, 7: the stand-in refuses by ais_bench's rules even where the adapter would let a path through,
    and adapter and stand-in agree on every rule."""
    good = _om(tmp_path, "good.om")
    link = tmp_path / "link.om"
    link.symlink_to(good)
    odd = tmp_path / "my models"
    odd.mkdir()
    loose = _om(tmp_path, "loose.om")
    loose.chmod(0o660)
    unreadable = _om(tmp_path, "unreadable.om")
    unreadable.chmod(0o200)
    deep = tmp_path.joinpath(*["d"] * 33)
    deep.mkdir(parents=True)
    cases = {"symlink": link, "character": _om(odd, "m.om"), "group-writable": loose, "33 levels": _om(deep, "m.om"),
             "unreadable": unreadable}
    for why, path in cases.items():
        assert standins.ais_bench_refuses(path), why
        assert asc.ais_path_problem(path), why
    assert not standins.ais_bench_refuses(good) and asc.ais_path_problem(good) is None
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(good).st_uid + 1)  # another user's file, not our group
    monkeypatch.setattr(os, "getgroups", lambda: [])
    assert standins.ais_bench_refuses(good) and "owned" in asc.ais_path_problem(good)
    monkeypatch.undo()
    monkeypatch.setattr(asc, "ais_path_problem", lambda path: None)  # an adapter that checks nothing
    with pytest.raises(RuntimeError, match="is illegal"):
        FakeInferSession(0, str(link))


def test_plumbing_later_ais_bench_times_are_start_end_pairs(ais, tmp_path):
    """Issue 25, 7: the later aclruntime's exec_time_list holds (start, end) pairs; the session takes end - start."""
    spec = MODELS["lightweight_openpose"]
    session = asc.AisSession(spec, _om(tmp_path, "static.om"), "fp16", 0, _io(spec))
    session.run({"data": np.zeros((1, 3, 368, 640), np.float32)})
    raw = FakeInferSession.instances[0]._summary().exec_time_list
    assert isinstance(raw[0], tuple) and raw[0][1] - raw[0][0] == 2.5
    assert session.device_ms == [2.5]
