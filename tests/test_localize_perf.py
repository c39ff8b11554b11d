"""What localisation costs: one failing Lightweight OpenPose case, at its parity profile, against one parity
check of it (a fresh session on the file, one run, the comparison). The issue's budget is 10 checks; the
ratio is in the benchmark's extra_info."""
from __future__ import annotations

import statistics
import time

import onnx
import pytest

from models import MODELS
from posegate.backends import EngineIO
from posegate.backends.onnxruntime_backend import OrtSession
from posegate.faults import FAULTS
from posegate.localize import localize, tolerance_of
from posegate.parity import compare
from posegate.probes import OrtProbe

STAGE = "perf"
pytestmark = pytest.mark.perf
BUDGET = 10


def test_localisation_costs_at_most_ten_parity_checks(benchmark, pipeline, run_context, tmp_path, record):
    spec = MODELS["lightweight_openpose_omz0001"]
    profile = spec.profile("368x640")
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    x = pipeline.parity_batch(spec, profile, dataset, 1).x
    ref = pipeline.reference_outputs(spec, profile, dataset, 1)
    model = pipeline.torch_model(spec)
    path = tmp_path / "head-bias.onnx"
    onnx.save(FAULTS["head-bias-0.01"](onnx.load(str(pipeline.onnx(spec, 17)))).model, str(path))

    def check():
        out = OrtSession(spec, path, "fp32").run({spec.input_name: x})
        return [compare(out[n], ref[n], spec.tolerance("fp32", n)).ok for n in spec.output_names]

    def locate():
        return localize(model, OrtProbe(path, EngineIO.of(spec)), x, tolerance_of(spec, "fp32", spec.output_names),
                        tuple(spec.output_names), {n: n for n in spec.output_names})
    check()  # warm-up: imports, allocator, thread pools
    checks = []
    for _ in range(3):
        start = time.perf_counter()
        assert not all(check())
        checks.append(time.perf_counter() - start)
    benchmark.group = f"{spec.name}-{profile.name}-localize"
    loc = benchmark.pedantic(locate, rounds=3, warmup_rounds=0, iterations=1)
    ratio = benchmark.stats.stats.median / statistics.median(checks)
    benchmark.extra_info.update({"localize_over_parity_check": ratio, "parity_check_s": statistics.median(checks),
                                 "localize_s": benchmark.stats.stats.median, "compared": loc.compared,
                                 "first": loc.first and loc.first["node"], "dataset": dataset.name})
    record(metric="localize / parity check", value=ratio, threshold=BUDGET, direction="max", margin=BUDGET - ratio,
           dataset=dataset.name)
    assert loc.first is not None
    assert ratio <= BUDGET, f"localising costs {ratio:.1f} parity checks (budget {BUDGET})"
