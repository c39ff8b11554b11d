"""What each stage of a team's port costs in the task metric.

The chain swaps the team's stages in one after another: the reference pipeline; the torch reference on the
team's inputs (their preprocessing in); the team's device outputs through the reference decoder (their device
in too); the team's own results (their postprocessing in too). A stage's cost is the metric it loses against
the link before it, so the costs add up to the whole difference. A stage not given is left out of the chain.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from posegate.metrics import METRICS


@dataclass
class Costs:
    metric: str
    direction: str
    reference: float
    team: float | None
    links: list = field(default_factory=list)  # (stage, metric with it swapped in, cost)

    def text(self) -> str:
        unit = " " + self.metric
        parts = [f"{stage} cost {cost:.3f}{unit if i == 0 else ''}" for i, (stage, _, cost) in enumerate(self.links)]
        head = f"{self.metric} reference {self.reference:.4f}"
        if self.team is not None:
            head += f", team {self.team:.4f}"
        return head + (": " + ", ".join(parts) if parts else "")


def stage_costs(audit, reference_results: list, team_results: list | None) -> Costs:
    """``reference_results``: the reference pipeline's results on the audit's dataset; ``team_results``: the
    team's own (None when not given)."""
    metric = METRICS[audit.spec.metric]
    flow, dataset = audit.spec.flow, audit.dataset

    def score(results):
        return metric.evaluate(dataset, flow.finalize(list(results))).value

    # a loss is positive whichever way the metric points (AP falls, MPJPE rises)
    sign = 1.0 if metric.direction == "min" else -1.0
    reference = score(reference_results)
    costs = Costs(metric.name, metric.direction, reference, None)
    previous = reference
    chain = []
    if audit.files.get("inputs") is not None:
        chain.append(("inputs", audit.decoded["inputs"] if "inputs" in audit.decoded
                      else audit.decode_on_team_inputs()))
    if audit.files.get("outputs") is not None:
        chain.append(("outputs", audit.decoded["outputs"] if "outputs" in audit.decoded
                      else audit.decode_team_outputs()))
    if team_results is not None:
        chain.append(("results", team_results))
    for stage, results in chain:
        value = score(results)
        costs.links.append((stage, value, sign * (previous - value)))
        previous = value
    if team_results is not None:
        costs.team = previous
    return costs
