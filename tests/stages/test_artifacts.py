"""Supplied converted models (--artifact): slot binding, the interface check, and the engine-side
input/output mapping. Plumbing only; the real INT8 IR runs through the stage tests."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from models import MODELS
from posegate.artifacts import ArtifactMismatch, bind, check_signature, parse_option
from posegate.backends import BACKENDS, EngineIO, Session, SessionInfo
from posegate.cases.generate import generate
from posegate.cases.target import Target
from posegate.pipeline.builds import Builds
from posegate.pipeline.origins import Origins
from posegate.spec import ArtifactContract, InputProfile
from posegate.storage.cache import cache_key

STAGE = "convert"
pytestmark = pytest.mark.stage


def _spec():
    spec = next(s for s in MODELS.values() if s.name == "lightweight_openpose")
    profile = InputProfile("8x16", (3, 8, 16), preprocess="ascend", batch_sizes=(1, 2))
    contract = ArtifactContract("openvino", "int8", profile, path="ir/model.xml",
                                outputs={"L2": spec.output_names[2], "L1": spec.output_names[3]},
                                input_scale=256.0, input_offset=128.0)
    return dataclasses.replace(spec, artifacts=(contract,))


def test_artifact_option_parses_slot_and_rejects_malformed(tmp_path):
    got = parse_option([f"m:openvino={tmp_path}/a.xml", "m:ascend:fp16=b.om"])
    assert got[("m", "openvino", None)] == tmp_path / "a.xml"
    assert ("m", "ascend", "fp16") in got
    for bad in ("m=x.om", "m:ascend", "m::fp16=x", "m:a:b:c=x"):
        with pytest.raises(ValueError, match="MODEL:BACKEND"):
            parse_option([bad])


def test_spec_contract_finds_its_file_in_weights_dir_or_takes_the_option(tmp_path):
    spec = _spec()
    key = (spec.name, "openvino", "int8")
    assert bind([spec], {}, None, BACKENDS)[key].path is None
    missing = bind([spec], {}, None, BACKENDS)[key].missing_reason()
    assert "--artifact lightweight_openpose:openvino:int8=PATH" in missing
    (tmp_path / "ir").mkdir()
    (tmp_path / "ir" / "model.xml").write_text("<net/>")
    assert bind([spec], {}, tmp_path, BACKENDS)[key].path == tmp_path / "ir" / "model.xml"
    mine = tmp_path / "mine.xml"
    bound = bind([spec], {(spec.name, "openvino", None): mine}, tmp_path, BACKENDS)[key]
    assert (bound.path, bound.origin, bound.contract.input_scale) == (mine, "--artifact", 256.0)


def test_artifact_option_without_contract_gets_the_specs_interface_at_batch_1(tmp_path):
    spec = _spec()
    bound = bind([spec], {(spec.name, "onnxruntime", None): tmp_path / "x.onnx"}, None, BACKENDS)
    b = bound[(spec.name, "onnxruntime", "fp32")]
    assert b.contract.profile.name == spec.profiles[0].name and b.contract.profile.batch_sizes == (1,)
    assert EngineIO.of(spec, b.contract) == EngineIO.of(spec)
    with pytest.raises(ValueError, match="no model 'nope'"):
        bind([spec], {("nope", "openvino", None): tmp_path}, None, BACKENDS)
    with pytest.raises(ValueError, match="no backend 'tpu'"):
        bind([spec], {(spec.name, "tpu", None): tmp_path}, None, BACKENDS)


def test_supplied_slot_replaces_converted_cases_and_gets_its_own_profile(tmp_path):
    spec = _spec()
    artifacts = bind([spec], {(spec.name, "onnxruntime", None): tmp_path / "x.onnx"}, None, BACKENDS)
    infer = [c.id for c in generate("infer", [spec], artifacts=artifacts)]
    assert "lightweight_openpose-openvino-int8-bs1-8x16-artifact" in infer
    assert "lightweight_openpose-openvino-int8-bs2-8x16-artifact" in infer
    assert "lightweight_openpose-onnxruntime-fp32-bs1-368x640-artifact" in infer
    assert not any(i.startswith("lightweight_openpose-onnxruntime-fp32") and not i.endswith("artifact") for i in infer)
    assert not any(c.backend == "onnxruntime" for c in generate("convert", [spec], artifacts=artifacts))
    assert len(generate("artifact", [spec], artifacts=artifacts)) == 2
    assert spec.profile("8x16").dims == (3, 8, 16)


def test_interface_check_lists_every_name_and_shape_difference():
    spec = _spec()
    io = EngineIO.of(spec, spec.artifacts[0])
    want_out = {spec.output_names[2]: (1, 19, 1, 2), spec.output_names[3]: (1, 38, 1, 2)}
    good = ({"data": [1, 3, 8, 16]}, {"L1": [1, 38, 1, 2], "L2": [None, 19, 1, 2], "extra": [1]})
    check_signature("m.xml", good, io, (1, 3, 8, 16), want_out)
    bad = ({"image": [1, 3, 8, 16]}, {"L1": [1, 38, 2, 2]})
    with pytest.raises(ArtifactMismatch) as e:
        check_signature("m.xml", bad, io, (1, 3, 8, 16), want_out)
    msg = str(e.value)
    assert msg.startswith("m.xml: ") and "no input 'data'" in msg and "no output 'L2'" in msg and "1x38x2x2" in msg
    with pytest.raises(ArtifactMismatch, match="input 'data' is 1x3x8x16, the contract feeds 4x3x8x16"):
        check_signature("m.xml", good, io, (4, 3, 8, 16), want_out)


class _Recorder(Session):
    """Stand-in engine: records what it was fed, answers with its outputs in engine order."""

    def __init__(self, spec, io):
        super().__init__(spec, SessionInfo("stand-in", "int8"), io)
        self.fed = None

    def _run(self, x):
        self.fed = x
        return [np.full((1, 1), i, np.float32) for i, _ in enumerate(self.io.engine_outputs)]


def test_session_maps_input_normalisation_and_output_names():
    spec = dataclasses.replace(_spec(), profiles=_spec().all_profiles)
    io = EngineIO.of(spec, spec.artifacts[0])
    s = _Recorder(spec, io)
    x = np.full((1, 3, 8, 16), -0.5, np.float32)  # (0 - 128) / 256: a black pixel
    out = s.run({spec.input_name: x})
    assert s.fed.dtype == np.float32 and np.all(s.fed == 0.0)
    assert list(out) == [spec.output_names[2], spec.output_names[3]] == list(s.output_names)
    assert out[spec.output_names[3]][0, 0] == 1.0  # second engine output (L1) lands on the PAF name
    with pytest.raises(ValueError, match="not outputs of the spec"):
        EngineIO.of(spec, dataclasses.replace(spec.artifacts[0], outputs={"L1": "pafs"}))


def test_supplied_files_of_the_wrong_kind_are_named(tmp_path):
    spec = _spec()
    io = EngineIO.of(spec)
    (tmp_path / "a.xml").write_text("<net/>")
    (tmp_path / "b.xml").write_text("<net/>")
    with pytest.raises(ValueError, match=r"expected one IR \.xml file in the folder, found \['a.xml', 'b.xml'\]"):
        BACKENDS["openvino"].open(tmp_path, spec, "int8", io)
    with pytest.raises(ValueError, match="a.xml: an OpenVINO IR is a .xml file with its .bin beside it"):
        BACKENDS["openvino"].open(tmp_path / "a.xml", spec, "int8", io)


def test_every_artifact_key_names_the_torch_and_onnx_it_was_built_under(tmp_path, monkeypatch):
    """An export or conversion cached under torch 2.13 is a miss under torch 2.0.1 (the TorchAIE stack) and a
    new onnx: the versions are read at each build, and are part of the key of every kind."""
    exported = tmp_path / "model.onnx"
    exported.write_bytes(b"graph")
    seen = []

    class Recording:
        def get_or_build(self, kind, fields, build):
            seen.append((kind, cache_key({"kind": kind, **fields})))
            return SimpleNamespace(path=exported, file=lambda name: exported)

    stages = SimpleNamespace(weights_identity=lambda spec: "synthetic-seed0", torch_model=lambda spec: None,
                             exported=lambda target: exported)
    outcomes = SimpleNamespace(once=lambda key, origin, build: build())
    builds = Builds(Recording(), stages, outcomes, Origins())
    spec = MODELS["lightweight_openpose"]

    def keys():
        seen.clear()
        builds.onnx(spec, 11)
        builds.torchscript(spec, (1, 3, 368, 640))
        builds.converted(Target(spec, "openvino", "fp32"))
        return dict(seen)

    today = keys()
    assert set(today) == {"onnx", "torchscript", "convert"}
    monkeypatch.setattr(torch, "__version__", "0.0.1")  # versions no real stack has: the test runs on any
    old_torch = keys()
    monkeypatch.setattr(onnx, "__version__", "0.0.1")
    old_onnx = keys()
    for kind in today:
        assert len({today[kind], old_torch[kind], old_onnx[kind]}) == 3, kind
    exported.write_bytes(b"another model's graph")  # the versions never replace what the conversion starts from
    assert keys()["convert"] != old_onnx["convert"]
