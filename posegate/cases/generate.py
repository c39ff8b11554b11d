"""Test cases generated from the registries: model x backend x precision x batch x shape x dataset.

Which cases a stage gets is decided by its case kind (posegate.cases.kinds: one small generator per
kind), from the specs' and backends' declared capabilities, never by naming a model. ``Case`` lives in
posegate.cases.case and is importable from here.
"""
from __future__ import annotations

from dataclasses import replace

from posegate.backends import BACKENDS
from posegate.cases.case import Case
from posegate.cases.kinds import KINDS, ModelScope
from posegate.flows.kinds import check_capabilities

__all__ = ["STAGES", "Case", "generate"]

STAGES = ("weights", "golden", "preprocess", "export", "convert", "infer", "postprocess", "train", "accuracy", "perf")


def generate(kind: str, specs, datasets=None, needs: str | None = None, artifacts=None,
             baseline: str = "onnxruntime") -> list[Case]:
    """All cases of one kind.

    ``datasets`` maps a dataset kind to the (name, has_inputs) pairs known at collection; ``needs``
    keeps only the models whose flow has that capability (e.g. "letterbox" for padding checks);
    ``artifacts`` maps the (model, backend, precision) slots of supplied converted models to them;
    ``baseline`` is the backend that decode cost and shards run on.
    """
    make = KINDS.get(kind)
    if make is None:
        raise ValueError(f"unknown case kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    if needs is not None:
        check_capabilities({needs}, f"case kind {kind!r} with needs={needs!r}")
    datasets = datasets or {}
    artifacts = artifacts or {}
    cases: list[Case] = []
    for spec in specs:
        if needs and needs not in spec.flow.capabilities:
            continue
        cases += make(ModelScope(spec, datasets.get(spec.flow.dataset_kind, []), artifacts, baseline))
    # a backend too slow to build for the default selection (minutes of compiling) runs under --full
    return [replace(c, full=True) if c.backend in BACKENDS and BACKENDS[c.backend].full_only else c for c in cases]

