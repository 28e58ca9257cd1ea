"""The work of a retrain: assemble training data from the champion's reference snapshot and
recent labeled feedback, hold out the most recent labeled rows for the gate, and act on the
gate's decision.

Strategies: ``full_refit`` trains on reference + feedback; ``sliding_window`` keeps only the
newest ``window_rows`` of that; ``warm_start`` uses the same window and continues from the
champion's trees (LightGBM ``init_model``). The holdout is never in any training file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import polars as pl

from schemas.base import DatasetSpec
from tasks.io import atomic_write
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.gate import GateDecision
    from tasks.rollout.config import RolloutConfig
    from tasks.rollout.experiment import Experiment

Strategy = Literal["full_refit", "sliding_window", "warm_start"]
_ORDER = "_order"


class RetrainDataError(ValueError):
    """Not enough (or unusable) labeled data to retrain and gate honestly."""


@dataclass(frozen=True)
class LabeledSplit:
    """Recent labeled rows (contract columns, target as raw values), oldest first."""

    train: pl.DataFrame
    holdout: pl.DataFrame
    first_ts: str | None
    last_ts: str | None


@dataclass(frozen=True)
class TrainingSet:
    frame: pl.DataFrame
    n_reference: int
    n_feedback: int
    strategy: str


def _target_values(labels: pl.Series, dataset: DatasetSpec) -> pl.Series:
    """Feedback labels (1/0, a class index or a number) mapped back to the target column's raw
    values."""
    info = dataset.columns[dataset.target]
    if dataset.task == "multiclass":  # the feedback log keeps a class as its index
        index = labels.cast(pl.Int64, strict=False)
        if index.null_count() or not index.is_between(0, len(dataset.classes) - 1).all():
            raise RetrainDataError(
                f"multiclass feedback labels must be class indices 0..{len(dataset.classes) - 1} "
                f"(target {dataset.target!r})"
            )
        values = [dataset.classes[i] for i in index.to_list()]
        return pl.Series(labels.name, values).cast(info.dtype)
    if dataset.task == "regression" or info.categories is None:
        return labels.cast(info.dtype)
    positive = str(dataset.positive_class)
    others = [c for c in info.categories if c != positive]
    if positive not in info.categories or len(others) != 1:
        raise RetrainDataError(
            f"target {dataset.target!r}: cannot map 1/0 labels onto {info.categories} "
            f"with positive class {positive!r}"
        )
    if not labels.is_in([0.0, 1.0]).all():
        raise RetrainDataError(f"binary feedback labels must be 0 or 1 (target {dataset.target!r})")
    return pl.Series(labels.name, [positive if v == 1.0 else others[0] for v in labels.to_list()])


def labeled_feedback(
    joined: pl.DataFrame, dataset: DatasetSpec, *, since: datetime | None = None
) -> pl.DataFrame:
    """Predictions joined with labels (``tasks.predlog.join_feedback``) as contract rows,
    oldest first; one row per entity (its latest) when the dataset has an id column."""
    inputs = [c for c in dataset.column_names if c != dataset.target]
    missing = [c for c in inputs if c not in joined.columns]
    if missing and joined.height:
        raise RetrainDataError(f"prediction log lacks contract columns: {', '.join(missing)}")
    frame = joined if since is None else joined.filter(pl.col("ts") >= since)
    frame = frame.sort("ts", maintain_order=True)
    if dataset.id_column and frame.height:
        frame = frame.unique(dataset.id_column, keep="last", maintain_order=True)
    if not frame.height:
        return pl.DataFrame(schema={c: dataset.columns[c].dtype for c in dataset.column_names})
    target = _target_values(frame["label"], dataset).alias(dataset.target)
    out = frame.with_columns(target).select(dataset.column_names)
    return out.with_columns(pl.Series("_ts", frame["ts"]))


def split_holdout(labeled: pl.DataFrame, *, fraction: float, min_rows: int) -> LabeledSplit:
    """The newest ``fraction`` of labeled rows (at least ``min_rows``) go to the gate."""
    n = labeled.height
    n_hold = max(min_rows, round(n * fraction))
    if n < n_hold:
        raise RetrainDataError(
            f"only {n} labeled feedback rows: the gate needs at least {min_rows} held out"
        )
    ts = labeled["_ts"] if "_ts" in labeled.columns else None
    first = ts.min().isoformat() if ts is not None and n else None
    last = ts.max().isoformat() if ts is not None and n else None
    plain = labeled.drop("_ts", strict=False)
    return LabeledSplit(plain.head(n - n_hold), plain.tail(n_hold), first, last)


def reference_rows(snapshot: pl.DataFrame, dataset: DatasetSpec) -> pl.DataFrame:
    """The champion's training snapshot as contract rows, oldest first."""
    frame = snapshot.select(dataset.column_names)
    if dataset.event_time:
        frame = frame.sort(dataset.event_time, maintain_order=True)
    return frame


