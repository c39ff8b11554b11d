"""The registries and case ids: the only lists of models and backends, and readable stable ids."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fixtures.options import resolve_baseline
from models import MODELS
from posegate import registry
from posegate.backends import BACKENDS, REFERENCE
from posegate.backends.ascend import AtcSettings
from posegate.backends.openvino import OpenVinoSettings
from posegate.cases.generate import generate
from posegate.cases.kinds import KINDS
from posegate.gate import machine
from posegate.registry import SpecError, register
from posegate.startup_checks import InputError

STAGE = "weights"
pytestmark = pytest.mark.stage


def test_every_model_folder_is_registered_under_its_name():
    assert MODELS and all(name == spec.name for name, spec in MODELS.items())


def test_infer_ids_read_model_backend_precision_batch_shape():
    cases = generate("infer", MODELS.values())
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    # a shape may carry its profile's variant (256x192-flip, HxW-ascend); capitals name a free axis (368xW, T)
    pattern = re.compile(r"^[a-z0-9_]+-(%s)-(fp32|fp16|int8)-bs\d+-[\dxA-Z]+(-[a-z0-9]+)?$" % "|".join(BACKENDS))
    assert all(pattern.match(i) for i in ids), ids
    assert not any(c.backend == REFERENCE for c in cases), "the reference is not compared with itself"


def test_cases_follow_declared_capabilities():
    for spec in MODELS.values():
        for c in generate("infer", [spec]):
            assert c.precision in BACKENDS[c.backend].precisions and c.precision in spec.precisions
            profile = spec.profile(c.shape)
            assert c.batch in profile.batch_sizes + profile.full_batch_sizes
            slow = BACKENDS[c.backend].full_only  # a backend whose builds take minutes runs under --full only
            assert c.full == (c.batch not in profile.batch_sizes or not profile.default or slow)


REPO = Path(__file__).resolve().parents[2]
# every kind's ids with datasets of both kinds known, as a collecting process prints them
_COLLECT = """
import json
from models import MODELS
from posegate.cases.generate import generate
from posegate.cases.kinds import KINDS
sets = {"coco-keypoints": [("coco-mini", True), ("coco-notes", False)], "h36m": [("h36m-test", True)]}
print(json.dumps({k: [c.id for c in generate(k, MODELS.values(), datasets=sets)] for k in sorted(KINDS)}))
"""


def _ids_in_processes(*hash_seeds: str) -> list[dict[str, list[str]]]:
    """Each seed's collection, the processes side by side (each imports torch: seconds)."""
    procs = [subprocess.Popen([sys.executable, "-c", _COLLECT], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)})
             for seed in hash_seeds]
    found = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        found.append(json.loads(out.splitlines()[-1]))
    return found


def test_ids_are_identical_across_collections():
    """xdist workers collect independently, each with its own string hash seed; their ids must agree in
    content and order, or a worker runs a test the controller never scheduled. Two processes with different
    PYTHONHASHSEED stand for two workers (a set iterated anywhere in generation would reorder them)."""
    first, second = _ids_in_processes("1", "2")
    assert sorted(first) == sorted(KINDS) and all(first[k] for k in ("infer", "perf", "accuracy", "convert"))
    for kind in sorted(KINDS):
        assert first[kind] == second[kind], f"case kind {kind!r}: ids differ between two collecting processes"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_version_is_plain_text(name):
    # results travel back from xdist workers through execnet, which refuses objects such as torch's TorchVersion
    backend = BACKENDS[name]
    if backend.unavailable_reason():
        pytest.skip(f"{name}: {backend.unavailable_reason()}")
    version = backend.version()
    assert type(version) is str, f"{name}.version() returned {type(version).__name__}"


def _only(installed: dict):
    """A distribution lookup (importlib.metadata.version's signature) seeing only ``installed``."""
    def lookup(name):
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]
    return lookup


def test_fingerprint_names_onnxruntime_gpu_when_it_is_the_installed_wheel():
    found = machine.packages(lookup=_only({"onnxruntime-gpu": "1.22.0", "numpy": "2.2.0"}))
    assert found == {"numpy": "2.2.0", "onnxruntime-gpu": "1.22.0"}
    # and the fingerprint id tells it from a CPU wheel of the same version
    cpu = machine.packages(lookup=_only({"onnxruntime": "1.22.0", "numpy": "2.2.0"}))
    assert machine.describe(found)["id"] != machine.describe(cpu)["id"]


def test_fingerprint_packages_come_from_every_backend():
    # a lookup that answers for everything: each backend's distributions appear, and numpy, nothing else
    found = machine.packages(lookup=lambda name: "1.0")
    assert set(found) == {"numpy"} | {d for b in BACKENDS.values() for d in b.distributions}
    assert {"torch", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt-cu13", "ais_bench", "torch_aie",
            "torch_npu"} <= set(found)


def test_fingerprint_id_keeps_its_meaning():
    # baselines store ids: the same machine with the same packages must keep the id it had before
    # the backends listed their distributions (the packages dict was built in another order then)
    info = machine.describe({"torch": "2.13.0", "onnxruntime": "1.32.0", "openvino": "2026.4.1", "numpy": "2.4.6"})
    old = dict(info, packages={"torch": "2.13.0", "onnxruntime": "1.32.0", "openvino": "2026.4.1", "numpy": "2.4.6"})
    assert machine.fingerprint_id(old) == info["id"]


