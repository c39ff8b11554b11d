"""What the port audit costs: all four stages on a faithful port's files against the reference pipeline's own
time on the same images (preprocess, network, decode). The issue's budget is 1.5x; the ratio is in the
benchmark's extra_info. Faithful files audit fastest: a broken port also tries the candidate mistakes."""
from __future__ import annotations

import statistics
import time

import pytest

from models import MODELS
from posegate.backends import REFERENCE
from posegate.cases.target import Target
from posegate.datasets.coco import CocoKeypointDataset
from posegate.datasets.synthetic import generate
from posegate.port.cost import stage_costs
from posegate.port.stages import Audit
from posegate.port.zoo import write_port

STAGE = "perf"
pytestmark = pytest.mark.perf
BUDGET = 1.5


@pytest.mark.parametrize("model", [s.name for s in MODELS.values() if s.port is not None][:1])
def test_port_audit_costs_at_most_1_5_reference_pipelines(benchmark, pipeline, tmp_path, record, model):
    spec = MODELS[model]
    profile = spec.profile(spec.port.profile)
    dataset = CocoKeypointDataset(generate(tmp_path / "dataset", num_images=1))
    samples = pipeline.samples(spec, profile, dataset)
    session = pipeline.session(Target(spec, REFERENCE, "fp32"))
    files = write_port(tmp_path / "port", spec, dataset, samples, session)

    def reference():
        results = []
        for b in pipeline.batches(spec, profile, dataset, 1, samples):
            results += spec.flow.decode(session.run({spec.input_name: b.x}), b.records, b.samples)
        return results

    reference()  # warm-up: thread pools, allocator
    times = []
    for _ in range(3):
        start = time.perf_counter()
        results = reference()
        times.append(time.perf_counter() - start)

    def audit():
        a = Audit(spec, dataset, samples, files, session)
        reports = [a.inputs(), a.outputs(), a.results()]
        team = [r for people in a.team_results(reports[-1]).values() for r in people]
        return reports, stage_costs(a, results, team)

    benchmark.group = f"{spec.name}-{profile.name}-port-audit"
    reports, _ = benchmark.pedantic(audit, rounds=3, warmup_rounds=0, iterations=1)
    assert all(r.ok for r in reports), [r.message() for r in reports if not r.ok]
    ratio = benchmark.stats.stats.median / statistics.median(times)
    benchmark.extra_info.update({"audit_over_reference": ratio, "reference_s": statistics.median(times),
                                 "audit_s": benchmark.stats.stats.median, "images": len(samples),
                                 "dataset": dataset.identity})
    record(metric="port audit / reference pipeline", value=ratio, threshold=BUDGET, direction="max",
           margin=BUDGET - ratio, dataset=dataset.name)
    assert ratio <= BUDGET, f"the audit costs {ratio:.2f} reference pipelines (budget {BUDGET})"
