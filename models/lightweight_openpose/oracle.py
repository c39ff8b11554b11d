"""Decoder oracle: COCO ground truth rendered as heatmaps and PAFs that ``decode`` turns back into people.

The maps are drawn at stride 1 in the original frame (identity record), so decode's resizes are exact and
what is scored is extraction, grouping and the COCO conversion alone.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from models.lightweight_openpose.layout import (
    BODY_PARTS_KPT_IDS,
    BODY_PARTS_PAF_IDS,
    COCO_TO_18,
    L_SHOULDER,
    NECK,
    NUM_KPTS,
    PEAK_MIN_DISTANCE,
    R_SHOULDER,
    PadRecord,
)
from posegate.datasets.coco import OKS_SIGMAS

ABSENT, DRAWN = 0, 1  # oracle joint states

# COCOeval's OKS prices every pixel the encoder moves a joint by.
_COCO_SIGMAS = OKS_SIGMAS
_SIGMAS_18 = np.zeros(NUM_KPTS)
_SIGMAS_18[[s for s in range(NUM_KPTS) if s != NECK]] = _COCO_SIGMAS[list(COCO_TO_18)]


def _people_18(annotations: list[dict], height: int, width: int):
    """COCO annotations -> per person (18, 3) rows of x, y, state in the 18-keypoint order; per person
    (18,) OKS rates (a joint drawn d px off scores exp(-rate * d^2) instead of 1; 0: never scored); and
    per person 1 / labelled keypoints, the weight of one joint's score in the person's OKS mean."""
    people, rates, weights = [], [], []
    for ann in annotations:
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0:
            continue  # COCOeval ignores these
        coco = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        person = np.zeros((NUM_KPTS, 3))
        slots = [s for s in range(NUM_KPTS) if s != NECK]
        person[slots, :2] = coco[list(COCO_TO_18), :2]
        person[slots, 2] = np.where(coco[list(COCO_TO_18), 2] > 0, DRAWN, ABSENT)
        if person[R_SHOULDER, 2] == DRAWN and person[L_SHOULDER, 2] == DRAWN:
            # Peaks live on pixels; the neck is never scored, so rounding its mean position is harmless.
            person[NECK] = [*np.floor((person[R_SHOULDER, :2] + person[L_SHOULDER, :2]) / 2 + 0.5), DRAWN]
        inside = (person[:, 0] >= 0) & (person[:, 0] < width) & (person[:, 1] >= 0) & (person[:, 1] < height)
        person[~inside, 2] = ABSENT
        people.append(person)
        area = max(float(ann.get("area", 0.0)), 1.0)
        with np.errstate(divide="ignore"):
            rate = np.where(_SIGMAS_18 > 0, 1 / (2 * area * (2 * _SIGMAS_18) ** 2), 0.0)
        rates.append(rate)
        weights.append(1.0 / max(int(np.count_nonzero(coco[:, 2] > 0)), 1))
    return people, rates, weights


def _disc(radius: int) -> np.ndarray:
    """Integer offsets within `radius` px, row by row: the candidate moves of one joint."""
    r = np.arange(-radius, radius + 1)
    dx, dy = (g.ravel() for g in np.meshgrid(r, r))
    inside = dx * dx + dy * dy <= radius * radius
    return np.stack([dx[inside], dy[inside]], axis=1)


_NECK_PENALTY = 1e-4  # per squared pixel moved: the neck is never scored, so it gives way first
_MOVE = PEAK_MIN_DISTANCE  # the exhaustive search moves a joint this far at most; two such moves part any pair
_OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCOeval's, computed as it does


def _worth(oks):
    """A person's OKS as AP sees it: the number of COCOeval thresholds it reaches, then the OKS itself to
    rank placements that reach as many (at most 1, less than one threshold)."""
    oks = np.asarray(oks)
    return np.sum(oks[..., None] >= _OKS_THRESHOLDS, axis=-1) + oks


def _terms(truth, rate, spots):
    """A joint's OKS term (1 at its truth) when drawn at pixels `spots`; decode reports pixel + 0.5."""
    return np.exp(-rate * np.sum((spots + 0.5 - truth) ** 2, axis=-1))


