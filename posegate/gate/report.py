"""The session summary: one row per (model, backend, precision, batch, shape).

Tests of a narrower case (a model's weights, a backend's conversion) count for every row they cover,
so each row reads as the whole pipeline of one configuration.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from posegate.cases.generate import STAGES
from posegate.metrics.parity import describe_nonfinite, nonfinite_text
from posegate.storage.atomic import write_text

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
    message: str = ""  # first line of a failure
    results: list = field(default_factory=list)


def merge(a: str | None, b: str) -> str:
    return b if a is None or SEVERITY.index(b) < SEVERITY.index(a) else a


class Summary:
    def __init__(self):
        self.tests: dict[str, TestOutcome] = {}

    def update(self, nodeid, when, outcome, wasxfail, longrepr, user_properties):
        props = dict(user_properties)
        t = self.tests.setdefault(
            nodeid, TestOutcome(nodeid, props.get("posegate_stage"), props.get("posegate_case") or {}))
        if wasxfail is not None:
            outcome = "xfailed" if outcome == "skipped" else "xpassed"
        if outcome == "failed" and longrepr is not None and not t.message:
            crash = getattr(longrepr, "reprcrash", None)
            text = (crash.message if crash else str(longrepr)).strip()
            t.message = text.splitlines()[0][:400] if str(longrepr).strip() else "failed"
        if outcome == "skipped" and isinstance(longrepr, tuple):
            t.skip_reason = str(longrepr[2]).removeprefix("Skipped: ")
        if when == "call" or outcome != "passed":
            t.outcome = outcome if when == "call" or t.outcome == "passed" else t.outcome
        t.results = [v for k, v in user_properties if k == "posegate_result"] or t.results

    def rows(self) -> list[dict]:
        full = {tuple(t.case.get(k) for k in KEY) for t in self.tests.values()
                if all(t.case.get(k) is not None for k in KEY)}
        rows = {k: {**dict(zip(KEY, k)), "stages": {}, "results": [], "datasets": set(), "weights": set()}
                for k in sorted(full, key=str)}
        own = {k: {} for k in rows}  # outcomes of the tests of exactly this configuration
        for t in self.tests.values():
            if not t.case or t.stage is None:
                continue
            for key, row in rows.items():
                if all(t.case.get(k) in (None, v) for k, v in zip(KEY, key)):
                    row["stages"][t.stage] = merge(row["stages"].get(t.stage), t.outcome)
                    if all(t.case.get(k) is not None for k in KEY):
                        own[key][t.stage] = merge(own[key].get(t.stage), t.outcome)
                        row["results"] += t.results
                        row["datasets"].update(r["dataset"] for r in t.results if r.get("dataset"))
                        row["weights"].update(r["weights"] for r in t.results if r.get("weights"))
        out = []
        for key, row in rows.items():
            # A model-wide pass (the decoder oracle) is not this backend's result: where the row's own tests
            # of a stage ran, they decide, and a wider test only shows through when it failed.
            for stage, mine in own[key].items():
                wide = row["stages"][stage]
                row["stages"][stage] = merge(mine, wide) if wide in ("failed", "xpassed") else mine
            row["datasets"] = sorted(row["datasets"])
            row["weights"] = sorted(row["weights"])
            out.append(row)
        return out

    def json_text(self) -> str:
        return json.dumps({"rows": self.rows(), "tests": [t.__dict__ for t in self.tests.values()]},
                          indent=1, default=str)

    def write_json(self, path: Path) -> None:
        write_text(path, self.json_text(), "posegate report")

    def lines(self) -> list[str]:
        rows = self.rows()
        if not rows:
            return []
        head = ["model", "backend", "prec", "bs", "shape", *[s[:7] for s in STAGES], "metric", "dataset", "weights"]
        table = [head]
        for r in rows:
            metrics = [format_result(x) for x in r["results"] if _shown(x)] or ["-"]
            for i, m in enumerate(metrics):
                first = i == 0
                table.append([r["model"] if first else "", r["backend"] if first else "",
                              r["precision"] if first else "", str(r["batch"]) if first else "",
                              r["shape"] if first else "",
                              *[(SYMBOL[r["stages"].get(s)] if first else "") for s in STAGES], m,
                              ",".join(r["datasets"]) if first else "", ",".join(r["weights"]) if first else ""])
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]


def _shown(r: dict) -> bool:
    return any(k in r for k in ("metric", "throughput", "parity", "nonfinite", "localization", "advice", "port"))


def format_parity(parity: dict) -> str:
    """The worst output's tensor error against its tolerance, and non-finite values by output."""
    worst, text = None, []
    for name, e in parity.items():
        if e.get("nan") or e.get("inf") or e.get("ref_nan") or e.get("ref_inf"):
            text.append(f"{name}: " + nonfinite_text(e.get("nan", 0), e.get("inf", 0), e.get("size", 0),
                                                       e.get("ref_nan", 0), e.get("ref_inf", 0)))
        tol = (e.get("tolerance") or {}).get("max_rel")
        ratio = e["max_rel"] / tol if tol else 0.0
        if worst is None or ratio > worst[0]:
            worst = (ratio, name, e["max_rel"], tol)
    if worst is not None:
        ratio, name, err, tol = worst
        verdict = "FAILS" if ratio > 1 else "within"
        tail = f" tolerance {tol:.3g}" if tol else " (no max_rel bound)"
        text.insert(0, f"tensors: max_rel {err:.3g} in {name} {verdict}{tail}")
    return "; ".join(text)


