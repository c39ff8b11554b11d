"""Tensor parity: max abs error, max error relative to the reference's scale, cosine similarity."""
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

    @property
    def violations(self) -> list[str]:
        t = self.tolerance
        out = [] if self.shape_ok else ["shape differs"]
        if t.max_abs is not None and not self.max_abs <= t.max_abs:
            out.append(f"max_abs {self.max_abs:.3g} > {t.max_abs:.3g}")
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


def compare(out: np.ndarray, ref: np.ndarray, tolerance) -> ParityError:
    if out.shape != ref.shape:
        return ParityError(float("inf"), float("inf"), 0.0, False, tolerance)
    a, b = out.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b))
    return ParityError(diff, diff / scale if scale > 0 else diff, cosine, True, tolerance)
