"""The sequence codec: padding to the static 6115 frames gives exactly the unpadded run, the flip
test follows the facts, and a sequence too long for the static shape is refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models import MODELS
from models.videopose3d_243 import codec
from models.videopose3d_243.network import TemporalModel

pytestmark = pytest.mark.stage
SPEC = MODELS["videopose3d_243"]


def _sequence(frames, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (frames, 17, 2)).astype(np.float32)


def _network(channels):
    """Seeded weights with non-trivial BatchNorm statistics, so every layer matters."""
    torch.manual_seed(0)
    net = TemporalModel(channels=channels)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    return net.eval()


def _lift(net, seqs, recipe):
    x, records = codec.preprocess_batch(seqs, recipe)
    with torch.inference_mode():
        out = net(torch.from_numpy(x))[0].numpy()
    return x, codec.decode_batch(out, records)


def test_padding_is_the_networks_receptive_field():
    net = TemporalModel(channels=8)
    assert net.pads == [3, 9, 27, 81] and (3 - 1) // 2 + sum(net.pads) == codec.PAD == 121
    assert codec.MAX_FRAMES == 6115 - 242 == 5873


def test_static_padding_geometry():
    seq = _sequence(300)
    padded, rec = codec.pad_sequence(seq, "ascend")
    delta = 6115 - 300 - 242
    assert padded.shape == (6115, 17, 2) and rec == codec.SequenceRecord(300, 121 + delta)
    assert np.array_equal(padded[121:421], seq)
    assert (padded[:121] == seq[0]).all() and (padded[421:] == seq[-1]).all()
    up, rec_up = codec.pad_sequence(seq, "upstream")
    assert up.shape == (300 + 242, 17, 2) and rec_up.pad_right == 121
    assert np.array_equal(up, padded[:300 + 242])


@pytest.mark.parametrize("frames", [1, 37, 900])
def test_padded_run_equals_the_unpadded_run(frames):
    """Valid convolutions: output frame t sees input frames t..t+242 only, so the extra right padding
    never reaches a kept frame. Checked at the static shape with a narrow copy of the network (same
    layers and receptive field; the full width is under --full)."""
    net = _network(channels=64)
    seq = _sequence(frames, seed=frames)
    x_static, (static,) = _lift(net, [seq], "ascend")
    x_up, (unpadded,) = _lift(net, [seq], "upstream")
    assert x_static.shape == (2, 6115, 17, 2) and x_up.shape == (2, frames + 242, 17, 2)
    assert static.shape == unpadded.shape == (frames, 17, 3)
    np.testing.assert_allclose(static, unpadded, rtol=0, atol=1e-5 * np.abs(unpadded).max())


@pytest.mark.full
def test_padded_run_equals_the_unpadded_run_at_full_width():
    net = SPEC.build()
    seq = _sequence(400, seed=4)
    _, (static,) = _lift(net, [seq], "ascend")
    _, (unpadded,) = _lift(net, [seq], "upstream")
    np.testing.assert_allclose(static, unpadded, rtol=0, atol=1e-5 * np.abs(unpadded).max())


def test_longest_sequence_fits_and_one_more_frame_is_refused():
    padded, rec = codec.pad_sequence(_sequence(5873), "ascend")
    assert padded.shape[0] == 6115 and rec.pad_right == 121
    with pytest.raises(codec.SequenceTooLong, match=r"5874 frames.*at most 5873"):
        codec.pad_sequence(_sequence(5874), "ascend")
    assert codec.pad_sequence(_sequence(5874), "upstream")[0].shape[0] == 5874 + 242


def test_flip_mirrors_x_and_swaps_left_and_right_as_the_facts_say():
    seq = _sequence(5)
    m = codec.mirror(seq)
    left, right = [4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]
    np.testing.assert_array_equal(m[:, left, 0], -seq[:, right, 0])
    np.testing.assert_array_equal(m[:, right, 1], seq[:, left, 1])
    np.testing.assert_array_equal(m[:, [0, 7, 8, 9, 10]], seq[:, [0, 7, 8, 9, 10]] * [-1, 1])
    np.testing.assert_array_equal(codec.mirror(m), seq)


def test_sequences_of_different_lengths_share_a_batch_exactly():
    net = _network(channels=32)
    seqs = [_sequence(40, 1), _sequence(7, 2), _sequence(25, 3)]
    x, together = _lift(net, seqs, "upstream")
    assert x.shape == (6, 40 + 242, 17, 2)
    for seq, pose in zip(seqs, together):
        _, (alone,) = _lift(net, [seq], "upstream")
        np.testing.assert_allclose(pose, alone, rtol=0, atol=1e-5 * np.abs(alone).max())


def test_batch_holds_each_sequence_then_its_mirror():
    a = _sequence(10, 1)
    x, _ = codec.preprocess_batch([a], "upstream")
    assert x.shape == (2, 252, 17, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[1], codec.mirror(x[0]))


def test_decode_unmirrors_the_second_row_and_averages():
    rng = np.random.default_rng(3)
    pose = rng.normal(size=(10, 17, 3)).astype(np.float32)
    other = rng.normal(size=(10, 17, 3)).astype(np.float32)
    rec = codec.SequenceRecord(10, codec.PAD)
    (same,) = codec.decode_batch(np.stack([pose, codec.mirror(pose)]), [rec])
    np.testing.assert_allclose(same, pose, atol=1e-7)
    (avg,) = codec.decode_batch(np.stack([pose, codec.mirror(other)]), [rec])
    np.testing.assert_allclose(avg, (pose + other) / 2, atol=1e-6)


def test_flip_test_equals_the_mean_of_two_separate_runs():
    net = _network(channels=32)
    seq = _sequence(50, 5)
    _, (flipped,) = _lift(net, [seq], "upstream")
    up, _ = codec.pad_sequence(seq, "upstream")
    with torch.inference_mode():
        plain = net(torch.from_numpy(up[None]))[0].numpy()[0]
        mirrored = net(torch.from_numpy(codec.mirror(up)[None]))[0].numpy()[0]
    np.testing.assert_allclose(flipped, (plain + codec.mirror(mirrored)) / 2, rtol=1e-5, atol=1e-6)


def test_bad_inputs_raise_clearly():
    with pytest.raises(ValueError, match=r"\[T >= 1, 17, 2\]"):
        codec.pad_sequence(np.zeros((10, 16, 2), np.float32), "ascend")
    with pytest.raises(ValueError, match="unknown VideoPose3D recipe"):
        codec.pad_sequence(_sequence(3), "chunked")
    with pytest.raises(ValueError, match="needs at least 245 padded frames"):
        codec.pad_sequence(_sequence(3), "upstream", length=244)
    with pytest.raises(ValueError, match="not 2 x 2 sequences"):
        codec.decode_batch(np.zeros((2, 3, 17, 3), np.float32), [codec.SequenceRecord(3, 121)] * 2)
