"""Declarative model specs: everything a stage test needs to know about a model.

Stage tests never name a model; they read these fields. A spec field that a stage needs but a model
lacks (no golden file, no threshold) makes that stage skip with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Tolerance:
    """Parity bounds of one output tensor against the reference; None = not checked.

    ``max_rel`` is max|out - ref| / max|ref|, the scale-free form that also suits outputs with a
    large dynamic range.
    """
    max_abs: float | None = None
    max_rel: float | None = None
    min_cosine: float | None = None


@dataclass(frozen=True)
class Threshold:
    """A one-sided accuracy gate: ``direction`` 'min' is a floor (AP), 'max' a ceiling (MPJPE)."""
    metric: str
    value: float
    direction: str  # "min" | "max"
    dataset: str  # dataset kind that must be present, e.g. "official:coco-val2017" or a dataset name
    weights: str  # "official" (the spec's checkpoint file) or "any"
    source: str  # where the number comes from
    profiles: tuple[str, ...] = ()  # input profiles it applies to; empty = all

    def margin(self, measured: float) -> float:
        """Positive when the gate passes."""
        return measured - self.value if self.direction == "min" else self.value - measured

    def passes(self, measured: float) -> bool:
        return self.margin(measured) >= 0


@dataclass(frozen=True)
class InputProfile:
    """One input shape family of a model: its id fragment, geometry, preprocessing and batches.

    ``width``/``height`` None means that axis is dynamic (the upstream variable-width input).
    """
    name: str  # test-id fragment, e.g. "368x640" or "368xW"
    height: int | None
    width: int | None
    preprocess: str  # codec profile name
    batch_sizes: tuple[int, ...]
    full_batch_sizes: tuple[int, ...] = ()  # only under --full
    eval_batch: int = 1  # batch used for dataset-level accuracy
    perf_shape: tuple[int, int] | None = None  # concrete HxW for benchmarks of a dynamic profile
    default: bool = True  # False: whole profile only under --full

    @property
    def dynamic(self) -> bool:
        return self.height is None or self.width is None


@dataclass(frozen=True)
class Checkpoint:
    """Where the official weights live and how their file is laid out."""
    filename: str  # looked up in --weights-dir
    container_key: str | None  # 'state_dict', 'model', ... ; None = plain state dict
    manifest: str  # file name under <data-root>/manifests/ (or --manifests-dir)
    ignorable: tuple[str, ...] = ()  # regexes of keys the loader may drop (reported, not fatal)
    strip_prefixes: tuple[str, ...] = ("module.",)
    size: int | None = None
    digests: Mapping[str, str] = field(default_factory=dict)  # published {"sha256": hex, ...}
    how_to_get: str = ""


@dataclass(frozen=True)
class Golden:
    """Upstream outputs for recipe weights (../shared/data/golden)."""
    file: str
    outputs: Mapping[str, str]  # golden array name -> our output name
    recipe_sha256: str  # digest of the regenerated recipe weights (golden/README.md)
    max_rel: float = 1e-4


@dataclass
class ModelSpec:
    name: str
    version: str  # bump when anything that changes artifacts changes
    build_network: Callable[[], Any]
    checkpoint: Checkpoint
    input_name: str
    output_names: tuple[str, ...]
    channels: int
    color: str  # "BGR" / "RGB": channel order the network expects
    profiles: tuple[InputProfile, ...]
    codec: Any  # module/object with preprocess_batch, decode, encode_ground_truth
    decode_outputs: tuple[str, ...]  # outputs the decoder reads (in decode's argument order)
    output_stride: int
    dataset_kind: str  # "coco_keypoints"
    metric: str  # "AP"
    precisions: tuple[str, ...] = ("fp32", "fp16")
    tolerances: Mapping[str, Mapping[str, Tolerance]] = field(default_factory=dict)  # precision -> output -> tol
    metric_parity: Mapping[str, float] = field(default_factory=dict)  # precision -> max |AP - AP_ref|
    agreement_floor: Mapping[str, float] = field(default_factory=dict)  # precision -> min agreement AP
    thresholds: tuple[Threshold, ...] = ()
    golden: Golden | None = None
    opsets: tuple[int, ...] = (11, 17)
    seed: int = 0
    known_failures: Mapping[str, str] = field(default_factory=dict)  # test-id regex -> reason (strict xfail)
    expected_throughput: Mapping[str, Any] = field(default_factory=dict)  # seed tables, by device
    notes: str = ""

    def profile(self, name: str) -> InputProfile:
        for p in self.profiles:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} has no input profile {name!r}; it has {[p.name for p in self.profiles]}")

    def tolerance(self, precision: str, output: str) -> Tolerance:
        try:
            return self.tolerances[precision][output]
        except KeyError:
            raise KeyError(f"{self.name} declares no {precision} tolerance for output {output!r}") from None

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Batch is always dynamic; H/W only where some profile leaves them free."""
        axes = {0: "batch"}
        if any(p.height is None for p in self.profiles):
            axes[2] = "height"
        if any(p.width is None for p in self.profiles):
            axes[3] = "width"
        out_axes = {0: "batch"}
        if 2 in axes:
            out_axes[2] = "out_height"
        if 3 in axes:
            out_axes[3] = "out_width"
        return {self.input_name: axes, **{n: dict(out_axes) for n in self.output_names}}

    def build(self, checkpoint=None):
        """The PyTorch network in eval mode: official weights from ``checkpoint`` or seeded random ones."""
        from posegate.weights import build_model
        return build_model(self, checkpoint)
