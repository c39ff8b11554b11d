"""Known failures: test-id patterns a model spec or a backend declares, run as strict xfails.

A port's failures belong to a model on a backend; the backend also knows failures of its own on any
model (an engine that lacks an operator), as the ONNX backend test runner lets a backend exclude what
it cannot run. Collection asks here for both.
"""
from __future__ import annotations

import re
from typing import Mapping

from posegate.backends import BACKENDS


def sources(spec, backend) -> list[tuple[str, Mapping[str, str]]]:
    """(who declares, {pattern: reason}) of every source that applies: the spec, then the backend."""
    found = [(f"model {spec.name}", spec.known_failures)]
    if isinstance(backend, str):
        backend = BACKENDS.get(backend)
    if backend is not None:
        found.append((f"backend {backend.name}", backend.known_failures))
    return found


def known_failure(spec, backend, test_id: str) -> str | None:
    """The reason of a known failure whose pattern matches ``test_id``, else None.

    ``backend`` is the case's backend (a name or a Backend; None for a case on no backend). A spec's own
    declaration wins over its backend's when both match, since it is the more specific one.
    """
    for _, patterns in sources(spec, backend):
        for pattern, reason in patterns.items():
            if re.search(pattern, test_id):
                return reason
    return None
