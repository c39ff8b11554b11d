"""The nightly gate: accuracy and throughput baselines, run validity, the Markdown report.

The end-to-end test runs the suite itself three times on one case: save a baseline, pass against it,
then fail against it with a backend whose outputs are perturbed within the spec's tolerance (so only
the baseline can catch it).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import cv2
import pytest

from models import MODELS
from posegate.context import REPO
from posegate.gate.baseline import AccuracyBaseline, Measurement
from posegate.gate.machine import differences, fingerprint
from posegate.gate.report import Summary, markdown
from posegate.gate.throughput import ThroughputBaseline, validity
from posegate.metrics.visuals import oks, save_worst_images

STAGE = "weights"
pytestmark = pytest.mark.stage
SPEC = MODELS["lightweight_openpose"]


def _base(value, direction="min", bound=None, name="AP"):
    b = AccuracyBaseline()
    b.add("test_accuracy[x]", Measurement(name, value, direction, bound, "mini@1", "w@1"))
    return b


@pytest.mark.parametrize("value,status", [(0.70, "ok"), (0.696, "ok"), (0.694, "regressed"), (0.80, "improved")])
def test_accuracy_baseline_is_one_sided_with_the_specs_metric_tolerance(value, status):
    slack = SPEC.metric_parity["fp32"]  # 0.005
    assert slack == pytest.approx(0.005)
    v = _base(0.70).compare("test_accuracy[x]", Measurement("AP", value, "min", None, "mini@1", "w@1"), SPEC, "fp32")
    assert v.status == status, v.message
    assert v.allowed == pytest.approx(0.70 - slack)


def test_a_ceiling_metric_regresses_upwards():
    b = _base(1e-6, "max", 1e-4, "max_abs[out]")  # headroom 1e-4 - 1e-6; a quarter of it is allowed
    ok = b.compare("test_accuracy[x]", Measurement("max_abs[out]", 2e-5, "max", 1e-4, "mini@1", "w@1"), SPEC)
    bad = b.compare("test_accuracy[x]", Measurement("max_abs[out]", 3e-5, "max", 1e-4, "mini@1", "w@1"), SPEC)
    assert ok.status == "ok" and bad.status == "regressed"
    assert "regressed" in bad.message and "baseline 1e-06" in bad.message


def test_new_and_stale_entries_are_reported_not_failed():
    b = _base(0.7)
    assert b.compare("test_accuracy[y]", Measurement("AP", 0.1, "min"), SPEC).status == "new"
    stale = b.compare("test_accuracy[x]", Measurement("AP", 0.1, "min", None, "full@2", "w@1"), SPEC)
    assert stale.status == "stale" and "mini@1 -> full@2" in stale.message


def test_baseline_files_of_the_wrong_kind_are_named(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps({"machine_info": {}, "benchmarks": []}))
    with pytest.raises(ValueError, match="bench.json is not a posegate accuracy baseline"):
        AccuracyBaseline.load(tmp_path / "bench.json")
    b = _base(0.7)
    b.save(tmp_path / "acc.json", fingerprint())
    with pytest.raises(ValueError, match="acc.json is not a pytest-benchmark result file"):
        ThroughputBaseline.load(tmp_path / "acc.json")
    (tmp_path / "cut.json").write_text('{"format": ')
    with pytest.raises(ValueError, match="cut.json is not JSON"):
        AccuracyBaseline.load(tmp_path / "cut.json")
    assert AccuracyBaseline.load(tmp_path / "acc.json").entries == b.entries


def test_a_first_night_without_baseline_files_records_everything_as_new(tmp_path):
    acc = AccuracyBaseline.load(tmp_path / "none.json")
    assert acc.missing and acc.compare("t[x]", Measurement("AP", 0.5, "min"), SPEC).status == "new"
    thr = ThroughputBaseline.load(tmp_path / "none.json")
    assert thr.missing and thr.compare("t[x]", 10.0, True, fingerprint(), 0.8).status == "new"


def _bench(tmp_path, machine, rate=100.0, valid=True):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine_info": {"posegate": machine}, "benchmarks": [
        {"name": "test_perf_device[m]",
         "extra_info": {"samples_per_second": rate, "valid": valid, "unit": "images"}}]}))
    return ThroughputBaseline.load(path)


def test_throughput_floor_relative_to_the_baseline(tmp_path):
    me = fingerprint()
    base = _bench(tmp_path, me)
    assert base.compare("test_perf_device[m]", 85.0, True, me, 0.8).status == "ok"
    low = base.compare("test_perf_device[m]", 75.0, True, me, 0.8)
    assert low.status == "regressed" and "throughput regressed: 75.00 images/s < 80% of baseline 100.00" in low.message
    assert base.compare("test_perf_device[other]", 1.0, True, me, 0.8).status == "new"
    assert base.compare("test_perf_device[m]", 1.0, False, me, 0.8).status == "invalid"
    assert _bench(tmp_path, me, valid=False).compare("test_perf_device[m]", 1.0, True, me, 0.8).status == "new"


def test_throughput_from_another_machine_is_never_compared(tmp_path):
    me = fingerprint()
    other = {**me, "cores": (me["cores"] or 1) * 8, "host": "elsewhere"}
    assert differences(me, {**me, "host": "elsewhere"}) == []  # runners of one kind differ only by name
    c = _bench(tmp_path, other).compare("test_perf_device[m]", 1.0, True, me, 0.8)
    assert c.status == "not-comparable" and "another machine" in c.message and "cores" in c.message


def test_run_validity_names_what_is_wrong():
    assert validity(10, 2.0, 0.05) == []
    assert validity(2, 0.3, 0.9, parity_ok=False) == [
        "2 rounds < 3", "0.30 s timed < 1.0 s", "spread 90% > 50%",
        "outputs fail parity with the reference on the same inputs"]


def test_markdown_report_has_a_row_per_configuration_and_the_failures():
    s = Summary()
    case = {"model": "m", "backend": "onnxruntime", "precision": "fp32", "batch": 1, "shape": "368x640"}
    props = [("posegate_stage", "accuracy"), ("posegate_case", case),
             ("posegate_result", {"metric": "AP", "value": 0.70, "threshold": 0.72, "direction": "min", "margin": -0.02,
                                  "baseline": [{"status": "regressed", "value": 0.70, "baseline": 0.75}]})]

    class Crash:
        class reprcrash:
            message = "AP 0.7000 vs 0.72: margin -0.0200"
    s.update("tests/t.py::test_accuracy[m]", "call", "failed", None, Crash(), props)
    md = markdown(s, machine=fingerprint())
    assert "| m | onnxruntime | fp32 | 1 | 368x640 |" in md
    assert "AP 0.7000 >=0.72 margin -0.0200" in md and "baseline 0.7500 (-0.0500) regressed" in md
    assert "## Failures" in md and "margin -0.0200" in md


def test_oks_and_worst_case_pictures(run_context, tmp_path):
    dataset = run_context.parity_dataset("coco-keypoints")
    people = {i: [a for a in dataset.annotations(i) if a["num_keypoints"]] for i in dataset.image_ids}
    exact = [{"image_id": i, "keypoints": a["keypoints"], "score": 1.0} for i, ps in people.items() for a in ps]
    assert all(oks(a, a["keypoints"]) == pytest.approx(1.0) for ps in people.values() for a in ps)
    first = next(i for i, ps in people.items() if ps)
    moved = [dict(r, keypoints=[v + 20 * (j % 3 != 2) for j, v in enumerate(r["keypoints"])]) if r["image_id"] == first
             else r for r in exact]
    paths = save_worst_images(dataset, moved, tmp_path, "t", count=2)
    assert len(paths) == 2 and f"image{first}-" in paths[0], paths  # the damaged image is the worst
    assert cv2.imread(paths[0]).shape[1] > dataset.image_info(first).width


DEGRADE = """
import os
from posegate.backends.onnxruntime import OrtSession
_run = OrtSession._run
factor = 1 + float(os.environ["POSEGATE_TEST_DEGRADE"])
OrtSession._run = lambda self, x: [o * factor for o in _run(self, x)]
"""


def _suite(tmp_path, run_context, *args, degrade=None, select="test_infer"):
    (tmp_path / "degrade_ort.py").write_text(DEGRADE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1", "POSEGATE_TEST_DEGRADE": str(degrade)}
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           f"--cache-dir={run_context.cache_dir}",
           "-k", f"{select} and lightweight_openpose_omz0001-onnxruntime-fp32-bs1-368x640",
           *(["-p", "degrade_ort"] if degrade else []), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_a_degraded_backend_fails_the_gate_against_the_baseline_it_passed(tmp_path, run_context):
    base = tmp_path / "accuracy-baseline.json"
    saved = _suite(tmp_path, run_context, f"--save-accuracy-baseline={base}")
    assert saved.returncode == 0, saved.stdout[-3000:]
    again = _suite(tmp_path, run_context, f"--accuracy-baseline={base}")
    assert again.returncode == 0, again.stdout[-3000:]
    # within the 2e-5 relative tolerance
    degraded = _suite(tmp_path, run_context, f"--accuracy-baseline={base}", degrade=1e-5)
    assert degraded.returncode == 1, degraded.stdout[-3000:]
    assert "baseline gate: " in degraded.stdout, degraded.stdout[-3000:]
    assert "max_rel[stage2_heatmaps] regressed: " in degraded.stdout
    assert f"(accuracy baseline {base})" in degraded.stdout


def test_a_fast_wrong_engine_fails_its_benchmark(tmp_path, run_context):
    run = _suite(tmp_path, run_context, "-m", "perf", "--benchmark-disable", degrade=0.1, select="test_perf_device")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "benchmark invalid: onnxruntime-fp32 outputs fail parity with torch on the timed inputs" in run.stdout


def test_the_nightly_workflow_uses_only_options_this_suite_knows(pytestconfig):
    text = (REPO / ".github" / "workflows" / "nightly.yml").read_text()
    used = set(re.findall(r"\s(--[a-z][a-z-]+)", text)) - {"--full"}
    assert {"--shard", "--merge-predictions", "--accuracy-baseline", "--throughput-baseline"} <= used
    if not pytestconfig.pluginmanager.has_plugin("randomly"):  # `-p no:randomly` (file order) drops its options
        used = {o for o in used if not o.startswith("--randomly-")}
    parser = pytestconfig._parser  # pytest keeps no public list of its options
    known = {n for g in [*parser._groups, parser._anonymous] for o in g.options for n in o.names()}
    assert not used - known, f"nightly.yml uses options no plugin defines: {sorted(used - known)}"
