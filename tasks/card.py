"""The model card: one Markdown page a business owner can read, stored with the model.

It says what the model is for, which data made it, how good it is (against the untuned
baseline), where it is unfair (per-segment gaps), what its decisions are worth, and how to
trace it back (data version, code version, parameters, W&B run, Optuna study).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from schemas.base import DatasetSpec

if TYPE_CHECKING:
    from tasks.evaluate import Evaluation
    from tasks.training.model import TrainedModel
    from tasks.training.split import Splits

TAG_PLACEHOLDER = "{{MODEL_TAG}}"  # replaced by tasks.registry.save_model
_HEADLINE = {
    "binary": ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1"),
    "regression": ("mse", "rmse", "mae", "r2"),
}


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else f"{text}."


def _slice_table(slices: dict[str, Any], task: str) -> list[str]:
    cols = ("n", "positive_rate", "flagged_rate", "roc_auc", "recall", "precision")
    if task == "regression":
        cols = ("n", "mae", "rmse", "r2")
    lines = []
    for col, block in slices.items():
        gaps = ", ".join(f"{k} {_fmt(v)}" for k, v in block["gap"].items())
        lines += [f"**{col}** (gap max-min: {gaps})", ""]
        lines += ["| value | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for value, row in block["values"].items():
            lines.append(f"| {value} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
        lines.append("")
    return lines


def render_model_card(
    *,
    dataset: DatasetSpec,
    data_version: str,
    rows: dict[str, int],
    metrics: dict[str, Any],
    baseline: dict[str, Any],
    slices: dict[str, Any],
    threshold: float | None,
    business: dict[str, Any],
    params: dict[str, Any],
    lineage: dict[str, Any],
) -> str:
    """Markdown for one model; ``{{MODEL_TAG}}`` stands for the tag the registry assigns."""
    task = dataset.task
    target = f"`{dataset.target}`" + (
        f" (positive class `{dataset.positive_class}`)" if task == "binary" else ""
    )
    lines = [
        f"# Model card: {TAG_PLACEHOLDER}",
        "",
        "## Intended use",
        f"{_sentence(dataset.description or dataset.name)} LightGBM {task} model predicting "
        f"{target} from {len(dataset.feature_columns)} features of dataset `{dataset.name}`. "
        "For ranking customers for a retention action and the decision threshold below; "
        "not for decisions about individuals without human review, nor for data outside the "
        "contract (`schemas/" + dataset.name + ".py`, schema hash "
        f"`{dataset.schema_hash}`).",
        "",
        "## Data",
        f"- data version `{data_version}`; rows: "
        + ", ".join(f"{k} {v:,}" for k, v in rows.items()),
        f"- features: {', '.join(dataset.feature_columns)}",
        f"- never used as features: {', '.join(c for c in (dataset.id_column, *dataset.ignore) if c) or 'none'}",  # noqa: E501
        "",
        "## Metrics (test split)",
        "| metric | this model | untuned LightGBM, same split |",
        "|---|---|---|",
    ]
    for key in _HEADLINE[task]:
        lines.append(f"| {key} | {_fmt(metrics.get(key))} | {_fmt(baseline.get(key))} |")
    if task == "binary":
        c = metrics.get("confusion", {})
        lines += [
            "",
            f"Confusion at threshold {_fmt(threshold)}: TP {c.get('tp')}, FP {c.get('fp')}, "
            f"FN {c.get('fn')}, TN {c.get('tn')}.",
            "",
            "## Decision threshold and business value",
            f"- threshold **{_fmt(threshold)}**, chosen on the validation split to maximise "
            f"expected value: value of a retained customer {_fmt(business.get('value_retained'))}, "
            f"offer cost {_fmt(business.get('offer_cost'))}, offer success rate "
            f"{_fmt(business.get('offer_success_rate'))}.",
            f"- expected value per month on the test split: "
            f"**{_fmt(business.get('expected_value_per_month'))}** "
            f"({_fmt(business.get('expected_value_per_customer'))} per customer; "
            f"offering everyone: {_fmt(business.get('expected_value_offer_all'))}).",
        ]
    lines += ["", "## Slices (fairness)", ""]
    lines += _slice_table(slices, task) or ["No segment columns configured.", ""]
    lines += ["## Lineage"]
    lines += [f"- {k}: `{_fmt(v)}`" for k, v in lineage.items()]
    lines += ["", "## Parameters", "```", *[f"{k} = {v}" for k, v in sorted(params.items())]]
    lines += ["```", ""]
    return "\n".join(lines)


# --- the metadata stored with a model (the card is rendered from the same dict) ----------


@dataclass
class Clock:
    """Wall time and peak memory of a training run."""

    started: float = field(default_factory=time.perf_counter)

    def wall_s(self) -> float:
        return time.perf_counter() - self.started

    @staticmethod
    def peak_rss_mb() -> float:
        """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "reliability"}


