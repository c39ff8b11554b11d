"""PyTorch -> TorchScript by tracing, seed 000's export (`torch.jit.trace(net.eval(), torch.randn(1, 3, 368, 640))`).

A trace records one run of the network: Python control flow and shape arithmetic that the tracer
cannot follow are baked into the graph as constants. The tracer says so with a TracerWarning, which
here is an error naming the source line, because such a trace silently computes something else on
another input.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from posegate.export.to_onnx import ExportError
from posegate.metrics.parity import compare

TRACE_SEED = 0  # the trace input's values: any will do for a network without data-dependent control flow


def trace_shape(spec, engine_shape: tuple) -> tuple[int, ...]:
    """The concrete shape to trace an engine shape at: its profile's benchmark dims on a dynamic axis."""
    if all(d is not None for d in engine_shape):
        return tuple(engine_shape)
    for p in spec.all_profiles:
        if len(p.dims) == len(engine_shape) - 1 and all(a == b for a, b in zip(p.dims, engine_shape[1:])):
            return (engine_shape[0], *p.concrete_dims)
    raise ValueError(f"{spec.name}: no input profile has dims {tuple(engine_shape[1:])}")


def default_trace_shape(spec) -> tuple:
    """The trace a shape-generic backend uses: the first profile at its first batch size."""
    p = spec.profiles[0]
    return spec.engine_shape(p, p.batch_sizes[0])


def engine_cases(spec):
    """(profile, batch, full) of every engine shape the stages build, as the infer cases list them."""
    for p in spec.profiles:
        yield from ((p, b, not p.default) for b in p.batch_sizes)
        yield from ((p, b, True) for b in p.full_batch_sizes)


def _where(w: warnings.WarningMessage) -> str:
    return f"{w.filename}:{w.lineno}"


def trace(network: torch.nn.Module, shape: tuple[int, ...]) -> torch.jit.ScriptModule:
    """Trace ``network`` at ``shape``; ExportError on any TracerWarning, naming the line that caused it."""
    gen = torch.Generator().manual_seed(TRACE_SEED)
    sample = torch.randn(shape, generator=gen)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        # check_trace re-runs and compares; the stage test does that on real inputs instead
        traced = torch.jit.trace(network.eval(), sample, check_trace=False)
    found = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    if found:
        lines = "; ".join(f"{_where(w)}: {str(w.message).splitlines()[0]}" for w in found[:3])
        raise ExportError(f"torch.jit.trace at {list(shape)}: {len(found)} TracerWarning(s), the trace may not "
                          f"generalise: {lines}")
    for w in caught:  # everything else keeps its normal route
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return traced


def export_torchscript(network: torch.nn.Module, path: Path, shape: tuple[int, ...]) -> None:
    """Trace, save to ``path``, and load it back: same code, same tensors (the stage test then runs the
    loaded module on real inputs, so no forward is spent here)."""
    traced = trace(network, shape)
    torch.jit.save(traced, str(path))
    loaded = load(path)
    if loaded.code != traced.code:
        raise ExportError(f"{path}: the loaded module's code differs from the traced one")
    want, got = traced.state_dict(), loaded.state_dict()
    changed = [k for k in want if k not in got or not torch.equal(want[k], got[k])]
    if changed or set(got) != set(want):
        which = changed or sorted(set(got) ^ set(want))
        raise ExportError(f"{path}: tensors changed by torch.jit.save/load: {which[:5]}")


def load(path: Path, device: str = "cpu") -> torch.jit.ScriptModule:
    try:
        return torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as e:
        raise ExportError(f"{path}: not a loadable TorchScript archive: {str(e).splitlines()[0]}") from None


def as_tuple(out) -> tuple[torch.Tensor, ...]:
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(out)


def other_batch(module, x, reference: dict, names, tolerance) -> str:
    """Run a trace on one more row than it was traced with: 'works', or the fixed shape it baked in.

    A batch that runs but computes other values is an error (the trace silently answers wrongly);
    ``tolerance(name)`` is the fp32 tolerance of an output.
    """
    n = x.shape[0]
    bigger = np.concatenate([x, x[:1]])
    try:
        with torch.inference_mode():
            out = as_tuple(module(torch.from_numpy(bigger)))
    except RuntimeError as e:
        return f"fixed batch {n}: batch {n + 1} fails ({str(e).strip().splitlines()[0][:160]})"
    wrong = []
    for name, o in zip(names, out):
        o = o.numpy()
        want = np.concatenate([reference[name], reference[name][:1]])
        err = compare(o, want, tolerance(name))
        if not err.ok:
            wrong.append(f"{name}: {err.describe()}")
    if wrong:
        raise ExportError(f"the trace runs at batch {n + 1} but computes other values than at batch {n} "
                          f"(a shape baked in without a TracerWarning): " + "; ".join(wrong))
    return "works"
