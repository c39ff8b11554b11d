"""DDP over torch.distributed and mixed precision, chosen by the device at hand.

Backends: gloo on CPU, nccl on CUDA, hccl where torch_npu is importable. Processes come from torchrun
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the environment) or from ``spawn`` below.
AMP: autocast + GradScaler on CUDA (and NPU), bfloat16 autocast on CPU (bf16 needs no loss scaling),
and the port's apex-O1-style static loss scale as an option on any device.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from posegate.compat.grad_scaler import grad_scaler


def has_npu() -> bool:
    return importlib.util.find_spec("torch_npu") is not None


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if has_npu():
        import torch_npu  # noqa: F401, PLC0415 (optional: registers the npu device)
        if torch.npu.is_available():
            return "npu"
    return "cpu"


def backend_for(device_type: str) -> str:
    return {"cuda": "nccl", "npu": "hccl"}.get(device_type, "gloo")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init(device_type: str | None = None) -> World:
    """Join the process group described by the environment (a single process when there is none)."""
    device_type = device_type or default_device()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cpu":
        device = torch.device("cpu")
    else:
        device = torch.device(device_type, local)
        getattr(torch, device_type).set_device(device)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend_for(device_type), rank=rank, world_size=size)
    return World(rank, size, local, device)


def wrap(net: torch.nn.Module, world: World) -> torch.nn.Module:
    if not world.distributed:
        return net
    ids = None if world.device.type == "cpu" else [world.device.index]
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(local_rank, world_size, port, fn, args):
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        fn(*args)
    finally:
        shutdown()


def spawn(fn, world_size: int, *args, threads: int | None = None) -> None:
    """Run ``fn(*args)`` in ``world_size`` local processes that form one process group; ``threads``: each
    child's OMP_NUM_THREADS (default: inherited), without changing this process's environment."""
    with child_environment({"OMP_NUM_THREADS": str(threads)} if threads else {}):
        torch.multiprocessing.spawn(_spawned, args=(world_size, free_port(), fn, args), nprocs=world_size,
                                    join=True)


@contextlib.contextmanager
def child_environment(values: dict):
    """``values`` in os.environ while the block starts its children (torch.multiprocessing's spawn copies the
    environment at start), the caller's values put back after it."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Amp:
    """Mixed precision for one device: ``with amp.autocast():`` forward, then ``amp.step(loss, optimizer)``.

    mode: 'off', 'auto' (fp16 autocast + dynamic GradScaler on CUDA/NPU, bf16 autocast on CPU) or
    'static' (auto's autocast with a fixed loss scale, like apex O1 with loss_scale=16: the loss is
    multiplied, the gradients divided back, and a step with non-finite gradients is skipped).
    """

    def __init__(self, device: torch.device, mode: str = "off", static_scale: float = 16.0):
        if mode not in ("off", "auto", "static"):
            raise ValueError(f"amp mode {mode!r}: expected off, auto or static")
        self.device_type, self.mode, self.static_scale = device.type, mode, static_scale
        self.dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
        self.scaler = None
        if mode == "auto" and device.type != "cpu":
            self.scaler = grad_scaler(device.type)
        self.skipped = 0

    def autocast(self):
        if self.mode == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        elif self.mode == "static":
            (loss * self.static_scale).backward()
        else:
            loss.backward()

    def step(self, optimizer) -> bool:
        """Apply the accumulated gradients; False when the step was skipped for overflow."""
        if self.scaler is not None:
            before = self.scaler.get_scale()
            self.scaler.step(optimizer)
            self.scaler.update()
            ok = self.scaler.get_scale() >= before
        elif self.mode == "static":
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            for g in grads:
                g.div_(self.static_scale)
            ok = all(torch.isfinite(g).all() for g in grads)
            if ok:
                optimizer.step()
        else:
            optimizer.step()
            ok = True
        self.skipped += not ok
        return ok

    def state_dict(self):
        if self.scaler is not None:
            return {"scaler": self.scaler.state_dict()}
        return {"mode": self.mode, "static_scale": self.static_scale}

    def load_state_dict(self, state) -> None:
        if self.scaler is not None and state and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
