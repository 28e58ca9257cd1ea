"""The champion-vs-challenger gate: both models scored on the SAME recent labeled rows.

The challenger is promoted only when it beats the champion on the gate metric by at least
``margin`` and no segment slice (``DatasetSpec.segment_columns``, slices with at least
``min_slice_rows`` rows) loses more than ``max_slice_regression`` on the slice metric.
Scoring and metrics come from ``tasks.evaluate`` so the gate measures models the way training
does; :func:`compare` is pure (arrays in, decision out) and :func:`run_gate` wraps it for models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from schemas.base import DatasetSpec
from tasks.evaluate import compute_metrics, label_vector, slice_metrics
from tasks.predict import score_frame

if TYPE_CHECKING:
    from tasks.registry import LoadedModel

LOWER_IS_BETTER = {"log_loss", "brier", "mse", "rmse", "mae"}
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}
SLICE_FALLBACK = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "mae"}


class GateConfig(BaseModel):
    """Promotion rule. ``metric=None`` picks ROC AUC (binary), log loss (multiclass) or RMSE
    (regression). The retrain
    flow's config uses this model as is (``RetrainConfig.gate``)."""

    model_config = ConfigDict(frozen=True)

    metric: str | None = None
    margin: float = Field(0.005, ge=0, description="win needed on the gate metric")
    max_slice_regression: float = Field(0.05, ge=0)
    min_slice_rows: int = Field(30, ge=1)
    min_eval_rows: int = Field(50, ge=1)
    # the improvement must also be real, not luck of the evaluation rows: the lower end of a
    # paired-bootstrap interval (rows resampled, both models scored on the same resample)
    # must be above zero. confidence=0 turns the check off.
    confidence: float = Field(0.95, ge=0, lt=1, description="paired-bootstrap check; 0 = off")
    bootstrap_rounds: int = Field(400, ge=10)
    seed: int = 0


@dataclass(frozen=True)
class SliceRegression:
    column: str
    value: str
    n: int
    champion: float
    challenger: float
    loss: float  # how much worse the challenger is (in the metric's "better" direction)


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, with both scores and everything needed to audit it."""

    promote: bool
    reason: str
    metric: str
    champion_score: float | None
    challenger_score: float | None
    improvement: float | None  # challenger better by this much (sign-adjusted)
    margin: float
    max_slice_regression: float
    n_eval: int
    slice_regressions: list[SliceRegression] = field(default_factory=list)
    champion_metrics: dict[str, Any] = field(default_factory=dict)
    challenger_metrics: dict[str, Any] = field(default_factory=dict)
    champion_tag: str | None = None
    challenger_tag: str | None = None
    improvement_low: float | None = None  # lower end of the paired-bootstrap interval
    confidence: float = 0.0
    slices: list[SliceRegression] = field(default_factory=list)  # every slice compared

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The short form carried in promoted/rejected events (no curves, no slice tables)."""
        keep = ("promote", "reason", "metric", "champion_score", "challenger_score",
                "improvement", "improvement_low", "confidence", "margin",
                "max_slice_regression", "n_eval", "champion_tag", "challenger_tag")  # fmt: skip
        out = {k: getattr(self, k) for k in keep}
        out["slice_regressions"] = [asdict(s) for s in self.slice_regressions]
        return out


def _better(metric: str, a: float, b: float) -> float:
    """How much ``a`` is better than ``b`` on ``metric`` (positive = better)."""
    return (b - a) if metric in LOWER_IS_BETTER else (a - b)


def _slice_losses(
    champion: dict[str, Any], challenger: dict[str, Any], metric: str, min_rows: int
) -> list[SliceRegression]:
    out = []
    for column, table in champion.items():
        for value, row in table["values"].items():
            other = challenger[column]["values"].get(value, {})
            a, b = row.get(metric), other.get(metric)
            if row["n"] < min_rows or a is None or b is None:
                continue
            out.append(SliceRegression(column, value, row["n"], a, b, _better(metric, a, b)))
    return out


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged): fast enough to bootstrap; NaN with one class."""
    from tasks.metrics import roc_auc

    try:
        return roc_auc(y, s)
    except ValueError:
        return float("nan")


def _log_loss(y: np.ndarray, s: np.ndarray) -> float:
    """Log loss of 1-D binary scores or an (n, K) multiclass probability matrix."""
    from tasks.metrics import log_loss, multi_log_loss

    return multi_log_loss(y, s) if np.ndim(s) == 2 else log_loss(y, np.clip(s, 1e-15, 1 - 1e-15))


_FAST = {
    "roc_auc": _auc,
    "log_loss": _log_loss,
    "rmse": lambda y, s: float(np.sqrt(np.mean((y - s) ** 2))),
    "mse": lambda y, s: float(np.mean((y - s) ** 2)),
    "mae": lambda y, s: float(np.mean(np.abs(y - s))),
}


def bootstrap_improvement(
    y: np.ndarray, champion: np.ndarray, challenger: np.ndarray, metric: str, config: GateConfig
) -> float | None:
    """Lower ``1 - confidence`` quantile of the challenger's paired improvement."""
    fn = _FAST.get(metric)
    if fn is None or config.confidence <= 0:
        return None
    rng = np.random.default_rng(config.seed)
    diffs = []
    for _ in range(config.bootstrap_rounds):
        idx = rng.integers(0, len(y), len(y))
        d = _better(metric, fn(y[idx], challenger[idx]), fn(y[idx], champion[idx]))
        if not np.isnan(d):
            diffs.append(d)
    return float(np.quantile(diffs, 1 - config.confidence)) if diffs else None


