"""One interface for every inference engine: convert, load, run, close.

A backend converts an ONNX file (or takes the PyTorch module) into its own artifact once, cached by the
caller; a session runs it. ``run`` validates the feeds against the spec and times the engine call
alone, so device-only throughput never includes host-side preparation.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np


@dataclass
class ModelSource:
    """Lazy producers of what a backend may convert from (Polygraphy-style loaders)."""
    spec: object
    torch_model: Callable[[], object]
    onnx_path: Callable[[int], Path]  # opset -> path of the exported, checked ONNX file
    torchscript_path: Callable[[tuple], Path] | None = None  # engine shape -> the traced, checked .ts


@dataclass(frozen=True)
class EngineIO:
    """Engine-side names of a session and how its input relates to the spec's network input.

    A converted artifact uses the spec's names and input unchanged; a supplied one may rename,
    keep a subset of the outputs, or normalise inside (the contract's affine input mapping).
    """
    input: str
    outputs: tuple[tuple[str, str], ...]  # (engine output name, spec output name), in the order returned
    input_scale: float = 1.0
    input_offset: float = 0.0

    @classmethod
    def of(cls, spec, contract=None) -> "EngineIO":
        if contract is None:
            return cls(spec.input_name, tuple((n, n) for n in spec.output_names))
        outputs = tuple(contract.outputs.items()) or tuple((n, n) for n in spec.output_names)
        unknown = [s for _, s in outputs if s not in spec.output_names]
        if unknown:
            raise ValueError(f"{spec.name}: artifact outputs map onto {unknown}, not outputs of the spec "
                             f"{list(spec.output_names)}")
        return cls(contract.input_name or spec.input_name, outputs, contract.input_scale, contract.input_offset)

    @property
    def engine_outputs(self) -> list[str]:
        return [e for e, _ in self.outputs]

    @property
    def spec_outputs(self) -> tuple[str, ...]:
        return tuple(s for _, s in self.outputs)

    def to_engine(self, x: np.ndarray) -> np.ndarray:
        if self.input_scale != 1.0 or self.input_offset != 0.0:
            x = x * np.float32(self.input_scale) + np.float32(self.input_offset)
        return np.ascontiguousarray(x, dtype=np.float32)


@dataclass
class SessionInfo:
    backend: str
    precision: str
    execution: str = ""  # what the engine really computes in, e.g. "f32", "bf16"
    details: dict = field(default_factory=dict)
    # why outputs cannot be judged at ``precision`` though the engine runs, known only once it was built
    # (ATC's log did not show HF32 turned off): parity skips with it, as precision_problem skips earlier
    precision_problem: str | None = None


class Session(ABC):
    def __init__(self, spec, info: SessionInfo, io: EngineIO | None = None):
        self.spec = spec
        self.info = info
        self.io = io or EngineIO.of(spec)
        self.last_seconds = 0.0
        # compute time per call as the device itself reports it (ais_bench, CUDA events); None: not reported
        self.device_ms: list[float] | None = None

    @property
    def output_names(self) -> tuple[str, ...]:
        """The spec outputs this session returns (a supplied artifact may keep only some)."""
        return self.io.spec_outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds.get(self.spec.input_name)
        if x is None or len(feeds) != 1:
            raise ValueError(f"{self.info.backend}: feeds {list(feeds)} != [{self.spec.input_name!r}]")
        self.spec.check_input(x, self.info.backend)
        x = self.io.to_engine(x)  # host-side work, outside the timed call
        staged = self._stage(x)  # a device session's upload and bindings, outside the timed call too
        start = time.perf_counter()
        outputs = self._run(staged)
        self.last_seconds = time.perf_counter() - start
        outputs = self._fetch(outputs)
        if len(outputs) != len(self.io.outputs):
            raise RuntimeError(f"{self.info.backend}: {len(outputs)} outputs, expected {len(self.io.outputs)}")
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outputs)}

    # What last_seconds (the "device-only" benchmark) covers; a session that keeps its buffers on the
    # device says so, since there host<->device copies fall outside the timer
    timing = "the engine call"

    def _stage(self, x: np.ndarray):
        """Prepare the engine input before the timer starts (a device session uploads and binds here)."""
        return x

    @abstractmethod
    def _run(self, x) -> list[np.ndarray]:
        """Engine call only on the engine input ``self.io.input``: outputs in ``self.io.engine_outputs`` order."""

    def _fetch(self, outputs) -> list[np.ndarray]:
        """Host arrays of what ``_run`` returned, after the timer stopped (a device session downloads here)."""
        return outputs

    def signature(self) -> tuple[dict[str, list], dict[str, list]]:
        """The engine's own {name: dims} of inputs and outputs, None for a dynamic dim."""
        raise NotImplementedError(f"{self.info.backend} sessions do not report their signature")

    def close(self) -> None:  # noqa: B027 (a hook: a session holding no resources has nothing to free)
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
    full_only: bool = False  # True: its cases run only in the --full selection (a build of minutes)
    exports: str = "onnx"  # what convert starts from: "onnx" (at ``opset``) or "torchscript" (a trace)
    takes_gears: bool = True  # False: a static-shape backend that cannot serve a dynamic profile's gears either
    # the distributions whose versions identify this engine in the machine fingerprint; any of them may be
    # the installed one (onnxruntime-gpu provides the module onnxruntime), absent ones are left out
    distributions: tuple[str, ...] = ()
    # test-id regex -> reason: this engine's own known failures on any model (strict xfails), as the ONNX
    # backend test runner lets a backend exclude what it cannot run; a spec's own known_failures add to them
    known_failures: Mapping[str, str] = MappingProxyType({})
    # the type of the per-model settings this backend reads (a spec's backend_settings[name]); None: none
    settings_type: type | None = None
    settings_change_artifacts: bool = True  # False: the settings act when loading only, not in the cache key

    # ---- precision policy: what each precision it offers means here
    # precisions quantised on calibration data (an INT8 IR): their parity needs real inputs, not synthetic ones
    calibrated: tuple[str, ...] = ()
    # precisions below fp32 whose error the precision advice (layers kept in fp32) addresses
    reduced: tuple[str, ...] = ()

    # ---- localisation: the model files of its artifact folder a probe reads (in preference order)
    artifact_suffixes: tuple[str, ...] = ()

    def unavailable_reason(self) -> str | None:
        """None when usable here, else why not (a missing package, tool or device)."""
        return None

    def precision_problem(self, precision: str) -> str | None:
        """Why this device cannot compute in ``precision`` (None: it can)."""
        return None

    def probe(self, pipeline, spec, path: Path, io: EngineIO, precision: str):
        """A probe exposing the intermediate tensors of the model file ``path`` (the interface of
        posegate.backends.probing.OrtProbe), raising posegate.backends.probing.CannotLocalize when it cannot be
        built here; None: this backend has no probe."""
        return None

    @property
    def has_probe(self) -> bool:
        return type(self).probe is not Backend.probe

    def advice_validator(self, precision: str):
        """What re-validates the precision advice's candidates on this machine, for a case at ``precision``:
        ``keep_fp32(source ONNX, nodes, out path without suffix, compress) -> model path`` and
        ``run(model path, x, input name, rounds) -> (outputs, runs/s or None)`` (posegate.diagnosis.advice
        searches with it). None: this backend does not validate advice."""
        return None

    def write_advice(self, keep: list[str], folder: Path, modules: dict, ir: str | None = None) -> dict[str, str]:
        """The precision advice (ONNX node names to keep in fp32; ``modules``: node -> torch module) in this
        engine's own format, as files a user feeds to its converter: {kind: path}. {}: no format of its own."""
        return {}

    def shape_problem(self, spec, profile) -> str | None:
        """Why this backend cannot build engines for ``profile`` (None: it can)."""
        if not (self.static_shapes and profile.dynamic) or (self.takes_gears and profile.gears):
            return None
        why = "with no gears listed (InputProfile.gears)" if self.takes_gears else \
            "(it compiles one static shape per engine: a new size would need another compile)"
        return f"{self.name} builds static shapes and profile {profile.name} of {spec.name} leaves {profile.dims} " \
               f"dynamic {why}"

    def open_unavailable_reason(self) -> str | None:
        """Like unavailable_reason, for running a supplied artifact only (no converter needed)."""
        return self.unavailable_reason()

    def version(self) -> str:
        return ""

    def packages(self, lookup=metadata.version) -> dict[str, str]:
        """{distribution: version} of the installed distributions this engine runs on, read from package
        metadata so an absent (or broken) device library is never imported."""
        found = {}
        for name in self.distributions:
            try:
                found[name] = lookup(name)
            except metadata.PackageNotFoundError:
                pass
        return found

    def settings_of(self, spec):
        """The settings ``spec`` gives this backend, else the backend's defaults (None: it takes none)."""
        given = getattr(spec, "backend_settings", {}).get(self.name)
        if given is not None:
            return given
        return self.settings_type() if self.settings_type is not None else None

    def settings_problem(self, value) -> str | None:
        """Why ``value`` cannot be this backend's settings (None: it can)."""
        if self.settings_type is None:
            return f"{self.name} takes no settings"
        if not isinstance(value, self.settings_type):
            return f"{self.name} settings must be a {self.settings_type.__name__}, not {type(value).__name__}"
        return None

    def device(self) -> str | None:
        """The device's name as the specs' expected_throughput tables key it ("Ascend310P3", "T4")."""
        return None

    def convert(self, source: ModelSource, out_dir: Path, precision: str, shape: tuple | None) -> None:
        raise NotImplementedError(f"{self.name} does not convert models")

    @abstractmethod
    def load(self, artifact_dir: Path | None, source: ModelSource, precision: str) -> Session:
        ...

    def supplied_path_problem(self, path: Path) -> str | None:
        """Why ``path`` cannot be a converted model for this backend, judged from what it is (checked at
        start, before any test); None when it may be. Most engines take one regular file."""
        if Path(path).is_dir():
            return f"is a folder; {self.name} takes a model file"
        if not Path(path).is_file():
            return "is not a regular file (a device, a FIFO or a socket)"
        return None

    def open(self, path: Path, spec, precision: str, io: EngineIO) -> Session:
        """A session on a converted model supplied as a file (``--artifact``), not built by ``convert``."""
        raise NotImplementedError(f"{self.name} cannot open a supplied artifact")

    # --reduce: convert and run an arbitrary ONNX subgraph fed at several named inputs, as ``convert`` builds
    # this engine's artifacts (same precision flags), for the reduction search and --replay. A backend that
    # does not override run_subgraph is refused with subgraph_problem's reason.
    def subgraph_problem(self) -> str | None:
        """Why this backend cannot run a reduction's subgraphs (None: it can, once available)."""
        if type(self).run_subgraph is Backend.run_subgraph:
            return (f"{self.name} has no subgraph runner (Backend.run_subgraph: convert and run an ONNX subgraph "
                    "with several named inputs); localisation and the converter call still apply")
        return None

    def run_subgraph(self, onnx_path: Path, feeds: Mapping[str, np.ndarray], precision: str,
                     workdir: Path) -> dict[str, np.ndarray]:
        """Convert ``onnx_path`` with every input fixed at its feed's exact shape (artifacts go to ``workdir``),
        run it once on ``feeds``: {output name: array} for every graph output. Counts as one conversion."""
        raise NotImplementedError(self.subgraph_problem())

    def subgraph_call(self, precision: str, feeds: Mapping[str, np.ndarray]) -> dict:
        """The converter call (``command``, an argv) and/or ``python`` line that builds a bundle's model.onnx
        as run_subgraph does, for the vendor."""
        return {}

    def artifact_settings(self, precision: str, spec=None) -> dict:
        """Everything besides the ONNX file that changes the converted artifact (part of its cache key);
        with ``spec``, the model's settings for this backend too (a new ATC flag is a new OM)."""
        fields = {"backend": self.name, "version": self.version(), "precision": precision, "opset": self.opset}
        settings = self.settings_of(spec) if spec is not None and self.settings_change_artifacts else None
        if settings is not None:
            fields["model_settings"] = repr(settings)
        return fields
