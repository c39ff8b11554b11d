"""Stage 1, weights: the network has the official layout, and bad checkpoints fail loudly."""
from __future__ import annotations

import pickle

import pytest
import torch

from posegate.weights import WeightsError, load_manifest, manifest_mismatches

STAGE = "weights"
pytestmark = pytest.mark.stage


def _manifest(run_context, spec):
    path = run_context.reference_file("manifests", spec.checkpoint.manifest)
    if path is None:
        pytest.skip(f"no manifest: supply manifests/{spec.checkpoint.manifest} under --reference-dir")
    return load_manifest(path)


@pytest.mark.cases("model")
def test_network_matches_manifest(case, run_context):
    spec = case.spec
    manifest = _manifest(run_context, spec)
    network = spec.build()
    assert manifest_mismatches(network.state_dict(), manifest) == []
    assert sum(p.numel() for p in network.parameters()) == manifest["total_parameters"]


@pytest.mark.cases("model")
def test_checkpoint_loads(case, pipeline, record):
    spec = case.spec
    path = pipeline.checkpoint_path(spec)
    if path is None:
        others = "".join(f" or {n} ({what})" for n, what in spec.checkpoint.alternatives.items())
        pytest.skip(f"no checkpoint: supply {spec.checkpoint.filename} in --weights-dir ({spec.checkpoint.how_to_get})"
                    + others)
    info = spec.build(path).posegate_weights
    record(weights=info.identity, ignored_keys=list(info.ignored_keys), notes=list(info.notes))
    assert not info.synthetic and info.sha256
    assert not info.notes, f"{path}: {'; '.join(info.notes)}"


class _CarriesCode:
    def __reduce__(self):
        return (print, ("this checkpoint runs code when unpickled",))


def _defective(kind: str, state: dict, container_key, path):
    wrap = (lambda sd: {container_key: sd}) if container_key else (lambda sd: sd)
    if kind == "truncated":
        torch.save(wrap(state), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_a_checkpoint":
        path.write_text('{"this": "is json"}')
    elif kind == "code":
        with open(path, "wb") as f:
            pickle.dump({container_key or "x": _CarriesCode()}, f)
    elif kind == "foreign":
        torch.save(wrap({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}), path)
    elif kind == "missing_key":
        torch.save(wrap(dict(list(state.items())[1:])), path)
    elif kind == "wrong_shape":
        first = next(k for k, v in state.items() if v.ndim > 1)
        torch.save(wrap({**state, first: torch.zeros(*state[first].shape[:-1], state[first].shape[-1] + 1)}), path)
    elif kind == "non_finite":
        floats = [k for k, v in state.items() if v.is_floating_point() and v.numel()]
        bad = {floats[0]: torch.full_like(state[floats[0]], float("nan")),
               floats[-1]: torch.full_like(state[floats[-1]], float("inf"))}
        torch.save(wrap({**state, **bad}), path)
    return path


DEFECTS = {  # defect -> words the error must contain
    "truncated": "truncated", "empty": "empty", "not_a_checkpoint": "not a PyTorch checkpoint",
    "code": "refused to unpickle", "foreign": "does not match", "missing_key": "missing",
    "wrong_shape": "wrong shape", "non_finite": "2 tensor(s) hold NaN or Inf values",
}


@pytest.mark.cases("model")
@pytest.mark.parametrize("defect", list(DEFECTS))
def test_bad_checkpoint_is_rejected(case, defect, tmp_path):
    spec = case.spec
    state = spec.build().state_dict()
    path = _defective(defect, state, spec.checkpoint.container_key, tmp_path / f"{defect}.pth")
    with pytest.raises(WeightsError) as err:
        spec.build(path)
    assert str(path) in str(err.value) and DEFECTS[defect] in str(err.value)


@pytest.mark.cases("model")
def test_prefixed_checkpoint_loads_the_same(case, tmp_path):
    """Wrapped trainings save ``module.``-prefixed keys; they must load into the same network."""
    spec = case.spec
    source = spec.build()
    torch.manual_seed(1)
    state = {f"module.{k}": (v + torch.rand_like(v) if v.is_floating_point() else v)
             for k, v in source.state_dict().items()}
    path = tmp_path / "prefixed.pth"
    torch.save({spec.checkpoint.container_key or "state_dict": state, "epoch": 3}, path)
    loaded = spec.build(path)
    assert loaded.posegate_weights.stripped_prefix == "module."
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state[f"module.{k}"]), k
