"""Converted models brought from outside: which (model, backend, precision) slot each fills, and
the interface check they pass before anything runs on them.

A spec may declare a contract (``ModelSpec.artifacts``) whose file lies in --weights-dir; the
``--artifact MODEL:BACKEND[:PRECISION]=PATH`` option points a contract at a file, or makes a plain one
(the spec's names and first profile at batch 1) for a backend the spec declares none for. The slot
then skips export and convert: infer, accuracy and perf run on the file as given.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from posegate.spec import ArtifactContract


class ArtifactMismatch(ValueError):
    """A supplied artifact's interface differs from what its contract and the spec say."""


@dataclass(frozen=True)
class BoundArtifact:
    model: str
    contract: ArtifactContract
    path: Path | None  # None: declared by the spec, but no file supplied in this run
    origin: str  # "--artifact" or "spec"

    @property
    def key(self) -> tuple[str, str, str]:
        return self.model, self.contract.backend, self.contract.precision

    def missing_reason(self) -> str:
        c = self.contract
        where = f"put {c.path} in --weights-dir, or " if c.path else ""
        return (f"no {c.backend}-{c.precision} artifact of {self.model} supplied: {where}pass "
                f"--artifact {self.model}:{c.backend}:{c.precision}=PATH"
                + (f" ({c.how_to_get})" if c.how_to_get else ""))


def parse_option(values) -> dict[tuple[str, str, str | None], Path]:
    """``MODEL:BACKEND[:PRECISION]=PATH`` strings -> {(model, backend, precision or None): path}."""
    parsed = {}
    for text in values or ():
        slot, sep, path = text.partition("=")
        parts = slot.split(":")
        if not sep or not path or len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"--artifact {text!r}: expected MODEL:BACKEND[:PRECISION]=PATH")
        parsed[(parts[0], parts[1], parts[2] if len(parts) == 3 else None)] = Path(path).expanduser().resolve()
    return parsed


def bind(specs, supplied: dict, weights_dir: Path | None, backends) -> dict[tuple[str, str, str], BoundArtifact]:
    """Every artifact slot of this run, keyed (model, backend, precision)."""
    specs = {s.name: s for s in specs}
    bound: dict[tuple, BoundArtifact] = {}
    used = set()
    for spec in specs.values():
        for c in spec.artifacts:
            if c.backend not in backends:
                raise ValueError(f"{spec.name}: artifact contract names backend {c.backend!r}; "
                                 f"known: {sorted(backends)}")
            candidates = ((spec.name, c.backend, c.precision), (spec.name, c.backend, None))
            key = next((k for k in candidates if k in supplied), None)
            if key:
                used.add(key)
                path, origin = supplied[key], "--artifact"
            else:
                candidate = weights_dir / c.path if weights_dir and c.path else None
                path, origin = (candidate if candidate and candidate.exists() else None), "spec"
            bound[(spec.name, c.backend, c.precision)] = BoundArtifact(spec.name, c, path, origin)
    for (model, backend, precision), path in supplied.items():
        if (model, backend, precision) in used:
            continue
        if model not in specs:
            raise ValueError(f"--artifact {model}:{backend}: no model {model!r}; known: {sorted(specs)}")
        if backend not in backends:
            raise ValueError(f"--artifact {model}:{backend}: no backend {backend!r}; known: {sorted(backends)}")
        spec = specs[model]
        profile = dataclasses.replace(spec.profiles[0], batch_sizes=(1,), full_batch_sizes=(), default=True)
        contract = ArtifactContract(backend, precision or "fp32", profile)
        bound[(model, backend, contract.precision)] = BoundArtifact(model, contract, path, "--artifact")
    return bound


def check_signature(path, signature, io, want_input: tuple, want_outputs: dict[str, tuple]) -> None:
    """Names and shapes first: raise ArtifactMismatch listing every difference.

    ``want_input`` is the input shape a case feeds, ``want_outputs`` the reference's output shape per
    spec output; a dynamic (None) dim of the artifact matches any size.
    """
    inputs, outputs = signature
    problems = []

    def differs(got, want):
        return len(got) != len(want) or any(g is not None and g != w for g, w in zip(got, want))

    if io.input not in inputs:
        problems.append(f"no input {io.input!r} (it has {list(inputs)})")
    elif differs(inputs[io.input], want_input):
        problems.append(f"input {io.input!r} is {_fmt(inputs[io.input])}, the contract feeds {_fmt(want_input)}")
    if len(inputs) != 1:
        problems.append(f"{len(inputs)} inputs {list(inputs)}; one expected")
    for engine, ours in io.outputs:
        if engine not in outputs:
            problems.append(f"no output {engine!r} (for {ours}; it has {list(outputs)})")
        elif differs(outputs[engine], want_outputs[ours]):
            problems.append(f"output {engine!r} is {_fmt(outputs[engine])}, the reference's {ours} is "
                            f"{_fmt(want_outputs[ours])}")
    if problems:
        raise ArtifactMismatch(f"{path}: " + "; ".join(problems))


def _fmt(dims) -> str:
    return "x".join("?" if d is None else str(d) for d in dims)
