"""Training throughput as the port measures it: batch x world / mean iteration time (data loading
included), the first iterations left out; rank 0's clock, one thread per process."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from posegate.training import distributed
from posegate.training.loop import TrainConfig, train


def _measure(cfg: TrainConfig, out: str | None = None) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        world = distributed.init("cpu")
        result = train(cfg, world)
    finally:  # in-process (world size 1) the caller's thread count comes back
        torch.set_num_threads(threads)
    row = {"world": world.size, "batch": cfg.batch_size, "images_per_second": result.fps(cfg.fps_skip),
           "iter_times": result.iter_times, "skipped_iterations": cfg.fps_skip}
    if out is not None and world.is_main:
        Path(out).write_text(json.dumps(row))
    return row


def throughput(cfg: TrainConfig, world_size: int, work_dir: Path) -> dict:
    cfg = dataclasses.replace(cfg, checkpoint_every=0, port_every=0, device="cpu")
    if world_size == 1:
        return _measure(cfg)
    out = Path(work_dir) / "throughput.json"
    distributed.spawn(_measure, world_size, cfg, str(out), threads=1)
    return json.loads(out.read_text())
