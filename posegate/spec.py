"""Declarative model specs: everything a stage test needs to know about a model.

Stage tests never name a model; they read these fields. A spec field that a stage needs but a model
lacks (no golden file, no threshold) makes that stage skip with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from posegate.metrics import margin
from posegate.weights import build_model

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
    dataset: str  # "official" (the kind's full official set) or a dataset name
    weights: str  # "official" (the spec's checkpoint file), one of its alternatives' file names, or "any"
    source: str  # where the number comes from
    profiles: tuple[str, ...] = ()  # input profiles it applies to; empty = all

    def margin(self, measured: float) -> float:
        """Positive when the gate passes."""
        return margin(measured, self.value, self.direction)

    def passes(self, measured: float) -> bool:
        return self.margin(measured) >= 0


@dataclass(frozen=True)
class InputProfile:
    """One input family of a model: its id fragment, per-sample dims, preprocessing and batches.

    ``dims`` are the engine input's dims after the batch axis, None where the axis is dynamic (the
    upstream variable-width image, a sequence of any length); ``perf_dims`` makes a dynamic profile
    concrete for export samples and benchmarks.
    """
    name: str  # test-id fragment, e.g. "368x640", "368xW", "256x192-flip", "6115"
    dims: tuple[int | None, ...]
    preprocess: str  # codec profile name
    batch_sizes: tuple[int, ...]
    full_batch_sizes: tuple[int, ...] = ()  # only under --full
    eval_batch: int = 1  # batch used for dataset-level accuracy
    perf_dims: tuple[int, ...] | None = None
    default: bool = True  # False: whole profile only under --full
    # Values the dynamic dims take on a device that needs them listed, in dims order: ATC's gears
    # (--dynamic_image_size / --dynamic_dims); a TensorRT optimisation profile spans their min..max.
    gears: tuple[tuple[int, ...], ...] = ()
    copies: int = 1  # engine rows per sample (2 with a flip test that batches each crop with its mirror)
    # False: dataset-level accuracy and metric parity of this profile only under --full (a network
    # too heavy to run every image of a set in the default selection); its stage tests still run
    evaluate_by_default: bool = True

    @property
    def dynamic(self) -> bool:
        return any(d is None for d in self.dims)

    @property
    def concrete_dims(self) -> tuple[int, ...]:
        if not self.dynamic:
            return tuple(self.dims)
        if self.perf_dims is None or len(self.perf_dims) != len(self.dims):
            raise ValueError(f"profile {self.name} has dynamic dims {self.dims} and no matching perf_dims")
        return tuple(self.perf_dims)

    def engine_shape(self, batch: int) -> tuple[int | None, ...]:
        """The engine input shape of one batch size (flip copies included), None on the axes the
        profile leaves dynamic.

        Backends with static shapes build one artifact per engine shape (a dynamic axis then becomes
        the profile's gears)."""
        return (batch * self.copies, *self.dims)


@dataclass(frozen=True)
class ArtifactContract:
    """The interface of a converted model brought from outside (an IR, an OM, an engine).

    It may differ from the exported ONNX in names, in which outputs it keeps, in its input shape
    (``profile``, for the reference as well) and in its input normalisation: the engine receives
    ``network_input * input_scale + input_offset`` (raw 0..255 pixels for a model that normalises
    inside: scale 256, offset 128 undoes (img - 128) / 256).
    """
    backend: str
    precision: str  # what it computes in: part of the case id and the tolerance key
    profile: InputProfile
    path: str | None = None  # relative to --weights-dir; --artifact MODEL:BACKEND[:PRECISION]=PATH overrides
    input_name: str | None = None  # None: the spec's
    outputs: Mapping[str, str] = field(default_factory=dict)  # artifact output -> spec output; empty: the spec's
    input_scale: float = 1.0
    input_offset: float = 0.0
    how_to_get: str = ""


@dataclass(frozen=True)
class Checkpoint:
    """Where the official weights live and how their file is laid out."""
    filename: str  # looked up in --weights-dir
    container_key: str | None  # 'state_dict', 'model', ... ; None = plain state dict
    manifest: str  # file name under <data-root>/manifests/ (or --manifests-dir)
    ignorable: tuple[str, ...] = ()  # regexes of keys the loader may drop (reported, not fatal)
    strip_prefixes: tuple[str, ...] = ("module.",)
    # maps another published layout onto the network's before key/shape matching (e.g. a port's
    # Conv2d (k,1) weights onto Conv1d); a pure function of the tensor dict
    adapt: Callable[[dict], dict] | None = None
    numpy_in_container: bool = False  # the container also holds numpy arrays (a training RNG state)
    # other published weights of the same network, file name -> what they are (a port's own training);
    # looked up when ``filename`` is absent, and gated only by thresholds that name them
    alternatives: Mapping[str, str] = field(default_factory=dict)
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
    profiles: tuple[InputProfile, ...]
    flow: Any  # a posegate.flows.kinds.Flow: samples, preprocessing, decoding, oracle of this model's task
    metric: str  # a key of posegate.metrics.METRICS ("AP", "MPJPE")
    input_axes: tuple[str, ...] = ("batch", "channels", "height", "width")
    color: str | None = None  # "BGR" / "RGB" for image inputs: the channel order the network expects
    precisions: tuple[str, ...] = ("fp32", "fp16")
    tolerances: Mapping[str, Mapping[str, Tolerance]] = field(default_factory=dict)  # precision -> output -> tol
    metric_parity: Mapping[str, float] = field(default_factory=dict)  # precision -> max |metric - metric_ref|
    # precision -> bound on a backend's results scored against the reference's own results (agreement
    # AP is a floor, the MPJPE between the two a ceiling: the metric says which)
    agreement: Mapping[str, float] = field(default_factory=dict)
    dynamic_step: int = 64  # how far the export test grows a dynamic axis to prove it is dynamic
    # a small valid input (after the batch axis) for the export sample and the export/convert smoke
    # runs, where a network is too heavy to probe at its profiles' sizes; None = the first profile's
    probe_dims: tuple[int, ...] | None = None
    thresholds: tuple[Threshold, ...] = ()
    golden: Golden | None = None
    opsets: tuple[int, ...] = (11, 17)
    seed: int = 0
    known_failures: Mapping[str, str] = field(default_factory=dict)  # test-id regex -> reason (strict xfail)
    expected_throughput: Mapping[str, Any] = field(default_factory=dict)  # seed tables, by device
    # a posegate.golden.decoders.DecoderGolden: the model's golden decoder file and how its cases feed the decoder
    decoder_golden: Any = None
    port: Any = None  # a posegate.port.layout.PortLayout: the files the seed port's own scripts write (--port)
    training: Any = None  # a posegate.training.recipe.Recipe for a model the suite trains (python -m posegate.training)
    artifacts: tuple[ArtifactContract, ...] = ()  # converted models validated as given, not built
    # backend name -> that backend's settings object (its declared settings_type, e.g. AtcSettings for
    # "ascend"); a backend not named uses its defaults. Checked when the spec registers (posegate.registry)
    backend_settings: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def all_profiles(self) -> tuple[InputProfile, ...]:
        """The spec's profiles and those only a supplied artifact takes (the reference runs them too)."""
        extra = tuple(a.profile for a in self.artifacts if a.profile not in self.profiles)
        return self.profiles + tuple(dict.fromkeys(extra))

    @property
    def sample_dims(self) -> tuple[int, ...]:
        return tuple(self.probe_dims) if self.probe_dims is not None else self.profiles[0].concrete_dims

    def profile(self, name: str) -> InputProfile:
        for p in self.all_profiles:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} has no input profile {name!r}; it has {[p.name for p in self.profiles]}")

    def engine_shape(self, profile: InputProfile, batch: int) -> tuple[int, ...] | None:
        """The engine input of ``batch`` samples: a profile's flip copies (MSPN, VideoPose3D) or a flow's
        (HigherHRNet's bottom-up flip test) multiply the rows; a model uses one or the other."""
        return profile.engine_shape(batch * getattr(self.flow, "copies", 1))

    def tolerance(self, precision: str, output: str) -> Tolerance:
        try:
            return self.tolerances[precision][output]
        except KeyError:
            raise KeyError(f"{self.name} declares no {precision} tolerance for output {output!r}") from None

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Batch is always dynamic; another axis where some profile leaves it free, in and out alike."""
        free = [i + 1 for i in range(len(self.input_axes) - 1) if any(p.dims[i] is None for p in self.profiles)]
        axes = {0: self.input_axes[0], **{i: self.input_axes[i] for i in free}}
        out_axes = {0: self.input_axes[0], **{i: f"out_{self.input_axes[i]}" for i in free}}
        return {self.input_name: axes, **{n: dict(out_axes) for n in self.output_names}}

    @property
    def fixed_dims(self) -> dict[int, int]:
        """Input axes (1-based after batch) whose size every profile fixes to the same value."""
        fixed = {}
        for i in range(len(self.input_axes) - 1):
            sizes = {p.dims[i] for p in self.all_profiles}
            if len(sizes) == 1 and None not in sizes:
                fixed[i + 1] = sizes.pop()
        return fixed

    def check_input(self, x, who: str) -> None:
        """A clear error for an engine input of the wrong kind, before any engine sees it."""
        bad = [a for a, size in self.fixed_dims.items() if x.ndim == len(self.input_axes) and x.shape[a] != size]
        if x.dtype != np.float32 or x.ndim != len(self.input_axes) or bad:
            want = " x ".join(str(self.fixed_dims.get(i, self.input_axes[i])) for i in range(len(self.input_axes)))
            raise ValueError(f"{who}: input {x.dtype} {tuple(x.shape)}, {self.name} wants float32 {want}")

    def build(self, checkpoint=None):
        """The PyTorch network in eval mode: official weights from ``checkpoint`` or seeded random ones."""
        return build_model(self, checkpoint)
