"""A failed build names the stage test to read, and that test exists.

Every stage that raises StageFailed is made to fail cheaply (its builder replaced by one that raises;
no network is exported or converted), for every model and every case that builds an artifact. The
message's ``test_x[id]`` must name a test function under tests/ parametrised with
``@pytest.mark.cases(kind)`` whose generated cases include that id, and the failure's ``case`` must be
that very generated case. The checker is itself shown to reject the stale ids it replaced.
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from models import MODELS
from posegate.artifacts import bind
from posegate.backends import BACKENDS
from posegate.cases.generate import Case, generate
from posegate.cases.target import Target
from posegate.export.to_torchscript import engine_cases
from posegate.pipeline import Pipeline, StageFailed, builds  # builds: its builders are replaced
from posegate.storage.cache import ArtifactCache

pytestmark = pytest.mark.stage

TESTS = Path(__file__).resolve().parents[1]  # every test folder: stage tests live in several


@lru_cache(maxsize=1)
def case_tests() -> dict[str, set[str]]:
    """Test function name -> the case kinds it is parametrised with, read from the test files' source."""
    found: dict[str, set[str]] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and ast.unparse(d.func) == "pytest.mark.cases" and d.args:
                    found.setdefault(node.name, set()).add(ast.literal_eval(d.args[0]))
    return found


def stale(failure: StageFailed, datasets, artifacts) -> list[str]:
    """Why a failure's message does not name a generated case of an existing stage test (empty: it does)."""
    m = re.search(r"\(see (test_\w+)\[([^\]]+)\]\)", str(failure))
    if not m:
        return [f"names no test id: {failure}"]
    test, case_id = m.groups()
    kinds = case_tests().get(test)
    if not kinds:
        return [f"{test} is no test under tests/ with @pytest.mark.cases"]
    cases = [c for k in sorted(kinds) for c in _generated(k, datasets, artifacts)]
    problems = [] if case_id in {c.id for c in cases} else [f"{test}[{case_id}] is not among its generated cases"]
    if failure.case not in cases:
        problems.append(f"{failure.case!r} is not a case the registry generates for {test}")
    return problems


_GENERATED: dict[str, list[Case]] = {}


def _generated(kind: str, datasets, artifacts) -> list[Case]:
    """The registry's cases, as the cases marker parametrises a test with them (kept: hundreds of checks)."""
    key = repr((kind, datasets, artifacts))
    if key not in _GENERATED:
        _GENERATED[key] = generate(kind, MODELS.values(), datasets, artifacts=artifacts)
    return _GENERATED[key]


def _raise(*args, **kwargs):
    raise RuntimeError("builder broke on purpose")


def _fails(fn, *args) -> StageFailed:
    with pytest.raises(StageFailed) as err:
        fn(*args)
    return err.value


@pytest.fixture
def datasets(run_context):
    return run_context.dataset_flags()


@pytest.fixture
def pipe(tmp_path, monkeypatch):
    """A pipeline whose exports are tiny files and whose network is never built (the weights test replaces
    the builder itself)."""
    p = Pipeline(ArtifactCache(tmp_path / "cache"))
    exported = tmp_path / "exported.bin"
    exported.write_bytes(b"stand-in export")
    monkeypatch.setattr(p, "torch_model", lambda spec: torch.nn.Identity())
    monkeypatch.setattr(p, "onnx", lambda spec, opset: exported)
    monkeypatch.setattr(p, "torchscript", lambda spec, shape: exported)
    for backend in BACKENDS.values():  # probing a GPU or NPU for the cache key is not what is tested here
        monkeypatch.setattr(backend, "artifact_settings",
                            lambda precision, spec=None, name=backend.name: {"backend": name})
    return p


@pytest.mark.parametrize("with_checkpoint", [False, True], ids=["seeded", "checkpoint"])
def test_weights_failures_name_the_test_that_builds_the_network(tmp_path, monkeypatch, datasets, with_checkpoint):
    monkeypatch.setattr(builds, "build_model", _raise)
    for spec in MODELS.values():
        if with_checkpoint:
            (tmp_path / spec.checkpoint.filename).write_bytes(b"")
        p = Pipeline(ArtifactCache(tmp_path / "cache"), tmp_path if with_checkpoint else None)
        failure = _fails(p.torch_model, spec)
        assert failure.stage == "weights" and failure.case == Case(spec.name)
        loads = "test_checkpoint_loads" if with_checkpoint else "test_prefixed_checkpoint_loads_the_same"
        assert failure.test == loads
        assert stale(failure, datasets, {}) == []
        assert _fails(p.weights_info, spec) is failure, "a second ask re-raises the remembered failure"


def test_onnx_export_failures_name_their_opsets_test(tmp_path, monkeypatch, datasets):
    monkeypatch.setattr(builds, "export_onnx", _raise)
    p = Pipeline(ArtifactCache(tmp_path / "cache"))
    monkeypatch.setattr(p, "torch_model", lambda spec: torch.nn.Identity())
    for spec in MODELS.values():
        for opset in spec.opsets:
            failure = _fails(p.onnx, spec, opset)
            assert failure.stage == "export" and failure.test_id == f"test_export[{spec.name}-opset{opset}]"
            assert stale(failure, datasets, {}) == []


