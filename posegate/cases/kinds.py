"""Case kinds: one small generator per kind of test case, registered by the name tests ask for.

A stage test asks for its cases with ``@pytest.mark.cases(kind)``; ``posegate.cases.generate.generate`` looks
the kind up here and calls its generator once per model. A generator reads only the spec's and the
backends' declared capabilities (never a model's name) and yields that model's cases in a fixed
order, so ids agree across xdist workers. Supplied converted models (``--artifact``) come first in the
kinds that run them. A new kind is one decorated function; ``generate`` rejects any other name.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from posegate.backends import BACKENDS, REFERENCE
from posegate.cases.case import Case
from posegate.cases.readiness import BACKEND, BUILD, LEVELS, PARITY
from posegate.cases.target import per_engine_shape
from posegate.export.to_torchscript import engine_cases

CaseGenerator = Callable[["ModelScope"], Iterable[Case]]
KINDS: dict[str, CaseGenerator] = {}
# kind -> what its cases need of their backend (posegate.cases.readiness), checked at collection
READY: dict[str, str | None] = {}


def case_kind(name: str, ready: str | None = None) -> Callable[[CaseGenerator], CaseGenerator]:
    """Register a generator under a kind name (one name, one generator: a repeated name is a mistake);
    ``ready``: what its cases need of their backend to run here (readiness.BACKEND, BUILD or PARITY)."""
    if ready not in LEVELS:
        raise ValueError(f"case kind {name!r}: unknown readiness {ready!r}; expected one of {LEVELS[1:]}")

    def register(fn: CaseGenerator) -> CaseGenerator:
        if name in KINDS:
            raise ValueError(f"case kind {name!r} is registered twice: {KINDS[name].__name__} and {fn.__name__}")
        KINDS[name] = fn
        READY[name] = ready
        return fn
    return register


@dataclass(frozen=True)
class ModelScope:
    """What one model's generator may read: its spec, the datasets of its flow's kind as (name, has_inputs),
    the supplied artifacts' slots, and the backend other backends are measured against."""
    spec: object
    sets: list = field(default_factory=list)
    artifacts: dict = field(default_factory=dict)
    baseline: str = "onnxruntime"

    @property
    def evaluable(self) -> list[str]:
        """Datasets with inputs to run a network on (an annotation-only set can still feed the oracle)."""
        return [d for d, has_inputs in self.sets if has_inputs]

    def supplied(self) -> Iterator[tuple[str, str, object]]:
        """(backend, precision, profile) of each supplied artifact of this model, in slot order."""
        for (model, backend, precision), bound in sorted(self.artifacts.items()):
            if model == self.spec.name:
                yield backend, precision, bound.contract.profile

    def engines(self, include_reference: bool) -> Iterator[tuple[str, str]]:
        """(backend, precision) slots to convert: the spec's precisions each backend has (the reference
        runs in its own), less the slots a supplied artifact fills (its cases come from the artifact)."""
        for name, backend in BACKENDS.items():
            if backend.reference and not include_reference:
                continue
            for precision in backend.precisions:
                if ((precision in self.spec.precisions or backend.reference)
                        and (self.spec.name, name, precision) not in self.artifacts):
                    yield name, precision


def batches(profile) -> Iterator[tuple[int, bool]]:
    """(batch, full) of a profile: its default batches, then those only --full runs."""
    yield from ((b, not profile.default) for b in profile.batch_sizes)
    yield from ((b, True) for b in profile.full_batch_sizes)


def _every_batch(scope: ModelScope, include_reference: bool) -> Iterator[Case]:
    m = scope.spec.name
    for b, prec in scope.engines(include_reference):
        for p in scope.spec.profiles:
            yield from (Case(m, b, prec, bs, p.name, full=f) for bs, f in batches(p))


def _supplied_batches(scope: ModelScope) -> Iterator[Case]:
    for b, prec, p in scope.supplied():
        yield from (Case(scope.spec.name, b, prec, bs, p.name, variant="artifact", full=f) for bs, f in batches(p))


