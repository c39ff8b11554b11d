"""Throughput arithmetic shared by the perf stage and the device backends, and the seeds' expected
figures looked up for the device a run is on."""
from __future__ import annotations

import math


def per_second(units_per_call: int, times_ms) -> float:
    """The seeds' device-only figure: 1000 x units per call / mean engine compute ms.

    ``units`` is what the model's flow counts (images, crops, or every frame for VideoPose3D,
    2 x 6115 per call in seed 004)."""
    times = [float(t) for t in times_ms]
    if not times or any(not math.isfinite(t) or t <= 0 for t in times):
        raise ValueError(f"compute times must be positive and finite, got {times[:5]}")
    return 1000.0 * units_per_call / (sum(times) / len(times))


def expected(table, device: str | None, shape: str, batch: int) -> float | None:
    """The seed's figure for this device, input shape (profile name or HxW) and batch; None if it has none."""
    if not device:
        return None
    rows = table.get(device, {}).get(shape, {})
    value = rows.get(batch, rows.get(str(batch)))
    return None if value is None else float(value)
