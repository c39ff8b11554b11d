"""How a failure reads: NaN/Inf named by count and output, metric impact beside tensor errors, a row's own
accuracy outcome never masked by a model-wide pass, and metric tests that skip only when infer could not run."""
from __future__ import annotations

import uuid

import numpy as np
import pytest

from fixtures.artifacts import OUTCOMES
from posegate.gate.report import Summary, format_result, markdown
from posegate.metrics.parity import compare, describe_nonfinite, nonfinite_counts
from posegate.spec import Tolerance

STAGE = "infer"
pytestmark = pytest.mark.stage
TOL = Tolerance(max_abs=1e-4, max_rel=2e-5, min_cosine=0.99999)


def test_nan_and_inf_are_counted_and_named_never_max_abs_nan():
    ref = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    out = ref.copy()
    out[0, :2] = np.nan
    out[2, 3] = np.inf
    e = compare(out, ref, TOL)
    assert not e.ok and "2 NaN and 1 Inf of 12 values (reference finite)" in e.describe()
    assert "nan" not in f"{e.max_abs} {e.max_rel}" and e.max_abs == 0.0  # the finite values agree
    blamed = compare(ref, out, TOL).describe()
    assert "the reference itself has 2 NaN and 1 Inf: the weights are to blame, not the backend" in blamed
    assert compare(ref, ref, TOL).ok
    found = nonfinite_counts({"a": out, "b": ref})
    assert found == {"a": {"nan": 2, "inf": 1, "size": 12}}
    assert describe_nonfinite(found) == "a: 2 NaN and 1 Inf of 12 values (reference finite)"
    row = format_result({"parity": {"a": e.as_dict()}})
    assert "a: 2 NaN and 1 Inf" in row and "nan" not in row.replace("NaN", "")


def test_a_row_shows_its_own_accuracy_outcome_not_the_model_wide_oracle():
    s = Summary()
    full = {"model": "m", "backend": "ov", "precision": "fp16", "batch": 1, "shape": "368x640", "dataset": "d"}
    s.update("t::oracle[m-d]", "call", "passed", None, None,
             [("posegate_stage", "accuracy"), ("posegate_case", {"model": "m", "dataset": "d"})])
    s.update("t::metric_parity[x]", "setup", "skipped", None, ("f", 1, "Skipped: ov unavailable"),
             [("posegate_stage", "accuracy"), ("posegate_case", full)])
    s.update("t::infer[x]", "call", "passed", None, None, [("posegate_stage", "infer"), ("posegate_case", full)])
    (row,) = s.rows()
    assert row["stages"]["accuracy"] == "skipped"
    s.update("t::oracle[m-d]", "call", "failed", None, None,
             [("posegate_stage", "accuracy"), ("posegate_case", {"model": "m", "dataset": "d"})])
    assert s.rows()[0]["stages"]["accuracy"] == "failed"  # a wider failure still shows


def test_tensor_errors_and_the_metric_change_read_side_by_side():
    s = Summary()
    case = {"model": "m", "backend": "ort", "precision": "fp32", "batch": 1, "shape": "368x640"}
    bad = compare(np.float32([1.0, 2.0]) * 1.01, np.float32([1.0, 2.0]), TOL)
    s.update("t::infer[a]", "call", "failed", None, None, [
        ("posegate_stage", "infer"), ("posegate_case", case), ("posegate_result", {"parity": {"maps": bad.as_dict()}}),
        ("posegate_result", {"localization": {"first": {"node": "/a/Conv", "op_type": "Conv", "module": "a",
                                                        "entering": 0.0, "leaving": 0.01, "verdict": "here"},
                                              "plot": "/tmp/x.png"}})])
    s.update("t::metric_parity[a]", "call", "passed", None, None, [
        ("posegate_stage", "accuracy"), ("posegate_case", {**case, "dataset": "d"}),
        ("posegate_result", {"metric": "|AP-AP_ref|", "value": 0.0, "threshold": 0.005, "direction": "max",
                             "margin": 0.005, "measured": 0.75, "reference": 0.75, "dataset": "d"})])
    text = "\n".join(s.lines())
    assert "tensors: max_rel 0.01 in maps FAILS tolerance 2e-05" in text
    assert "first divergent: /a/Conv (Conv, module a)" in text
    assert "(AP 0.7500 -> 0.7500)" in text
    md = markdown(s)
    assert "[error along the graph](/tmp/x.png)" in md


@pytest.mark.parametrize("judged, skips", [(True, False), (False, True)])
def test_metric_tests_skip_only_when_infer_could_not_run(pytestconfig, needs, judged, skips):
    model = f"ledger-test-{uuid.uuid4().hex}"
    entry = pytestconfig.stash[OUTCOMES].record("t::test_infer[x]", "infer", {"model": model}, "m", judged)
    try:
        if skips:
            with pytest.raises(pytest.skip.Exception, match="infer failed"):
                needs.stage("infer", ran=True, model=model)
        else:
            needs.stage("infer", ran=True, model=model)  # outputs judged wrong still feed the metric
        with pytest.raises(pytest.skip.Exception):
            needs.stage("infer", model=model)  # the old contract stays available
    finally:
        entry.unlink()
