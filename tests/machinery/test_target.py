"""One Target per case (posegate/cases/target.py), the one place that decides which engine shape an artifact
is built for, and one store of stage outcomes (posegate/pipeline/failures.py) that a build and a stage test
report to alike, seen across xdist workers through its ledger."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from models import MODELS
from posegate.backends import BACKENDS
from posegate.cases.generate import Case, generate
from posegate.cases.target import Target, per_engine_shape
from posegate.pipeline import Pipeline, StageFailed, StageOutcomes
from posegate.pipeline.origins import Origins
from posegate.storage.cache import ArtifactCache

STAGE = "weights"
pytestmark = pytest.mark.stage


def test_a_target_reads_its_case_and_computes_its_engine_shape_once():
    for case in generate("infer", MODELS.values()):
        t = Target.from_case(case)
        assert (t.model, t.backend, t.precision, t.batch, t.profile.name) == \
            (case.model, case.backend, case.precision, case.batch, case.shape)
        # flip copies, of the profile (MSPN) or of the flow (HigherHRNet), are rows of the engine's batch
        copies = t.profile.copies * getattr(t.spec.flow, "copies", 1)
        assert t.engine_shape == (case.batch * copies, *t.profile.dims)
        assert t.artifact_shape == (t.engine_shape if BACKENDS[case.backend].static_shapes else None)
        assert t.fixed_batch == (t.artifact_shape is not None)
    hrnet = Target.from_case(Case("higherhrnet_w32_512", "ascend", "fp16", 1, "512x512"))
    assert hrnet.engine_shape == (2, 3, 512, 512) and hrnet.artifact_shape == (2, 3, 512, 512)
    generic = Target.from_case(Case("mspn_2xstg", "openvino", "fp16"))  # a shape-generic conversion's case
    assert generic.profile is None and generic.engine_shape is None and not generic.fixed_batch
    supplied = Target.from_case(Case("lightweight_openpose_omz0001", "openvino", "int8", 1, "368x640",
                                     variant="artifact"))
    assert supplied.supplied and supplied.fixed_batch and supplied.artifact_shape is None


def test_cases_targets_and_builds_follow_a_backends_static_shape_flag(tmp_path, monkeypatch):
    """Flip one backend's flag: the convert cases, the Target's artifact shape and the session's build agree."""
    spec, profile = MODELS["mspn_2xstg"], MODELS["mspn_2xstg"].profile("256x192")
    for static in (False, True):
        monkeypatch.setattr(BACKENDS["openvino"], "static_shapes", static)
        assert per_engine_shape("openvino") is static
        convert = [c for c in generate("convert", [spec]) if c.backend == "openvino"]
        assert all((c.shape is not None) is static for c in convert) and convert
        built = []
        p = Pipeline(ArtifactCache(tmp_path / "cache"))
        monkeypatch.setattr(p.builds, "converted", lambda target, built=built: built.append(target.artifact_shape))
        monkeypatch.setattr(BACKENDS["openvino"], "load", lambda artifact, source, precision: object())
        p.session(Target(spec, "openvino", "fp16", profile, 4))
        assert built == [(4, 3, 256, 192) if static else None]


def test_a_build_failure_names_the_default_selection_case_that_builds_the_same_artifact():
    """Two profiles' cases build one engine shape (the flip profile's batch 4 is 8 rows): the failure names the
    case a run without --full has, whichever profile comes first."""
    mspn = MODELS["mspn_2xstg"]
    plain, flip = mspn.profile("256x192"), mspn.profile("256x192-flip")
    spec = replace(mspn, profiles=(flip, replace(plain, batch_sizes=(1, 8), full_batch_sizes=())))
    origins = Origins()
    origin = origins.conversion(Target(spec, "ascend", "fp16", flip, 4))
    assert origin.case() == Case(spec.name, "ascend", "fp16", 8, "256x192")
    failure = origin.failure(RuntimeError("atc: E10001"))
    assert str(failure) == ("convert failed (see test_convert[mspn_2xstg-ascend-fp16-bs8-256x192]): "
                            "RuntimeError: atc: E10001")
    # no case builds a static backend's artifact without a shape: the message says what was being built
    nothing = origins.conversion(Target(spec, "ascend", "fp16")).failure("x")
    assert nothing.case is None and str(nothing) == ("convert failed (no case of test_convert builds mspn_2xstg "
                                                     "(backend=ascend, precision=fp16)): x")


def test_one_store_remembers_a_failed_build_and_shares_failed_stage_tests_across_workers(tmp_path):
    ledger = tmp_path / "ledger" / "run"
    worker_a, worker_b = StageOutcomes(ledger), StageOutcomes(ledger)  # two xdist workers of one run
    calls = []

    def build():
        calls.append(1)
        raise OSError(28, "No space left on device")
    origin = Origins().onnx_export(MODELS["mspn_2xstg"], 17)
    with pytest.raises(StageFailed) as first:
        worker_a.once(("onnx", "mspn_2xstg", 17), origin, build)
    with pytest.raises(StageFailed) as again:
        worker_a.once(("onnx", "mspn_2xstg", 17), origin, build)
    assert again.value is first.value and len(calls) == 1, "a failed build runs once per process"
    assert str(first.value).startswith("export failed (see test_export[mspn_2xstg-opset17]): OSError")
    assert worker_a.once(("onnx", "other", 17), origin, lambda: "built") == "built"

    assert worker_b.failed("infer") is None  # nothing recorded yet, no ledger folder yet
    case = {"model": "mspn_2xstg", "backend": "openvino", "precision": "fp16", "shape": "256x192"}
    worker_a.record("tests/stages/test_infer.py::test_infer[x]", "infer", case, "off the reference", judged=True)
    worker_a.record("tests/stages/test_infer.py::test_infer[y]", "infer", {**case, "precision": "fp32"},
                    "could not load", judged=False)
    seen = worker_b.failed("infer", model="mspn_2xstg", precision="fp16")
    assert seen is not None and seen["message"] == "off the reference", "the other worker sees the failure"
    assert worker_b.failed("infer", ran=True, precision="fp16") is None, "judged outputs still feed the metric"
    assert worker_b.failed("infer", ran=True, precision="fp32")["message"] == "could not load"
    assert worker_b.failed("convert", model="mspn_2xstg") is None
    assert StageOutcomes().failed("infer") is None  # a pipeline made outside pytest has no stage tests


def test_the_pipeline_reports_to_the_store_it_is_given(tmp_path, monkeypatch):
    outcomes = StageOutcomes(tmp_path / "ledger")
    p = Pipeline(ArtifactCache(tmp_path / "cache"), outcomes=outcomes)
    monkeypatch.setattr(p, "torch_model", lambda spec: torch.nn.Identity())
    monkeypatch.setattr(BACKENDS["openvino"], "convert", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    exported = tmp_path / "model.onnx"
    exported.write_bytes(b"stand-in export")
    monkeypatch.setattr(p, "onnx", lambda spec, opset: exported)
    monkeypatch.setattr(BACKENDS["openvino"], "artifact_settings", lambda precision, spec=None: {})
    target = Target(MODELS["mspn_2xstg"], "openvino", "fp16")
    with pytest.raises(StageFailed) as err:
        p.converted(target)
    with pytest.raises(StageFailed) as again:  # a dependant asks for the session: the store answers
        p.session(target)
    assert again.value is err.value and err.value.test_id == "test_convert[mspn_2xstg-openvino-fp16]"
    assert str(err.value).startswith("convert failed (see test_convert[mspn_2xstg-openvino-fp16]): ")
    assert "boom" in str(err.value)
