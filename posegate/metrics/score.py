"""The value a metric reports: its own module so that the metric implementations can build one without importing
the package that registers them (which imports them)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Score:
    value: float
    details: dict = field(default_factory=dict)
    count: int = 0  # people or frames scored