class _Crowd:
    """The drawn people with their truth, OKS rates and weights, so a move's effect on each owner's
    whole OKS (not just on the moved joint) can be priced."""

    def __init__(self, people, rates, weights):
        self.people, self.rates, self.weights = people, rates, weights
        self.truth = [p[:, :2].copy() for p in people]
        self.scored = [(p[:, 2] == DRAWN) & (r > 0) for p, r in zip(people, rates)]

    def oks_without(self, i, k):
        p, keep = self.people[i], self.scored[i].copy()
        keep[k] = False
        return self.weights[i] * _terms(self.truth[i][keep], self.rates[i][keep], p[keep, :2]).sum()

    def gain(self, i, k, spots):
        """Value of drawing person i's joint k at each of `spots`."""
        if not self.scored[i][k]:  # the neck: only the distance moved counts
            return -_NECK_PENALTY * np.sum((spots - np.floor(self.truth[i][k])) ** 2, axis=-1)
        oks = self.oks_without(i, k) + self.weights[i] * _terms(self.truth[i][k], self.rates[i][k], spots)
        return _worth(oks)

    def candidates(self, i, k, obstacles, radius, height, width):
        spots = np.floor(self.truth[i][k]).astype(np.int64) + _disc(radius)
        ok = (spots[:, 0] >= 0) & (spots[:, 0] < width) & (spots[:, 1] >= 0) & (spots[:, 1] < height)
        if len(obstacles):
            ok &= (np.sum((spots[:, None] - obstacles[None]) ** 2, axis=-1) >= PEAK_MIN_DISTANCE ** 2).all(1)
        return spots[ok], self.gain(i, k, spots[ok])


def _place_cluster(crowd, k, members, obstacles, height, width):
    """Pixels for a cluster of type-k joints, pairwise >= 6 px apart and >= 6 px from the obstacles (other
    same-type peaks), so decode's < 6 px suppression drops none, at the most AP-worth for their owners.
    Exhaustive for up to three joints; otherwise greedy, the joint with most at stake first, searching
    further out as needed. None if some joint finds no room within 24 px."""
    m = len(members)
    if m <= 3:
        cands = [crowd.candidates(i, k, obstacles, _MOVE, height, width) for i in members]
        if all(len(c[0]) for c in cands):
            idx = [g.ravel() for g in np.meshgrid(*[np.arange(len(c[0])) for c in cands], indexing="ij")]
            total = sum(c[1][i] for c, i in zip(cands, idx))
            ok = np.ones(len(total), dtype=bool)
            for a in range(m):
                for b in range(a + 1, m):
                    gap = cands[a][0][idx[a]] - cands[b][0][idx[b]]
                    ok &= np.sum(gap * gap, axis=1) >= PEAK_MIN_DISTANCE ** 2
            if ok.any():
                best = np.flatnonzero(ok)[np.argmax(total[ok])]  # first maximum: deterministic
                return np.array([c[0][i[best]] for c, i in zip(cands, idx)], dtype=np.float64)
    placed = np.zeros((m, 2))
    done = []
    stakes = [crowd.weights[i] * crowd.rates[i][k] for i in members]
    for j in np.argsort(stakes, kind="stable")[::-1]:
        for radius in (_MOVE, 2 * _MOVE, 4 * _MOVE):
            spots, gain = crowd.candidates(members[j], k, np.vstack([obstacles, placed[done]]), radius,
                                           height, width)
            if len(spots):
                break
        else:
            return None
        placed[j] = spots[np.argmax(gain)]
        done.append(j)
    return placed


