"""Golden decoder cases: the suite's decoders give upstream's exact results on upstream's own inputs.

The reference dir's golden/decoders/ (README there) holds, per model, the network outputs upstream's
decoder was fed (real OMZ outputs, decoder-oracle maps, both with seeded noise: false peaks, inexact
tags, tied costs) and the COCO results it wrote. Every person must come out in the same order (as a set
where torch.topk's order of tied peaks is unspecified) with all 17 joints within the README's tolerance.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from models import MODELS
from models.higherhrnet_w32_512 import codec as higherhrnet_codec
from models.higherhrnet_w32_512 import golden as higherhrnet_golden
from posegate.golden import decoders as golden

STAGE = "golden"
pytestmark = pytest.mark.stage

# every model that declares a golden decoder file (its spec's decoder_golden, from models/<name>/golden.py)
CASES = [pytest.param(m, c, id=f"{m}-{c}") for m, spec in MODELS.items() if spec.decoder_golden is not None
         for c in spec.decoder_golden.cases]


def _data(run_context, model):
    declared = MODELS[model].decoder_golden
    path = run_context.reference_file(*golden.FOLDER, declared.file)
    if path is None:
        pytest.skip(f"supply {'/'.join(golden.FOLDER)}/{declared.file} under --reference-dir "
                    "(the project's shared data folder holds it)")
    data = golden.open_cases(path)
    names = golden.case_names(data)
    assert names == list(declared.cases), f"{path}: unexpected cases {names}"
    return data


@pytest.mark.parametrize("model, case_name", CASES)
def test_decoder_gives_upstreams_results(model, case_name, run_context, record):
    spec = MODELS[model]
    cmp = spec.decoder_golden.compare(_data(run_context, model), case_name, spec.flow.codec)
    record(golden_decoder=cmp.summary())
    assert cmp.ok, (f"{model} {case_name}: {len(cmp.problems)} differences from upstream, e.g. "
                    + "; ".join(cmp.problems[:5]))


def _scipy_pairs(cost):
    rows, cols = linear_sum_assignment(cost)
    return list(zip(rows.tolist(), cols.tolist()))


@pytest.mark.parametrize("departure, case_name", [("scipy-assignment", "oracle_noise"), ("clip", "oracle_noise"),
                                                  ("zero-missing", "oracle")])
def test_higherhrnet_departures_from_upstream_are_caught(departure, case_name, run_context, monkeypatch):
    """The three differences the suite's decoder once had each fail the golden comparison alone."""
    codec = higherhrnet_codec
    data = _data(run_context, "higherhrnet_w32_512")
    decode = codec.decode
    if departure == "scipy-assignment":  # another optimum among tied costs
        monkeypatch.setattr(codec, "match_by_tag", functools.partial(codec.match_by_tag, assign=_scipy_pairs))
    else:
        decode = functools.partial(codec.decode, **{departure.replace("-", "_"): True})
    assert not higherhrnet_golden.compare(data, case_name, codec, decode=decode).ok


# ----------------------------------------------------------------------- the comparison can fail

def _one_person(ref_kp, ref_score):
    return [{"keypoints": ref_kp.ravel().tolist(), "score": float(ref_score)}]


def test_comparison_flags_a_joint_moved_past_the_tolerance():
    kp = np.tile([[100.0, 50.0, 0.5]], (17, 1))
    cmp = golden.Comparison()
    moved = kp.copy()
    moved[3, 0] += 2 * golden.XY_TOL
    golden.compare_image(cmp, "img", _one_person(moved, 0.5), kp[None], np.array([0.5]))
    assert not cmp.ok and cmp.max_dxy == pytest.approx(2 * golden.XY_TOL)
    within = golden.Comparison()
    moved[3, 0] = kp[3, 0] + golden.XY_TOL / 2
    golden.compare_image(within, "img", _one_person(moved, 0.5), kp[None], np.array([0.5]))
    assert within.ok


def test_comparison_flags_count_order_and_score():
    a, b = np.tile([[1.0, 2.0, 0.9]], (17, 1)), np.tile([[30.0, 40.0, 0.2]], (17, 1))
    refs, scores = np.stack([a, b]), np.array([0.9, 0.2])
    swapped = _one_person(b, 0.2) + _one_person(a, 0.9)
    in_order, as_set = golden.Comparison(), golden.Comparison()
    golden.compare_image(in_order, "img", swapped, refs, scores)
    golden.compare_image(as_set, "img", swapped, refs, scores, as_set=True)
    assert not in_order.ok and as_set.ok  # topk-tie images compare persons as a set, the others in order
    missing, score = golden.Comparison(), golden.Comparison()
    golden.compare_image(missing, "img", swapped[:1], refs, scores, as_set=True)
    golden.compare_image(score, "img", _one_person(a, 0.9 + 1e-4), refs[:1], scores[:1])
    assert "1 persons, upstream 2" in missing.problems[0] and not score.ok