def test_trace_failures_name_the_torchscript_test_of_their_engine_shape(tmp_path, monkeypatch, datasets):
    monkeypatch.setattr(builds, "export_torchscript", _raise)
    p = Pipeline(ArtifactCache(tmp_path / "cache"))
    monkeypatch.setattr(p, "torch_model", lambda spec: torch.nn.Identity())
    for spec in MODELS.values():
        for profile, batch, _ in engine_cases(spec):
            failure = _fails(p.torchscript, spec, spec.engine_shape(profile, batch))
            assert failure.case.shape is not None and stale(failure, datasets, {}) == []
        # a shape-generic backend converts from the default trace: its failure names a test too
        assert stale(_fails(p.exported, Target(spec, "torchscript", "fp32")), datasets, {}) == []


def test_convert_failures_name_the_convert_case_of_every_backend_and_shape(pipe, monkeypatch, datasets):
    for backend in BACKENDS.values():
        monkeypatch.setattr(backend, "convert", _raise)
    seen = {"dynamic": 0, "static": 0}
    for case in generate("convert", MODELS.values(), datasets):
        spec = MODELS[case.model]
        shape = None if case.shape is None else spec.engine_shape(spec.profile(case.shape), case.batch)
        failure = _fails(pipe.converted, Target.from_case(case))
        assert failure.stage == "convert" and stale(failure, datasets, {}) == []
        # the case names the same artifact: its backend, precision and (static) engine shape
        assert (failure.case.backend, failure.case.precision) == (case.backend, case.precision)
        assert shape is None or spec.engine_shape(spec.profile(failure.case.shape), failure.case.batch) == shape
        seen["static" if BACKENDS[case.backend].static_shapes else "dynamic"] += 1
    assert seen["dynamic"] and seen["static"], seen


def test_load_failures_name_the_convert_case(pipe, monkeypatch, datasets):
    for backend in BACKENDS.values():
        monkeypatch.setattr(backend, "convert", lambda source, out_dir, precision, shape: None)
        monkeypatch.setattr(backend, "load", _raise)
    spec = MODELS["mspn_2xstg"]
    profile = spec.profile("256x192")
    for target in [Target(spec, "openvino", "fp16"), Target(spec, "ascend", "fp16", profile, 4)]:
        failure = _fails(pipe.session, target)
        assert failure.stage == "convert" and stale(failure, datasets, {}) == []
    assert failure.case == Case("mspn_2xstg", "ascend", "fp16", 4, "256x192")


def test_a_supplied_artifact_that_fails_to_open_names_its_artifact_test(tmp_path, monkeypatch, datasets):
    spec = MODELS["lightweight_openpose_omz0001"]
    contract = next(c for c in spec.artifacts)
    path = tmp_path / "model.xml"
    path.write_text("<net/>")
    bound = bind(MODELS.values(), {(spec.name, contract.backend, contract.precision): path}, None, BACKENDS)
    p = Pipeline(ArtifactCache(tmp_path / "cache"), artifacts=bound)
    outputs = lambda x: tuple(torch.zeros(x.shape[0], 2, 4, 4) for _ in spec.output_names)  # noqa: E731
    monkeypatch.setattr(p, "torch_model", lambda spec: outputs)
    monkeypatch.setattr(BACKENDS[contract.backend], "open", _raise)
    failure = _fails(p.session, Target(spec, contract.backend, contract.precision))
    assert failure.test == "test_artifact" and failure.case.variant == "artifact"
    assert stale(failure, datasets, bound) == []
    assert stale(failure, datasets, {}), "without the supplied artifact its test case does not exist"


def test_faithful_message_shape(pipe, monkeypatch, datasets):
    monkeypatch.setattr(BACKENDS["ascend"], "convert", _raise)
    spec = MODELS["lightweight_openpose"]
    failure = _fails(pipe.converted, Target(spec, "ascend", "fp16", spec.profile("368xW"), 1))
    want = Case("lightweight_openpose", "ascend", "fp16", 1, "368xW")
    assert failure.case == want and failure.test == "test_convert"
    assert str(failure).startswith(f"convert failed (see test_convert[{want.id}]): ")
    assert "builder broke on purpose" in str(failure)
    assert stale(failure, datasets, {}) == []


def test_an_artifact_no_stage_test_builds_says_so(pipe, monkeypatch, datasets):
    """A static backend asked for no engine shape: no convert case builds that, and the message does not
    pretend one does."""
    monkeypatch.setattr(BACKENDS["ascend"], "convert", _raise)
    failure = _fails(pipe.converted, Target(MODELS["mspn_2xstg"], "ascend", "fp16"))
    assert failure.case is None and "no case of test_convert builds mspn_2xstg" in str(failure)
    assert stale(failure, datasets, {})


@pytest.mark.parametrize("test, given, why", [
    ("test_weights", Case("mspn_2xstg"), "no test"),  # the weights id the pipeline used to name
    ("test_convert", Case("mspn_2xstg", "ascend", "fp16"), "not among"),  # a static backend's, shapeless
    ("test_torchscript", Case("mspn_2xstg"), "not among"),  # the trace fallback for an unlisted shape
    ("test_convert", Case("mspn_2xstg", "openvino", "fp16", full=True), "not a case"),  # right id, wrong case
], ids=["weights-test-that-is-not", "static-convert-without-shape", "trace-fallback", "case-not-generated"])
def test_the_checker_rejects_stale_ids(datasets, test, given, why):
    assert any(why in p for p in stale(StageFailed("convert", test, given, "x"), datasets, {}))


def test_the_checker_reads_the_cases_marker():
    tests = case_tests()
    assert tests["test_convert"] == {"convert"} and tests["test_artifact"] == {"artifact"}
    assert tests["test_torchscript"] == {"torchscript"} and "model" in tests["test_checkpoint_loads"]
    assert "test_stage_failures" not in tests
