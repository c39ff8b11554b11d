"""Training throughput (seed 003: 216 FPS on 1 device, 1800 on 8), 1 process and 2-process DDP (gloo).

FPS = per-process batch x world / mean iteration time, first iterations excluded, as the port counts
it; recorded with pytest-benchmark (the benchmark's own timing covers the whole short run). Small
input so the run fits CI's CPU budget; the figure is comparable between the two tests only.

No floor on the figure (this CPU is no Ascend 910): what is checked is that the reported FPS is the port's
formula over the iterations it claims, and that those iterations lie inside the benchmark's own clock.
"""
from __future__ import annotations

import pytest

from posegate.training.bench import throughput
from posegate.training.loop import TrainConfig

STAGE = "perf"
pytestmark = pytest.mark.perf
CROP, BATCH, SKIP, TIMED = 128, 2, 2, 5  # 4 images: one batch of 2 per process in the 2-process run
SEED_FPS = {1: 216.209, 8: 1800.749}
MEASURED: dict[int, dict] = {}


def _config(mini, out):
    dataset, labels = mini
    return TrainConfig(labels=labels, images=dataset.root / "val2017", out_dir=out, batch_size=BATCH, crop=CROP,
                       max_iters=SKIP + TIMED, fps_skip=SKIP, log_every=10 ** 6, scale_lr=False)


def _run(world, mini, tmp_path, benchmark, record):
    cfg = _config(mini, tmp_path)
    benchmark.group = "lightweight_openpose-training"
    row = benchmark.pedantic(lambda: throughput(cfg, world, tmp_path), rounds=1, iterations=1, warmup_rounds=0)
    MEASURED[world] = row
    fps = row["images_per_second"]
    info = {"samples_per_second": fps, "unit": "images", "scope": "training (data loading included)",
            "world_size": world, "batch_per_process": BATCH, "input": [3, CROP, CROP],
            "backend": "gloo" if world > 1 else None,
            "timed_iterations": TIMED, "skipped_iterations": SKIP, "seed_fps": SEED_FPS}
    if 1 in MEASURED and world > 1:
        info["scaling_efficiency"] = fps / (world * MEASURED[1]["images_per_second"])
    benchmark.extra_info.update(info)
    record(throughput=fps, unit="images/s", scope=f"training x{world}")
    _check_figure(row, world, cfg, benchmark)
    return row


def _check_figure(row, world, cfg, benchmark):
    times = row["iter_times"]
    assert len(times) == SKIP + TIMED, f"{len(times)} iterations ran, {SKIP + TIMED} were asked for"
    per_iter = cfg.batch_size * cfg.batches_per_iter * world
    # the port's formula over the timed iterations alone; both sides are sums of the same floats
    assert row["images_per_second"] == pytest.approx(per_iter * TIMED / sum(times[SKIP:]), rel=1e-9)
    if benchmark.stats is not None:  # None under --benchmark-disable: then nothing was timed around the run
        # every iteration is clocked (one monotonic clock) inside the one call the benchmark timed
        assert sum(times) <= benchmark.stats.stats.total, (
            f"the iterations took {sum(times):.3f} s, longer than the {benchmark.stats.stats.total:.3f} s "
            "call that ran them: the throughput is counted on another clock than the benchmark's")


def test_training_throughput_one_process(mini, tmp_path, benchmark, record):
    _run(1, mini, tmp_path, benchmark, record)


def test_training_throughput_ddp_two_processes(mini, tmp_path, benchmark, record):
    """Scaling efficiency = FPS(2) / (2 x FPS(1)); the seed's 8 devices: 1800.7 / (8 x 216.2) = 1.04."""
    if 1 not in MEASURED:  # selected alone: measure the single process here, untimed by the benchmark
        MEASURED[1] = throughput(_config(mini, tmp_path / "one"), 1, tmp_path)
    _run(2, mini, tmp_path, benchmark, record)
