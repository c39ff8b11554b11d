"""The session summary: one row per (model, backend, precision, batch, shape).

Tests of a narrower case (a model's weights, a backend's conversion) count for every row they cover,
so each row reads as the whole pipeline of one configuration.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from posegate.cases import STAGES

KEY = ("model", "backend", "precision", "batch", "shape")
# When several tests fill one cell, the worst outcome shows.
SEVERITY = ("failed", "xpassed", "passed", "xfailed", "skipped")
SYMBOL = {"passed": "ok", "failed": "FAIL", "skipped": "skip", "xfailed": "xfail", "xpassed": "XPASS", None: "-"}


@dataclass
class TestOutcome:
    nodeid: str
    stage: str | None
    case: dict
    outcome: str = "passed"
    skip_reason: str = ""
    results: list = field(default_factory=list)


def merge(a: str | None, b: str) -> str:
    return b if a is None or SEVERITY.index(b) < SEVERITY.index(a) else a


class Summary:
    def __init__(self):
        self.tests: dict[str, TestOutcome] = {}

    def update(self, nodeid, when, outcome, wasxfail, longrepr, user_properties):
        props = dict(user_properties)
        t = self.tests.setdefault(nodeid, TestOutcome(nodeid, props.get("posegate_stage"), props.get("posegate_case") or {}))
        if wasxfail is not None:
            outcome = "xfailed" if outcome == "skipped" else "xpassed"
        if outcome == "skipped" and isinstance(longrepr, tuple):
            t.skip_reason = str(longrepr[2]).removeprefix("Skipped: ")
        if when == "call" or outcome != "passed":
            t.outcome = outcome if when == "call" or t.outcome == "passed" else t.outcome
        t.results = [v for k, v in user_properties if k == "posegate_result"] or t.results

    def rows(self) -> list[dict]:
        full = {tuple(t.case.get(k) for k in KEY) for t in self.tests.values()
                if all(t.case.get(k) is not None for k in KEY)}
        rows = {k: {**dict(zip(KEY, k)), "stages": {}, "results": [], "datasets": set(), "weights": set()} for k in sorted(full, key=str)}
        for t in self.tests.values():
            if not t.case or t.stage is None:
                continue
            for key, row in rows.items():
                if all(t.case.get(k) in (None, v) for k, v in zip(KEY, key)):
                    row["stages"][t.stage] = merge(row["stages"].get(t.stage), t.outcome)
                    if all(t.case.get(k) is not None for k in KEY):
                        row["results"] += t.results
                        row["datasets"].update(r["dataset"] for r in t.results if r.get("dataset"))
                        row["weights"].update(r["weights"] for r in t.results if r.get("weights"))
        out = []
        for row in rows.values():
            row["datasets"] = sorted(row["datasets"])
            row["weights"] = sorted(row["weights"])
            out.append(row)
        return out

    def write_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"rows": self.rows(), "tests": [t.__dict__ for t in self.tests.values()]},
                                         indent=1, default=str))

    def lines(self) -> list[str]:
        rows = self.rows()
        if not rows:
            return []
        head = ["model", "backend", "prec", "bs", "shape", *[s[:7] for s in STAGES], "metric", "dataset", "weights"]
        table = [head]
        for r in rows:
            metrics = [format_result(x) for x in r["results"] if "metric" in x or "throughput" in x] or ["-"]
            for i, m in enumerate(metrics):
                first = i == 0
                table.append([r["model"] if first else "", r["backend"] if first else "", r["precision"] if first else "",
                              str(r["batch"]) if first else "", r["shape"] if first else "",
                              *[(SYMBOL[r["stages"].get(s)] if first else "") for s in STAGES], m,
                              ",".join(r["datasets"]) if first else "", ",".join(r["weights"]) if first else ""])
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]


def format_result(r: dict) -> str:
    if "throughput" in r:
        return f"{r['throughput']:.1f} {r.get('unit', 'samples/s')} ({r.get('scope', '?')})"
    text = f"{r['metric']} {r['value']:.4f}"
    if r.get("threshold") is not None:
        op = ">=" if r.get("direction", "min") == "min" else "<="
        text += f" {op}{r['threshold']:.4g} margin {r['margin']:+.4f}"
    if r.get("dataset"):
        text += f" [{r['dataset']}]"
    return text
