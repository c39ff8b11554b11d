"""Whether a case can run here, decided at collection: the skip marks that used to be calls in test bodies.

What a case needs of its backend depends on its kind (``case_kind(name, needs=...)``):
- ``BACKEND``: the engine runs here (decode cost and shards time or shard the baseline backend);
- ``BUILD``: the case's own engine can be built and opened here: its precision is what it says on this device,
  its profile's shapes can be built (a supplied artifact only needs the runtime, not the converter);
- ``PARITY``: that, and its outputs can be judged against the reference on this run's inputs (a calibrated
  precision needs real inputs: its quantisation was calibrated on them).

The backends say everything themselves (``unavailable_reason``, ``precision_problem``, ``shape_problem``,
``calibrated``), so a test body never has to remember to skip, and the reasons read as they always did.
"""
from __future__ import annotations

from posegate.backends import BACKENDS

BACKEND, BUILD, PARITY = "backend", "build", "parity"
LEVELS = (None, BACKEND, BUILD, PARITY)


class Readiness:
    """The skip reason of each case, asking every backend each question once per collection."""

    def __init__(self, real_inputs, backends=None):
        self.real_inputs = real_inputs  # dataset kind -> whether this run has a dataset of it with inputs
        self.backends = BACKENDS if backends is None else backends
        self._asked: dict[tuple, str | None] = {}

    def _ask(self, backend, question: str, *args) -> str | None:
        key = (backend.name, question, *args)
        if key not in self._asked:
            self._asked[key] = getattr(backend, question)(*args)
        return self._asked[key]

    def problem(self, case, needs: str | None) -> str | None:
        """Why ``case`` cannot run here (None: it can), in the words its test used to skip with."""
        if needs not in LEVELS:
            raise ValueError(f"unknown readiness level {needs!r}; expected one of {LEVELS[1:]}")
        if needs is None or case.backend is None:
            return None
        backend = self.backends[case.backend]
        supplied = case.variant == "artifact" and needs != BACKEND
        reason = self._ask(backend, "open_unavailable_reason" if supplied else "unavailable_reason")
        if reason:
            return f"{case.backend} unavailable: {reason}"
        if needs == BACKEND:
            return None
        problem = self._ask(backend, "precision_problem", case.precision) if case.precision else None
        if problem:
            return f"{case.backend}-{case.precision} unavailable: {problem}"
        if case.shape and not supplied:
            problem = backend.shape_problem(case.spec, case.profile)
            if problem:
                return problem
        kind = case.spec.flow.dataset_kind
        if needs == PARITY and case.precision in backend.calibrated and not self.real_inputs(kind):
            return (f"{case.precision} parity needs real inputs (its quantisation was calibrated on them): give "
                    f"--data-root a {kind} dataset with inputs")
        return None
