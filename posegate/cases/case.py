"""One test case: model x backend x precision x batch x shape x dataset, and the id it reads as.

A case's id reads like a sentence fragment, ``mspn_2xstg-openvino-fp16-bs8-256x192``, is stable
across xdist workers, and selects with ``-k``. Its own module so that the case kinds' generators
(posegate.cases.kinds) and ``posegate.cases.generate.generate``, which looks them up, can both import it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from posegate import registry


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
        return registry.MODELS[self.model]

    @property
    def profile(self):
        return self.spec.profile(self.shape)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}