def _every_dataset(scope: ModelScope, include_reference: bool) -> Iterator[Case]:
    for b, prec, p in scope.supplied():
        yield from (Case(scope.spec.name, b, prec, p.eval_batch, p.name, d, variant="artifact", full=not p.default)
                    for d in scope.evaluable)
    for b, prec in scope.engines(include_reference):
        for p in scope.spec.profiles:
            full = not (p.default and p.evaluate_by_default)
            yield from (Case(scope.spec.name, b, prec, p.eval_batch, p.name, d, full=full) for d in scope.evaluable)


# ------------------------------------------------------------------------------ one case per model

@case_kind("model")
def model(scope):
    """Checks of the model itself (weights, network, export sample, machinery)."""
    yield Case(scope.spec.name)


@case_kind("golden")
def golden(scope):
    """The reference network against the recorded golden outputs."""
    yield Case(scope.spec.name, variant="golden")


@case_kind("shape")
def shape(scope):
    """Preprocessing, per input profile."""
    yield from (Case(scope.spec.name, shape=p.name, full=not p.default) for p in scope.spec.profiles)


@case_kind("export")
def export(scope):
    """ONNX export, per opset."""
    yield from (Case(scope.spec.name, variant=f"opset{o}") for o in scope.spec.opsets)


@case_kind("torchscript")
def torchscript(scope):
    """One trace per engine shape, as a static backend builds them."""
    yield from (Case(scope.spec.name, batch=b, shape=p.name, full=f) for p, b, f in engine_cases(scope.spec))


# ------------------------------------------------------------------------------------ per backend

@case_kind("convert", ready=BUILD)
def convert(scope):
    """One conversion per backend and precision; a static-shape backend builds one per engine shape."""
    m = scope.spec.name
    for b, prec in scope.engines(include_reference=False):
        if not per_engine_shape(b):
            yield Case(m, b, prec)
            continue
        for p in scope.spec.profiles:
            yield from (Case(m, b, prec, bs, p.name, full=f) for bs, f in batches(p))


@case_kind("artifact", ready=BUILD)
def artifact(scope):
    """A supplied converted model's interface check, at its profile's first batch."""
    yield from (Case(scope.spec.name, b, prec, p.batch_sizes[0], p.name, variant="artifact")
                for b, prec, p in scope.supplied())


@case_kind("infer", ready=PARITY)
def infer(scope):
    """Tensor parity with the reference, per engine batch (the reference is not compared with itself)."""
    yield from _supplied_batches(scope)
    yield from _every_batch(scope, include_reference=False)


@case_kind("perf", ready=PARITY)
def perf(scope):
    """Throughput per engine batch, the reference's too (the ratio's denominator)."""
    yield from _supplied_batches(scope)
    yield from _every_batch(scope, include_reference=True)


@case_kind("accuracy", ready=BUILD)
def accuracy(scope):
    """The metric on each dataset with inputs, the reference's too (the floor it is held to)."""
    yield from _every_dataset(scope, include_reference=True)


@case_kind("parity", ready=BUILD)
def parity(scope):
    """The metric's difference from the reference's, on each dataset with inputs."""
    yield from _every_dataset(scope, include_reference=False)


# ---------------------------------------------------------------------------- decoding and data

@case_kind("oracle")
def oracle(scope):
    """The decoder on encoded ground truth, per dataset (annotations suffice: no inputs needed)."""
    if scope.spec.flow.has_oracle:
        yield from (Case(scope.spec.name, dataset=d) for d, _ in scope.sets)


@case_kind("postprocess", ready=BACKEND)
def postprocess(scope):
    """Decoding the reference's outputs, per profile at its first batch."""
    yield from (Case(scope.spec.name, REFERENCE, "fp32", p.batch_sizes[0], p.name, full=not p.default)
                for p in scope.spec.profiles)


@case_kind("shards", ready=BACKEND)
def shards(scope):
    """Sharded predictions merged, on the baseline backend at the default profile, per dataset with inputs."""
    p = next(p for p in scope.spec.profiles if p.default)
    yield from (Case(scope.spec.name, scope.baseline, "fp32", p.eval_batch, p.name, d) for d in scope.evaluable)


@case_kind("decode_cost", ready=BACKEND)
def decode_cost(scope):
    """Decoding against inference time on the baseline backend, per profile at the flow's batch."""
    yield from (Case(scope.spec.name, scope.baseline, "fp32", scope.spec.flow.decode_cost_batch, p.name,
                     full=not p.default) for p in scope.spec.profiles)
