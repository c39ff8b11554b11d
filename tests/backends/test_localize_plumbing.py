"""Localisation and precision advice on the device backends, checked against stand-ins: the marked ONNX a
TensorRT build gets, the ATC --out_nodes command, and the advice files in each tool's documented form.
Without the device, localisation says why instead of running."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from models import MODELS
from posegate.backends import BACKENDS, EngineIO
from posegate.backends.ascend.probe import AscendProbe
from posegate.backends.openvino.advice import SAVED_MARKS, ov_keep_fp32, saved_mark
from posegate.backends.tensorrt.advice import trtexec_args
from posegate.backends.tensorrt.probe import TrtProbe
from posegate.diagnosis import advice
from posegate.diagnosis.diagnose import CannotLocalize

STAGE = "infer"
pytestmark = pytest.mark.stage
SPEC = MODELS["lightweight_openpose_omz0001"]


@pytest.fixture(scope="module")
def exported(pipeline):
    return pipeline.onnx(SPEC, 17)


def test_tensorrt_probe_marks_the_asked_tensors_and_builds_at_the_input_shape(exported):
    seen = {}

    def build(onnx_path, engine_path, input_name, precision, shapes):  # build_engine's signature, minus trt
        seen["outputs"] = [o.name for o in onnx.load(str(onnx_path)).graph.output]
        seen["args"] = (input_name, precision, shapes)
        engine_path.write_bytes(b"engine")

    class Session:  # TrtSession(spec, engine_path, precision, io)
        def __init__(self, spec, engine, precision, io):
            seen["io"] = io
            seen["spec_outputs"] = spec.output_names

        def _run(self, x):
            return [np.zeros(1, np.float32) for _ in seen["io"].engine_outputs]

        def close(self):
            pass
    p = TrtProbe(exported, EngineIO.of(SPEC), "fp16", SPEC, build=build, session=Session)
    names = sorted(p.float_tensors())[:3]
    x = np.zeros((1, 3, 368, 640), np.float32)
    got = p.run(x, names)
    assert set(names) <= set(seen["outputs"]) and set(SPEC.output_names) <= set(seen["outputs"])
    assert seen["args"] == ("data", "fp16", ((1, 3, 368, 640),) * 3)
    assert seen["io"].engine_outputs == names and list(got) == names and seen["spec_outputs"] == tuple(names)


def test_ascend_probe_asks_atc_for_the_suspect_nodes_as_out_nodes(exported):
    p = AscendProbe(exported, EngineIO.of(SPEC), "fp16", SPEC, chip="310P3")
    conv = next(n for n in p.nodes() if n.op_type == "Conv")
    args = p.atc_args([conv.outputs[0], "stage2_heatmaps"], "marked", (1, 3, 368, 640))
    heat = next(n for n in p.nodes() if "stage2_heatmaps" in n.outputs)
    assert f'--out_nodes="{conv.name}:0;{heat.name}:0"' in args
    assert '--input_shape="data:1,3,368,640"' in args and "--soc_version=Ascend310P3" in args
    assert "--framework=5" in args and not any(a.startswith("--precision_mode") for a in args)  # fp16: ATC default


@pytest.mark.parametrize("backend", ["tensorrt", "ascend"])
def test_without_the_device_localisation_says_why(pipeline, exported, backend):
    reason = BACKENDS[backend].unavailable_reason()
    if reason is None:
        pytest.skip(f"{backend} is available here: the stand-in tests above and the stage tests cover it")
    with pytest.raises(CannotLocalize, match=f"{backend} unavailable: "):
        BACKENDS[backend].probe(pipeline, SPEC, exported, EngineIO.of(SPEC), "fp16")


def test_advice_files_follow_each_tools_documented_form(tmp_path):
    keep = ["/model/model.0/model.0.0/Conv", "/cpm/align/align.0/Conv"]
    files = advice.write(keep, tmp_path)
    assert (tmp_path / "keep_dtype.cfg").read_text().splitlines() == keep  # one operator name a line
    atc = (tmp_path / "atc_options.txt").read_text().split()
    assert atc == [f"--keep_dtype={tmp_path / 'keep_dtype.cfg'}", "--precision_mode=force_fp16"]
    assert trtexec_args(keep) == [
        "--fp16", "--precisionConstraints=obey",
        "--layerPrecisions=/model/model.0/model.0.0/Conv:fp32,/cpm/align/align.0/Conv:fp32"]
    builder = (tmp_path / "tensorrt_layer_precisions.py").read_text()
    compile(builder, "tensorrt_layer_precisions.py", "exec")
    assert "OBEY_PRECISION_CONSTRAINTS" in builder and "set_output_type" in builder and "trt.float32" in builder
    assert set(files) >= {"atc_keep_dtype", "atc_options", "trtexec", "tensorrt_builder", "openvino"}


def test_atc_keep_dtype_stays_names_only_with_the_modules_beside_it(tmp_path):
    """GE reads every non-empty line of the --keep_dtype file as an operator name and rejects one not in the
    graph (graphengine keep_dtype_option.cc, E10042): a '# module' comment line would fail the build."""
    keep = ["/model/model.0/model.0.0/Conv", "/cpm/align/align.0/Conv"]
    files = advice.write(keep, tmp_path, modules={keep[0]: "model.0.0"})
    assert (tmp_path / "keep_dtype.cfg").read_text().splitlines() == keep
    rows = [ln.split("\t") for ln in open(files["atc_keep_dtype_modules"]).read().splitlines()[1:]]
    assert rows == [[keep[0], "model.0.0"], [keep[1], "-"]]


def test_openvino_rt_info_mark_survives_into_the_saved_ir(exported, tmp_path):
    xml = ov_keep_fp32(exported, ["/model/model.0/model.0.0/Conv"], tmp_path / "k.xml")
    text = xml.read_text()
    mark = saved_mark(text)  # what the CPU plugin reads back, spelt by the installed release
    assert mark in SAVED_MARKS and text.count(f'<attribute name="{mark}"') >= 1
    assert saved_mark(ov_keep_fp32(exported, [], tmp_path / "n.xml").read_text()) is None
