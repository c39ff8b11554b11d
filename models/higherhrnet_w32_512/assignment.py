"""Minimum-cost assignment with the classic Munkres (Hungarian) algorithm, taking the same steps in the
same order as the library upstream grouped joints with, so that among equal-cost assignments it
picks the same one.

Upstream (HigherHRNet lib/core/group.py) calls ``munkres.Munkres().compute`` of Brian Clapper's munkres
1.1.x; its cost round(tag distance) * 100 - value ties often, and scipy's ``linear_sum_assignment`` or
munkres 3.0 then choose other optimal pairings, which changes who gets which joint. The step order
followed here was read from munkres 1.1.4 (github.com/bmc/munkres, tag release-1.1.4, munkres.py:
``compute`` and ``__step1`` .. ``__step6``, ``__find_a_zero``); the code is this project's own. Whole-row
and whole-matrix operations are vectorised with NumPy; each element sees the same float64 operations
in the same order as there (row minimum subtracted; in step 6 the covered-row add before the
uncovered-column subtract), so the zeros, and with them every choice, are bit-identical.
"""
from __future__ import annotations

import numpy as np

STAR, PRIME = 1, 2


class _Solver:
    def __init__(self, cost: np.ndarray):
        rows, cols = cost.shape
        self.n = n = max(rows, cols)
        # a non-square matrix is padded with zeros to n x n, as the library pads it
        self.c = np.zeros((n, n), np.float64)
        self.c[:rows, :cols] = cost
        self.marked = np.zeros((n, n), np.int8)
        self.row_covered = np.zeros(n, bool)
        self.col_covered = np.zeros(n, bool)
        self.z0 = (0, 0)

    # ---- the library's steps; each returns the next step number (7: done) -------------------------
    def step1(self) -> int:
        self.c -= self.c.min(axis=1, keepdims=True)
        return 2

    def step2(self) -> int:
        # row by row, star the first zero whose column holds no star yet
        for i in range(self.n):
            free = np.flatnonzero((self.c[i] == 0) & ~self.col_covered)
            if len(free):
                self.marked[i, free[0]] = STAR
                self.col_covered[free[0]] = True
        self._clear_covers()
        return 3

    def step3(self) -> int:
        self.col_covered |= (self.marked == STAR).any(axis=0)
        return 7 if self.col_covered.sum() >= self.n else 4

    def step4(self) -> int:
        row = col = 0
        while True:
            row, col = self._find_a_zero(row, col)
            if row < 0:
                return 6
            self.marked[row, col] = PRIME
            star_col = self._first(self.marked[row] == STAR)
            if star_col < 0:
                self.z0 = (row, col)
                return 5
            col = star_col
            self.row_covered[row] = True
            self.col_covered[col] = False

    def step5(self) -> int:
        path = [self.z0]
        while True:
            row = self._first(self.marked[:, path[-1][1]] == STAR)
            if row < 0:
                break
            path.append((row, path[-1][1]))
            path.append((row, self._first(self.marked[row] == PRIME)))
        for r, c in path:
            self.marked[r, c] = 0 if self.marked[r, c] == STAR else STAR
        self._clear_covers()
        self.marked[self.marked == PRIME] = 0
        return 3

    def step6(self) -> int:
        open_ = self.c[~self.row_covered][:, ~self.col_covered]
        if open_.size == 0:
            raise ValueError("assignment: no uncovered cost left; the matrix cannot be solved")
        smallest = open_.min()
        self.c[self.row_covered] += smallest
        self.c[:, ~self.col_covered] -= smallest
        return 4

    # ---- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _first(mask: np.ndarray) -> int:
        hits = np.flatnonzero(mask)
        return int(hits[0]) if len(hits) else -1

    def _find_a_zero(self, i0: int, j0: int) -> tuple[int, int]:
        """The library's scan: rows cyclically from i0; in the first row holding an uncovered zero its
        columns are scanned cyclically from j0 to the end without stopping, so the *last* uncovered
        zero in that cyclic order is the one returned."""
        zero = (self.c == 0) & ~self.row_covered[:, None] & ~self.col_covered[None, :]
        rows = np.flatnonzero(zero.any(axis=1))
        if not len(rows):
            return -1, -1
        later = rows[rows >= i0]
        i = int(later[0] if len(later) else rows[0])
        cols = np.flatnonzero(zero[i])
        before = cols[cols < j0]
        return i, int(before[-1] if len(before) else cols[-1])

    def _clear_covers(self) -> None:
        self.row_covered[:] = False
        self.col_covered[:] = False

    def solve(self) -> np.ndarray:
        steps = {1: self.step1, 2: self.step2, 3: self.step3, 4: self.step4, 5: self.step5, 6: self.step6}
        step = 1
        while step in steps:
            step = steps[step]()
        return self.marked


def munkres(cost) -> list[tuple[int, int]]:
    """(row, column) pairs of a minimum-cost assignment of a (rows, cols) cost matrix, in row order,
    restricted to the matrix's own rows and columns (as ``Munkres().compute`` returns them)."""
    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2 or 0 in cost.shape:
        raise ValueError(f"assignment: expected a non-empty 2-D cost matrix, got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("assignment: the cost matrix holds NaN or infinite values")
    marked = _Solver(cost).solve()[:cost.shape[0], :cost.shape[1]]
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(marked == STAR))]
