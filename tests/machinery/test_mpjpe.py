"""3D pose errors on cases whose answer is known analytically, and Protocol #1's action-wise average."""
from __future__ import annotations

import numpy as np
import pytest

from posegate.metrics import METRICS, margin
from posegate.metrics.mpjpe import action_wise, evaluate_sequences, mpjpe, mpjve, n_mpjpe, p_mpjpe, prediction_distance

pytestmark = pytest.mark.stage


def _poses(frames=20, seed=0):
    return np.random.default_rng(seed).normal(0, 0.3, (frames, 17, 3))


def _rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_known_offset_gives_its_length():
    target = _poses()
    assert mpjpe(target + [0.003, 0.004, 0.0], target) == pytest.approx(0.005)
    assert mpjpe(target, target) == 0


def test_one_joint_off_counts_once_in_the_mean():
    target = _poses(frames=1)
    pred = target.copy()
    pred[0, 5] += [0.17, 0, 0]
    assert mpjpe(pred, target) == pytest.approx(0.17 / 17)


def test_rigid_transform_and_scale_give_zero_p_mpjpe():
    target = _poses()
    moved = 1.3 * target @ _rotation(1).T + [0.5, -0.2, 3.0]
    assert mpjpe(moved, target) > 0.1
    assert p_mpjpe(moved, target) == pytest.approx(0, abs=1e-9)


def test_p_mpjpe_aligns_each_frame_on_its_own():
    target = _poses(frames=2)
    moved = np.stack([target[0] @ _rotation(2).T, 0.7 * target[1] @ _rotation(3).T + 1.0])
    assert p_mpjpe(moved, target) == pytest.approx(0, abs=1e-9)


def test_p_mpjpe_does_not_undo_a_reflection():
    target = _poses()
    mirrored = target * [-1, 1, 1]
    assert p_mpjpe(mirrored, target) > 0.01


def test_p_mpjpe_is_at_most_mpjpe():
    target = _poses()
    pred = target + np.random.default_rng(9).normal(0, 0.02, target.shape)
    assert 0 < p_mpjpe(pred, target) <= mpjpe(pred, target)


def test_scale_gives_zero_n_mpjpe_but_not_zero_mpjpe():
    target = _poses()
    assert n_mpjpe(0.8 * target, target) == pytest.approx(0, abs=1e-12)
    assert mpjpe(0.8 * target, target) == pytest.approx(0.2 * np.linalg.norm(target, axis=-1).mean())
    # a rotation is no scale: N-MPJPE leaves it (nearly) whole
    assert n_mpjpe(target @ _rotation(4).T, target) > 0.05


def test_velocity_error_ignores_a_constant_offset_and_sees_a_drift():
    target = _poses()
    assert mpjve(target + [0.1, 0.2, 0.3], target) == pytest.approx(0, abs=1e-12)
    drift = np.arange(20)[:, None, None] * np.array([0.003, 0.0, 0.004])
    assert mpjve(target + drift, target) == pytest.approx(0.005)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="differ in shape"):
        mpjpe(_poses(10), _poses(11))


def test_action_wise_weights_frames_within_an_action_and_averages_actions():
    rows = [("Walking", 100, {"MPJPE": 10.0}), ("Walking", 300, {"MPJPE": 30.0}), ("Photo", 10, {"MPJPE": 70.0})]
    table = action_wise(rows)
    assert table["MPJPE"] == {"Photo": 70.0, "Walking": pytest.approx(25.0)}
    assert np.mean(list(table["MPJPE"].values())) == pytest.approx(47.5)  # not the frame-weighted 26.8


def test_mpjpe_is_a_ceiling():
    metric = METRICS["MPJPE"]
    assert metric.direction == "max" and metric.unit == "mm"
    assert margin(45.0, 46.6, metric.direction) > 0 > margin(47.0, 46.6, metric.direction)


class _Toy:
    """Two actions, one with two sub-takes of different lengths; targets root-relative, root 0."""
    identity = "toy"

    def __init__(self):
        rng = np.random.default_rng(0)
        self._t = {}
        for key, frames in ((("S9", "Walking 1", 0), 30), (("S9", "Walking", 0), 10), (("S11", "Photo", 0), 20)):
            t = rng.normal(0, 0.3, (frames, 17, 3)).astype(np.float32)
            t[:, 0] = 0
            self._t[key] = t
        self.sequences = list(self._t)

    def targets(self, key):
        return self._t[tuple(key)]

    @staticmethod
    def action_group(action):
        return action.split(" ")[0]


def _results(dataset, offsets):
    return [{"key": list(k), "poses_3d": dataset.targets(k) + np.float32(off)}
            for k, off in zip(dataset.sequences, offsets)]


def test_protocol_1_on_sequences_in_millimetres():
    toy = _Toy()
    # Walking: 30 frames 4 mm off and 10 frames 8 mm off -> 5 mm; Photo 20 mm; mean over actions 12.5 mm
    score = evaluate_sequences(toy, _results(toy, [[0.004, 0, 0], [0, 0.008, 0], [0, 0, 0.02]]))
    assert score.value == pytest.approx(12.5, rel=1e-5)
    assert score.details["per_action_MPJPE"] == {"Photo": pytest.approx(20.0, rel=1e-5),
                                                 "Walking": pytest.approx(5.0, rel=1e-5)}
    assert score.details["P-MPJPE"] == pytest.approx(0, abs=1e-3)  # a translation aligns away
    assert score.details["MPJVE"] == pytest.approx(0, abs=1e-3) and score.count == 60
    assert score.details["actions"] == 2 and score.details["sequences"] == 3


def test_perfect_predictions_score_zero_and_missing_ones_raise():
    toy = _Toy()
    assert evaluate_sequences(toy, _results(toy, [0, 0, 0])).value == 0
    with pytest.raises(ValueError, match="no prediction for 1 of 3"):
        evaluate_sequences(toy, _results(toy, [0, 0, 0])[:2])


def test_distance_between_two_backends_predictions():
    toy = _Toy()
    ref = _results(toy, [0, 0, 0])
    assert prediction_distance(ref, _results(toy, [[0.003, 0.004, 0]] * 3)) == pytest.approx(5.0, rel=1e-5)
    assert prediction_distance([], []) is None
    with pytest.raises(ValueError, match="different sequences"):
        prediction_distance(ref, ref[:1])
