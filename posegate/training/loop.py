"""The training loop: upstream train.py's iteration, the port's DDP/AMP, validation and best model.

One call of ``train`` is one process of a (possibly distributed) run. Epoch-end work (scheduler step,
port checkpoint, validation) happens when the next iteration would start, so a checkpoint written at
an epoch's last iteration resumes into exactly the same epoch end.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from posegate.training import augment, checkpoints, distributed, optim, validate
from posegate.training import loss as losses_mod
from posegate.training.data import CocoTrainDataset, EndlessShardSampler, make_loader
from posegate.training.labels import load_labels
from posegate.training.recipe import Recipe, default_recipe

STEP_REFINEMENT_STAGES = {1: 1, 2: 1, 3: 3}


@dataclass
class TrainConfig:
    labels: object  # prepared labels (list) or a path to them / to a COCO annotation file
    images: Path
    out_dir: Path
    step: int = 1
    mobilenet: Path | None = None  # step 1: ImageNet MobileNetV1 weights
    init_weights: Path | None = None  # steps 2, 3: weights only from the previous step
    resume: Path | None = None  # continue a run: weights, optimizer, scheduler, position
    batch_size: int = 80
    batches_per_iter: int = 1
    base_lr: float = optim.BASE_LR
    scale_lr: bool = True  # the port: lr x world size
    epochs: int = optim.EPOCHS
    milestones: tuple = optim.MILESTONES
    crop: int = 368
    augment: bool = True
    workers: int = 0
    seed: int = 0
    checkpoint_every: int = 5000  # iterations, upstream layout checkpoint_iter_<n>.pth; 0: never
    port_every: int = 5  # epochs: port-layout checkpoint.pth, validation and model_best.pth; 0: never
    val_dataset: object = None  # a CocoKeypointDataset (e.g. the 250-image subset); None: no validation
    val_images: int | None = None  # first N images of it only
    freeze_bn: bool = False  # BatchNorm on running statistics: per-sample forward, whatever the batch split
    amp: str = "off"  # off | auto | static
    static_scale: float = 16.0
    device: str | None = None  # cpu | cuda | npu; default: what is available
    max_iters: int | None = None  # stop after this many optimizer steps (benchmarks, tests)
    log_every: int = 100
    fps_skip: int = 10  # first iterations left out of the FPS, as the port does
    log: object = None  # stream for progress lines (default stderr); rank 0 only
    recipe: Recipe | None = None  # the model's network and codec; None: the registered model's (resolved here,
    # in the parent, so DDP's spawned processes receive it with the config)

    def __post_init__(self):
        if self.recipe is None:
            self.recipe = default_recipe()


@dataclass
class TrainResult:
    iteration: int = 0
    epoch: int = 0
    losses: list = field(default_factory=list)  # total loss per iteration (this process)
    iter_times: list = field(default_factory=list)  # seconds per iteration, data loading included
    images_per_iter: int = 0
    best_ap: float | None = None
    aps: list = field(default_factory=list)  # (epoch, AP)
    load_report: object = None
    checkpoints: list = field(default_factory=list)
    skipped_steps: int = 0

    def fps(self, skip: int = 10) -> float:
        """Images per second over all processes: batch x world / mean iteration time, first ``skip`` left out."""
        times = self.iter_times[skip:] if len(self.iter_times) > skip else self.iter_times[-1:]
        return self.images_per_iter / (sum(times) / len(times)) if times else float("nan")


def build_network(step: int, recipe: Recipe | None = None) -> torch.nn.Module:
    if step not in STEP_REFINEMENT_STAGES:
        raise ValueError(f"step {step}: expected 1, 2 or 3")
    return (recipe or default_recipe()).network(STEP_REFINEMENT_STAGES[step])


def initial_weights(net, cfg: TrainConfig, say) -> checkpoints.LoadReport | None:
    """The three-step hand-over: ImageNet backbone for step 1, weights only from the previous step after."""
    if cfg.resume:
        return None
    if cfg.init_weights:
        report = checkpoints.load_weights(net, cfg.init_weights)
    elif cfg.step > 1:
        raise ValueError(f"step {cfg.step} starts from the weights of step {cfg.step - 1}: pass --init-weights "
                         f"(e.g. step_{cfg.step - 1}/model_best.pth)")
    elif cfg.mobilenet:
        report = checkpoints.load_mobilenet(net, cfg.mobilenet)
    else:
        say(f"[train] step 1 without {checkpoints.MOBILENET_FILE}: the backbone starts from random "
            "initialisation (pass --mobilenet to start from ImageNet weights)")
        return None
    say(f"[train] {report}")
    return report


class _Log:
    def __init__(self, cfg, world, total):
        self.on = world.is_main
        self.stream, self.every, self.total = cfg.log or sys.stderr, max(1, cfg.log_every), total
        self.start, self.window = time.monotonic(), []

    def __call__(self, text: str) -> None:
        if self.on:
            print(text, file=self.stream, flush=True)

    def iteration(self, it, epoch, epochs, parts, lr, result: TrainResult, cfg):
        self.window.append(parts)
        if not self.on or (it % self.every and it != self.total):
            return
        n = len(self.window)
        avg = [sum(p[i] for p in self.window) / n for i in range(len(parts))]
        fps = result.fps(cfg.fps_skip)
        left = (self.total - it) * result.images_per_iter / fps if fps == fps and fps > 0 else float("nan")
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if not math.isnan(left) else "--:--:--"
        stages = " ".join(f"s{i // 2}:{avg[i]:.1f}/{avg[i + 1]:.1f}" for i in range(0, len(avg), 2))
        self(f"[train] epoch {epoch + 1}/{epochs} iter {it}/{self.total} loss {sum(avg):.3f} "
             f"(heatmap/paf {stages}) lr {lr:.2e} {fps:.1f} img/s ETA {eta}")
        self.window = []


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train(cfg: TrainConfig, world: distributed.World | None = None, on_step=None) -> TrainResult:
    """Run (or continue) one process's part of a training run; ``on_step(iteration, net)`` sees the
    reduced gradients of every iteration just before the optimizer applies them."""
    world = world or distributed.init(cfg.device)
    out = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)  # the same fresh weights on every process, before DDP broadcasts rank 0's
    net = build_network(cfg.step, cfg.recipe)
    result = TrainResult()
    labels = cfg.labels if isinstance(cfg.labels, list) else load_labels(cfg.labels)
    transforms = (augment.train_chain((cfg.crop, cfg.crop)) if cfg.augment
                  # no randomness: the main person at the size the chain aims for, relative to the crop
                  else [augment.Scale(prob=0, target_dist=0.6 * cfg.crop / 368),
                        augment.CropPad((cfg.crop, cfg.crop), perturb=0)])
    sampler = EndlessShardSampler(len(labels), cfg.batch_size, world.rank, world.size, cfg.seed,
                                  multiple=cfg.batches_per_iter)
    ipe = sampler.batches_per_epoch // cfg.batches_per_iter
    stop = cfg.epochs * ipe if cfg.max_iters is None else min(cfg.max_iters, cfg.epochs * ipe)
    log = _Log(cfg, world, stop)
    result.load_report = initial_weights(net, cfg, log)
    net.to(world.device)
    optimizer = optim.make_optimizer(net, cfg.base_lr * (world.size if cfg.scale_lr else 1))
    scheduler = optim.make_scheduler(optimizer, cfg.milestones)
    amp = distributed.Amp(world.device, cfg.amp, cfg.static_scale)
    epoch, iteration, pos = _resume(cfg, net, optimizer, scheduler, amp, ipe, result, log)
    sampler.start_epoch, sampler.start_batch = epoch, pos * cfg.batches_per_iter
    model = distributed.wrap(net, world)
    batches = iter(make_loader(CocoTrainDataset(labels, cfg.images, transforms), sampler, cfg.workers))
    result.images_per_iter = cfg.batch_size * cfg.batches_per_iter * world.size
    model.train()
    if cfg.freeze_bn:
        _freeze_batch_norm(net)
    last = time.perf_counter()
    while True:
        if pos == ipe:
            epoch, pos = epoch + 1, 0
            scheduler.step()
            _epoch_end(cfg, world, net, optimizer, scheduler, amp, epoch, iteration, result, out, log)
        if epoch >= cfg.epochs or iteration >= stop:
            break
        optimizer.zero_grad(set_to_none=True)
        parts = _accumulate(model, batches, cfg, world, amp)
        if on_step is not None:
            on_step(iteration + 1, net)
        amp.step(optimizer)
        iteration, pos = iteration + 1, pos + 1
        now = time.perf_counter()
        result.iter_times.append(now - last)
        last = now
        result.losses.append(sum(parts))
        log.iteration(iteration, epoch, cfg.epochs, parts, optimizer.param_groups[0]["lr"], result, cfg)
        if cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0 and world.is_main:
            result.checkpoints.append(checkpoints.save(out / f"checkpoint_iter_{iteration}.pth", "upstream", net,
                                                       optimizer, scheduler, iteration=iteration, epoch=epoch))
    result.iteration, result.epoch, result.skipped_steps = iteration, epoch, amp.skipped
    if world.is_main and result.losses:
        log(f"[train] done: {iteration} iterations, {result.fps(cfg.fps_skip):.1f} img/s"
            + (f", best AP {result.best_ap:.4f}" if result.best_ap is not None else ""))
    return result


def _resume(cfg, net, optimizer, scheduler, amp, ipe, result, log) -> tuple[int, int, int]:
    """Epoch, iteration and position in the epoch to start at: zero, or a checkpoint's (restored into the
    network, optimizer, scheduler and loss scaler)."""
    epoch = iteration = 0
    if cfg.resume:
        point = checkpoints.restore(cfg.resume, net, optimizer, scheduler, ipe)
        epoch, iteration, result.best_ap = point.epoch, point.iteration, point.ap
        amp.load_state_dict(point.amp_state)
        log(f"[train] resumed from {cfg.resume} at epoch {epoch + 1}, iteration {iteration}")
    pos = iteration - epoch * ipe
    if not 0 <= pos <= ipe:
        raise ValueError(f"{cfg.resume}: iteration {iteration} does not lie in epoch {epoch} "
                         f"({ipe} iterations per epoch); resume with the batch size and data it was saved with")
    return epoch, iteration, pos


def _freeze_batch_norm(net) -> None:
    # the running statistics stay those of the initial weights (upstream's fine-tuning steps)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def _accumulate(model, batches, cfg, world, amp) -> list[float]:
    """Forward and backward over one iteration's ``batches_per_iter`` batches; their per-stage losses,
    averaged over the batches as the accumulated gradient is."""
    parts = None
    for _ in range(cfg.batches_per_iter):
        batch = _to(next(batches), world.device)
        with amp.autocast():
            outputs = model(batch["image"])
        stage = losses_mod.stage_losses(outputs, batch)
        amp.backward(sum(stage) / cfg.batches_per_iter)
        values = [v.item() / cfg.batches_per_iter for v in stage]
        parts = values if parts is None else [a + b for a, b in zip(parts, values)]
    return parts


def train_process(cfg: TrainConfig) -> None:
    """One process of a command-line run (a spawn target: module level, result not returned)."""
    try:
        train(cfg)
    finally:
        distributed.shutdown()


def _epoch_end(cfg, world, net, optimizer, scheduler, amp, epoch, iteration, result, out, log):
    if not cfg.port_every or epoch % cfg.port_every:
        return
    if world.is_main:
        ap = None
        if cfg.val_dataset is not None:
            ids = cfg.val_dataset.image_ids[:cfg.val_images] if cfg.val_images else None
            ap = validate.validation_ap(net, cfg.val_dataset, ids, world.device, recipe=cfg.recipe)
            result.aps.append((epoch, ap))
            log(f"[train] epoch {epoch} validation AP {ap:.4f} on {cfg.val_dataset.name}")
        best = ap is not None and (result.best_ap is None or ap > result.best_ap)
        if best:
            result.best_ap = ap
        kept = result.best_ap if result.best_ap is not None else ap
        args = dict(iteration=iteration, epoch=epoch, amp_state=amp.state_dict(), ap=kept)
        result.checkpoints.append(checkpoints.save(out / "checkpoint.pth", "port", net, optimizer, scheduler, **args))
        if best:
            checkpoints.save(out / "model_best.pth", "port", net, optimizer, scheduler, **{**args, "ap": ap})
            log(f"[train] new best AP {ap:.4f}: {out / 'model_best.pth'}")
    if world.distributed:
        dist.barrier()