@dataclass(frozen=True)
class ModelRecord:
    """What the registry stores with a model: its metadata, short labels and the card."""

    metadata: dict[str, Any]
    labels: dict[str, str]
    card: str


def model_record(
    *,
    dataset: DatasetSpec,
    data_version: str,
    splits: Splits,
    model: TrainedModel,
    evaluation: Evaluation,
    lineage: dict[str, Any],
    clock: Clock,
) -> ModelRecord:
    """Everything the registry keeps about a model: its metadata, and the labels and model
    card made from that metadata."""
    tuning = model.tuning
    metadata = {
        "dataset": dataset.name,
        "task": dataset.task,
        "target": dataset.target,
        "data_version": data_version,
        "schema_hash": dataset.schema_hash,
        "rows": {k: getattr(splits, k).height for k in ("train", "valid", "test")},
        "params": model.params,
        "best_iteration": model.best_iteration,
        "metrics": _scalars(evaluation.metrics),
        "reliability": evaluation.metrics.get("reliability"),
        "baseline_metrics": _scalars(evaluation.baseline),
        "slice_gaps": {col: block["gap"] for col, block in evaluation.slices.items()},
        "threshold": evaluation.threshold,
        "business": evaluation.business,
        "tuning": {
            "study_name": tuning.study_name,
            "trials": tuning.n_trials,
            "complete": tuning.n_complete,
            "pruned": tuning.n_pruned,
            "best_trial": tuning.best_trial,
            "best_valid": tuning.best_value,
            "wall_s": round(tuning.wall_s, 3),
        },
        "feature_importance": model.importance(),
        **lineage,
        "train_wall_s": round(clock.wall_s(), 3),
        "peak_rss_mb": round(clock.peak_rss_mb(), 1),
    }
    card = from_metadata(dataset, metadata, evaluation.slices)
    return ModelRecord(metadata=metadata, labels=model_labels(metadata), card=card)


def model_labels(metadata: dict[str, Any]) -> dict[str, str]:
    """Short string labels for listing and filtering in the BentoML store."""
    keys = ("dataset", "task", "data_version", "schema_hash", "git_sha")
    return {k: str(metadata.get(k))[:40] for k in keys if metadata.get(k) is not None}


def from_metadata(dataset: DatasetSpec, metadata: dict[str, Any], slices: dict) -> str:
    lineage_keys = (
        "data_version", "schema_hash", "git_sha", "wandb_run_path", "wandb_run_dir",
        "optuna_storage", "warm_start_from", "init_model", "train_wall_s", "peak_rss_mb",
    )  # fmt: skip
    lineage = {k: metadata.get(k) for k in lineage_keys}
    lineage["optuna_study"] = metadata["tuning"]["study_name"]
    lineage["trials (complete / pruned)"] = (
        f"{metadata['tuning']['trials']} ({metadata['tuning']['complete']} / "
        f"{metadata['tuning']['pruned']})"
    )
    return render_model_card(
        dataset=dataset,
        data_version=metadata["data_version"],
        rows=metadata["rows"],
        metrics=metadata["metrics"],
        baseline=metadata["baseline_metrics"],
        slices=slices,
        threshold=metadata["threshold"],
        business=metadata["business"],
        params=metadata["params"],
        lineage=lineage,
    )


def summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """The final numbers worth a W&B summary (nested dicts are flattened there)."""
    keys = ("metrics", "baseline_metrics", "threshold", "business", "data_version", "git_sha")
    return {k: metadata.get(k) for k in keys} | {"train_wall_s": metadata.get("train_wall_s")}
