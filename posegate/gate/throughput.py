"""Throughput results: when one is valid, how it compares with a stored pytest-benchmark run, the
seeds' device-only arithmetic and their expected figures for the device a run is on.

pytest-benchmark compares times; a nightly gate wants "this engine must keep at least 80 % of the
samples per second it had", refuses to compare figures from different machines, and must not
learn from (or judge by) a run too short or too noisy to mean anything.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from posegate.gate.machine import differences

MIN_ROUNDS = 3
MIN_SECONDS = 1.0  # timed seconds in all rounds together
MAX_SPREAD = 0.5  # stddev / mean; beyond it the machine was busy, not the engine slow


def validity(rounds: int, total_seconds: float, spread: float, parity_ok: bool = True) -> list[str]:
    """Why a result is invalid; empty when it is valid."""
    why = []
    if rounds < MIN_ROUNDS:
        why.append(f"{rounds} rounds < {MIN_ROUNDS}")
    if total_seconds < MIN_SECONDS:
        why.append(f"{total_seconds:.2f} s timed < {MIN_SECONDS} s")
    if spread > MAX_SPREAD:
        why.append(f"spread {spread:.0%} > {MAX_SPREAD:.0%}")
    if not parity_ok:
        why.append("outputs fail parity with the reference on the same inputs")
    return why


def rate_problem(extra_info: dict) -> str | None:
    """Why a stored benchmark's samples/s cannot be a floor (None when it can, or when it has none)."""
    if "samples_per_second" not in extra_info:
        return None
    v = extra_info["samples_per_second"]
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return f"samples_per_second {v!r} is not a number"
    if not math.isfinite(v) or v <= 0:
        return f"samples_per_second {v} is not a positive finite rate"
    return None


@dataclass(frozen=True)
class Comparison:
    status: str  # ok | regressed | new | not-comparable | invalid
    value: float
    baseline: float | None = None
    floor: float | None = None
    message: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


class ThroughputBaseline:
    """A pytest-benchmark JSON file (from --benchmark-json or --benchmark-autosave) used as the baseline."""

    def __init__(self, path, machine: dict, results: dict, missing: bool = False):
        self.path, self.machine, self.results, self.missing = Path(path), machine, results, missing

    @classmethod
    def load(cls, path) -> "ThroughputBaseline":
        path = Path(path)
        if not path.exists():  # the first night: everything is recorded as new
            return cls(path, {}, {}, missing=True)
        if path.is_dir():
            raise ValueError(f"--throughput-baseline={path}: is a folder; give one --benchmark-json or autosaved "
                             "file (.benchmarks/<machine>/NNNN_*.json)")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"throughput baseline {path} is not JSON ({e})") from None
        except OSError as e:
            raise ValueError(f"throughput baseline {path} cannot be read ({e.strerror or e})") from None
        if not isinstance(data, dict) or "benchmarks" not in data or "machine_info" not in data:
            raise ValueError(f"{path} is not a pytest-benchmark result file (no 'benchmarks' and 'machine_info'); "
                             "an accuracy baseline goes to --accuracy-baseline")
        if not isinstance(data["machine_info"], dict) or not isinstance(data["benchmarks"], list) or not all(
                isinstance(b, dict) and isinstance(b.get("name"), str) and isinstance(b.get("extra_info", {}), dict)
                for b in data["benchmarks"]) or not isinstance(data["machine_info"].get("posegate") or {}, dict):
            raise ValueError(f"{path}: malformed pytest-benchmark file ('benchmarks' must be a list of "
                             "{name, stats, extra_info}); take it again with --benchmark-json")
        machine = data["machine_info"].get("posegate") or {}
        results = {b["name"]: b.get("extra_info", {}) for b in data["benchmarks"]}
        bad = [(name, why) for name, info in results.items() if (why := rate_problem(info))]
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise ValueError(f"throughput baseline {path}: malformed benchmark {bad[0][0]!r}: {bad[0][1]}{more}; "
                             "take it again with --benchmark-json")
        return cls(path, machine, results)

    def tests(self) -> set[str]:
        """The benchmarks (test names with their case ids) this baseline can gate."""
        if getattr(self, "_tests", None) is None:  # asked once per test
            self._tests = {name for name, info in self.results.items() if "samples_per_second" in info}
        return self._tests

    def compare(self, name: str, rate: float, valid: bool, machine: dict, floor: float) -> Comparison:
        if not valid:
            return Comparison("invalid", rate, message="this result is invalid: not compared with the baseline")
        if self.missing:
            return Comparison("new", rate, message=f"no baseline file {self.path} yet: recorded, not compared")
        if not self.machine:
            return Comparison("not-comparable", rate, message=f"{self.path} has no posegate machine fingerprint; "
                                                              "not compared")
        diff = differences(machine, self.machine)
        if diff:
            return Comparison("not-comparable", rate,
                              message=f"baseline {self.path} is from another machine ({'; '.join(diff[:3])}); "
                                      "not compared")
        base = self.results.get(name)
        if base is None or "samples_per_second" not in base:
            return Comparison("new", rate, message=f"no baseline for {name} in {self.path}: recorded, not compared")
        if not base.get("valid", False):
            return Comparison("new", rate, message=f"the baseline result of {name} is invalid: not compared")
        b = float(base["samples_per_second"])
        lowest = floor * b
        unit = base.get("unit", "samples")
        if rate < lowest:
            return Comparison("regressed", rate, b, lowest,
                              f"throughput regressed: {rate:.2f} {unit}/s < {floor:.0%} of "
                              f"baseline {b:.2f} ({rate / b - 1:+.1%})")
        return Comparison("ok", rate, b, lowest, f"{rate:.2f} {unit}/s vs baseline {b:.2f} ({rate / b - 1:+.1%})")


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
