"""torch.compile's inductor options for the torch-compile backend. Its compiled kernels live in the artifact
cache through inductor's FX graph cache (torch._inductor.config.fx_graph_cache, since torch 2.2; its default has
changed between releases, so it is asked for explicitly) and its hit/miss counters. Before 2.2 there is
no such cache: every run would compile for minutes again, and the backend is unavailable, saying so."""
from __future__ import annotations

from posegate.compat import requirement, torch_release

FX_GRAPH_CACHE = (2, 2)


def unavailable_reason(have: tuple[int, int] | None = None) -> str | None:
    return requirement("torch-compile", FX_GRAPH_CACHE, have or torch_release(),
                       "inductor's FX graph cache keeps the compiled kernels in the artifact cache")


def compile_options() -> dict:
    """torch.compile(options=...) for inductor (torch >= 2.2)."""
    return {"fx_graph_cache": True}
