"""One recorded training step, for checking a distributed run against a single process.

Each process saves the gradients it applies (after DDP's all-reduce) and its weights after the step;
with BatchNorm on running statistics the 2-process run must match one process on the whole batch.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from posegate.training import distributed
from posegate.training.loop import TrainConfig, train


def record_step(cfg: TrainConfig, out_dir: str) -> None:
    world = distributed.init("cpu")
    grads = {}

    def keep(iteration, net):
        grads.update({n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None})
    cfg = dataclasses.replace(cfg, max_iters=1, checkpoint_every=0, port_every=0)
    net_holder = {}
    result = train(cfg, world, on_step=lambda i, net: (keep(i, net), net_holder.setdefault("net", net)))
    weights = {k: v.detach().clone() for k, v in net_holder["net"].state_dict().items()}
    torch.save({"grads": grads, "weights": weights, "loss": result.losses[0], "world": world.size},
               Path(out_dir) / f"rank{world.rank}.pt")


def record_distributed(cfg: TrainConfig, out_dir: Path, world_size: int) -> list[dict]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    distributed.spawn(record_step, world_size, cfg, str(out_dir))
    return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
