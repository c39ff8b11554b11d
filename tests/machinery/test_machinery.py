"""Shared machinery: known failures, progress lines, the summary roll-up, parity arithmetic."""
from __future__ import annotations

import io
import re
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from fixtures import cases as cases_plugin
from models import MODELS
from posegate.backends import BACKENDS
from posegate.cases.known_failures import known_failure
from posegate.gate.report import Summary
from posegate.metrics.parity import compare
from posegate.pipeline.progress import Progress
from posegate.spec import Tolerance

STAGE = "weights"
pytestmark = pytest.mark.stage


def test_known_failures_match_test_ids():
    spec = replace(next(iter(MODELS.values())), known_failures={r"test_infer\[.*-openvino-fp16-": "bf16 overflow"})
    assert known_failure(spec, "openvino", "test_infer[m-openvino-fp16-bs1-368x640]") == "bf16 overflow"
    assert known_failure(spec, "openvino", "test_infer[m-openvino-fp32-bs1-368x640]") is None


class _Declaring(type(BACKENDS["openvino"])):
    known_failures = {r"test_convert\[.*-openvino-fp16": "the IR compressor drops a Resize (backend's own)"}


def test_backends_declare_their_own_known_failures():
    spec = replace(next(iter(MODELS.values())), known_failures={})
    backend = _Declaring()
    assert known_failure(spec, backend, "test_convert[m-openvino-fp16]") == \
        "the IR compressor drops a Resize (backend's own)"
    assert known_failure(spec, backend, "test_convert[m-openvino-fp32]") is None
    # another backend's cases never pick up this backend's declarations
    assert known_failure(spec, "onnxruntime", "test_convert[m-openvino-fp16]") is None
    assert known_failure(spec, None, "test_convert[m-openvino-fp16]") is None


def test_spec_and_backend_known_failures_merge():
    spec = replace(next(iter(MODELS.values())), known_failures={r"test_infer\[.*-openvino-fp16-bs8": "the spec's"})
    backend = _Declaring()
    assert known_failure(spec, backend, "test_infer[m-openvino-fp16-bs8-256x192]") == "the spec's"
    assert known_failure(spec, backend, "test_convert[m-openvino-fp16]") == \
        "the IR compressor drops a Resize (backend's own)"
    assert known_failure(spec, backend, "test_infer[m-openvino-fp16-bs1-256x192]") is None


def test_registered_backends_declare_known_failures_as_patterns_with_reasons():
    for name, backend in BACKENDS.items():
        for pattern, reason in backend.known_failures.items():
            re.compile(pattern)
            assert isinstance(reason, str) and reason.strip(), f"{name}: known failure {pattern!r} needs a reason"


def test_progress_writes_plain_lines_off_a_terminal(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    stream = io.StringIO()
    p = Progress(100, "eval", interval=3600, stream=stream)
    p.enabled = True
    for _ in range(100):
        p.advance()
    p.close()
    lines = stream.getvalue().splitlines()
    assert lines and lines[-1].startswith("[posegate] eval: 100/100 images") and "left" in lines[-1]


def test_summary_rolls_narrow_stages_into_rows():
    s = Summary()
    full = {"model": "m", "backend": "ort", "precision": "fp32", "batch": 1, "shape": "368x640"}
    s.update("t::w[m]", "call", "failed", None, None,
             [("posegate_stage", "weights"), ("posegate_case", {"model": "m"})])
    s.update("t::i[x]", "call", "passed", None, None,
             [("posegate_stage", "infer"), ("posegate_case", full),
              ("posegate_result", {"metric": "AP", "value": 0.5, "dataset": "d"})])
    (row,) = s.rows()
    assert row["stages"] == {"weights": "failed", "infer": "passed"}
    assert row["datasets"] == ["d"] and any("AP 0.5000" in line for line in s.lines())


def test_parity_measures_and_bounds():
    ref = np.array([0.0, 1.0, -2.0], np.float32)
    err = compare(ref + np.float32(0.01), ref, Tolerance(max_abs=0.02, max_rel=0.004, min_cosine=0.999))
    assert err.max_abs == pytest.approx(0.01, rel=1e-4) and err.max_rel == pytest.approx(0.005, rel=1e-4)
    assert not err.ok and "max_rel" in err.describe() and "max_abs" not in err.describe()
    assert not compare(ref[:2], ref, Tolerance(max_abs=1.0)).ok


def test_collection_turns_a_backends_known_failures_into_strict_xfails(request, monkeypatch):
    """The whole path: a backend's declaration reaches the parametrized cases of its own backend only."""
    monkeypatch.setattr(type(BACKENDS["openvino"]), "known_failures",
                        {r"test_convert\[.*-openvino-fp16": "the backend's own"})
    params = []
    definition = SimpleNamespace(name="test_convert", nodeid="tests/stages/test_convert.py::test_convert",
                                 get_closest_marker=lambda name: pytest.mark.cases("convert").mark)
    metafunc = SimpleNamespace(fixturenames=["case"], config=request.config, definition=definition,
                               parametrize=lambda name, values: params.extend(values))
    cases_plugin.pytest_generate_tests(metafunc)
    xfails = {p.id: [m for m in p.marks if m.name == "xfail"] for p in params}
    declared = [i for i in xfails if "-openvino-fp16" in i]
    assert declared and len(declared) < len(xfails)
    assert all(xfails[i][0].kwargs == {"reason": "the backend's own", "strict": True} for i in declared)
    assert not any(m.kwargs["reason"] == "the backend's own" for i in xfails if i not in declared for m in xfails[i])
