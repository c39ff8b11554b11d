"""One recorded training step, for checking a distributed run against a single process.

Each process saves the gradients it applies (after DDP's all-reduce) and its weights after the step;
with BatchNorm on running statistics the 2-process run must match one process on the whole batch.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from posegate.metrics.rounding import reordered_sum_tolerance
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
    """Each process's record. Every process is a fresh one on one intra-op thread, world_size 1 included: the
    kernels then sum in the same order on both sides of a comparison, whatever this process's thread count, so
    only the batch split differs (oneDNN's convolution backward splits its reduction by thread: with 2 threads
    against 1, backbone gradients drifted by 1% of their scale, measured)."""
    distributed.spawn(record_step, world_size, cfg, str(out_dir), threads=1)
    return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=True) for r in range(world_size)]


def accumulation_lengths(net: torch.nn.Module, batch: torch.Tensor) -> dict[str, int]:
    """Per parameter name: how many terms one entry of its gradient sums. A convolution's weight and bias
    gradients, and a BatchNorm's affine ones, sum over every position of the owning layer's output on
    ``batch``: batch x height x width (everything but the channel axis)."""
    lengths, hooks = {}, []

    def record(prefix):
        def hook(module, inputs, output):
            n = output.numel() // output.shape[1]
            lengths.update({f"{prefix}{name}": n for name, _ in module.named_parameters(recurse=False)})
        return hook

    for name, module in net.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            hooks.append(module.register_forward_hook(record(f"{name}." if name else "")))
    try:
        with torch.no_grad():
            net(batch)
    finally:
        for h in hooks:
            h.remove()
    return lengths


def gradient_tolerance(reference: torch.Tensor, length: int) -> float:
    """Absolute tolerance for one gradient tensor whose entries sum ``length`` terms, summed in another order
    (DDP: two half-batch sums, then the all-reduce; one process: one sum). Its scale is its largest entry; the
    worst tensor measured at 0.39 of eps x sqrt(L) x scale (README, "Order and numerics"), against the 4 allowed."""
    return reordered_sum_tolerance(reference.abs().max().item(), length, reference.dtype)
