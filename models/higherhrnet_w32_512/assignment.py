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


class _Solver:
    """The library's state: the cost matrix (NumPy, for the whole-matrix arithmetic), covers, and the
    starred and primed zeros. A row or column holds at most one star, and a row at most one prime (a
    primed row with a star is covered at once; one without ends the search), so dictionaries replace
    the library's mark matrix; its "first star/prime in a row/column" is that one entry."""

    def __init__(self, cost: np.ndarray):
        rows, cols = cost.shape
        self.n = n = max(rows, cols)
        # a non-square matrix is padded with zeros to n x n, as the library pads it
        self.c = np.zeros((n, n), np.float64)
        self.c[:rows, :cols] = cost
        self.star_in_row: dict[int, int] = {}
        self.star_in_col: dict[int, int] = {}
        self.prime_in_row: dict[int, int] = {}
        self.row_covered = [False] * n
        self.col_covered = [False] * n
        self.zeros: list[list[int]] = []  # per row, the columns holding a zero, ascending
        self.z0 = (0, 0)

    def _find_zeros(self) -> None:
        rows, cols = np.nonzero(self.c == 0)
        self.zeros = [[] for _ in range(self.n)]
        for r, c in zip(rows.tolist(), cols.tolist()):
            self.zeros[r].append(c)

    # ---- the library's steps; each returns the next step number (7: done) -------------------------
    def step1(self) -> int:
        self.c -= self.c.min(axis=1, keepdims=True)
        self._find_zeros()
        return 2

    def step2(self) -> int:
        # row by row, star the first zero whose column holds no star yet
        for i in range(self.n):
            for j in self.zeros[i]:
                if j not in self.star_in_col:
                    self.star_in_row[i], self.star_in_col[j] = j, i
                    break
        return 3

    def step3(self) -> int:
        for j in self.star_in_col:
            self.col_covered[j] = True
        return 7 if len(self.star_in_col) >= self.n else 4

    def step4(self) -> int:
        row = col = 0
        while True:
            row, col = self._find_a_zero(row, col)
            if row < 0:
                return 6
            self.prime_in_row[row] = col
            star_col = self.star_in_row.get(row, -1)
            if star_col < 0:
                self.z0 = (row, col)
                return 5
            col = star_col
            self.row_covered[row] = True
            self.col_covered[col] = False

    def step5(self) -> int:
        path = [self.z0]
        while (row := self.star_in_col.get(path[-1][1], -1)) >= 0:
            path.append((row, path[-1][1]))
            path.append((row, self.prime_in_row[row]))
        # the path alternates primes (even places) and stars (odd): unstar the stars, star the primes
        for r, c in path[1::2]:
            del self.star_in_row[r], self.star_in_col[c]
        for r, c in path[0::2]:
            self.star_in_row[r], self.star_in_col[c] = c, r
        self.row_covered = [False] * self.n
        self.col_covered = [False] * self.n
        self.prime_in_row.clear()
        return 3

    def step6(self) -> int:
        rows, cols = np.array(self.row_covered), np.array(self.col_covered)
        open_ = self.c[~rows][:, ~cols]
        if open_.size == 0:
            raise ValueError("assignment: no uncovered cost left; the matrix cannot be solved")
        smallest = open_.min()
        self.c[rows] += smallest
        self.c[:, ~cols] -= smallest
        self._find_zeros()
        return 4

    # ---- helpers ------------------------------------------------------------------------------------
    def _find_a_zero(self, i0: int, j0: int) -> tuple[int, int]:
        """The library's scan: rows cyclically from i0; in the first row holding an uncovered zero its
        columns are scanned cyclically from j0 to the end without stopping, so the *last* uncovered
        zero in that cyclic order is the one returned."""
        for i in (*range(i0, self.n), *range(i0)):
            if self.row_covered[i]:
                continue
            cols = [j for j in self.zeros[i] if not self.col_covered[j]]
            if cols:
                before = [j for j in cols if j < j0]
                return i, (before or cols)[-1]
        return -1, -1

    def solve(self) -> dict[int, int]:
        steps = {1: self.step1, 2: self.step2, 3: self.step3, 4: self.step4, 5: self.step5, 6: self.step6}
        step = 1
        while step in steps:
            step = steps[step]()
        return self.star_in_row


def munkres(cost) -> list[tuple[int, int]]:
    """(row, column) pairs of a minimum-cost assignment of a (rows, cols) cost matrix, in row order,
    restricted to the matrix's own rows and columns (as ``Munkres().compute`` returns them)."""
    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2 or 0 in cost.shape:
        raise ValueError(f"assignment: expected a non-empty 2-D cost matrix, got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("assignment: the cost matrix holds NaN or infinite values")
    rows, cols = cost.shape
    stars = _Solver(cost).solve()
    return [(r, stars[r]) for r in sorted(stars) if r < rows and stars[r] < cols]