def _separate_same_type(people, rates, weights, height, width, rounds: int = 3) -> None:
    """Snaps drawn joints to pixels, then parts same-type joints of different people that decode's
    6 px suppression would merge, rather than dropping one: a few pixels cost a little OKS, a missing
    joint a whole term, and each duplicated annotation of one person keeps a full skeleton.

    Joints more than 18 px apart never meet when each moves at most 6, so the clusters are the groups
    linked at that range that hold a collision. A move is judged by its owner's whole OKS, so clusters
    sharing people are re-solved a few rounds, each given the others' latest placements.
    """
    crowd = _Crowd(people, rates, weights)
    clusters = []
    for k in range(NUM_KPTS):
        owners = np.array([i for i, p in enumerate(people) if p[k, 2] == DRAWN], dtype=np.int64)
        for i in owners:
            people[i][k, :2] = np.floor(people[i][k, :2])
        if len(owners) < 2:
            continue
        pixels = np.array([people[i][k, :2] for i in owners])
        tree = cKDTree(pixels)
        if not len(tree.query_pairs(math.sqrt(PEAK_MIN_DISTANCE ** 2 - 0.5))):
            continue
        reach = tree.query_pairs(3 * PEAK_MIN_DISTANCE, output_type="ndarray")
        graph = coo_matrix((np.ones(len(reach)), (reach[:, 0], reach[:, 1])), shape=(len(owners),) * 2)
        _, label = connected_components(graph, directed=False)
        for c in np.unique(label):
            members = np.flatnonzero(label == c)
            gaps = np.sum((pixels[members, None] - pixels[None, members]) ** 2, axis=-1)
            if len(members) > 1 and (gaps[np.triu_indices(len(members), 1)] < PEAK_MIN_DISTANCE ** 2).any():
                clusters.append((k, owners[members], owners[label != c]))
    for _ in range(rounds if clusters else 0):
        for k, members, others in clusters:
            obstacles = np.array([people[i][k, :2] for i in others]).reshape(-1, 2)
            placed = _place_cluster(crowd, k, members, obstacles, height, width)
            if placed is None:  # no room within 24 px (never seen): leave these joints out
                for i in members:
                    people[i][k, 2] = ABSENT
                    crowd.scored[i][k] = False
                continue
            for i, xy in zip(members, placed):
                people[i][k, :2] = xy


# Where same-type limbs overlap, each pixel averages their directions weighted by closeness (Gaussian of
# its distance to each segment, this sd in px). Decode samples a true limb within 0.71 px of its own
# segment, so it reads (almost) exactly its own direction and outscores the crossed pairings of two
# nearly parallel limbs (duplicated annotations), which a plain average left to rounding. Pixels on
# one limb only still hold its exact unit vector. AP on subset250 is flat for 0.15..0.4.
_PAF_FALLOFF = 0.25

_TREE_LIMBS = BODY_PARTS_KPT_IDS[:17]  # the two ear-shoulder limbs are redundant for connectivity
_NEIGHBOURS = [[b if a == k else a for a, b in _TREE_LIMBS if k in (a, b)] for k in range(NUM_KPTS)]


def _free_spot(centre, anchors, occupied, height, width):
    """First pixel on rings around centre that is >= 6 px from every same-type peak already placed
    (so decode's suppression neither removes it nor is removed by it) and >= 2 px from its anchors."""
    occupied = np.reshape(occupied, (-1, 2))
    anchors = np.reshape(anchors, (-1, 2))
    for radius in (0, 4, 6, 8, 10, 12, 16, 24, 32):
        for angle in np.arange(16) * (np.pi / 8):
            spot = np.floor(centre + radius * np.array([np.cos(angle), np.sin(angle)]) + 0.5)
            if not (0 <= spot[0] < width and 0 <= spot[1] < height):
                continue
            if (np.sum((occupied - spot) ** 2, axis=1) >= PEAK_MIN_DISTANCE ** 2).all() and \
                    (np.sum((anchors - spot) ** 2, axis=1) >= 4).all():
                return spot
    return None


def _complete_skeleton(person, occupied, height, width):
    """Places the joints upstream's tree grouping needs to connect the drawn ones (and to reach its
    minimum of 3 keypoints).

    OKS ignores keypoints the ground truth leaves unlabelled, so the added joints cost no AP but keep
    the person from splitting into fragments or vanishing.
    """
    drawn = set(np.flatnonzero(person[:, 2] == DRAWN).tolist())
    if not drawn:
        return person
    needed = set(range(NUM_KPTS))
    while True:  # minimal subtree holding every labelled joint: prune the other leaves
        leaves = {k for k in needed - drawn if sum(j in needed for j in _NEIGHBOURS[k]) <= 1}
        if not leaves:
            break
        needed -= leaves
    while len(needed) < 3:
        needed.add(min(j for k in needed for j in _NEIGHBOURS[k] if j not in needed))
    person = person.copy()
    pending = sorted(needed - drawn)
    while True:
        # Each placed joint can anchor the next one along the tree.
        ready = [k for k in pending if any(person[j, 2] == DRAWN for j in _NEIGHBOURS[k])]
        if not ready:
            return person
        k = ready[0]
        pending.remove(k)
        anchors = [person[j, :2] for j in _NEIGHBOURS[k] if person[j, 2] == DRAWN]
        centre = np.mean(anchors, axis=0)
        spot = _free_spot(centre, anchors, occupied[k], height, width)
        if spot is not None:
            person[k] = [*spot, DRAWN]
            occupied[k].append(spot)


