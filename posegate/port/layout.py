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
    """One output file per input: the network output it holds and its shape (batch axis included)."""
    output: str
    shape: tuple[int, ...]


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
    input_shape: tuple[int, ...]  # per file, batch axis included
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

    def output_name(self, stem: str, position: int, base: int, suffix: str = ".bin") -> str:
        return f"{stem}_{position + base}{suffix}"
