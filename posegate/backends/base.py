"""One interface for every inference engine: convert, load, run, close.

A backend converts an ONNX file (or takes the PyTorch module) into its own artifact once, cached by the
caller; a session runs it. ``run`` validates the feeds against the spec and times the engine call
alone, so device-only throughput never includes host-side preparation.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class ModelSource:
    """Lazy producers of what a backend may convert from (Polygraphy-style loaders)."""
    spec: object
    torch_model: Callable[[], object]
    onnx_path: Callable[[int], Path]  # opset -> path of the exported, checked ONNX file


@dataclass
class SessionInfo:
    backend: str
    precision: str
    execution: str = ""  # what the engine really computes in, e.g. "f32", "bf16"
    details: dict = field(default_factory=dict)


class Session(ABC):
    def __init__(self, spec, info: SessionInfo):
        self.spec = spec
        self.info = info
        self.last_seconds = 0.0

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds.get(self.spec.input_name)
        if x is None or len(feeds) != 1:
            raise ValueError(f"{self.info.backend}: feeds {list(feeds)} != [{self.spec.input_name!r}]")
        self.spec.check_input(x, self.info.backend)
        x = np.ascontiguousarray(x)
        start = time.perf_counter()
        outputs = self._run(x)
        self.last_seconds = time.perf_counter() - start
        if len(outputs) != len(self.spec.output_names):
            raise RuntimeError(f"{self.info.backend}: {len(outputs)} outputs, spec declares {len(self.spec.output_names)}")
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.spec.output_names, outputs)}

    @abstractmethod
    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        """Engine call only: outputs in spec.output_names order."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Backend(ABC):
    name: str = ""
    precisions: tuple[str, ...] = ("fp32",)
    converts: bool = True  # False: runs the PyTorch module itself, no artifact
    static_shapes: bool = False  # True: one artifact per (batch, input shape), as ATC builds
    opset: int = 17
    reference: bool = False

    def unavailable_reason(self) -> str | None:
        """None when usable here, else why not (a missing package, tool or device)."""
        return None

    def version(self) -> str:
        return ""

    def convert(self, source: ModelSource, out_dir: Path, precision: str, shape: tuple | None) -> None:
        raise NotImplementedError(f"{self.name} does not convert models")

    @abstractmethod
    def load(self, artifact_dir: Path | None, source: ModelSource, precision: str) -> Session:
        ...

    def artifact_settings(self, precision: str) -> dict:
        """Everything besides the ONNX file that changes the converted artifact (part of its cache key)."""
        return {"backend": self.name, "version": self.version(), "precision": precision, "opset": self.opset}
