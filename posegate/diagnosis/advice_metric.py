"""Precision advice proven on the task metric: the smallest set of layers kept in fp32 such that the
reduced-precision model's metric stays within the spec's ``metric_parity`` of the reference.

The tensor search (posegate.diagnosis.advice) keeps the top 1, 2, 4, ... ranked layers until the *tensors* meet a
tolerance; for a tight target that is every computing layer. Here each candidate is a full evaluation of
the metric instead, and the search is the accuracy-aware one NNCF's accuracy control runs: greedy on the
ranking (doubling prefixes until the bound is met), the shortest prefix that meets it (bisection), then
what is not needed removed: all but the last layer added at once, halving the set on failure, least ranked
first (delta debugging), while the bound still holds. It stops when
the bound is met, when even the whole ranking does not meet it (said so), or at the evaluation budget.
Every candidate's result is memoised by its layer set, so the same inputs give the same advice.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from posegate.backends.openvino.advice import ov_keep_fp32
from posegate.diagnosis import advice

MAX_EVALUATIONS = 20


@dataclass
class MetricAdvice:
    metric: str
    bound: float  # |metric - reference| allowed (the spec's metric_parity for the precision)
    reference: float  # the reference backend's metric on the same data
    keep: list[str] = field(default_factory=list)  # ONNX node names kept in fp32
    modules: list[str | None] = field(default_factory=list)  # the torch module of each kept layer group
    met: bool = False
    verdict: str = ""
    evaluations: int = 0
    tried: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # "fp32", "fp16", "advised", "tensor-advice": metric, runs/s, layers
    speedup_kept: float | None = None  # (advised - fp32) / (fp16 - fp32) in runs/s
    files: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        rows = ["| setting | layers in fp32 | " + self.metric + " | runs/s |", "|---|---|---|---|"]
        for name, s in self.settings.items():
            rate = "-" if s.get("rate") is None else f"{s['rate']:.2f}"
            rows.append(f"| {name} | {s.get('layers', '-')} | {s['metric']:.4f} | {rate} |")
        return "\n".join(rows)

    def describe(self) -> str:
        kept = "" if self.speedup_kept is None else f", keeps {self.speedup_kept:.0%} of fp16's speedup"
        return (f"{self.verdict}: keep {len(self.keep)} node(s) in fp32 ({self.metric} within {self.bound:g} of "
                f"{self.reference:.4f}), {self.evaluations} full evaluations{kept}")


def search(ranked: list[dict], evaluate: Callable[[list[str]], float], reference: float, bound: float,
           max_evaluations: int = MAX_EVALUATIONS) -> tuple[list[int], list[dict], bool, int]:
    """(indices into ``ranked`` to keep, the evaluations tried, met, how many).

    ``evaluate(nodes)`` is one full evaluation of the metric with ``nodes`` kept in fp32."""
    memo: dict[tuple, float] = {}
    tried: list[dict] = []

    def meets(groups: list[int], step: str) -> bool:
        key = tuple(sorted(groups))
        if key not in memo:
            if len(memo) >= max_evaluations:
                return False  # out of budget: counted as not met, and said so by the caller
            nodes = list(dict.fromkeys(n for g in key for n in ranked[g]["nodes"]))
            memo[key] = evaluate(nodes)
            tried.append({"step": step, "layers": len(key), "nodes": len(nodes), "metric": memo[key],
                          "met": abs(memo[key] - reference) <= bound})
        return abs(memo[key] - reference) <= bound

    if meets([], "none kept"):
        return [], tried, True, len(memo)
    n = len(ranked)
    sizes = sorted({*(k for k in (1 << i for i in range(n.bit_length())) if k < n), n})
    low, high = 0, None  # the longest prefix known to fail, the shortest known to meet
    for k in sizes:
        if meets(list(range(k)), "greedy"):
            high = k
            break
        low = k
    if high is None:
        return list(range(n)), tried, False, len(memo)
    while high - low > 1:  # the shortest meeting prefix
        mid = (low + high) // 2
        if meets(list(range(mid)), "shortest prefix"):
            high = mid
        else:
            low = mid
    keep = list(range(high))
    # remove what is not needed, in chunks that halve on failure (delta debugging): all but the last added
    # first (it was needed: the prefix without it failed), least ranked first
    chunks = [keep[:-1][::-1]] if len(keep) > 1 else []
    while chunks and len(memo) < max_evaluations:
        chunk = chunks.pop(0)
        trial = [k for k in keep if k not in chunk]
        if meets(trial, "remove"):
            keep = trial
        elif len(chunk) > 1:
            chunks[:0] = [chunk[:len(chunk) // 2], chunk[len(chunk) // 2:]]
    return keep, tried, True, len(memo)


def advise(source: Path, ranked: list[dict], metric_of: Callable[[Path, str], float],
           rate_of: Callable[[Path, str], float], reference: float, bound: float, metric: str, folder: Path,
           hint: str, tensor_keep: list[str] | None = None, max_evaluations: int = MAX_EVALUATIONS) -> MetricAdvice:
    """The search on OpenVINO IRs of ``source`` (ONNX): ``metric_of(xml, hint)`` is one full evaluation,
    ``rate_of(xml, hint)`` its throughput in runs/s. The advised IR is rebuilt and measured beside fp32 and
    fp16 (and the tensor search's advice, when given)."""
    folder.mkdir(parents=True, exist_ok=True)
    result = MetricAdvice(metric, bound, reference)
    count = {"n": 0}

    def evaluate(nodes: list[str]) -> float:
        count["n"] += 1
        xml = ov_keep_fp32(source, nodes, folder / f"candidate{count['n']}.xml", compress=not nodes)
        return metric_of(xml, hint)
    groups, result.tried, result.met, result.evaluations = search(ranked, evaluate, reference, bound, max_evaluations)
    result.keep = list(dict.fromkeys(n for g in groups for n in ranked[g]["nodes"]))
    result.modules = [ranked[g]["module"] for g in groups]
    if result.met:
        result.verdict = "meets the bound"
    elif result.evaluations >= max_evaluations:
        result.verdict = f"no set found within {max_evaluations} evaluations"
    else:
        result.verdict = "no set of the ranked layers meets the bound, not even all of them"
    fp32 = ov_keep_fp32(source, [], folder / "fp32.xml")
    fp16 = ov_keep_fp32(source, [], folder / "fp16.xml", compress=True)
    advised = ov_keep_fp32(source, result.keep, folder / "advised.xml", compress=not result.keep)
    result.settings = {"fp32": {"layers": "all", "metric": metric_of(fp32, "f32"), "rate": rate_of(fp32, "f32")},
                       "fp16": {"layers": 0, "metric": metric_of(fp16, hint), "rate": rate_of(fp16, hint)},
                       "advised (metric)": {"layers": len(result.keep), "metric": metric_of(advised, hint),
                                            "rate": rate_of(advised, hint)}}
    if tensor_keep is not None:
        xml = ov_keep_fp32(source, tensor_keep, folder / "tensor-advice.xml", compress=not tensor_keep)
        result.settings["advised (tensors)"] = {"layers": len(tensor_keep), "metric": metric_of(xml, hint),
                                                "rate": rate_of(xml, hint)}
    r32, r16, ra = (result.settings[k]["rate"] for k in ("fp32", "fp16", "advised (metric)"))
    if r16 - r32 > 0:
        result.speedup_kept = (ra - r32) / (r16 - r32)
    modules = {n: ranked[g]["module"] for g in groups for n in ranked[g]["nodes"]}
    result.files = advice.write(result.keep, folder, ir=str(advised), modules=modules)
    (folder / "layers.json").write_text(json.dumps(
        [{"node": n, "module": ranked[g]["module"]} for g in groups for n in ranked[g]["nodes"]], indent=1))
    result.files["layers"] = str(folder / "layers.json")
    (folder / "metric_advice.json").write_text(json.dumps(result.as_dict(), indent=1, default=str))
    result.files["metric_advice"] = str(folder / "metric_advice.json")
    return result
