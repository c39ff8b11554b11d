"""Stage 6, infer: every backend's outputs against the PyTorch reference on real preprocessed inputs."""
from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.gate import _safe as safe_name
from posegate.diagnosis import advice_case, diagnose
from posegate.diagnosis.reduce import CannotReduce
from posegate.diagnosis.reduce.case import run as reduce_run
from posegate.diagnosis.reduce.case import run_shape as reduce_shape
from posegate.diagnosis.reduce.shape import is_shape_error
from posegate.metrics.parity import compare

STAGE = "infer"
pytestmark = pytest.mark.stage


@pytest.mark.cases("infer")
def test_infer(case, target, pipeline, run_context, needs, record, request):
    spec, profile = case.spec, case.profile
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    reference = needs(pipeline.reference_outputs, spec, profile, dataset, case.batch)
    session = needs(pipeline.session, target)
    if session.info.precision_problem:  # known once built, e.g. an Ascend OM whose ATC log kept HF32 on
        pytest.skip(f"{case.backend}-{case.precision} parity: {session.info.precision_problem}")
    batch = pipeline.parity_batch(spec, profile, dataset, case.batch)
    try:
        outputs = session.run({spec.input_name: batch.x})
    except Exception as e:  # a shape error under --reduce is reduced like a numeric failure; others as they are
        if not (request.config.option.reduce and is_shape_error(e)):
            raise
        pytest.fail(f"{case.backend}-{case.precision} raised a shape error: {str(e).strip()[:600]}"
                    + reduce_case(pipeline, target, e, (batch.x, None, None), record, request), pytrace=False)
    errors = {name: compare(outputs[name], reference[name], spec.tolerance(case.precision, name))
              for name in session.output_names}  # a supplied artifact may keep only some outputs
    record(parity={n: e.as_dict() for n, e in errors.items()}, dataset=dataset.name, dataset_id=dataset.identity,
           weights=pipeline.weights_identity(spec), execution=session.info.execution)
    failing = [f"{n}: {e.describe()}" for n, e in errors.items() if not e.ok]
    where = ""
    advise = request.config.option.advise_precision and diagnose.advisable(case.backend, case.precision)
    if failing or request.config.option.localize or advise:
        x = batch.x if target.fixed_batch else batch.x[:1]
        where = localize_case(pipeline, target, x, record, request, reference if advise else None,
                              (batch.x, outputs, reference) if failing and request.config.option.reduce else None,
                              dataset)
    assert not failing, f"{case.backend}-{case.precision} off the torch reference: " + "; ".join(failing) + where


def localize_case(pipeline, target, x, record, request, reference=None, reducing=None, dataset=None) -> str:
    """The first divergent layer, recorded; as a message tail for the failure. With ``reference`` (asked
    by --advise-precision), the layers to keep in fp32 too."""
    folder = Path(request.config.option.save_visuals or "posegate-visuals").resolve() / safe_name(request.node.name)
    try:
        loc = diagnose.run(pipeline, target, x, folder)
    except diagnose.CannotLocalize as e:
        record(localization={"unavailable": str(e)})
        return f"\nnot localised: {e}"
    except Exception as e:  # never hide the parity failure behind a failure of the diagnosis
        record(localization={"unavailable": f"{type(e).__name__}: {e}"})
        return f"\nlocalisation failed: {type(e).__name__}: {e}"
    record(localization=loc.as_dict())
    text = f"\n{loc.describe()}\n(error along the graph: {loc.plot})"
    if reducing is not None:
        text += reduce_case(pipeline, target, loc, reducing, record, request)
    if reference is not None:
        out = Path(request.config.option.advise_precision).resolve() / safe_name(request.node.name)
        try:
            advice = diagnose.advise(pipeline, target.spec, target.backend, target.precision, x, reference, loc, out)
        except diagnose.CannotLocalize as e:
            record(advice={"unavailable": str(e)})
            return text + f"\nno precision advice: {e}"
        record(advice=advice.as_dict())
        text += f"\nprecision advice ({out}): {advice.describe()}"
        try:
            source = advice_case.source_of(pipeline, target.spec, target.backend, target.precision)
            proven = advice_case.advise(pipeline, target.spec, target.precision, source, loc, x, dataset,
                                        target.profile, out / "metric", advice.keep)
        except Exception as e:  # the tensor advice above stands; say why the metric search did not
            record(metric_advice={"unavailable": f"{type(e).__name__}: {e}"})
            return text + f"\nno precision advice on the metric: {type(e).__name__}: {e}"
        record(metric_advice=proven.as_dict())
        text += f"\nprecision advice on the metric ({out / 'metric'}): {proven.describe()}\n{proven.table()}"
    return text


def reduce_case(pipeline, target, loc, reducing, record, request) -> str:
    """--reduce: the smallest subgraph that fails the same way, as a bundle --replay replays (``loc``: the
    localisation, or the shape error the backend raised)."""
    folder = Path(request.config.option.reduce).resolve() / safe_name(request.node.name)
    x, outputs, reference = reducing
    try:
        if isinstance(loc, BaseException):  # the backend raised: the error is the failure, not a localisation
            result, bundle = reduce_shape(pipeline, target, loc, x, folder, request.node.name)
        else:
            result, bundle = reduce_run(pipeline, target, loc, x, outputs, reference, folder, request.node.name)
    except CannotReduce as e:
        record(reduction={"unavailable": str(e)})
        return f"\nnot reduced: {e}"
    except Exception as e:  # never hide the parity failure behind a failure of the reduction
        record(reduction={"unavailable": f"{type(e).__name__}: {e}"})
        return f"\nreduction failed: {type(e).__name__}: {e}"
    record(reduction=result.as_dict())
    return f"\n{result.describe()}" + (f"\nbundle: {bundle} (replay: python3 -m pytest --replay={bundle})"
                                        if bundle else "")
