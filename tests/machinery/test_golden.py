"""Stage 2, golden: the network reproduces the upstream code's outputs for recipe weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from posegate.golden.recipe import recipe_digest, recipe_state_dict
from posegate.weights import load_manifest

STAGE = "golden"
pytestmark = pytest.mark.stage


@pytest.mark.cases("golden")
def test_golden(case, run_context, record):
    spec = case.spec
    if spec.golden is None:
        pytest.skip(f"{spec.name} declares no golden file")
    golden_path = run_context.reference_file("golden", spec.golden.file)
    manifest_path = run_context.reference_file("manifests", spec.checkpoint.manifest)
    if golden_path is None or manifest_path is None:
        pytest.skip(f"supply golden/{spec.golden.file} and manifests/{spec.checkpoint.manifest} under --reference-dir")
    state = recipe_state_dict(load_manifest(manifest_path))
    assert recipe_digest(state) == spec.golden.recipe_sha256, "recipe weights were not regenerated exactly"
    network = spec.build()
    network.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    golden = np.load(golden_path)
    with torch.inference_mode():
        outputs = dict(zip(spec.output_names, network(torch.from_numpy(golden["input"]))))
    worst = {}
    for golden_name, ours in spec.golden.outputs.items():
        ref, out = golden[golden_name], outputs[ours].numpy()
        assert out.shape == ref.shape, f"{ours}: shape {out.shape} != golden {ref.shape}"
        worst[ours] = float(np.abs(out - ref).max() / np.abs(ref).max())
    record(golden_max_rel=worst)
    bad = {k: v for k, v in worst.items() if v > spec.golden.max_rel}
    assert not bad, f"outputs off the upstream reference by more than {spec.golden.max_rel} of their scale: {bad}"
