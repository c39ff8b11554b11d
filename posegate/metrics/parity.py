"""Tensor parity: max abs error, max error relative to the reference's scale, cosine similarity.

NaN and Inf are counted and named, never folded into the error figures: a ``max_abs nan`` tells a team
nothing, "120 NaN in stage2_pafs, reference finite" tells them the backend produced them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ParityError:
    max_abs: float
    max_rel: float
    cosine: float
    shape_ok: bool
    tolerance: object
    nan: int = 0  # in the backend's output
    inf: int = 0
    ref_nan: int = 0  # in the reference: then the weights are to blame, not the backend
    ref_inf: int = 0
    size: int = 0

    @property
    def nonfinite(self) -> str:
        """'' when both sides are finite, else what is not, with whom it blames."""
        return nonfinite_text(self.nan, self.inf, self.size, self.ref_nan, self.ref_inf)

    @property
    def violations(self) -> list[str]:
        t = self.tolerance
        out = [] if self.shape_ok else ["shape differs"]
        if self.nonfinite:
            out.append(self.nonfinite)
        if t.max_abs is not None and not self.max_abs <= t.max_abs:
            out.append(f"max_abs {self.max_abs:.3g} > {t.max_abs:.3g}" + (" (finite values)" if self.nonfinite else ""))
        if t.max_rel is not None and not self.max_rel <= t.max_rel:
            out.append(f"max_rel {self.max_rel:.3g} > {t.max_rel:.3g}")
        if t.min_cosine is not None and not self.cosine >= t.min_cosine:
            out.append(f"cosine {self.cosine:.6f} < {t.min_cosine}")
        return out

    @property
    def ok(self) -> bool:
        return not self.violations

    def describe(self) -> str:
        return "; ".join(self.violations) or "ok"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["tolerance"] = asdict(self.tolerance)
        return d


def nonfinite_text(nan: int, inf: int, size: int, ref_nan: int = 0, ref_inf: int = 0) -> str:
    if not (nan or inf or ref_nan or ref_inf):
        return ""
    got = " and ".join(f"{n} {k}" for n, k in ((nan, "NaN"), (inf, "Inf")) if n) or "no NaN/Inf"
    text = f"{got} of {size} values"
    if ref_nan or ref_inf:
        bad = " and ".join(f"{n} {k}" for n, k in ((ref_nan, "NaN"), (ref_inf, "Inf")) if n)
        return text + f"; the reference itself has {bad}: the weights are to blame, not the backend"
    return text + " (reference finite)"


def nonfinite_counts(outputs: dict[str, np.ndarray]) -> dict[str, dict]:
    """{output: {"nan": n, "inf": n, "size": n}} for the outputs holding any NaN or Inf."""
    found = {}
    for name, v in outputs.items():
        v = np.asarray(v)
        if not np.issubdtype(v.dtype, np.floating):
            continue
        nan, inf = int(np.isnan(v).sum()), int(np.isinf(v).sum())
        if nan or inf:
            found[name] = {"nan": nan, "inf": inf, "size": int(v.size)}
    return found


def describe_nonfinite(found: dict[str, dict]) -> str:
    """'stage2_pafs: 12 NaN of 4096 values; ...' for nonfinite_counts' result ('' when empty)."""
    return "; ".join(f"{n}: {nonfinite_text(c['nan'], c['inf'], c['size'])}" for n, c in found.items())


def compare(out: np.ndarray, ref: np.ndarray, tolerance) -> ParityError:
    if out.shape != ref.shape:
        return ParityError(float("inf"), float("inf"), 0.0, False, tolerance, size=int(np.size(out)))
    a, b = out.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    fa, fb = np.isfinite(a), np.isfinite(b)
    counts = dict(nan=int(np.isnan(a).sum()), inf=int(np.isinf(a).sum()), ref_nan=int(np.isnan(b).sum()),
                  ref_inf=int(np.isinf(b).sum()), size=int(a.size))
    both = fa & fb
    if not both.all():  # the figures describe the finite values; the counts name the rest
        a, b = a[both], b[both]
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b))
    return ParityError(diff, diff / scale if scale > 0 else diff, cosine, True, tolerance, **counts)