def assemble(
    reference: pl.DataFrame,
    feedback: pl.DataFrame,
    holdout: pl.DataFrame,
    dataset: DatasetSpec,
    *,
    strategy: Strategy,
    window_rows: int | None,
) -> TrainingSet:
    """Reference + feedback (newest last); entities seen in feedback or holdout lose their
    older reference rows (newer label wins, and the holdout's entities stay unseen)."""
    if dataset.id_column:
        seen = pl.concat([feedback[dataset.id_column], holdout[dataset.id_column]])
        reference = reference.filter(~pl.col(dataset.id_column).is_in(seen.implode()))
    feedback = feedback.select(reference.columns).cast(dict(reference.schema))
    frame = pl.concat([reference, feedback], how="vertical")
    n_ref, n_fb = reference.height, feedback.height
    if strategy in ("sliding_window", "warm_start") and window_rows and frame.height > window_rows:
        frame = frame.tail(window_rows)
        n_fb = min(n_fb, window_rows)
        n_ref = frame.height - n_fb
    return TrainingSet(frame, n_ref, n_fb, strategy)


def write_training_file(frame: pl.DataFrame, settings: Settings, stamp: str) -> Path:
    """The assembled rows as one Parquet file the train flow ingests."""
    path = settings.retrain_dir / f"{stamp}.parquet"
    atomic_write(path, frame.write_parquet)
    return path


def run_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _handed_over(decision: GateDecision, rollout: RolloutConfig | None) -> bool:
    return decision.promote and rollout is not None and rollout.mode != "direct"


def apply_decision(
    decision: GateDecision, name: str, settings: Settings, rollout: RolloutConfig | None = None
) -> str | None:
    """Promote the challenger (``direct``: the service swaps by itself), hand a winner to a
    shadow or canary rollout (the rollout flow promotes it, or not), or clear a loser.

    Returns the champion tag afterwards.
    """
    from tasks import registry

    if _handed_over(decision, rollout):
        from tasks.rollout import experiment

        reason = f"gate: {decision.reason}"
        experiment.start(name, decision.challenger_tag, rollout, reason=reason, settings=settings)
        return registry.get_alias(name, registry.CHAMPION, settings)
    if decision.promote:
        return registry.promote(
            name, decision.challenger_tag, reason=f"gate: {decision.reason}", settings=settings
        )
    if registry.get_alias(name, registry.CHALLENGER, settings) == decision.challenger_tag:
        registry.set_alias(
            name,
            registry.CHALLENGER,
            None,
            reason=f"rejected: {decision.reason}",
            settings=settings,
        )
    return registry.get_alias(name, registry.CHAMPION, settings)


# --- the outcome -----------------------------------------------------------------------------


class GateEmitter(Protocol):
    """What a retrain needs of ``tasks.events`` (a test passes a fake with the same API)."""

    def emit_model_promoted(self, model_name: str, evidence: dict[str, Any]) -> str | None: ...
    def emit_model_rejected(self, model_name: str, evidence: dict[str, Any]) -> str | None: ...
    def emit_rollout(self, kind: str, model_name: str, evidence: dict) -> str | None: ...


