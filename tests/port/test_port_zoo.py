"""The port zoo: port-like files written from the suite's own pipeline (posegate.port.zoo), faithful and with
each KIND broken one stage at a time, audited as a team's would be. Every broken port must fail at its stage
with its KIND; the faithful one passes every stage with the reference's metric. Hostile files fail naming
the file, never with a traceback. Synthetic data, two images, so it runs in the default selection."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import MODELS
from posegate.backends import REFERENCE
from posegate.cases.target import Target
from posegate.datasets.coco import CocoKeypointDataset
from posegate.datasets.synthetic import generate
from posegate.port.cost import stage_costs
from posegate.port.readers import stored_shape
from posegate.port.stages import Audit
from posegate.port.zoo import kinds, save_tensor, write_port
from posegate.startup_checks import InputError, check_ports

STAGE = "postprocess"
pytestmark = pytest.mark.stage
# the OMZ variant shares seed 000's layout and network family: its real-data run is test_zoo_faithful_real
PORTED = [s.name for s in MODELS.values() if s.port is not None and s.name != "lightweight_openpose_omz0001"]


def _broken(stage):
    return [pytest.param(m, k, id=f"{m}-{k}") for m in PORTED for k in kinds(MODELS[m], stage)]
REPO = Path(__file__).resolve().parents[2]


class _Remembered:
    """The reference session, run once per distinct input: the zoo writes and audits the same files many times
    (same ``run`` signature as a posegate session)."""

    def __init__(self, session):
        self.session, self.seen = session, {}

    def run(self, feeds: dict) -> dict:
        key = hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes() for v in feeds.values())).hexdigest()
        if key not in self.seen:
            self.seen[key] = self.session.run(feeds)
        return self.seen[key]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, pipeline, run_context):
    """(spec, dataset, samples, session, root) per model: a two-image synthetic set of its own."""
    root = tmp_path_factory.mktemp("port-zoo")
    dataset = CocoKeypointDataset(generate(root / "dataset", num_images=2))
    sessions = {}

    def make(model):
        spec = MODELS[model]
        # a COCO model gets the two images; another kind its smallest set, of which the audit takes two samples
        data = dataset if spec.flow.dataset_kind == "coco-keypoints" else \
            run_context.parity_dataset(spec.flow.dataset_kind)
        if spec.port.input_shapes:
            # per-image buckets: the synthetic set's 512x512 image (the smallest bucket, first: the one-image
            # cases run the network on it only) and a 480x640 one (512x704), so the files' shapes differ
            data = CocoKeypointDataset(generate(root / "dataset-4", num_images=4))
        every = pipeline.samples(spec, spec.profile(spec.port.profile), data)
        every = every if data is dataset else [every[3], every[0]] if spec.port.input_shapes else every[:2]
        # one sample per image (a top-down model's best crop): the audit checks the samples it is given
        samples = every
        if every and isinstance(every[0], dict):
            samples = list({s["image_id"]: s for s in reversed(every)}.values())[::-1]
        if model not in sessions:
            sessions[model] = _Remembered(pipeline.session(Target(spec, REFERENCE, "fp32")))
        return spec, data, samples, sessions[model], root
    return make


def _port(zoo, model, name, broken=None, trained_like=True, samples=None):
    spec, dataset, every, session, root = zoo(model)
    samples = every if samples is None else samples
    files = write_port(root / f"{model}-{name}", spec, dataset, samples, session, broken, trained_like=trained_like)
    return Audit(spec, dataset, samples, files, session), files


@pytest.mark.parametrize("model,kind", _broken("inputs"))
def test_zoo_inputs_broken(zoo, model, kind):
    audit, _ = _port(zoo, model, f"inputs-{kind}", ("inputs", kind))
    report = audit.inputs()
    assert not report.ok and report.kind == kind, report.message()
    assert report.message().startswith(f"inputs differ: {kind}: {report.checked} of {report.checked} files differ")


@pytest.mark.parametrize("model,kind", _broken("results"))
def test_zoo_results_broken(zoo, model, kind):
    audit, _ = _port(zoo, model, f"results-{kind}", ("results", kind))
    report = audit.results()
    assert not report.ok and report.kind == kind, report.message()
    assert report.message().startswith(f"results differ: {kind}: ")


@pytest.mark.parametrize("model,kind", _broken("outputs"))
def test_zoo_outputs_broken(zoo, model, kind):
    """One image: the torch reference runs on it (seeded weights: the outputs stage needs no trained ones)."""
    spec, _, samples, _, _ = zoo(model)
    audit, _ = _port(zoo, model, f"outputs-{kind}", ("outputs", kind), trained_like=False, samples=samples[:1])
    report = audit.outputs()
    want = "other" if kind == "index-base" else kind
    assert not report.ok and report.kind == want, report.message()
    if kind == "index-base":
        assert "index-base mistake" in report.message()


@pytest.mark.parametrize("model", PORTED)
def test_zoo_faithful(zoo, model):
    """Every stage passes and the team's metric is the reference pipeline's (the chain's costs are all 0)."""
    spec, _, samples, _, _ = zoo(model)
    audit, files = _port(zoo, model, "faithful", trained_like=False, samples=samples[:1])
    for stage in ("inputs", "outputs", "results")[:3 if spec.port.results else 2]:
        report = getattr(audit, stage)()
        assert report.ok and report.checked, report.message()
    if spec.flow.dataset_kind != "coco-keypoints":
        return  # MPJPE scores a whole set; the zoo audits two of its sequences (test_port_accuracy scores all)
    reference = audit.decoded["inputs"]
    team = json.loads(files.get("results").read_text()) if spec.port.results else None
    costs = stage_costs(audit, reference, team)
    assert all(c == 0 for _, _, c in costs.links) and len(costs.links) == 2 + (team is not None), costs.text()
    assert team is None or costs.team == costs.reference, costs.text()


@pytest.mark.parametrize("model", [m for m in PORTED if MODELS[m].port.results])
def test_zoo_faithful_results_with_people(zoo, model):
    """The same with maps a trained network would give, so the results stage compares real people."""
    audit, files = _port(zoo, model, "faithful-people")
    report = audit.results()
    assert report.ok, report.message()
    assert json.loads(files.get("results").read_text()), "the trained-like maps decode to no person"


def _swap_side_entry(layout, path, stem):
    """The side file with ``stem``'s entry replaced by another input's (an entry that disagrees)."""
    entries = dict(layout.side.read(path))
    other = [s for s in entries if entries[s] != entries[stem]]
    if other:
        entries[stem] = entries[other[0]]
    else:  # every entry alike: leave the input's entry out
        del entries[stem]
    layout.side.write(path, list(entries.items()))


def _hostile_cases(layout, files, stem):
    prep, results = files.get("inputs"), files.get("results")
    suffix = layout.input_suffix
    one = prep / f"{stem}{suffix}"
    shape = stored_shape(one) or layout.input_shape
    size = int(np.prod(shape))
    # a raw file grown by 12 bytes, or a .npy of a shape the port never writes
    no_shape = (lambda: one.write_bytes(one.read_bytes() + b"\0" * 12)) if suffix != ".npy" else \
        (lambda: save_tensor(one, np.zeros((1, 3, 100, 100), np.float32)))
    cases = {
        "truncated": (lambda: one.write_bytes(one.read_bytes()[:1000]), "inputs", f"{stem}{suffix}: truncated"),
        "no-shape": (no_shape, "inputs", "no declared shape"),
        "nan": (lambda: save_tensor(one, np.full(shape, np.nan, np.float32)), "inputs", f"{stem}{suffix}: {size} NaN"),
        "missing": (lambda: one.unlink(), "inputs", "1 input files missing"),
        "extra": (lambda: (prep / f"999999{suffix}").write_bytes(one.read_bytes()), "inputs", "files for no"),
        "foreign-results": (lambda: results.write_text(json.dumps(
            json.loads(results.read_text()) + [{"image_id": 999999, "category_id": 1, "keypoints": [0.0] * 51,
                                                "score": 1.0}])), "results", "images not in"),
    }
    if layout.side is not None:
        cases["side-file"] = (lambda: _swap_side_entry(layout, files.get("info"), stem), "inputs",
                              f"{layout.side.name}: ")
    return cases


HOSTILE = ["truncated", "no-shape", "nan", "missing", "extra", "foreign-results", "side-file"]


def _applies(model, hostile):
    layout = MODELS[model].port
    return {"side-file": layout.side is not None, "foreign-results": layout.results}.get(hostile, True)


@pytest.mark.parametrize("model,hostile", [pytest.param(m, h, id=f"{m}-{h}") for m in PORTED for h in HOSTILE
                                           if _applies(m, h)])
def test_zoo_hostile(zoo, model, hostile):
    """A hostile file is a failure naming the file and what is wrong, never a traceback."""
    spec, dataset, samples, _, _ = zoo(model)
    audit, files = _port(zoo, model, f"hostile-{hostile}")
    stem = spec.port.stem(dataset, samples[0], 0)
    spoil, stage, text = _hostile_cases(spec.port, files, stem)[hostile]
    spoil()
    report = getattr(audit, stage)()
    assert report.problems and text in report.message(), report.message()
    assert report.message().startswith(f"{stage} unusable: ")
    assert hostile in ("extra", "foreign-results") or stem in report.message(), report.message()


@pytest.mark.parametrize("model", [m for m in PORTED if MODELS[m].port.input_shapes])
def test_zoo_inputs_wrong_bucket(zoo, model):
    """An image snapped to another of the declared shapes (bucket) is a scale finding, not unusable."""
    spec, dataset, samples, _, _ = zoo(model)
    audit, files = _port(zoo, model, "wrong-bucket", trained_like=False, samples=samples[:1])
    one = files.get("inputs") / f"{spec.port.stem(dataset, samples[0], 0)}{spec.port.input_suffix}"
    other = next(s for s in spec.port.input_shapes if s != stored_shape(one))
    save_tensor(one, np.zeros(other, np.float32))
    report = audit.inputs()
    assert report.kind == "scale" and not report.problems, report.message()
    assert report.message().startswith("inputs differ: scale: 1 of 2 files differ"), report.message()


REFUSED = [
    ("lightweight_openpose:inputs", "expected MODEL:KIND=PATH"),
    ("nosuchmodel:inputs=.", "no model 'nosuchmodel'"),
    ("lightweight_openpose:weights=.", "unknown kind 'weights'"),
    ("lightweight_openpose:inputs=/nonexistent/prep", "does not exist"),
    ("lightweight_openpose:results=.", "results is a file"),
    ("lightweight_openpose:outputs:int4=.", "a precision is given with outputs only"),
    ("lightweight_openpose:inputs-flip=.", "unknown kind 'inputs-flip'"),
    ("higherhrnet_w32_512:outputs-flip=.", "also give --port=higherhrnet_w32_512:outputs=DIR"),
]


@pytest.mark.parametrize("value,text", REFUSED)
def test_port_option_refused(value, text):
    """Every malformed --port value or wrong path is an InputError naming the value."""
    with pytest.raises(InputError, match="--port=") as e:
        check_ports([value], MODELS.values())
    assert text in str(e.value) and "\n" not in str(e.value)


def test_port_option_exit_4():
    """... and stops the run before collection: one line, exit 4."""
    value, text = REFUSED[3]
    run = subprocess.run([sys.executable, "-m", "pytest", f"--port={value}", "-p", "no:cacheprovider",
                          "--collect-only", "-q", "tests/port/test_port.py"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 4, run.stdout + run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and text in lines[0] and "Traceback" not in run.stderr, run.stderr


@pytest.mark.parametrize("model", [s.name for s in MODELS.values() if s.port is not None])
def test_zoo_faithful_real(tmp_path, pipeline, run_context, model):
    """On real data with trained weights (--data-root, --weights-dir): the faithful port passes every stage and
    its AP is the reference pipeline's."""
    spec = MODELS[model]
    if pipeline.weights_info(spec).synthetic:
        pytest.skip(f"needs trained weights: put {spec.checkpoint.filename} in --weights-dir")
    sets = [run_context.dataset(spec.flow.dataset_kind, n) for n in run_context.datasets[spec.flow.dataset_kind]]
    real = [d for d in sets if d.has_inputs and not d.identity.startswith("synthetic")]
    if not real:
        pytest.skip("needs a real COCO set with images: pass --data-root")
    dataset = min(real, key=len)
    profile = spec.profile(spec.port.profile)
    samples = pipeline.samples(spec, profile, dataset)
    session = _Remembered(pipeline.session(Target(spec, REFERENCE, "fp32")))
    files = write_port(tmp_path / "port", spec, dataset, samples, session)
    audit = Audit(spec, dataset, samples, files, session)
    for stage in ("inputs", "outputs", "results"):
        report = getattr(audit, stage)()
        assert report.ok and report.checked, report.message()
    reference = pipeline.predictions(spec, REFERENCE, "fp32", profile, dataset)
    costs = stage_costs(audit, reference, json.loads(files.get("results").read_text()))
    print(f"{model} on {dataset.identity}: {costs.text()}")
    assert costs.team == costs.reference, costs.text()
