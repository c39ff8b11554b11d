"""ONNX -> ncnn .param/.bin with pnnx, this backend's counterpart of ATC's ONNX -> OM.

pnnx takes the exported ONNX file directly; given two input shapes (``inputshape`` / ``inputshape2``)
it keeps the axes that differ dynamic instead of folding them into constants. It always also writes its
own pnnx.param/.bin, a re-exported ONNX and two Python scripts; those go to a scratch folder that is
removed, and only ``model.ncnn.param`` / ``model.ncnn.bin`` stay in the artifact. Its key=value
arguments: Tencent/ncnn tools/pnnx/src/main.cpp (show_usage).

pnnx names the graph's inputs in0, in1... and its outputs out0, out1... in the ONNX graph's order
(the ``*_ncnn.py`` it writes extracts them so), which is how a session maps them back to the spec.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

PARAM, BIN = "model.ncnn.param", "model.ncnn.bin"
PARAM_MAGIC = "7767517"  # first line of a text .param (Tencent/ncnn src/net.cpp, Net::load_param)
TIMEOUT_S = 600


class ConvertError(RuntimeError):
    """pnnx failed, or wrote a graph ncnn cannot run; the message carries pnnx's own words."""


def input_shapes(spec) -> tuple[list[int], list[int] | None]:
    """pnnx's ``inputshape`` (batch 1 at the spec's sample dims) and ``inputshape2`` (every dynamic
    axis at another size some profile uses), None when the spec fixes every axis but the batch.

    One batch row is enough: ncnn runs a batch as one Mat of n rows whatever the conversion saw."""
    sample = [1, *spec.sample_dims]
    free = [a for a in spec.dynamic_axes()[spec.input_name] if a != 0]
    if not free:
        return sample, None
    other = list(sample)
    for axis in free:
        sizes = []
        for p in spec.all_profiles:
            try:
                sizes.append(p.concrete_dims[axis - 1])
            except ValueError:  # a dynamic profile without perf_dims offers no size
                continue
        others = [s for s in sizes if s != sample[axis]]
        if not others:
            raise ConvertError(f"{spec.name}: axis {axis} is dynamic but no profile gives it a size other than "
                               f"{sample[axis]}, so pnnx cannot be told it varies")
        other[axis] = others[0]
    return sample, other


def _shape_arg(shape) -> str:
    """One shape ``[1,3,32,48]f32``, or several (a list of shapes, one per graph input) joined by commas."""
    if shape and isinstance(shape[0], (list, tuple)):
        return ",".join(_shape_arg(s) for s in shape)
    return "[" + ",".join(str(int(d)) for d in shape) + "]f32"


def run_pnnx(exe: Path, onnx_path: Path, out_dir: Path, fp16: bool, shape: list, shape2: list | None,
             timeout: float = TIMEOUT_S) -> str:
    """Convert; returns pnnx's log (stdout and stderr). Raises ConvertError naming the file on failure.
    ``shape``: the input's shape, or a list of shapes, one per graph input in the graph's order."""
    with tempfile.TemporaryDirectory(prefix="posegate-pnnx-") as scratch:
        scratch = Path(scratch)
        src = scratch / "model.onnx"  # pnnx writes side files beside its input: keep them in scratch
        os.symlink(Path(onnx_path).resolve(), src)
        args = [str(exe), str(src), f"inputshape={_shape_arg(shape)}", f"fp16={int(fp16)}",
                f"ncnnparam={out_dir / PARAM}", f"ncnnbin={out_dir / BIN}",
                f"pnnxparam={scratch / 'model.pnnx.param'}", f"pnnxbin={scratch / 'model.pnnx.bin'}",
                f"pnnxpy={scratch / 'model_pnnx.py'}", f"pnnxonnx={scratch / 'model.pnnx.onnx'}",
                f"ncnnpy={scratch / 'model_ncnn.py'}"]
        if shape2 is not None:
            args.append(f"inputshape2={_shape_arg(shape2)}")
        try:
            done = subprocess.run(args, cwd=scratch, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ConvertError(f"{onnx_path}: pnnx did not finish in {timeout:.0f} s") from None
    log = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0 or not (out_dir / PARAM).is_file() or not (out_dir / BIN).is_file():
        tail = " | ".join(line.strip() for line in log.strip().splitlines()[-3:])
        raise ConvertError(f"{onnx_path}: pnnx exited {done.returncode} without an ncnn model: {tail}")
    return log


def layers(param: Path) -> list[tuple[str, str, list[str], list[str], dict[str, str]]]:
    """(type, name, input blobs, output blobs, params) per layer of a text .param, in file order.

    Format: a magic line, a ``layer_count blob_count`` line, then one line per layer:
    ``type name n_in n_out in... out... key=value...``
    (Tencent/ncnn docs/developer-guide/param-and-model-file-structure.md).
    """
    lines = Path(param).read_text(errors="replace").splitlines()
    if not lines or lines[0].strip() != PARAM_MAGIC:
        raise ConvertError(f"{param}: not an ncnn text .param (first line {lines[0][:20] if lines else '<empty>'!r}, "
                           f"expected {PARAM_MAGIC})")
    out = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        try:
            kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        except (IndexError, ValueError):
            raise ConvertError(f"{param}:{number}: not a layer line: {line[:80]!r}") from None
        blobs = fields[4:4 + n_in + n_out]
        if len(blobs) != n_in + n_out:
            raise ConvertError(f"{param}:{number}: layer {name} lists {len(blobs)} blobs, declares {n_in + n_out}")
        params = dict(f.split("=", 1) for f in fields[4 + n_in + n_out:] if "=" in f)
        out.append((kind, name, blobs[:n_in], blobs[n_in:], params))
    return out


def unrunnable(param: Path, known) -> list[str]:
    """Layers of ``param`` whose type the ncnn runtime has no implementation of (``known(type)`` False),
    as ``type name``: what pnnx leaves behind for an operator it could not lower (``pnnx.Expression`` for
    a size computed from the input's shape, ``Tensor.reshape`` ...). ncnn would only log
    "layer ... not exists or registered" and fail the load."""
    return [f"{kind} {name}" for kind, name, *_ in layers(param) if not known(kind)]


def ignored_lines(log: str) -> list[str]:
    """pnnx's own "ignore ..." lines: parameters of an operator it wrote but ncnn will not read."""
    return [m.group(0).strip() for m in re.finditer(r"^ignore .*$", log, re.MULTILINE)]
