"""Training throughput as the port measures it: batch x world / mean iteration time (data loading
included), the first iterations left out; rank 0's clock, one thread per process."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from posegate.training import distributed
from posegate.training.loop import TrainConfig, train


def _measure(cfg: TrainConfig, out: str | None = None) -> dict:
    torch.set_num_threads(1)
    world = distributed.init("cpu")
    result = train(cfg, world)
    row = {"world": world.size, "batch": cfg.batch_size, "images_per_second": result.fps(cfg.fps_skip),
           "iter_times": result.iter_times, "skipped_iterations": cfg.fps_skip}
    if out is not None and world.is_main:
        Path(out).write_text(json.dumps(row))
    return row


def throughput(cfg: TrainConfig, world_size: int, work_dir: Path) -> dict:
    cfg = dataclasses.replace(cfg, checkpoint_every=0, port_every=0, device="cpu")
    if world_size == 1:
        return _measure(cfg)
    os.environ["OMP_NUM_THREADS"] = "1"
    out = Path(work_dir) / "throughput.json"
    distributed.spawn(_measure, world_size, cfg, str(out))
    return json.loads(out.read_text())