def gate_evidence(
    decision: GateDecision,
    *,
    trigger: dict[str, Any],
    data: TrainingSet,
    recent: LabeledSplit,
    champion_after: str | None,
    challenger_data_version: str | None,
) -> dict[str, Any]:
    """The promoted/rejected event's payload (and the flow's result): the gate's summary, why
    the retrain ran, and what it trained and judged on."""
    return {
        **decision.summary(), "trigger": trigger, "strategy": data.strategy,
        "n_reference": data.n_reference, "n_feedback": data.n_feedback,
        "n_holdout": recent.holdout.height, "holdout_window": [recent.first_ts, recent.last_ts],
        "champion_after": champion_after, "challenger_data_version": challenger_data_version,
    }  # fmt: skip


def emit_outcome(
    name: str,
    decision: GateDecision,
    evidence: dict[str, Any],
    emitter: GateEmitter | None = None,
    rollout: RolloutConfig | None = None,
) -> dict[str, Any]:
    """Emit ``driftloop.model.promoted`` or ``.rejected``, or ``driftloop.rollout.started``
    for a winner handed to a rollout; returns ``evidence`` with its ``event_id``."""
    if emitter is None:
        from tasks import events as emitter  # type: ignore[no-redef]
    if _handed_over(decision, rollout):
        from tasks.rollout.experiment import read_experiment
        from tasks.rollout.handoff import emit_started

        started = read_experiment(name)
        assert started is not None, "apply_decision opened the experiment"
        payload = emit_started(started, reason=f"gate: {decision.reason}", emitter=emitter,
                               evidence=evidence)  # fmt: skip
        return {**evidence, "rollout": payload["experiment"], "event_id": payload["event_id"]}
    emit = emitter.emit_model_promoted if decision.promote else emitter.emit_model_rejected
    return {**evidence, "event_id": emit(name, evidence)}


class HoldoutRule(Protocol):
    """How many labeled rows the gate holds out (``flows.retrain.RetrainConfig`` is one)."""

    holdout_fraction: float
    min_holdout_rows: int


def skip_reason(
    *,
    evidence: dict[str, Any],
    labeled: pl.DataFrame,
    holdout: HoldoutRule,
    experiment: Experiment | None = None,
) -> str | None:
    """Why this retrain should not train (None: go on). A retrain completes with the reason
    recorded instead of failing: a shadow or canary rollout of this model is running (its
    outcome decides the next champion; a second challenger could not join it), the monitor
    reported input drift it judged harmless (``retrain: false`` in the event's evidence), or
    there are too few labeled rows to hold out for an honest gate (e.g. a scheduled run in a
    quiet week)."""
    if experiment is not None:
        return (f"rollout {experiment.id} ({experiment.mode} of {experiment.challenger} against "
                f"{experiment.champion}) is running: its outcome decides the next champion; "
                "skipped (the champion stays)")  # fmt: skip
    if evidence.get("retrain") is False:
        return "the monitor reported this event without asking for a retrain: " + str(
            evidence.get("reason") or "no evidence of loss"
        )
    min_rows = holdout.min_holdout_rows
    if labeled.height < max(min_rows, round(labeled.height * holdout.holdout_fraction)):
        return (f"only {labeled.height} labeled feedback rows: the gate needs at least "
                f"{min_rows} held out; skipped (the champion stays)")  # fmt: skip
    return None


def skipped(name: str, *, reason: str, trigger: dict[str, Any]) -> dict[str, Any]:
    """The flow's result when it does not train: the reason, the trigger (without its
    evidence), no event."""
    from tasks.registry import resolve

    trigger = {k: v for k, v in trigger.items() if k != "evidence"}
    return {"promote": False, "skipped": True, "reason": reason, "trigger": trigger,
            "champion_after": resolve(f"{name}:champion")}  # fmt: skip
