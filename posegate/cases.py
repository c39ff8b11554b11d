"""Test cases generated from the registries: model x backend x precision x batch x shape x dataset.

A case's id reads like a sentence fragment, ``mspn_2xstg-openvino-fp16-bs8-256x192``, is stable
across xdist workers, and selects with ``-k``. Which cases a stage gets is decided here, from the
specs' and backends' declared capabilities, never by naming a model.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

from posegate.backends import BACKENDS, REFERENCE
from posegate.torchscript import engine_cases

STAGES = ("weights", "golden", "preprocess", "export", "convert", "infer", "postprocess", "train", "accuracy", "perf")


@dataclass(frozen=True)
class Case:
    model: str
    backend: str | None = None
    precision: str | None = None
    batch: int | None = None
    shape: str | None = None
    dataset: str | None = None
    variant: str | None = None  # e.g. "opset11", "device", "truncated"
    full: bool = False  # runs only in the full selection

    @property
    def id(self) -> str:
        parts = [self.model, self.backend, self.precision,
                 None if self.batch is None else f"bs{self.batch}", self.shape, self.dataset, self.variant]
        return "-".join(p for p in parts if p is not None)

    @property
    def spec(self):
        from posegate.registry import MODELS
        return MODELS[self.model]

    @property
    def profile(self):
        return self.spec.profile(self.shape)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _backends(spec, include_reference: bool, supplied=()):
    for name, backend in BACKENDS.items():
        if backend.reference and not include_reference:
            continue
        for precision in backend.precisions:
            # a slot filled by a supplied artifact is not converted (its cases come from the artifact)
            if (precision in spec.precisions or backend.reference) and (spec.name, name, precision) not in supplied:
                yield name, precision


def _artifact_cases(kind, spec, artifacts, sets) -> list[Case]:
    cases = []
    for (model, b, prec), bound in sorted(artifacts.items()):
        if model != spec.name:
            continue
        p = bound.contract.profile
        if kind == "artifact":
            cases.append(Case(model, b, prec, p.batch_sizes[0], p.name, variant="artifact"))
        elif kind in ("infer", "perf"):
            cases += [Case(model, b, prec, bs, p.name, variant="artifact", full=f) for bs, f in _batches(p)]
        elif kind in ("accuracy", "parity"):
            cases += [Case(model, b, prec, p.eval_batch, p.name, d, variant="artifact", full=not p.default)
                      for d, has_inputs in sets if has_inputs]
    return cases


def _batches(profile):
    yield from ((b, not profile.default) for b in profile.batch_sizes)
    yield from ((b, True) for b in profile.full_batch_sizes)


def generate(kind: str, specs, datasets=None, needs: str | None = None, artifacts=None,
             baseline: str = "onnxruntime") -> list[Case]:
    """All cases of one kind.

    ``datasets`` maps a dataset kind to the (name, has_inputs) pairs known at collection; ``needs``
    keeps only the models whose flow has that capability (e.g. "letterbox" for padding checks);
    ``artifacts`` maps the (model, backend, precision) slots of supplied converted models to them.
    """
    datasets = datasets or {}
    artifacts = artifacts or {}
    cases: list[Case] = []
    for spec in specs:
        m, flow = spec.name, spec.flow
        if needs and needs not in flow.capabilities:
            continue
        sets = datasets.get(flow.dataset_kind, [])
        cases += _artifact_cases(kind, spec, artifacts, sets)
        if kind == "model":
            cases.append(Case(m))
        elif kind == "golden":
            cases.append(Case(m, variant="golden"))
        elif kind == "shape":
            cases += [Case(m, shape=p.name, full=not p.default) for p in spec.profiles]
        elif kind == "export":
            cases += [Case(m, variant=f"opset{o}") for o in spec.opsets]
        elif kind == "torchscript":  # one trace per engine shape, as a static backend builds them
            cases += [Case(m, batch=b, shape=p.name, full=f) for p, b, f in engine_cases(spec)]
        elif kind == "convert":
            for b, prec in _backends(spec, include_reference=False, supplied=artifacts):
                if not BACKENDS[b].static_shapes:
                    cases.append(Case(m, b, prec))
                    continue
                for p in spec.profiles:
                    cases += [Case(m, b, prec, bs, p.name, full=f) for bs, f in _batches(p)]
        elif kind in ("infer", "perf"):
            for b, prec in _backends(spec, include_reference=(kind == "perf"), supplied=artifacts):
                for p in spec.profiles:
                    cases += [Case(m, b, prec, bs, p.name, full=f) for bs, f in _batches(p)]
        elif kind in ("accuracy", "parity"):
            for b, prec in _backends(spec, include_reference=(kind == "accuracy"), supplied=artifacts):
                for p in spec.profiles:
                    full = not (p.default and p.evaluate_by_default)
                    cases += [Case(m, b, prec, p.eval_batch, p.name, d, full=full)
                              for d, has_inputs in sets if has_inputs]
        elif kind == "oracle":
            if flow.has_oracle:
                cases += [Case(m, dataset=d) for d, _ in sets]
        elif kind == "postprocess":
            cases += [Case(m, REFERENCE, "fp32", p.batch_sizes[0], p.name, full=not p.default) for p in spec.profiles]
        elif kind == "artifact":
            pass  # only the supplied artifacts' cases, added above
        elif kind == "shards":
            p = next(p for p in spec.profiles if p.default)
            cases += [Case(m, baseline, "fp32", p.eval_batch, p.name, d) for d, has_inputs in sets if has_inputs]
        elif kind == "decode_cost":
            cases += [Case(m, baseline, "fp32", flow.decode_cost_batch, p.name, full=not p.default)
                      for p in spec.profiles]
        else:
            raise ValueError(f"unknown case kind {kind!r}")
    # a backend too slow to build for the default selection (minutes of compiling) runs under --full
    return [replace(c, full=True) if c.backend in BACKENDS and BACKENDS[c.backend].full_only else c for c in cases]


def known_failure(spec, test_id: str) -> str | None:
    """The reason of a known failure whose pattern matches ``test_id`` (turned into a strict xfail)."""
    for pattern, reason in spec.known_failures.items():
        if re.search(pattern, test_id):
            return reason
    return None

