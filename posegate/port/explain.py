"""Which known mistake explains a difference: candidate transformations of the reference, per KIND.

A candidate explains a file when it brings the error within the tolerance; the first that does names the
KIND. Generic candidates live here; a model's own (interpolation, padding, scale, its decoder's
variants) come from its PortLayout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from posegate.datasets.coco import KEYPOINT_NAMES

INPUT_KINDS = ("channel-order", "normalisation", "interpolation", "padding", "scale", "layout", "dtype", "other")
OUTPUT_KINDS = ("output-order", "wrong-output", "dtype", "precision", "other")
RESULT_KINDS = ("interpolation", "padding", "keypoint-offset", "keypoint-scale", "keypoint-order",
                "missing-persons", "score", "image-id", "other")
# Results: JSON writers round coordinates (2 decimals: 0.005 px) while a decoder's smallest step is a
# whole map or image pixel; a twentieth of a pixel separates the two. Scores: relative, same reasoning.
PX_TOLERANCE = 0.05
SCORE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Explained:
    kind: str
    label: str
    after: float | None  # the error once the candidate is applied (None: not measurable)


def input_tolerance(ref: np.ndarray) -> float:
    """A quarter of one 8-bit grey level of the reference's range: what float rounding and SIMD paths may
    change, far below any preprocessing mistake (a grey level is range / 255)."""
    span = float(ref.max() - ref.min())
    return 0.25 * (span if span > 0 else 1.0) / 255


def _err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")


def _content(record, shape):
    """The resized image's window inside a letterboxed input (None where the record does not say)."""
    try:
        top, left, bottom, right = record.top, record.left, record.bottom, record.right
    except AttributeError:
        return None
    return (slice(None), slice(top, shape[-2] - bottom), slice(left, shape[-1] - right))


def explain_input(team, ref, tol, raw, profile, layout, record, first: str | None = None) -> Explained:
    """The KIND of a preprocessed input that differs from the reference; ``first`` is tried first (the KIND
    that explained the previous file, so a port broken the same way everywhere costs one candidate a file)."""
    window = _content(record, ref.shape)
    candidates = []

    def channels():
        return _err(team, ref[::-1]), "channels reversed (RGB where the network takes BGR, or the reverse)"

    def hwc():
        return _err(team, np.ascontiguousarray(ref.transpose(1, 2, 0)).reshape(ref.shape)), \
            "the same values written height x width x channels (NHWC) instead of NCHW"

    def affine():
        a, b = (team, ref) if window is None else (team[window], ref[window])
        design = np.stack([b.ravel(), np.ones(b.size)], axis=1)
        (scale, offset), *_ = np.linalg.lstsq(design, a.ravel().astype(np.float64), rcond=None)
        if abs(scale - 1) < 1e-3 and abs(offset) < tol:
            return float("inf"), ""
        shift = f" {offset:+.4g}" if abs(offset) > tol else ""
        return _err(a, b * scale + offset), f"another normalisation: file = {scale:.4g} x reference{shift}"

    def pad_value():
        if window is None:
            return float("inf"), ""
        inside = _err(team[window], ref[window])
        outside = np.abs(team - ref)
        outside[window] = 0
        values = np.unique(np.round(team[outside > tol], 4))[:3]
        if inside > tol or not len(values):
            return float("inf"), ""
        return inside, f"the image matches; the padding holds {', '.join(f'{v:g}' for v in values)} where the " \
                       "port pads 0 (after normalisation)"

    candidates = [("normalisation", affine), ("padding", pad_value)]
    if ref.ndim == 3 and ref.shape[0] == 3:  # an image: its channel order and memory layout can be wrong
        candidates = [("channel-order", channels), ("layout", hwc)] + candidates
    for v in layout.input_variants:
        candidates.append((v.kind, lambda v=v: (_err(team, np.asarray(v.make(raw, profile))), v.label)))
    candidates.sort(key=lambda c: c[0] != first)
    best = None
    for kind, fn in candidates:
        after, label = fn()
        if after <= tol:
            return Explained(kind, label, after)
        if best is None or after < best[0]:
            best = (after, kind, label)
    return Explained("other", "no known mistake explains it"
                     + (f" (closest: {best[2]}, error {best[0]:.3g})" if best and np.isfinite(best[0]) else ""),
                     None)


