"""What diagnosis costs, against one parity check of the same failing case (a fresh session on the file, one
run, the comparison): a Lightweight OpenPose export with a biased head (OMZ weights where given) at its
parity profile. Localisation's budget is 10 checks, reduction's (localisation included) 30; the ratios, and
the reduction's backend conversions, are in each benchmark's extra_info."""
from __future__ import annotations

import statistics
import time
from types import SimpleNamespace

import onnx
import pytest

from models import MODELS
from posegate.backends import EngineIO
from posegate.backends.onnxruntime import OrtSession
from posegate.backends.probing import OrtProbe
from posegate.diagnosis.faults import FAULTS
from posegate.diagnosis.localize import localize, tolerance_of
from posegate.diagnosis.reduce import budget, reduce
from posegate.diagnosis.reduce.runners import SubgraphRunner
from posegate.metrics.parity import compare

STAGE = "perf"
pytestmark = pytest.mark.perf
LOCALIZE_BUDGET = 10
REDUCE_BUDGET = 30


def _failing_case(pipeline, run_context, tmp_path):
    """The biased-head export with its inputs and torch reference, and the median time of one parity check
    of it (after a warm-up of imports, allocator and thread pools); every check must fail."""
    spec = MODELS["lightweight_openpose_omz0001"]
    profile = spec.profile("368x640")
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    x = pipeline.parity_batch(spec, profile, dataset, 1).x
    ref = pipeline.reference_outputs(spec, profile, dataset, 1)
    path = tmp_path / "head-bias.onnx"
    base = onnx.load(str(pipeline.onnx(spec, 17)))
    onnx.save(FAULTS["head-bias-0.01"](base).model, str(path))

    def check():
        out = OrtSession(spec, path, "fp32").run({spec.input_name: x})
        return [compare(out[n], ref[n], spec.tolerance("fp32", n)).ok for n in spec.output_names]
    check()
    checks = []
    for _ in range(3):
        start = time.perf_counter()
        assert not all(check())
        checks.append(time.perf_counter() - start)
    case = SimpleNamespace(spec=spec, profile=profile, dataset=dataset, x=x, path=path, base_nodes=len(base.graph.node),
                           model=pipeline.torch_model(spec), io=EngineIO.of(spec), outputs=tuple(spec.output_names),
                           parity_check_s=statistics.median(checks))
    case.localize = lambda: localize(case.model, OrtProbe(path, case.io), x,
                                     tolerance_of(spec, "fp32", spec.output_names), case.outputs,
                                     {n: n for n in spec.output_names})
    return case


def test_localisation_costs_at_most_ten_parity_checks(benchmark, pipeline, run_context, tmp_path, record):
    case = _failing_case(pipeline, run_context, tmp_path)
    benchmark.group = f"{case.spec.name}-{case.profile.name}-localize"
    loc = benchmark.pedantic(case.localize, rounds=3, warmup_rounds=0, iterations=1)
    ratio = benchmark.stats.stats.median / case.parity_check_s
    benchmark.extra_info.update({"localize_over_parity_check": ratio, "parity_check_s": case.parity_check_s,
                                 "localize_s": benchmark.stats.stats.median, "compared": loc.compared,
                                 "first": loc.first and loc.first["node"], "dataset": case.dataset.name})
    record(metric="localize / parity check", value=ratio, threshold=LOCALIZE_BUDGET, direction="max",
           margin=LOCALIZE_BUDGET - ratio, dataset=case.dataset.name)
    assert loc.first is not None
    assert ratio <= LOCALIZE_BUDGET, f"localising costs {ratio:.1f} parity checks (budget {LOCALIZE_BUDGET})"


def test_reduction_costs_at_most_thirty_parity_checks(benchmark, pipeline, run_context, tmp_path, record):
    case = _failing_case(pipeline, run_context, tmp_path)

    def reduced():
        return reduce(case.path, case.model, case.localize(), SubgraphRunner("onnxruntime", "fp32"), case.x, case.io,
                      case.outputs)[0]
    benchmark.group = f"{case.spec.name}-{case.profile.name}-reduce"
    result = benchmark.pedantic(reduced, rounds=3, warmup_rounds=0, iterations=1)
    ratio = benchmark.stats.stats.median / case.parity_check_s
    benchmark.extra_info.update({"reduce_over_parity_check": ratio, "parity_check_s": case.parity_check_s,
                                 "reduce_s": benchmark.stats.stats.median, "nodes": len(result.nodes),
                                 "graph_nodes": result.graph_nodes, "conversions": result.conversions,
                                 "localisation_runs": result.localisation_runs, "dataset": case.dataset.name})
    record(metric="reduce / parity check", value=ratio, threshold=REDUCE_BUDGET, direction="max",
           margin=REDUCE_BUDGET - ratio, dataset=case.dataset.name, reduction=result.as_dict())
    assert result.reproduces, result.describe()
    assert result.backend_runs <= budget(case.base_nodes)
    assert ratio <= REDUCE_BUDGET, f"reducing costs {ratio:.1f} parity checks (budget {REDUCE_BUDGET})"
