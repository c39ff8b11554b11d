"""A backend is one folder: a throwaway backend package, written in tmp and registered the way
posegate/backends/__init__.py registers its own, gets localisation, advice, precision and availability
from the generic machinery without a line changed outside it; and a backend without a probe is told so."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import posegate.backends
from models import MODELS
from posegate.backends import BACKENDS, EngineIO
from posegate.cases.case import Case
from posegate.cases.generate import generate
from posegate.cases.kinds import KINDS, READY
from posegate.cases.readiness import BACKEND, BUILD, PARITY, Readiness
from posegate.cases.target import Target
from posegate.datasets import KINDS as DATASET_KINDS
from posegate.diagnosis import advice, diagnose

STAGE = "convert"
pytestmark = pytest.mark.stage
MODEL = "lightweight_openpose"

PACKAGE = '''
from pathlib import Path

from posegate.backends.base import Backend
from posegate.backends.lazy import reason


class ToyProbe:
    """The probe interface localisation reads (posegate.backends.probing.OrtProbe's)."""

    def __init__(self, path, io, precision):
        self.path, self.io, self.precision = Path(path), io, precision


class ThrowawayBackend(Backend):
    name = "throwaway"
    precisions = ("fp32", "fp16")
    calibrated = ("int8",)
    reduced = ("fp16",)
    artifact_suffixes = (".tw",)
    library = "{library}"

    def unavailable_reason(self):
        return reason(self.library, "pip install throwaway-runtime")

    def precision_problem(self, precision):
        return "fp16 here is bf16 inside" if precision == "fp16" else None

    def probe(self, pipeline, spec, path, io, precision):
        return ToyProbe(path, io, precision)

    def write_advice(self, keep, folder, modules, ir=None):
        path = Path(folder) / "throwaway_keep.txt"
        path.write_text("".join(n + "\\n" for n in keep))
        return {{"throwaway": str(path)}}

    def load(self, artifact_dir, source, precision):
        raise NotImplementedError


BACKENDS = (ThrowawayBackend(),)
'''


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    """posegate/backends/throwaway/ as a folder in tmp (the backends' package path extended to it), registered
    through the registry's own function into BACKENDS for this test only."""
    # recorded as absent, so the module imported below is forgotten after the test (undo deletes it)
    monkeypatch.setitem(sys.modules, "posegate.backends.throwaway", None)
    monkeypatch.delitem(sys.modules, "posegate.backends.throwaway")
    monkeypatch.setattr(posegate.backends, "throwaway", None, raising=False)  # the attribute the import sets

    def install(library: str):
        root = tmp_path / "backends"
        (root / "throwaway").mkdir(parents=True, exist_ok=True)
        (root / "throwaway" / "__init__.py").write_text(PACKAGE.format(library=library))
        monkeypatch.setattr(posegate.backends, "__path__", [*posegate.backends.__path__, str(root)])
        found = posegate.backends._registered(["throwaway"])
        monkeypatch.setitem(BACKENDS, "throwaway", found["throwaway"])
        return found["throwaway"]
    return install


def _case(precision, variant=None):
    return Case(MODEL, "throwaway", precision, 1, MODELS[MODEL].profiles[0].name, variant=variant)


def test_availability_and_precision_of_a_new_folder_become_skip_marks(throwaway):
    throwaway("posegate_no_such_runtime")  # its library is absent here
    ready = Readiness(lambda kind: False)
    why = ready.problem(_case("fp32"), BUILD)
    assert why.startswith("throwaway unavailable: posegate_no_such_runtime is not importable (No module named")
    assert why.endswith("; pip install throwaway-runtime")
    assert ready.problem(_case("fp32"), BACKEND) == why


def test_precision_policy_of_a_new_folder_reaches_collection_and_advice(throwaway):
    throwaway("json")  # a library that is present: the backend is available
    ready = Readiness(lambda kind: False)
    assert ready.problem(_case("fp32"), PARITY) is None
    assert ready.problem(_case("fp16"), BUILD) == "throwaway-fp16 unavailable: fp16 here is bf16 inside"
    assert ready.problem(_case("int8"), BUILD) is None  # calibrated: judged only where parity is judged
    assert ready.problem(_case("int8"), PARITY).startswith("int8 parity needs real inputs")
    assert Readiness(lambda kind: True).problem(_case("int8"), PARITY) is None
    assert diagnose.advisable("throwaway", "fp16") and not diagnose.advisable("throwaway", "fp32")


def test_localisation_and_advice_ask_the_new_folder(throwaway, tmp_path):
    throwaway("json")
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    (folder / "model.tw").write_bytes(b"tw")
    pipeline = SimpleNamespace(artifacts={}, converted=lambda target: folder)
    probe = diagnose.probe_for(pipeline, Target(MODELS[MODEL], "throwaway", "fp16", MODELS[MODEL].profiles[0], 1))
    assert probe.path == folder / "model.tw" and probe.io == EngineIO.of(MODELS[MODEL])
    files = advice.write(["/a/Conv", "/b/Conv"], tmp_path / "advice")
    assert Path(files["throwaway"]).read_text().splitlines() == ["/a/Conv", "/b/Conv"]
    assert {"atc_keep_dtype", "trtexec", "openvino"} <= set(files)  # the others' formats still written


def test_a_backend_without_a_probe_says_so_and_names_those_that_have_one(tmp_path):
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"")
    pipeline = SimpleNamespace(artifacts={}, converted=lambda target: folder)
    having = ("onnxruntime", "openvino", "ascend", "tensorrt", "ncnn")  # in registry order
    with pytest.raises(diagnose.CannotLocalize, match=r"onnxruntime-cuda: no probe exposes its intermediate "
                                                      rf"tensors \({', '.join(having)} have one\)"):
        diagnose.probe_for(pipeline, Target(MODELS[MODEL], "onnxruntime-cuda", "fp32"))
    assert np.all([BACKENDS[n].has_probe for n in having])


def test_the_registry_refuses_a_name_registered_twice(throwaway, tmp_path):
    throwaway("json")
    with pytest.raises(ValueError, match="backend 'throwaway' is registered twice"):
        posegate.backends._registered(["throwaway", "throwaway"])


def test_every_kind_whose_cases_name_a_backend_declares_what_they_need_of_it():
    """The skip is decided at collection from the kind's ``ready=``: a kind that forgot it would run its cases
    on a backend that is not here (and fail) instead of skipping them."""
    datasets = {kind: [("synthetic", True)] for kind in DATASET_KINDS}
    backed = {kind for kind in KINDS if any(c.backend for c in generate(kind, MODELS.values(), datasets))}
    assert {"convert", "infer", "perf", "accuracy", "parity", "shards", "postprocess", "decode_cost"} <= backed
    assert [k for k in sorted(backed) if READY[k] is None] == []
