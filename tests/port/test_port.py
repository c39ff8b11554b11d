"""The audit of a team's own port (--port=MODEL:KIND=PATH): its inputs, device outputs and results, stage by
stage, and what each stage costs in the task metric. Selected by ``-m port``, and by any ``--port``."""
from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.options import ports
from models import MODELS
from posegate.backends import REFERENCE
from posegate.cases.case import Case
from posegate.cases.target import Target
from posegate.port.cost import stage_costs
from posegate.port.stages import Audit, StageReport, audit_dataset

STAGE = "accuracy"  # runs after the accuracy tests, whose reference predictions it reuses
pytestmark = pytest.mark.port
AUDITS = pytest.StashKey[dict]()
ROW_STAGE = {"inputs": "preprocess", "outputs": "infer", "results": "postprocess", "accuracy": "accuracy"}


def pytest_generate_tests(metafunc):
    """One case per model with a port layout; a model given no files skips, saying which option to pass. The
    outputs row carries the precision given with --port (the seed's own without one)."""
    if "port_case" not in metafunc.fixturenames:
        return
    stage = metafunc.function.port_stage
    given = ports(metafunc.config)
    params = []
    for spec in MODELS.values():
        if spec.port is None:
            continue
        precision = "fp32"
        if stage == "outputs":
            files = given.get(spec.name)
            precision = files.precision if files is not None and files.get("outputs") else spec.port.seed_precision
        case = Case(spec.name, f"port-{stage}", precision, 1, spec.port.profile)
        params.append(pytest.param(case, id=f"{spec.name}-{spec.port.profile}"))
    metafunc.parametrize("port_case", params)


def _audit(request, case, kinds):
    files = ports(request.config).get(case.model)
    given = [k for k in kinds if files is not None and files.get(k) is not None]
    if not given:
        pytest.skip(f"no port files for {case.model}: pass --port={case.model}:{kinds[0]}=PATH")
    audits = request.config.stash.setdefault(AUDITS, {})
    if case.model not in audits:
        pipeline, ctx = request.getfixturevalue("pipeline"), request.getfixturevalue("run_context")
        spec = case.spec
        dataset = audit_dataset(ctx, spec, files)
        samples = pipeline.samples(spec, spec.profile(spec.port.profile), dataset)
        audits[case.model] = Audit(spec, dataset, samples, files, pipeline.session(Target(spec, REFERENCE, "fp32")))
    return audits[case.model]


def _judge(audit, report, record):
    trap = audit.spec.port.traps.get(report.kind)
    record(**report.as_result(trap), dataset=audit.dataset.name, dataset_id=audit.dataset.identity)
    if not report.ok:  # the verdict is the message: no traceback into the audit
        pytest.fail(report.message(trap), pytrace=False)


def _stage(name):
    def mark(fn):
        fn.stage, fn.port_stage = ROW_STAGE[name], name
        return fn
    return mark


@_stage("inputs")
def test_port_inputs(port_case, request, record):
    """The team's preprocessed files against the reference preprocessing of the same samples."""
    audit = _audit(request, port_case, ("inputs",))
    _judge(audit, audit.inputs(), record)


@_stage("outputs")
def test_port_outputs(port_case, request, record):
    """The device's files against the torch reference run on the team's own inputs, at its precision."""
    audit = _audit(request, port_case, ("outputs",))
    _judge(audit, audit.outputs(), record)


@_stage("results")
def test_port_results(port_case, request, record):
    """The team's results against the reference decoder on the team's own device outputs, person by person."""
    audit = _audit(request, port_case, ("results",))
    _judge(audit, audit.results(), record)


@_stage("accuracy")
def test_port_accuracy(port_case, request, record, pipeline):
    """The team's metric beside the reference pipeline's, and what each stage of the port costs."""
    audit = _audit(request, port_case, ("results", "outputs", "inputs"))
    spec = audit.spec
    reference = pipeline.predictions(spec, REFERENCE, "fp32", audit.profile, audit.dataset)
    team = None
    if audit.files.get("results") is not None:
        report = StageReport("results")
        by_image = audit.team_results(report)
        if report.problems:
            pytest.fail(report.message(), pytrace=False)
        team = [r for people in by_image.values() for r in people]
    costs = stage_costs(audit, reference, team)
    tol = spec.metric_parity[audit.files.precision]
    measured = costs.links[-1][1]
    change = abs(measured - costs.reference)
    record(metric=f"port |{costs.metric}-{costs.metric}_ref|", value=change, threshold=tol, direction="max",
           margin=tol - change, reference=costs.reference, measured=measured, dataset=audit.dataset.name,
           dataset_id=audit.dataset.identity, weights=pipeline.weights_identity(spec),
           port={"stage": "accuracy", "summary": costs.text(), "links": costs.links})
    failing = [f"{t.metric} {measured:.4f} vs {t.value} ({t.source})"
               for t in _gates(spec, audit, pipeline) if not t.passes(measured)]
    for t in _gates(spec, audit, pipeline):
        record(metric=f"port {t.metric}", value=measured, threshold=t.value, direction=t.direction,
               margin=t.margin(measured), source=t.source, dataset=audit.dataset.name,
               dataset_id=audit.dataset.identity)
    if failing:
        pytest.fail(f"port accuracy: {costs.text()}: " + "; ".join(failing), pytrace=False)
    if change > tol:
        pytest.fail(f"port accuracy: {costs.text()}: {costs.metric} changes {change:.4f}, beyond {tol} "
                    f"({audit.files.precision} metric parity)", pytrace=False)


def _gates(spec, audit, pipeline):
    """The spec's thresholds that apply, as in the accuracy stage: the official dataset (or the one a floor names)
    with the weights the threshold names, at the port's profile."""
    info = pipeline.weights_info(spec)
    name = info.path and Path(info.path).name
    for t in spec.thresholds:
        if t.profiles and audit.profile.name not in t.profiles:
            continue
        if t.dataset == "official":
            on_data = audit.dataset.is_official and spec.flow.official_problem(audit.dataset, pipeline.options) is None
        else:
            on_data = audit.dataset.name == t.dataset
        wanted = spec.checkpoint.filename if t.weights == "official" else t.weights
        if on_data and (t.weights == "any" or (info.kind == "official" and name == wanted)):
            yield t
