"""Golden decoder cases (reference dir golden/decoders/, its README): upstream's network outputs in,
upstream's final results out. Feeds each case to the suite's decoder and compares within the README's
tolerances: per image the same persons in the same order (as a set where top-k held ties), all 17 joints
|dx|, |dy| <= 1e-3 px, |dv| <= 1e-5, |d score| <= 1e-5 * max(1, |score|).

Each comparison takes the model's codec (its spec's ``flow.codec``) from the caller: posegate never
imports ``models``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FOLDER = ("golden", "decoders")
XY_TOL, V_TOL, SCORE_TOL = 1e-3, 1e-5, 1e-5
FILES = {"higherhrnet_w32_512": "higherhrnet_w32_512.npz", "mspn_2xstg": "mspn_2xstg.npz",
         "lightweight_openpose": "lightweight_openpose.npz"}
# the cases each file holds (README table); a file with others is not the one these tests were written for
CASES = {"higherhrnet_w32_512": ("oracle", "oracle_noise"), "mspn_2xstg": ("gtbox_noise", "dets"),
         "lightweight_openpose": ("real", "real_noise", "oracle")}


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


def _per_image(data, case: str):
    """Yields (k, image id, upstream keypoints, upstream scores) for the bottom-up files."""
    start = np.r_[0, np.cumsum(data[f"{case}/persons"])]
    for k, image_id in enumerate(data[f"{case}/image_id"]):
        yield k, int(image_id), data[f"{case}/keypoints"][start[k]:start[k + 1]], \
            data[f"{case}/score"][start[k]:start[k + 1]]


# ------------------------------------------------------------------------------------ per model

def higherhrnet(data, case: str, codec, decode=None) -> Comparison:
    decode = decode or codec.decode
    cmp = Comparison()
    for k, image_id, ref_kp, ref_score in _per_image(data, case):
        if not data[f"{case}/flip"][k]:
            raise ValueError(f"{case} image {image_id}: the suite's decoder always takes the flip-test pair")
        (h, w), (in_h, in_w) = data[f"{case}/orig_hw"][k], data[f"{case}/input_hw"][k]
        center = tuple(int(v) for v in data[f"{case}/center"][k])
        scale = tuple(float(v) for v in data[f"{case}/scale"][k])
        stratum = codec.stratum(int(h), int(w))
        record = codec.AffineRecord(int(h), int(w), center, scale, int(in_h), int(in_w), stratum)
        results = decode(data[f"{case}/quarter/{k}"], data[f"{case}/half/{k}"], record)
        compare_image(cmp, f"{case} image {image_id}", results, ref_kp, ref_score,
                      as_set=bool(data[f"{case}/topk_ties"][k]))
    return cmp


def mspn_records(data, case: str, codec):
    flip = bool(data[f"{case}/flip"])
    return [codec.CropRecord(int(i), int(hw[1]), int(hw[0]), tuple(c.tolist()), tuple(s.tolist()), float(d), flip)
            for i, hw, c, s, d in zip(data[f"{case}/image_id"], data[f"{case}/orig_hw"], data[f"{case}/center"],
                                      data[f"{case}/scale"], data[f"{case}/det_score"])]


def mspn_outputs(data, case: str) -> np.ndarray:
    maps = data[f"{case}/heatmaps"]
    return np.concatenate([maps, data[f"{case}/heatmaps_flipped"]]) if bool(data[f"{case}/flip"]) else maps


def mspn(data, case: str, codec, decode=None) -> Comparison:
    decode = decode or codec.decode_crops
    results = decode(mspn_outputs(data, case), mspn_records(data, case, codec))
    cmp = Comparison()
    ref_kp, ref_score = data[f"{case}/keypoints"], data[f"{case}/score"]
    for i, (r, kp, s) in enumerate(zip(results, ref_kp, ref_score)):
        compare_image(cmp, f"{case} crop {i}", [r], kp[None], s[None])
    if len(results) != len(ref_kp):
        cmp.problems.append(f"{case}: {len(results)} results for {len(ref_kp)} crops")
    return cmp


def openpose_record(data, case: str, k: int, codec):
    top, left, bottom, right = (int(v) for v in data[f"{case}/pad"][k])
    in_h, in_w = (int(v) for v in data[f"{case}/input_hw"][k])
    h, w = (int(v) for v in data[f"{case}/orig_hw"][k])
    return codec.PadRecord(h, w, float(data[f"{case}/scale"][k]), in_h - top - bottom, in_w - left - right,
                           top, bottom, left, right)


def openpose(data, case: str, codec, decode=None) -> Comparison:
    decode = decode or codec.decode
    cmp = Comparison()
    for k, image_id, ref_kp, ref_score in _per_image(data, case):
        results = decode(data[f"{case}/heatmaps/{k}"], data[f"{case}/pafs/{k}"], openpose_record(data, case, k, codec),
                         int(data[f"{case}/stride"][k]))
        compare_image(cmp, f"{case} image {image_id}", results, ref_kp, ref_score)
    return cmp


COMPARE = {"higherhrnet_w32_512": higherhrnet, "mspn_2xstg": mspn, "lightweight_openpose": openpose}