def format_localization(loc: dict) -> str:
    if "unavailable" in loc:
        return f"not localised: {loc['unavailable']}"
    first = loc.get("first")
    if not first:
        return f"localized: no intermediate beyond tolerance ({loc.get('compared', 0)} compared)"
    return (f"first divergent: {first['node']} ({first['op_type']}, module {first['module'] or '-'}): "
            f"error entering {first['entering']:.3g}, leaving {first['leaving']:.3g} x its range "
            f"({first['verdict']})")


def format_result(r: dict) -> str:
    if "port" in r and "metric" not in r:  # a port audit stage (posegate.port): its one-line verdict
        return r["port"]["summary"]
    if "port" in r:
        return r["port"]["summary"] + "; " + format_result({k: v for k, v in r.items() if k != "port"})
    if "parity" in r and "metric" not in r:
        return format_parity(r["parity"]) + format_baseline(r)
    if "localization" in r:
        return format_localization(r["localization"])
    if "advice" in r:
        a = r["advice"]
        if "unavailable" in a:
            return f"no precision advice: {a['unavailable']}"
        worst = lambda d: max(d.values()) if d else float("nan")  # noqa: E731
        return (f"advice: keep {len(a['keep'])} node(s) fp32: max_rel {worst(a['before']):.3g} -> "
                f"{worst(a['after']):.3g} "
                f"(target {a['target']:.3g}{', met' if a['met'] else ', not met'}) [{a['files'].get('advice', '')}]")
    if "nonfinite" in r and "metric" not in r:
        return "outputs not finite over the dataset: " + describe_nonfinite(r["nonfinite"])
    if "throughput" in r:
        text = f"{r['throughput']:.1f} {r.get('unit', 'samples/s')} ({r.get('scope', '?')})"
        if r.get("valid") is False:
            text += " INVALID"
    else:
        text = f"{r['metric']} {r['value']:.4f}"
        if r.get("threshold") is not None:
            op = ">=" if r.get("direction", "min") == "min" else "<="
            text += f" {op}{r['threshold']:.4g} margin {r['margin']:+.4f}"
        if r.get("reference") is not None and r.get("measured") is not None:  # the task metric's change itself
            name = r["metric"].strip("|").split("-")[0]
            text += f" ({name} {r['reference']:.4f} -> {r['measured']:.4f})"
        if r.get("dataset"):
            text += f" [{r['dataset']}]"
    return text + format_baseline(r)


def format_baseline(r: dict) -> str:
    """The comparison with the baseline of a metric or throughput result ('' without a baseline)."""
    if not r.get("baseline"):
        return ""
    v = r["baseline"][0]
    if v.get("baseline") is None:
        return f" baseline: {v['status']}"
    delta = v["value"] - v["baseline"]
    if "throughput" in r:
        return f" baseline {v['baseline']:.1f} ({delta / v['baseline']:+.1%}) {v['status']}"
    return f" baseline {v['baseline']:.4f} ({delta:+.4f}) {v['status']}"


def markdown(summary: Summary, title: str = "posegate report", machine: dict | None = None, base=None) -> str:
    """The same rows as the terminal table, for a CI artifact or a pull-request comment."""
    rows = summary.rows()
    out = [f"# {title}", ""]
    if machine:
        out += [f"Machine: {machine.get('cpu')} x{machine.get('cores')}, accelerator {machine.get('accelerator')} "
                f"(fingerprint `{machine.get('id')}`)", ""]
    counts = {}
    for t in summary.tests.values():
        counts[t.outcome] = counts.get(t.outcome, 0) + 1
    out += [", ".join(f"{n} {k}" for k, n in sorted(counts.items())), ""]
    head = ["model", "backend", "precision", "batch", "shape", *STAGES, "metrics", "throughput"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        metrics = [format_result(x) for x in r["results"] if _shown(x) and "throughput" not in x]
        speed = [format_result(x) for x in r["results"] if "throughput" in x]
        links = [f"[{Path(p).name}]({os.path.relpath(p, base) if base else p})"
                 for x in r["results"] for p in x.get("visuals", [])]
        plots = [x["localization"]["plot"] for x in r["results"] if (x.get("localization") or {}).get("plot")]
        links += [f"[error along the graph]({os.path.relpath(p, base) if base else p})" for p in plots]
        metrics = [m.replace("|", "\\|") for m in metrics]
        out.append("| " + " | ".join([r["model"], r["backend"], r["precision"], str(r["batch"]), r["shape"],
                                       *[SYMBOL[r["stages"].get(s)] for s in STAGES],
                                       "<br>".join(metrics + links) or "-", "<br>".join(speed) or "-"]) + " |")
    failed = [t for t in summary.tests.values() if t.outcome == "failed"]
    if failed:
        out += ["", "## Failures", ""]
        out += [f"- `{t.nodeid.split('::')[-1]}`: {t.message.replace('|', '/')}" for t in failed]
    regressions = [(t, v) for t in summary.tests.values() for r in t.results for v in r.get("baseline") or []
                   if v.get("status") in ("regressed", "stale")]
    if regressions:
        out += ["", "## Against the baseline", ""]
        out += [f"- `{t.nodeid.split('::')[-1]}` {v['status']}: {v.get('message', '')}" for t, v in regressions]
    skipped = {}
    for t in summary.tests.values():
        if t.outcome == "skipped":
            skipped.setdefault(t.skip_reason, []).append(t.nodeid.split("::")[-1])
    if skipped:
        out += ["", "## Skipped, by reason", ""]
        out += [f"- {len(ids)} x {reason}" for reason, ids in sorted(skipped.items(), key=lambda kv: -len(kv[1]))]
    return "\n".join(out) + "\n"