def compare(
    frame: pl.DataFrame,
    y: np.ndarray,
    champion_scores: np.ndarray,
    challenger_scores: np.ndarray,
    *,
    task: str,
    segment_columns: tuple[str, ...] | list[str] = (),
    champion_threshold: float | None = None,
    challenger_threshold: float | None = None,
    config: GateConfig = GateConfig(),
) -> GateDecision:
    """Decide promote/reject from both models' scores on the same labeled rows."""
    if not len(y) == len(champion_scores) == len(challenger_scores) == frame.height:
        raise ValueError("gate: labels, both score vectors and the frame must have equal length")
    metric = config.metric or DEFAULT_METRIC[task]
    champ = compute_metrics(y, champion_scores, champion_threshold, task)
    chall = compute_metrics(y, challenger_scores, challenger_threshold, task)
    if metric not in champ:
        raise ValueError(f"gate metric {metric!r} unknown for task {task!r}: {sorted(champ)}")
    a, b = champ[metric], chall[metric]
    improvement = None if a is None or b is None else _better(metric, b, a)
    slice_metric = metric if metric in ("roc_auc", "mae", "rmse") else SLICE_FALLBACK[task]
    cols = list(segment_columns)
    losses = _slice_losses(
        slice_metrics(frame, y, champion_scores, champion_threshold, cols, task),
        slice_metrics(frame, y, challenger_scores, challenger_threshold, cols, task),
        slice_metric,
        config.min_slice_rows,
    )
    regressions = [s for s in losses if s.loss > config.max_slice_regression]
    low = bootstrap_improvement(
        np.asarray(y, dtype=float), champion_scores, challenger_scores, metric, config
    )
    if len(y) < config.min_eval_rows:
        promote, reason = False, f"only {len(y)} labeled rows (< {config.min_eval_rows})"
    elif improvement is None:
        promote, reason = False, f"{metric} undefined on the evaluation rows"
    elif improvement < config.margin:
        promote, reason = False, f"{metric} improved {improvement:+.4f} < margin {config.margin}"
    elif low is not None and low <= 0:
        promote, reason = (
            False,
            f"{metric} improved {improvement:+.4f}, but not reliably: the {config.confidence:.0%} "
            f"paired-bootstrap lower bound is {low:+.4f} <= 0",
        )
    elif regressions:
        worst = max(regressions, key=lambda s: s.loss)
        promote, reason = (
            False,
            (
                f"slice {worst.column}={worst.value} {slice_metric} fell {worst.loss:.4f} "
                f"> bound {config.max_slice_regression}"
            ),
        )
    else:
        promote, reason = True, f"{metric} improved {improvement:+.4f} >= margin {config.margin}"
    return GateDecision(
        promote=promote, reason=reason, metric=metric, champion_score=a, challenger_score=b,
        improvement=improvement, margin=config.margin,
        max_slice_regression=config.max_slice_regression, n_eval=len(y),
        slice_regressions=regressions, champion_metrics=champ, challenger_metrics=chall,
        improvement_low=low, confidence=config.confidence if low is not None else 0.0,
        slices=losses,
    )  # fmt: skip


def run_gate(
    champion: LoadedModel,
    challenger: LoadedModel,
    frame: pl.DataFrame,
    dataset: DatasetSpec,
    config: GateConfig,
) -> GateDecision:
    """Score both ``tasks.registry.LoadedModel``s on ``frame`` and :func:`compare` them."""
    decision = compare(
        frame,
        label_vector(frame, dataset),
        score_frame(frame, champion),
        score_frame(frame, challenger),
        task=dataset.task,
        segment_columns=[c for c in dataset.segment_columns if c in frame.columns],
        champion_threshold=champion.threshold,
        challenger_threshold=challenger.threshold,
        config=config,
    )
    return _with_tags(decision, champion.tag, challenger.tag)


def _with_tags(decision: GateDecision, champion: str, challenger: str) -> GateDecision:
    from dataclasses import replace

    return replace(decision, champion_tag=champion, challenger_tag=challenger)
