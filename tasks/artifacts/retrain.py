"""The retrain run's artifacts: trigger and its evidence, the gate's decision with its
interval and per-slice table, champion before and after."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from tasks.artifacts import Artifact, artifact_key, fmt, lineage, md_table, publish

if TYPE_CHECKING:
    from tasks.gate import GateDecision
    from tasks.registry import LoadedModel


class TriggerLike(Protocol):
    """What the retrain's artifacts need of ``flows.retrain.RetrainTrigger``."""

    reason: str
    event: str | None
    event_id: str | None
    evidence: dict[str, Any]


def gate_rows(decision: GateDecision) -> list[dict[str, Any]]:
    """Per-slice table: both models' slice metric, the loss and whether it breaks the bound."""
    bound = decision.max_slice_regression
    return [{"column": s.column, "value": s.value, "rows": s.n, "champion": s.champion,
             "challenger": s.challenger, "loss": s.loss, "regression": s.loss > bound}
            for s in decision.slices]  # fmt: skip


def _evidence_lines(evidence: Mapping[str, Any], most: int = 12) -> list[str]:
    """The trigger's evidence: its plain values and the drifted features' names."""
    out = []
    for k, v in evidence.items():
        if k == "drifted_features" and isinstance(v, list):
            v = ", ".join(f.get("feature", "?") if isinstance(f, dict) else str(f) for f in v)
        if isinstance(v, str | int | float | bool) and v != "":
            out.append(f"  - {k}: {fmt(v)}")
    return out[:most]


def retrain_markdown(
    decision: GateDecision,
    trigger: TriggerLike,
    outcome: Mapping[str, Any],
    data_version: str | None,
) -> str:
    """Trigger and its evidence, the gate's decision with its interval, champion before/after."""
    low = decision.improvement_low
    interval = (f"{decision.confidence:.0%} paired-bootstrap lower bound {fmt(low)}"
                if low is not None else "no bootstrap interval")  # fmt: skip
    verdict = "REJECTED" if not decision.promote else "PROMOTED"
    if decision.promote and outcome.get("rollout"):
        verdict = "won the gate, handed to a rollout"
    lines = [
        f"# Retrain: challenger {verdict}",
        lineage(decision.challenger_tag, outcome.get("challenger_data_version")),
        f"Champion before: `{decision.champion_tag}` (data version `{data_version or '-'}`)"
        f" · after: `{outcome.get('champion_after')}`",
        "",
        f"**Trigger**: {trigger.reason} (event `{trigger.event or '-'}`, "
        f"id `{trigger.event_id or '-'}`)",
        *_evidence_lines(trigger.evidence),
        "",
        f"**Gate**: {decision.reason}",
        f"- {decision.metric}: champion {fmt(decision.champion_score)} · challenger "
        f"{fmt(decision.challenger_score)} on {decision.n_eval} held-out rows",
        f"- improvement {fmt(decision.improvement)} (margin {decision.margin}); {interval}",
        f"- slices: {len(decision.slices)} compared, {len(decision.slice_regressions)} beyond "
        f"the bound {decision.max_slice_regression}",
        f"- data: {outcome.get('strategy')}, {outcome.get('n_reference')} reference + "
        f"{outcome.get('n_feedback')} feedback rows, holdout {outcome.get('n_holdout')}",
    ]
    table = md_table(gate_rows(decision))
    return "\n".join(lines + (["", table] if table else []))


def retrain_artifacts(
    decision: GateDecision,
    trigger: TriggerLike,
    outcome: Mapping[str, Any],
    data_version: str | None = None,
) -> list[Artifact]:
    """Summary (markdown) and the gate's per-slice table."""
    name = (decision.champion_tag or "model").split(":")[0]
    key = artifact_key("retrain", name)
    out = [Artifact(key, "markdown", "retrain: trigger, gate decision, champion before/after",
                    retrain_markdown(decision, trigger, outcome, data_version))]  # fmt: skip
    rows = gate_rows(decision)
    if rows:
        desc = f"gate per-slice {decision.metric} ({lineage(decision.challenger_tag, None)})"
        out.append(Artifact(f"{key}-slices", "table", desc, rows))
    return out


def publish_retrain(
    *,
    decision: GateDecision,
    trigger: TriggerLike,
    outcome: Mapping[str, Any],
    champion: LoadedModel,
) -> list[str]:
    """The retrain run's artifacts (only inside a flow run)."""
    version = champion.metadata.get("data_version")
    return publish(retrain_artifacts(decision, trigger, outcome, version))
