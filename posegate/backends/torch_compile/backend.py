"""torch.compile with the inductor backend: one static graph per engine shape (``fullgraph=True``, no
graph breaks, ``dynamic=False``), fp32, on CUDA where torch sees a GPU, else CPU (C++ code from g++).

A first compile takes minutes on a large network. Inductor's caches (FX graph, AOTAutograd, generated
C++/Triton) live in the artifact cache's ``inductor`` folder, so the next run's compile hits them.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from posegate.backends.base import Backend, SessionInfo
from posegate.backends.torch_runtime import TorchModuleSession, for_device, pick_device
from posegate.compat import inductor

CACHE_ENVS = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


def inductor_cache(artifact_dir: Path) -> Path:
    """The cache root's ``inductor`` folder (an entry lives at <root>/<kind>/<xx>/<key>): one for every
    model and shape, outside the entries so no entry's manifest covers files inductor writes later."""
    return Path(artifact_dir).resolve().parents[2] / "inductor"


def use_cache(folder: Path, env=os.environ) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    env["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    env["TRITON_CACHE_DIR"] = str(folder / "triton")


def fx_cache_counts() -> dict:
    """Inductor's FX graph cache hits and misses so far in this process (a miss is a real compile)."""
    # torch's own counters (no public API exposes them); importing torch._dynamo costs about a second
    from torch._dynamo.utils import counters  # noqa: PLC0415 (only torch-compile runs need it)
    return {"fxgraph_cache_hit": counters["inductor"]["fxgraph_cache_hit"],
            "fxgraph_cache_miss": counters["inductor"]["fxgraph_cache_miss"]}


class TorchCompileBackend(Backend):
    name = "torch-compile"
    distributions = ("torch",)
    precisions = ("fp32",)
    exports = "module"  # compiles the eager network itself
    static_shapes = True
    takes_gears = False
    full_only = True  # measured: 70 s per engine shape of the smallest network cold on 2 cores, 20 s warm

    def unavailable_reason(self):
        too_old = inductor.unavailable_reason()
        if too_old:
            return too_old
        if pick_device() == "cpu" and shutil.which(os.environ.get("CXX", "g++")) is None:
            return "inductor generates C++ on the CPU and no C++ compiler is on PATH (install g++)"
        return None

    def version(self):
        return str(torch.__version__)

    def artifact_settings(self, precision, spec=None):
        return {"backend": self.name, "version": self.version(), "precision": precision, "mode": "inductor",
                "fullgraph": True, "device": pick_device()}

    def _compiled(self, source, artifact_dir: Path, device: str):
        use_cache(inductor_cache(artifact_dir))
        module = for_device(source.torch_model(), device)
        return torch.compile(module, backend="inductor", fullgraph=True, dynamic=False,
                             options=inductor.compile_options())

    def convert(self, source, out_dir, precision, shape):
        """Compile once at the engine shape so the cache holds its kernels; note what it cost."""
        device = pick_device()
        compiled = self._compiled(source, out_dir, device)
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(torch.zeros(shape, dtype=torch.float32, device=device))
        (out_dir / "compile.json").write_text(json.dumps({
            "shape": list(shape), "device": device, "first_call_seconds": time.perf_counter() - start,
            "inductor_cache": str(inductor_cache(out_dir))}, indent=1))

    def load(self, artifact_dir, source, precision):
        device = pick_device()
        compiled = self._compiled(source, artifact_dir, device)
        shape = json.loads((artifact_dir / "compile.json").read_text())["shape"]
        session = TorchModuleSession(source.spec, SessionInfo(self.name, precision, "f32", {"shape": shape}),
                                     compiled, device)
        before = fx_cache_counts()
        start = time.perf_counter()
        session._run(np.zeros(shape, np.float32))  # compiles here (from the cache), not in a timed call
        after = fx_cache_counts()
        session.info.details.update({"compile_seconds": time.perf_counter() - start,
                                     **{k: after[k] - before[k] for k in after}})
        if session.device_ms:
            session.device_ms.clear()
        return session