def encode_ground_truth(annotations: list[dict], height: int, width: int, sigma: float = 1.0,
                        paf_thickness: float = 1.0, complete: bool = True
                        ) -> tuple[np.ndarray, np.ndarray, PadRecord, int]:
    """Decoder oracle: renders one image's ground truth so that decode() recovers its people.

    Rendered in the original frame with an identity record and stride 1, so decode's resizes are copies
    and each heatmap peak (value 1) sits exactly on its ground-truth pixel. Labelled keypoints are drawn
    at their ground-truth pixels, except where decode's 6 px suppression would merge two people's
    same-type joints (an upstream limit): those are parted to >= 6 px at the least OKS cost (see
    _separate_same_type). With `complete`, the unlabelled joints the grouping needs are added at free
    positions (see _complete_skeleton). Same-type peaks merge by max, so any two at least 2 px apart
    stay strict peaks.
    PAFs join the drawn (possibly moved) pixels and are averaged, weighted by closeness, where limbs of
    one type overlap (see _PAF_FALLOFF), which keeps each true limb's alignment positive and highest;
    the thickness must cover decode's rounded samples (<= 0.71 px off the segment).
    """
    heat = np.zeros((height, width, NUM_KPTS + 1), dtype=np.float32)
    pafs = np.zeros((height, width, 2 * len(BODY_PARTS_KPT_IDS)), dtype=np.float32)
    paf_count = np.zeros_like(pafs)
    radius = int(math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    gauss = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2)).astype(np.float32)

    people, rates, weights = _people_18(annotations, height, width)
    _separate_same_type(people, rates, weights, height, width)
    if complete:
        occupied = [[p[k, :2] for p in people if p[k, 2] == DRAWN] for k in range(NUM_KPTS)]
        people = [_complete_skeleton(p, occupied, height, width) for p in people]
    for person in people:
        for k in np.flatnonzero(person[:, 2] == DRAWN):
            x, y = person[k, :2].astype(int)
            x0, x1 = max(x - radius, 0), min(x + radius + 1, width)
            y0, y1 = max(y - radius, 0), min(y + radius + 1, height)
            patch = gauss[y0 - y + radius:y1 - y + radius, x0 - x + radius:x1 - x + radius]
            np.maximum(heat[y0:y1, x0:x1, k], patch, out=heat[y0:y1, x0:x1, k])
        for limb, (ka, kb) in enumerate(BODY_PARTS_KPT_IDS):
            if not (person[ka, 2] == DRAWN and person[kb, 2] == DRAWN):
                continue
            a, b = person[ka, :2], person[kb, :2]
            length = np.linalg.norm(b - a)
            if length < 1e-7:
                continue
            unit = (b - a) / length
            x0, y0 = np.maximum(np.floor(np.minimum(a, b) - paf_thickness), 0).astype(int)
            x1 = min(int(math.ceil(max(a[0], b[0]) + paf_thickness)) + 1, width)
            y1 = min(int(math.ceil(max(a[1], b[1]) + paf_thickness)) + 1, height)
            px, py = np.arange(x0, x1)[None, :] - a[0], np.arange(y0, y1)[:, None] - a[1]
            t = np.clip((px * unit[0] + py * unit[1]) / length, 0, 1)
            off = np.hypot(px - t * (b[0] - a[0]), py - t * (b[1] - a[1]))
            near = off <= paf_thickness
            w = np.exp(-off[near] ** 2 / (2 * _PAF_FALLOFF ** 2))
            for channel, component in zip(BODY_PARTS_PAF_IDS[limb], unit):
                pafs[y0:y1, x0:x1, channel][near] += w * component
                paf_count[y0:y1, x0:x1, channel][near] += w

    heat[:, :, NUM_KPTS] = 1 - heat[:, :, :NUM_KPTS].max(axis=2)
    np.divide(pafs, paf_count, out=pafs, where=paf_count > 0)
    # Channel-first views of channel-last buffers: decode transposes them back without copying.
    return heat.transpose(2, 0, 1), pafs.transpose(2, 0, 1), PadRecord.identity(height, width), 1
