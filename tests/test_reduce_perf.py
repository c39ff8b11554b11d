"""What reduction costs: a failing Lightweight OpenPose case at its parity profile (OMZ weights where given),
localised and reduced to its bundle, against one parity check of it (a fresh session on the file, one
run, the comparison). The issue's budget is 30 checks; the ratio and the backend conversions are in the
benchmark's extra_info."""
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
from posegate.reduce import budget, reduce
from posegate.reduce.runners import OrtRunner

STAGE = "perf"
pytestmark = pytest.mark.perf
BUDGET = 30


def test_reduction_costs_at_most_thirty_parity_checks(benchmark, pipeline, run_context, tmp_path, record):
    spec = MODELS["lightweight_openpose_omz0001"]
    profile = spec.profile("368x640")
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    x = pipeline.parity_batch(spec, profile, dataset, 1).x
    ref = pipeline.reference_outputs(spec, profile, dataset, 1)
    model = pipeline.torch_model(spec)
    path = tmp_path / "head-bias.onnx"
    base = onnx.load(str(pipeline.onnx(spec, 17)))
    onnx.save(FAULTS["head-bias-0.01"](base).model, str(path))
    io = EngineIO.of(spec)

    def check():
        out = OrtSession(spec, path, "fp32").run({spec.input_name: x})
        return [compare(out[n], ref[n], spec.tolerance("fp32", n)).ok for n in spec.output_names]

    def reduced():
        loc = localize(model, OrtProbe(path, io), x, tolerance_of(spec, "fp32", spec.output_names),
                       tuple(spec.output_names), {n: n for n in spec.output_names})
        return reduce(path, model, loc, OrtRunner("fp32"), x, io, tuple(spec.output_names))[0]
    check()  # warm-up: imports, allocator, thread pools
    checks = []
    for _ in range(3):
        start = time.perf_counter()
        assert not all(check())
        checks.append(time.perf_counter() - start)
    benchmark.group = f"{spec.name}-{profile.name}-reduce"
    result = benchmark.pedantic(reduced, rounds=3, warmup_rounds=0, iterations=1)
    ratio = benchmark.stats.stats.median / statistics.median(checks)
    benchmark.extra_info.update({"reduce_over_parity_check": ratio, "parity_check_s": statistics.median(checks),
                                 "reduce_s": benchmark.stats.stats.median, "nodes": len(result.nodes),
                                 "graph_nodes": result.graph_nodes, "conversions": result.conversions,
                                 "localisation_runs": result.localisation_runs, "dataset": dataset.name})
    record(metric="reduce / parity check", value=ratio, threshold=BUDGET, direction="max", margin=BUDGET - ratio,
           dataset=dataset.name, reduction=result.as_dict())
    assert result.reproduces, result.describe()
    assert result.backend_runs <= budget(len(base.graph.node))
    assert ratio <= BUDGET, f"reducing costs {ratio:.1f} parity checks (budget {BUDGET})"