# ------------------------------------------------------------------------------------------ results

def _keypoints(r) -> np.ndarray:
    return np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3)


def match_people(team: list, ref: list) -> tuple[list, int, int]:
    """Pairs (team, reference) of the same people, and the unmatched counts on each side.

    Cost: mean distance over keypoints found in both, plus a large term per keypoint found in one only."""
    if not team or not ref:
        return [], len(team), len(ref)
    cost = np.zeros((len(team), len(ref)))
    for i, t in enumerate(team):
        kt = _keypoints(t)
        for j, r in enumerate(ref):
            kr = _keypoints(r)
            both = (kt[:, 2] > 0) & (kr[:, 2] > 0)
            dist = np.hypot(*(kt[both, :2] - kr[both, :2]).T).mean() if both.any() else 1e6
            cost[i, j] = dist + 1e3 * np.count_nonzero((kt[:, 2] > 0) != (kr[:, 2] > 0))
    rows, cols = linear_sum_assignment(cost)
    return [(team[i], ref[j]) for i, j in zip(rows, cols)], len(team) - len(rows), len(ref) - len(cols)


def people_error(team: list, ref: list) -> tuple[float, float, int]:
    """(worst keypoint error px, worst relative score error, count difference) of one image's people."""
    pairs, extra, missing = match_people(team, ref)
    px, score = 0.0, 0.0
    for t, r in pairs:
        kt, kr = _keypoints(t), _keypoints(r)
        if ((kt[:, 2] > 0) != (kr[:, 2] > 0)).any():
            px = float("inf")
            continue
        found = kr[:, 2] > 0
        if found.any():
            px = max(px, float(np.abs(kt[found, :2] - kr[found, :2]).max()))
        score = max(score, abs(t["score"] - r["score"]) / max(abs(r["score"]), 1e-9))
    return px, score, extra + missing


def exact(team: list, ref: list) -> bool:
    px, score, count = people_error(team, ref)
    return count == 0 and px <= PX_TOLERANCE and score <= SCORE_TOLERANCE


def explain_results(pairs_by_image: dict, team_by_image: dict, ref_by_image: dict, variants: dict) -> Explained:
    """The KIND of results that differ. ``pairs_by_image``: the differing images' matched people;
    ``variants``: KIND -> (label, images the model's decoder variant reproduces exactly)."""
    failing = list(pairs_by_image)
    for kind, (label, reproduced) in variants.items():
        if failing and set(failing) <= reproduced:
            return Explained(kind, label, 0.0)
    missing = {i: len(ref_by_image.get(i, [])) - len(team_by_image.get(i, [])) for i in failing}
    if failing and all(m > 0 for m in missing.values()) and all(
            exact([t], [r]) for i in failing for t, r in pairs_by_image[i]):
        return Explained("missing-persons", f"{sum(missing.values())} of {sum(len(ref_by_image[i]) for i in failing)} "
                         f"people missing on {len(failing)} images; those found agree", 0.0)
    # slots swapped (left for right): the people paired whatever their slots, since a joint found on one side
    # only changes which slots are found, and a swapped person can lie nearer another of many overlapping ones
    order = _order(_slot_free_pairs(failing, team_by_image, ref_by_image))
    if order is not None:
        return Explained("keypoint-order", order, 0.0)
    pairs = [p for ps in pairs_by_image.values() for p in ps]
    same_found = [(t, r) for t, r in pairs if ((_keypoints(t)[:, 2] > 0) == (_keypoints(r)[:, 2] > 0)).all()]
    if same_found and len(same_found) == len(pairs):
        t = np.concatenate([_keypoints(a)[_keypoints(b)[:, 2] > 0, :2] for a, b in same_found])
        r = np.concatenate([_keypoints(b)[_keypoints(b)[:, 2] > 0, :2] for a, b in same_found])
        if len(t):
            d = t - r
            if np.abs(d).max() > PX_TOLERANCE and np.ptp(d, axis=0).max() <= 2 * PX_TOLERANCE:
                dx, dy = d.mean(axis=0)
                return Explained("keypoint-offset", _offset_text(dx, dy), float(np.abs(d - d.mean(0)).max()))
            fit = _axis_fit(t, r)
            if fit is not None:
                (sx, ox), (sy, oy), after = fit
                text = f"x scaled by {sx:.4g}{_shift(ox)}, y by {sy:.4g}{_shift(oy)}"
                return Explained("keypoint-scale", text, after)
            if np.abs(d).max() <= PX_TOLERANCE:
                ratios = [a["score"] / b["score"] for a, b in same_found if b["score"]]
                text = (f"scores x{np.median(ratios):.3g} (from x{min(ratios):.3g} to x{max(ratios):.3g})"
                        if ratios else "scores differ")
                return Explained("score", "keypoints agree, " + text, 0.0)
    moved = _image_ids(failing, team_by_image, ref_by_image)
    if moved:
        return Explained("image-id", moved, 0.0)
    return Explained("other", "no known mistake explains it", None)


