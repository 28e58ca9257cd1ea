"""What a rollout look leaves on record: the event payload (the statistics as evidence), the
per-arm table and the markdown summary of the Prefect artifact, and which event a decision
emits."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from tasks.rollout.decision import RolloutDecision
    from tasks.rollout.evaluate import Observation
    from tasks.rollout.experiment import Experiment

EventKind = Literal["started", "advanced", "promoted", "rolled_back"]
EVENT_OF_ACTION: dict[str, EventKind] = {
    "advance": "advanced",
    "promote": "promoted",
    "rollback": "rolled_back",
    "no_decision": "rolled_back",
    "abort": "rolled_back",
}  # fmt: skip  (``continue`` emits nothing: the artifact records every look)


class Emitter(Protocol):
    """``tasks.events`` or a test's fake."""

    def emit_rollout(self, kind: EventKind, model_name: str, evidence: dict) -> str | None: ...


def _plain(value: Any) -> Any:
    """Non-finite floats as ``None`` (JSON has no NaN), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def experiment_record(experiment: Experiment) -> dict[str, Any]:
    """The experiment's identity and where it stands (the ``started`` event's payload)."""
    keep = {"id", "model", "mode", "champion", "challenger", "share", "started_at", "looks"}
    return {
        **experiment.model_dump(mode="json", include=keep),
        "config": experiment.config.model_dump(mode="json"),
    }


@dataclass(frozen=True)
class Look:
    """One look of the rollout flow: the experiment before it, what it saw and did."""

    experiment: Experiment
    observation: Observation
    decision: RolloutDecision
    champion_after: str

    @property
    def event(self) -> EventKind | None:
        return EVENT_OF_ACTION.get(self.decision.action)

    def payload(self) -> dict[str, Any]:
        d, obs = self.decision, self.observation
        return _plain({
            "reason": d.action, "action": d.action, "explanation": d.reason,
            "experiment": experiment_record(self.experiment),
            "share_before": self.experiment.share, "share_after": d.share,
            "champion_after": self.champion_after,
            "evidence": asdict(d.evidence),
            "guardrails": {"judged": d.guardrails.judged, "broken": list(d.guardrails.broken),
                           "observed": asdict(obs.guardrails)},
            "arms": [asdict(a) for a in obs.arms],
        })  # fmt: skip

    def table(self) -> list[dict[str, Any]]:
        """The per-arm table: each arm's counts, loss, error rate and latency; the challenger's
        row carries the always-valid interval of the difference in mean loss."""
        e, exp = self.decision.evidence, self.experiment
        shares = {"champion": 1 - exp.share, "challenger": exp.share}
        if exp.mode == "shadow":
            shares = {"champion": 1.0, "challenger": 0.0}
        rows = []
        for arm in self.observation.arms:
            row = {**asdict(arm), "traffic_share": shares[arm.arm]}
            ours = arm.arm == "challenger"
            row |= {
                "difference": e.difference if ours else None,
                "lower": e.lower if ours else None, "upper": e.upper if ours else None,
                "p_value": e.p_value if ours else None,
            }  # fmt: skip
            rows.append(_plain(row))
        return rows

    def markdown(self) -> str:
        d, e, exp = self.decision, self.decision.evidence, self.experiment
        fmt = lambda v: "-" if v is None else f"{v:+.5f}"  # noqa: E731
        lines = [
            f"# Rollout {exp.id} of `{exp.model}` ({exp.mode})",
            "",
            f"**{d.action}**: {d.reason}",
            "",
            f"champion `{exp.champion}` vs challenger `{exp.challenger}`; challenger share "
            f"{exp.share:.0%} -> {d.share:.0%}; champion after: `{self.champion_after}`",
            "",
            f"{e.design} always-valid test on mean {exp.config.metric} (challenger - champion): "
            f"{e.difference:+.5f}, {1 - e.alpha:.0%} confidence sequence "
            f"[{fmt(e.lower)}, {fmt(e.upper)}], p = {e.p_value:.4g}, margin {e.margin}, "
            f"alpha {e.alpha}; verdict {e.direction}",
            "",
            "| arm | model | requests | labelled | mean loss | error rate | p99 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in self.observation.arms:
            loss = "-" if a.mean_loss is None else f"{a.mean_loss:.5f}"
            p99 = "-" if a.p99_latency_ms is None else f"{a.p99_latency_ms:.2f}"
            lines.append(f"| {a.arm} | `{a.model_tag}` | {a.requests} | {a.labelled} | {loss} | "
                         f"{a.error_rate:.4f} | {p99} |")  # fmt: skip
        broken = "; ".join(d.guardrails.broken) or "none"
        lines += ["", f"guardrails judged: {d.guardrails.judged}; broken: {broken}"]
        return "\n".join(lines) + "\n"


def artifact_key(model_name: str) -> str:
    """The stable artifact key of a model's rollout (Prefect keys: lowercase, dashes)."""
    return f"rollout-{model_name}".lower().replace("_", "-")


def emit_look(look: Look, emitter: Emitter | None = None) -> dict[str, Any]:
    """The look's record, with the id of the event it emitted (``continue`` emits none)."""
    record = look.payload()
    if look.event is not None:
        emitter = emitter or default_emitter()
        record["event_id"] = emitter.emit_rollout(look.event, look.experiment.model, record)
    return record


def default_emitter() -> Emitter:
    """``tasks.events`` (the only ``prefect.events`` importer)."""
    from tasks import events

    return events  # type: ignore[return-value]


def publish_artifacts(look: Look) -> None:
    """The summary and the per-arm table in the Prefect UI under stable keys, a new version
    every look (only inside a flow run)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    key = artifact_key(look.experiment.model)
    create_markdown_artifact(look.markdown(), key=key, description="driftloop rollout look")
    create_table_artifact(look.table(), key=f"{key}-arms", description="rollout: per arm")