def test_spec_settings_for_an_unknown_backend_fail_at_registration():
    spec = replace(next(iter(MODELS.values())), name="m", backend_settings={"opnevino": OpenVinoSettings()})
    with pytest.raises(SpecError, match=r"model m: .*'opnevino'.*not one of"):
        register(spec, registry={})


def test_spec_settings_of_the_wrong_type_fail_at_registration():
    spec = replace(next(iter(MODELS.values())), name="m", backend_settings={"ascend": OpenVinoSettings()})
    with pytest.raises(SpecError, match=r"model m: backend_settings\['ascend'\]: .*AtcSettings, not OpenVinoSettings"):
        register(spec, registry={})
    spec = replace(spec, backend_settings={"onnxruntime": OpenVinoSettings()})
    with pytest.raises(SpecError, match="onnxruntime takes no settings"):
        register(spec, registry={})


def test_backends_read_a_specs_settings_or_their_defaults():
    spec = replace(next(iter(MODELS.values())), name="m", backend_settings={"ascend": AtcSettings(log=None)})
    registry = {}
    register(spec, registry=registry)
    assert registry == {"m": spec}
    assert BACKENDS["ascend"].settings_of(spec) == AtcSettings(log=None)
    assert BACKENDS["openvino"].settings_of(spec) == OpenVinoSettings()
    assert BACKENDS["onnxruntime"].settings_of(spec) is None
    assert MODELS["videopose3d_243"].backend_settings["openvino"].per_shape_engines


def test_model_settings_change_the_artifact_cache_key():
    spec = replace(next(iter(MODELS.values())), backend_settings={})
    tuned = replace(spec, backend_settings={"ascend": AtcSettings(auto_tune_mode="RL,GA")})
    ascend, ort = BACKENDS["ascend"], BACKENDS["onnxruntime"]
    assert ascend.artifact_settings("fp16", spec) != ascend.artifact_settings("fp16", tuned)
    assert ort.artifact_settings("fp32", spec) == ort.artifact_settings("fp32")
    # OpenVINO's per-shape engines compile from the same IR: no new artifact for them
    ov, per_shape = BACKENDS["openvino"], replace(spec, backend_settings={"openvino": OpenVinoSettings(True)})
    assert ov.artifact_settings("fp32", spec) == ov.artifact_settings("fp32", per_shape)


def test_models_registry_is_posegates():
    assert MODELS is registry.MODELS


def test_baseline_backend_comes_from_the_flag_then_the_environment_then_onnxruntime():
    assert resolve_baseline(None, env={}) == "onnxruntime"
    assert resolve_baseline(None, env={"POSEGATE_BASELINE_BACKEND": "openvino"}) == "openvino"
    assert resolve_baseline("torch", env={"POSEGATE_BASELINE_BACKEND": "openvino"}) == "torch"


def test_an_unknown_baseline_backend_is_a_usage_error_naming_the_choices():
    with pytest.raises(InputError, match=r"--baseline-backend=onnx: no such backend; choose one of .*onnxruntime"):
        resolve_baseline("onnx", env={})
    with pytest.raises(InputError, match=r"POSEGATE_BASELINE_BACKEND=ov: no such backend"):
        resolve_baseline(None, env={"POSEGATE_BASELINE_BACKEND": "ov"})


def test_baseline_backend_picks_the_backend_of_baseline_cases_and_nothing_else():
    specs = MODELS.values()
    sets = {kind: [("synthetic", True)] for kind in {s.flow.dataset_kind for s in specs}}
    for kind in ("shards", "decode_cost"):
        default = generate(kind, specs, sets)
        assert default and {c.backend for c in default} == {"onnxruntime"}
        assert [c.id for c in default] == [c.id for c in generate(kind, specs, sets, baseline="onnxruntime")]
        other = generate(kind, specs, sets, baseline="openvino")
        assert [c.id.replace("-openvino-", "-onnxruntime-") for c in other] == [c.id for c in default]
    assert [c.id for c in generate("infer", specs, sets, baseline="openvino")] == \
        [c.id for c in generate("infer", specs, sets)]


@pytest.mark.parametrize("per_shape", [False, True], ids=["dynamic", "per-shape"])
def test_openvino_sessions_follow_the_specs_per_shape_setting(per_shape, tmp_path):
    if BACKENDS["openvino"].unavailable_reason():
        pytest.skip(BACKENDS["openvino"].unavailable_reason())
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "t"])])
    onnx_path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(onnx_path))
    spec = SimpleNamespace(name="m", input_name="x", output_names=("y",),
                           profiles=(SimpleNamespace(concrete_dims=(5,)),),  # the per-shape session's first engine
                           backend_settings={"openvino": OpenVinoSettings(per_shape_engines=per_shape)})
    backend = BACKENDS["openvino"]
    backend.convert(SimpleNamespace(spec=spec, onnx_path=lambda opset: onnx_path), tmp_path, "fp32", None)
    session = backend.load(tmp_path, SimpleNamespace(spec=spec), "fp32")
    x = np.array([[-1.0, 2.0, -3.0]], np.float32)
    assert np.array_equal(session._run(x)[0], np.maximum(x, 0))
    assert list(session._static) == ([(1, 3)] if per_shape else [])
