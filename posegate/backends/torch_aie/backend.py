"""Ascend NPUs through TorchAIE, seed 000's path: the export stage's trace compiled by torch_aie for one
static shape, run on ``npu:<POSEGATE_ASCEND_DEVICE>`` through torch_npu.

The calls follow Ascend's published examples (Ascend/ModelZoo-PyTorch):
AscendIE/TorchAIE/built-in/cv/detection/OpenPose/inference.py (seed 000: ``torch_npu.npu.set_device``,
``torch_aie.compile(ts, inputs=[torch_aie.Input(shape, dtype=torch.float)])``, each forward between two
``stream.synchronize()`` calls on a ``torch_aie.npu.Stream``) and the repository's other TorchAIE
exports (``precision_policy=_enums.PrecisionPolicy.FP16``, ``soc_version="Ascend310P3"``,
``optimization_level=0``, the compiled module kept with ``.save``). The chip comes from `npu-smi`
or POSEGATE_ASCEND_CHIP, as for ATC.
"""
from __future__ import annotations

import json
import os
import time
from importlib import metadata

import torch

from posegate.backends.base import Backend, Session, SessionInfo
from posegate.backends.lazy import load
from posegate.backends.npu import DEVICE_ENV, AscendChip, chip_name

COMPILED = "model.ts"
INSTALL = "see requirements-ascend.txt (torch_npu from PyPI for your torch, torch_aie from the CANN/MindIE kit)"


def device_id() -> int:
    raw = os.environ.get(DEVICE_ENV, "0")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{DEVICE_ENV}={raw!r}: expected an NPU index such as 0") from None


def policy(precision: str):
    enums = load("torch_aie._enums", INSTALL, shown_as="torch_aie")  # the examples' `from torch_aie import _enums`
    return {"fp16": enums.PrecisionPolicy.FP16, "fp32": enums.PrecisionPolicy.FP32}[precision]


class TorchAieSession(Session):
    def __init__(self, spec, module, precision: str, npu: str, aie, details: dict):
        super().__init__(spec, SessionInfo("torch-aie", precision, precision, {"device": npu, **details}))
        self.module, self.npu, self.aie = module, npu, aie
        self.device_ms = []  # the seed's figure: forward time between two stream synchronisations

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.npu)

    def _run(self, x):
        xd = self.to_device(torch.from_numpy(x))
        stream = self.aie.npu.Stream(self.npu)
        with self.aie.npu.stream(stream):
            stream.synchronize()
            start = time.perf_counter()
            ret = self.module.forward(xd)
            stream.synchronize()
            self.device_ms.append((time.perf_counter() - start) * 1000.0)
        ret = (ret,) if isinstance(ret, torch.Tensor) else tuple(ret)
        return [o.detach().to("cpu").numpy() for o in ret]


class TorchAieBackend(AscendChip, Backend):
    name = "torch-aie"
    distributions = ("torch", "torch_aie", "torch_npu")
    precisions = ("fp16", "fp32")
    static_shapes = True
    takes_gears = False
    exports = "torchscript"

    def _libraries(self):
        """(torch_aie, torch_npu), or lazy.Unavailable naming the one missing."""
        return tuple(load(name, INSTALL) for name in ("torch_aie", "torch_npu"))

    def unavailable_reason(self):
        try:
            self._libraries()
        except ImportError as e:
            return str(e)
        chip, why = chip_name()
        return None if chip else why

    # precision_problem: PrecisionPolicy.FP32 "forces internal dtypes to float32" (MindIE-Torch enum docs,
    # hiascend.com mindie/100 mindietorch mindie_torch0121); on the 310/310P that meets the same cube units as
    # ATC's fp32, so the same rule decides (AscendChip, posegate.backends.npu.fp32_problem)

    def version(self):
        found = [f"{n} {v}" for n in ("torch_aie", "torch_npu") if (v := _dist_version(n))]
        return ", ".join(found) or "unavailable"

    def artifact_settings(self, precision, spec=None):
        return {**super().artifact_settings(precision, spec), "soc": self.device(), "optimization_level": 0}

    def convert(self, source, out_dir, precision, shape):
        aie, npu = self._libraries()
        chip, why = chip_name()
        if not chip:
            raise RuntimeError(why)
        dev = device_id()
        npu.npu.set_device(f"npu:{dev}")
        traced = source.torchscript_path(shape)
        ts = torch.jit.load(str(traced)).eval()
        compiled = aie.compile(ts, inputs=[aie.Input(tuple(shape), dtype=torch.float)],
                               precision_policy=policy(precision), soc_version=f"Ascend{chip}",
                               optimization_level=0)
        compiled.save(str(out_dir / COMPILED))
        (out_dir / "compile.json").write_text(json.dumps({"shape": list(shape), "precision": precision,
                                                          "soc_version": f"Ascend{chip}", "trace": str(traced)}))

    def load(self, artifact_dir, source, precision):
        aie, npu = self._libraries()
        dev = device_id()
        npu.npu.set_device(f"npu:{dev}")
        module = torch.jit.load(str(artifact_dir / COMPILED))
        details = json.loads((artifact_dir / "compile.json").read_text())
        return TorchAieSession(source.spec, module, precision, f"npu:{dev}", aie, details)


def _dist_version(name: str) -> str | None:
    for dist in (name, name.replace("_", "-")):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None
