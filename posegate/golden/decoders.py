"""Golden decoder cases (reference dir golden/decoders/, its README): upstream's network outputs in,
upstream's final results out. Feeds each case to the suite's decoder and compares within the README's
tolerances: per image the same persons in the same order (as a set where top-k held ties), all 17 joints
|dx|, |dy| <= 1e-3 px, |dv| <= 1e-5, |d score| <= 1e-5 * max(1, |score|).

What is generic lives here: reading a case file, comparing results within the tolerances. What each
model's file holds and how its cases feed that model's decoder lives in the model's folder
(``models/<name>/golden.py``), declared as its spec's ``decoder_golden``: posegate never imports ``models``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

FOLDER = ("golden", "decoders")
XY_TOL, V_TOL, SCORE_TOL = 1e-3, 1e-5, 1e-5


def open_cases(path: Path):
    """The npz as a mapping of arrays (no pickle); a clear error naming the file when it is not one."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable golden decoder npz ({e})") from e


def case_names(data) -> list[str]:
    return [str(c) for c in data["cases"]]


@dataclass
class Comparison:
    """How far a decoder's results for one case lie from upstream's."""
    persons: list[int] = field(default_factory=list)
    ref_persons: list[int] = field(default_factory=list)
    max_dxy: float = 0.0
    max_dv: float = 0.0
    max_dscore: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict:
        return {"persons": sum(self.persons), "ref_persons": sum(self.ref_persons), "max_dxy": self.max_dxy,
                "max_dv": self.max_dv, "max_dscore": self.max_dscore}


def _close(kp, score, ref_kp, ref_score) -> tuple[float, float, float, bool]:
    dxy = float(np.abs(kp[:, :2] - ref_kp[:, :2]).max())
    dv = float(np.abs(kp[:, 2] - ref_kp[:, 2]).max())
    ds = abs(score - ref_score) / max(1.0, abs(ref_score))
    return dxy, dv, ds, dxy <= XY_TOL and dv <= V_TOL and ds <= SCORE_TOL


def compare_image(cmp: Comparison, label: str, results: list[dict], ref_kp: np.ndarray, ref_score: np.ndarray,
                  as_set: bool = False) -> None:
    """Adds one image's results (COCO dicts) to ``cmp``; persons in order unless ``as_set``."""
    cmp.persons.append(len(results))
    cmp.ref_persons.append(len(ref_kp))
    if len(results) != len(ref_kp):
        cmp.problems.append(f"{label}: {len(results)} persons, upstream {len(ref_kp)}")
        return
    mine = [(np.asarray(r["keypoints"], np.float64).reshape(-1, 3), float(r["score"])) for r in results]
    unmatched = list(range(len(ref_kp)))
    for p, (kp, score) in enumerate(mine):
        candidates = unmatched if as_set else [p]
        best = None
        for q in candidates:
            d = _close(kp, score, ref_kp[q], float(ref_score[q]))
            if best is None or d[3] > best[1][3] or (d[3] == best[1][3] and d[0] < best[1][0]):
                best = (q, d)
        q, (dxy, dv, ds, ok) = best
        cmp.max_dxy, cmp.max_dv, cmp.max_dscore = max(cmp.max_dxy, dxy), max(cmp.max_dv, dv), max(cmp.max_dscore, ds)
        if not ok:
            cmp.problems.append(f"{label} person {p}: |dxy| {dxy:.3g} px, |dv| {dv:.3g}, |dscore| {ds:.3g} "
                                f"(upstream's person {q})")
        if as_set:
            unmatched.remove(q)


def per_image(data, case: str):
    """Yields (k, image id, upstream keypoints, upstream scores) for the bottom-up files."""
    start = np.r_[0, np.cumsum(data[f"{case}/persons"])]
    for k, image_id in enumerate(data[f"{case}/image_id"]):
        yield k, int(image_id), data[f"{case}/keypoints"][start[k]:start[k + 1]], \
            data[f"{case}/score"][start[k]:start[k + 1]]


# (npz data, case name, the model's codec, a decoder in place of the codec's own or None) -> Comparison
Compare = Callable[[object, str, object, Optional[Callable]], Comparison]


@dataclass(frozen=True)
class DecoderGolden:
    """A model's golden decoder file: its name under golden/decoders/, the cases it holds (the README's
    table; a file with others is not the one its tests were written for), and how a case feeds the decoder."""
    file: str
    cases: tuple[str, ...]
    compare: Compare
