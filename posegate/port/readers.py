"""Streaming readers of a port's tensor files: one file at a time, float16 and float32 told apart by size.

Device tools' conventions (Ascend ModelZoo-PyTorch, read for facts; see shared/reference/pipelines.md,
"The ports' own files"): ais_bench writes ``<stem>_<i>.bin`` (i from 0), or ``.npy`` with ``--outfmt NPY``,
into a timestamped subfolder ``%Y_%m_%d-%H_%M_%S`` beside ``sumary.json``; the older ``benchmark`` tool
writes ``dumpOutput_device<N>/<stem>_<i>.bin`` with i from 1.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DTYPES = ("float32", "float16")
TIMESTAMP = re.compile(r"^\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}$")
DUMP = re.compile(r"^dumpOutput_device\d+$")
OUTPUT_NAME = re.compile(r"^(?P<stem>.+)_(?P<index>\d+)\.(?P<ext>bin|npy)$")


class FileProblem(ValueError):
    """A file that cannot be compared: the message names the file and what is wrong."""


class OtherShape(FileProblem):
    """A file of another of the declared shapes than its sample's (an image snapped to the wrong bucket)."""

    def __init__(self, message: str, found: tuple[int, ...]):
        super().__init__(message)
        self.found = found


@dataclass(frozen=True)
class Tensor:
    values: np.ndarray  # float32, the declared shape
    dtype: str  # as stored


def _shape_text(shape) -> str:
    return "x".join(map(str, shape))


def read_tensor(path: Path, shape: tuple[int, ...], declared=()) -> Tensor:
    """One file as float32 of ``shape``; raw ``.bin`` holds float32 or float16 (told by size), ``.npy`` says.
    ``declared``: the other shapes a file of this port may have (OtherShape when it holds one of them)."""
    if path.suffix == ".npy":
        return _read_npy(path, tuple(shape), {tuple(d) for d in declared})
    count = math.prod(shape)
    size = path.stat().st_size
    sizes = {np.dtype(d).itemsize * count: d for d in DTYPES}
    if size not in sizes:
        want = ", ".join(f"{d} {n} bytes" for n, d in sizes.items())
        if size < min(sizes):
            raise FileProblem(f"{path.name}: truncated: {size} bytes, a {_shape_text(shape)} file holds {want}")
        raise FileProblem(f"{path.name}: {size} bytes fit no declared shape or dtype ({_shape_text(shape)}: {want})")
    dtype = sizes[size]
    values = np.fromfile(path, dtype=dtype).reshape(shape)
    return Tensor(_finite(path, values).astype(np.float32, copy=False), dtype)


def _npy_header(path: Path, f):
    # the header is parsed as data (numpy's own header readers), never unpickled
    try:
        version = np.lib.format.read_magic(f)
        return (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)(f)
    except ValueError as e:
        raise FileProblem(f"{path.name}: not a .npy file ({e})") from None


def stored_shape(path: Path) -> tuple[int, ...] | None:
    """The shape a ``.npy`` file says it holds (None for raw files or an unreadable header)."""
    if path.suffix != ".npy":
        return None
    with open(path, "rb") as f:
        try:
            return tuple(_npy_header(path, f)[0])
        except FileProblem:
            return None


def _read_npy(path: Path, shape, declared=frozenset()) -> Tensor:
    with open(path, "rb") as f:
        found_shape, fortran, dtype = _npy_header(path, f)
        if dtype.hasobject or dtype.name not in DTYPES:
            raise FileProblem(f"{path.name}: holds {dtype}, not float32 or float16")
        if tuple(found_shape) != shape and tuple(found_shape) in declared:
            raise OtherShape(f"{path.name}: shape {_shape_text(found_shape)}, its sample's is {_shape_text(shape)}",
                             tuple(found_shape))
        if tuple(found_shape) != tuple(shape) and math.prod(found_shape) != math.prod(shape):
            raise FileProblem(f"{path.name}: shape {_shape_text(found_shape)} fits no declared shape "
                              f"({_shape_text(shape)})")
        want = dtype.itemsize * math.prod(shape)
        data = f.read(want + 1)
    if len(data) != want:
        raise FileProblem(f"{path.name}: truncated: {len(data)} of {want} data bytes")
    values = np.frombuffer(data, dtype=dtype).reshape(found_shape, order="F" if fortran else "C").reshape(shape)
    return Tensor(_finite(path, values).astype(np.float32), dtype.name)


def _finite(path: Path, values: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(values)
    if bad.any():
        nan = int(np.isnan(values).sum())
        raise FileProblem(f"{path.name}: {nan} NaN and {int(bad.sum()) - nan} Inf of {values.size} values")
    return values


@dataclass(frozen=True)
class OutputFolder:
    path: Path  # where the files are
    tool: str  # "ais_bench", "benchmark" or "files"
    files: dict  # stem -> {index: Path}
    base: int | None  # the lowest index found (None: no file)


def output_folder(given: Path) -> OutputFolder:
    """The folder holding a device run's files: the given one, its one ais_bench timestamped subfolder, or
    the older tool's dumpOutput_device<N>; FileProblem when it is ambiguous."""
    folder, tool = given, "files"
    subs = sorted(p for p in given.iterdir() if p.is_dir())
    runs = [p for p in subs if TIMESTAMP.match(p.name)]
    dumps = [p for p in subs if DUMP.match(p.name)]
    if (runs or dumps) and not any(p.is_file() and OUTPUT_NAME.match(p.name) for p in given.iterdir()):
        found = runs + dumps
        if len(found) > 1:
            raise FileProblem(f"{given}: holds {len(found)} device runs ({', '.join(p.name for p in found[:4])}); "
                              "give the one to audit")
        folder = found[0]
        tool = "ais_bench" if runs else "benchmark"
    elif TIMESTAMP.match(given.name):
        tool = "ais_bench"
    elif DUMP.match(given.name):
        tool = "benchmark"
    files: dict[str, dict[int, Path]] = {}
    for p in sorted(folder.iterdir()):
        m = OUTPUT_NAME.match(p.name)
        if p.is_file() and m:
            files.setdefault(m["stem"], {})[int(m["index"])] = p
    base = min((min(v) for v in files.values()), default=None)
    return OutputFolder(folder, tool, files, base)
