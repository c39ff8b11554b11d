"""Accuracy baselines: every measured metric of a run, stored, and a later run compared with it.

A measurement is keyed by the test and case that produced it (model, backend, precision, batch, shape,
dataset) and the metric's name; the dataset's and the weights' identities are stored beside the value,
so a baseline taken on other data or other weights is reported as stale instead of being compared.
Comparison is one-sided: only a move in the bad direction beyond the allowed slack is a regression.

Slack, from the spec: the task metric and what derives from it (AP, oracle AP, agreement AP, MPJPE)
may move by ``spec.metric_parity[precision]``, the same tolerance a converted backend gets against
torch; a bounded error (tensor parity max_abs, max_rel, cosine) may use a quarter of its remaining
headroom to the spec's tolerance before it counts, so an engine that drifts toward its limit is caught
while it still passes.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from posegate.metrics import METRICS, margin
from posegate.storage.atomic import write_text

FORMAT = "posegate-accuracy-baseline/1"
HEADROOM = 0.25


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float
    direction: str  # "min": higher is better (a floor); "max": lower is better (a ceiling)
    bound: float | None = None  # the spec's threshold or tolerance, if any
    dataset: str | None = None  # dataset identity
    weights: str | None = None


@dataclass(frozen=True)
class Verdict:
    status: str  # ok | improved | regressed | new | stale
    key: str
    value: float
    baseline: float | None = None
    allowed: float | None = None  # the worst value still accepted
    message: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def measurements(result: dict) -> list[Measurement]:
    """The comparable numbers of one recorded result (perf timings are not accuracy)."""
    ident = dict(dataset=result.get("dataset_id") or result.get("dataset"), weights=result.get("weights"))
    out = []
    if "metric" in result and isinstance(result.get("value"), (int, float)):
        direction = result.get("direction") or _task_direction(result["metric"])
        if direction:
            out.append(Measurement(result["metric"], float(result["value"]), direction, result.get("threshold"),
                                   **ident))
    parity = result.get("parity")
    # Only a per-output error table is a measurement; the fault zoo records its failure messages there as a list.
    for output, err in (parity.items() if isinstance(parity, dict) else ()):
        tol = err.get("tolerance") or {}
        out.append(Measurement(f"max_abs[{output}]", err["max_abs"], "max", tol.get("max_abs"), **ident))
        out.append(Measurement(f"max_rel[{output}]", err["max_rel"], "max", tol.get("max_rel"), **ident))
        out.append(Measurement(f"cosine[{output}]", err["cosine"], "min", tol.get("min_cosine"), **ident))
    return out


def _task_direction(metric: str) -> str | None:
    m = METRICS.get(metric)
    return m.direction if m else None


def slack(m: Measurement, baseline: float, spec, precision: str | None) -> float:
    if spec is not None and spec.metric in m.name:
        return float(spec.metric_parity.get(precision or "fp32", 0.0))
    if m.bound is not None and math.isfinite(baseline):
        return HEADROOM * max(0.0, margin(baseline, m.bound, m.direction))
    return 0.0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def entry_problem(k: str, entry) -> str | None:
    """Why a baseline entry cannot be compared with (None when it can): every stored figure is an error,
    a score or a rate, finite and not negative (a cosine lies in [-1, 1])."""
    if not isinstance(entry, dict):
        return f"is a {type(entry).__name__}, not an object with a 'value'"
    v = entry.get("value")
    if not _number(v):
        return f"value {v!r} is not a number"
    if not math.isfinite(v):
        return f"value {v} is not finite"
    lowest = -1.0 if k.rsplit("::", 1)[-1].startswith("cosine[") else 0.0
    if v < lowest:
        return f"value {v} is below {lowest:g}"
    if lowest < 0 and v > 1:
        return f"value {v} is above 1 (a cosine)"
    return None


def key(test_name: str, metric: str) -> str:
    return f"{test_name}::{metric}"


class AccuracyBaseline:
    def __init__(self, entries: dict | None = None, machine: dict | None = None, path: Path | None = None,
                 missing: bool = False):
        self.missing = missing
        self.entries = dict(entries or {})
        self.machine = machine or {}
        self.path = path

    @classmethod
    def load(cls, path) -> "AccuracyBaseline":
        path = Path(path)
        if not path.exists():  # the first night: everything is recorded as new
            return cls(path=path, missing=True)
        if path.is_dir():
            raise ValueError(f"--accuracy-baseline={path}: is a folder; give the JSON file "
                             "--save-accuracy-baseline wrote")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"accuracy baseline {path} is not JSON ({e})") from None
        except OSError as e:
            raise ValueError(f"accuracy baseline {path} cannot be read ({e.strerror or e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path} is not a posegate accuracy baseline (format {got!r}, expected {FORMAT!r}); "
                             "a pytest-benchmark file goes to --throughput-baseline")
        entries = data.get("entries", {})
        if not isinstance(entries, dict):
            raise ValueError(f"accuracy baseline {path}: 'entries' is a {type(entries).__name__}, not an object; "
                             "save it again with --save-accuracy-baseline")
        bad = [(k, why) for k, v in entries.items() if (why := entry_problem(k, v))]
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise ValueError(f"accuracy baseline {path}: malformed entries: {bad[0][0]!r} {bad[0][1]}{more}; "
                             "save it again with --save-accuracy-baseline")
        return cls(entries, data.get("machine"), path)

    def _by_test(self) -> dict[str, set[str]]:
        if getattr(self, "_index", (None, -1))[1] != len(self.entries):  # asked once per test: index it
            index: dict[str, set[str]] = {}
            for k in self.entries:
                test, metric = k.rsplit("::", 1)
                index.setdefault(test, set()).add(metric)
            self._index = (index, len(self.entries))
        return self._index[0]

    def tests(self) -> set[str]:
        """The test names (with their case ids) the entries belong to."""
        return set(self._by_test())

    def metrics_of(self, test_name: str) -> set[str]:
        return set(self._by_test().get(test_name, ()))

    def add(self, test_name: str, m: Measurement) -> None:
        self.entries[key(test_name, m.name)] = asdict(m)

    def save(self, path, machine: dict) -> None:
        """Written whole or not at all (posegate.storage.atomic); a value the loader would refuse is never written."""
        bad = [(k, why) for k, v in self.entries.items() if (why := entry_problem(k, v))]
        if bad:
            raise ValueError(f"accuracy baseline {path} not written: {bad[0][0]} {bad[0][1]}")
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_text(path, json.dumps({"format": FORMAT, "created": created, "machine": machine,
                                     "entries": dict(sorted(self.entries.items()))}, indent=1, default=str),
                   "accuracy baseline")

    def compare(self, test_name: str, m: Measurement, spec=None, precision=None) -> Verdict:
        k = key(test_name, m.name)
        base = self.entries.get(k)
        if base is None:
            return Verdict("new", k, m.value, message=f"{m.name} {m.value:.6g}: no baseline entry (new)")
        stale = [f"{f} {base.get(f)} -> {getattr(m, f)}" for f in ("dataset", "weights")
                 if base.get(f) and getattr(m, f) and base.get(f) != getattr(m, f)]
        if stale:
            return Verdict("stale", k, m.value, base["value"],
                           message=f"{m.name}: baseline is stale ({'; '.join(stale)}); not compared")
        b = float(base["value"])
        s = slack(m, b, spec, precision)
        allowed = b - s if m.direction == "min" else b + s
        delta = m.value - b
        if math.isnan(m.value) or margin(m.value, allowed, m.direction) < 0:
            return Verdict("regressed", k, m.value, b, allowed,
                           f"{m.name} regressed: {m.value:.6g} vs baseline {b:.6g} "
                           f"(change {delta:+.3g}, allowed {'>=' if m.direction == 'min' else '<='} {allowed:.6g})")
        beyond_slack = margin(m.value, b + (s if m.direction == "min" else -s), m.direction) > 0
        status = "improved" if beyond_slack and s > 0 else "ok"
        return Verdict(status, k, m.value, b, allowed, f"{m.name} {m.value:.6g} vs baseline {b:.6g} ({delta:+.3g})")