def _shift(offset: float) -> str:
    return f" and shifted {offset:+.3g} px" if abs(offset) > PX_TOLERANCE else ""


def _offset_text(dx: float, dy: float) -> str:
    if abs(dx - dy) <= PX_TOLERANCE:
        return f"{dx:+.3g} px in x and y"
    return f"{dx:+.3g} px in x, {dy:+.3g} px in y"


def _axis_fit(t: np.ndarray, r: np.ndarray):
    out, worst = [], 0.0
    for axis in (0, 1):
        design = np.stack([r[:, axis], np.ones(len(r))], axis=1)
        (s, o), *_ = np.linalg.lstsq(design, t[:, axis], rcond=None)
        worst = max(worst, float(np.abs(design @ (s, o) - t[:, axis]).max()))
        out.append((float(s), float(o)))
    if worst > PX_TOLERANCE or len(t) < 3 or all(abs(s - 1) < 1e-4 for s, _ in out):
        return None
    return out[0], out[1], worst


def _slot_free_pairs(failing, team_by_image, ref_by_image) -> list:
    """People paired by where their keypoints lie whatever their slots: among many overlapping people (a
    bottom-up decoder's), a person with its slots swapped can lie closer to another than to itself."""
    pairs = []
    for i in failing:
        team, ref = team_by_image.get(i, []), ref_by_image.get(i, [])
        if not team or not ref:
            continue
        # each axis's coordinates sorted: the same for any order of the slots
        cost = np.array([[np.abs(np.sort(_keypoints(t)[:, :2], axis=0) - np.sort(_keypoints(r)[:, :2], axis=0)).sum()
                          for r in ref] for t in team])
        rows, cols = linear_sum_assignment(cost)
        pairs += [(team[a], ref[b]) for a, b in zip(rows, cols)]
    return pairs


def _order(pairs) -> str | None:
    """The keypoint permutation mapping the reference's slots onto the team's, if one explains them."""
    if not pairs:
        return None
    n = _keypoints(pairs[0][0]).shape[0]
    cost = np.zeros((n, n))
    for t, r in pairs:
        kt, kr = _keypoints(t), _keypoints(r)
        cost += np.abs(kt[:, None, :2] - kr[None, :, :2]).sum(-1) + 1e3 * ((kt[:, None, 2] > 0) != (kr[None, :, 2] > 0))
    rows, cols = linear_sum_assignment(cost)
    if (cols == rows).all():
        return None
    for t, r in pairs:
        if np.abs(_keypoints(t)[rows, :2] - _keypoints(r)[cols, :2]).max() > PX_TOLERANCE:
            return None
    names = KEYPOINT_NAMES if n == len(KEYPOINT_NAMES) else [str(i) for i in range(n)]
    moved = [f"{names[i]}<-{names[j]}" for i, j in zip(rows, cols) if i != j]
    return f"{len(moved)} keypoints in other slots: {', '.join(moved[:6])}" + (" ..." if len(moved) > 6 else "")


def _image_ids(failing, team_by_image, ref_by_image) -> str | None:
    found = {}
    for i in failing:
        team = team_by_image.get(i, [])
        if not team:
            continue
        hit = [j for j, ref in ref_by_image.items() if j != i and ref and exact(team, ref)]
        if not hit:
            return None
        found[i] = hit[0]
    if not found:
        return None
    sample = ", ".join(f"{i} holds {j}'s people" for i, j in list(found.items())[:3])
    return f"{len(found)} images' results carry another image's id ({sample})"
