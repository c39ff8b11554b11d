"""What a model's port writes, declared in the model's folder: file naming, dtype, shape per file, index
base, the side file and the known mistakes worth trying when a file differs (per KIND)."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SideFileError(ValueError):
    """A side file line that cannot be read; the message names the file, the line and what is wrong."""


@dataclass(frozen=True)
class OutputFile:
    """One output file per input: the network output it holds and its shape (batch axis included), or a
    function of the input file's shape where inputs vary in shape (buckets)."""
    output: str
    shape: tuple[int, ...] | Callable[[tuple[int, ...]], tuple[int, ...]]

    def shape_for(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(self.shape(tuple(input_shape))) if callable(self.shape) else self.shape


@dataclass(frozen=True)
class SideFile:
    """The preprocess script's side file (pad.txt, delta.json, ...).

    ``read(path)`` yields (input stem, record) one entry at a time and raises SideFileError on a bad one;
    ``problem(side, reference)`` says how a side record disagrees with the reference preprocessing's
    record (None: it agrees); ``write(path, entries)`` writes (stem, record) pairs as the port does (the zoo)."""
    name: str
    read: Callable[[Path], Iterator[tuple[str, Any]]]
    problem: Callable[[Any, Any], str | None]
    write: Callable[[Path, list], None]


@dataclass(frozen=True)
class Variant:
    """A known mistake to try when a file differs: ``make`` rebuilds the reference the mistaken way.

    Input variants take (raw sample, profile) and return one engine input (no batch axis); result
    variants take (maps of one sample by output name, its record, sample) and return its results."""
    kind: str
    label: str
    make: Callable


@dataclass(frozen=True)
class PortLayout:
    profile: str  # the spec's input profile the port's inputs are made for
    input_shape: tuple[int, ...] | None  # per file, batch axis included (None: one of input_shapes per sample)
    # (dataset, sample, its index in the flow's sample order) -> the file stem the preprocess script uses
    stem: Callable[[Any, Any, int], str]
    outputs: tuple[OutputFile, ...]  # in the device tool's output order
    side: SideFile | None = None
    input_suffix: str = ".bin"
    input_dtype: str = "float32"
    output_dtypes: tuple[str, ...] = ("float32",)  # what the port's postprocess reads
    index_base: int = 0  # the first output index the port's postprocess reads
    input_variants: tuple[Variant, ...] = ()
    result_variants: tuple[Variant, ...] = ()
    # KIND -> a trap of the seed's own material that leads there, said when a team falls into it
    traps: Mapping[str, str] = field(default_factory=dict)
    seed_precision: str = "fp32"  # what the seed's device run computes in
    results: bool = True  # the postprocess writes a results file (False: it prints the metric only)
    # (dataset, sample, record) -> outputs by name that a trained network would give (the decoder oracle drawn in
    # the network's output frame): lets the zoo test the results stage with people in it, without trained weights
    trained_like: Callable | None = None
    source: str = ""  # where the facts come from
    # the declared shapes of files whose shape varies per sample (buckets): each file has the one its sample's
    # reference input has; a file of another declared shape was snapped to the wrong one
    input_shapes: tuple[tuple[int, ...], ...] = ()
    # further copies of every input (e.g. "flip"), each written to its own folder under the same names and run
    # on the device apart: row 1 + c of a sample's engine input; the kinds inputs-<copy> and outputs-<copy>
    # name their folders
    copies: tuple[str, ...] = ()
    output_suffix: str = ".bin"

    def output_name(self, stem: str, position: int, base: int) -> str:
        return f"{stem}_{position + base}{self.output_suffix}"

    def folders(self, stage: str) -> list[str]:
        """The --port kinds of one stage's folders: ``inputs``, then one per copy (``inputs-flip``)."""
        return [stage] + [f"{stage}-{c}" for c in self.copies]

    def file_rows(self, x):
        """One sample's engine input (or outputs) as the files hold it: the whole, or one row per copy."""
        return [x] if not self.copies else [x[c] for c in range(1 + len(self.copies))]

    def file_shape(self, row) -> tuple[int, ...]:
        """The shape of the file holding ``row`` (a reference's file row)."""
        if not self.input_shapes:
            return self.input_shape
        return tuple(row.shape) if row.ndim == len(self.input_shapes[0]) else (1, *row.shape)
