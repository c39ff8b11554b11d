"""Shared machinery: known failures, progress lines, the summary roll-up, parity arithmetic."""
from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest

from models import MODELS
from posegate.cases import known_failure
from posegate.parity import compare
from posegate.progress import Progress
from posegate.report import Summary
from posegate.spec import Tolerance

STAGE = "weights"
pytestmark = pytest.mark.stage


def test_known_failures_match_test_ids():
    spec = replace(next(iter(MODELS.values())), known_failures={r"test_infer\[.*-openvino-fp16-": "bf16 overflow"})
    assert known_failure(spec, "test_infer[m-openvino-fp16-bs1-368x640]") == "bf16 overflow"
    assert known_failure(spec, "test_infer[m-openvino-fp32-bs1-368x640]") is None


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
    s.update("t::w[m]", "call", "failed", None, None, [("posegate_stage", "weights"), ("posegate_case", {"model": "m"})])
    s.update("t::i[x]", "call", "passed", None, None, [("posegate_stage", "infer"), ("posegate_case", full),
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
