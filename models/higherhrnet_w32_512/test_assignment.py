"""The Munkres assignment: optimal, and upstream's (munkres 1.1.x) choice among tied optima."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from models.higherhrnet_w32_512.assignment import munkres

pytestmark = pytest.mark.stage


def _cost(cost, pairs):
    return sum(cost[r, c] for r, c in pairs)


@pytest.mark.parametrize("seed", range(4))
def test_assignment_is_optimal_on_tie_heavy_costs(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        rows, cols = (int(v) for v in rng.integers(1, 10, 2))
        # grouping's cost: round(distance) * 100 - value, values often equal
        cost = rng.integers(0, 3, (rows, cols)) * 100.0 - rng.integers(0, 3, (rows, 1)) * 0.25
        pairs = munkres(cost)
        assert [r for r, _ in pairs] == sorted({r for r, _ in pairs})  # row order, each row once
        assert len({c for _, c in pairs}) == len(pairs) == min(rows, cols)
        best = linear_sum_assignment(cost)
        assert _cost(cost, pairs) == pytest.approx(cost[best].sum(), abs=1e-9)


@pytest.mark.parametrize("cost, expected", [
    # Worked by hand through the library's steps: row minima subtracted, (0, 0) and (2, 1) starred; the
    # uncovered zero (0, 2) is primed, its row's star (0, 0) moves the cover, (1, 0) is primed with no
    # star in its row, and the path (1, 0) -> (0, 0) -> (0, 2) flips. scipy picks (0, 1), (1, 0).
    ([[0.0, 0.0, 0.0], [-0.5, 99.5, 99.5]], [(0, 2), (1, 0)]),
    # a square case padded as grouping pads it (more joints than people); scipy picks the diagonal
    ([[-0.5, 99.5, 99.5], [99.5, -0.5, 99.5], [-0.5, -0.5, 99.5]], [(0, 2), (1, 1), (2, 0)]),
    ([[0.0, 100.0, 1e10], [0.0, 0.0, 1e10], [-0.5, -0.5, 1e10]], [(0, 2), (1, 1), (2, 0)]),
])
def test_ties_break_as_munkres_1_1_breaks_them(cost, expected):
    cost = np.array(cost)
    assert munkres(cost) == expected
    scipy_pairs = list(zip(*(a.tolist() for a in linear_sum_assignment(cost))))
    assert scipy_pairs != expected  # the case discriminates: another optimum exists and is found elsewhere
    assert _cost(cost, scipy_pairs) == _cost(cost, expected)


def test_more_people_than_joints_leaves_people_unassigned():
    cost = np.array([[5.0, 1.0, 3.0]])
    assert munkres(cost) == [(0, 1)]


@pytest.mark.parametrize("bad, match", [(np.zeros((0, 3)), "non-empty"), (np.array([[1.0, np.nan]]), "NaN"),
                                        (np.zeros(3), "2-D")])
def test_malformed_costs_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        munkres(bad)
