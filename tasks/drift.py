"""Drift statistics and the drift decision.

Statistics (per feature, reference sample vs current window), chosen by window size as
Evidently does: up to ``stat_test_max_rows`` rows, two-sample tests (KS for numeric columns,
chi-square homogeneity for categorical ones) with p-values corrected across features by
Benjamini-Hochberg; above it, distances (Wasserstein normalised by the reference's standard
deviation for numeric columns, Jensen-Shannon for categorical ones by default; PSI and Hellinger
are reported too and selectable). Tests become hypersensitive on large windows (any tiny shift
is "significant"), distances do not, hence the switch.

The decision does not fire on noise: the drift score is the share of drifted features weighted
by the model's feature importance; a window below ``min_window_rows`` decides nothing; drift
must persist for ``hysteresis_windows`` consecutive windows; and after a fired event or a
champion change nothing fires for ``cooldown_minutes`` (:func:`cooldown_end`, the one cooldown
rule). The decision is a pure function of the window and a ``MonitorState``; reading and
writing that state is ``tasks.monitoring.state``'s job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, Field
from scipy import stats
from scipy.spatial.distance import jensenshannon

from tasks.monitoring.state import HistoryEntry, MonitorState

NumericDistance = Literal["wasserstein", "jensen_shannon", "psi", "hellinger"]
CategoricalDistance = Literal["jensen_shannon", "psi", "hellinger"]
_EPS = 1e-4  # floor of a bin's share in PSI (an empty bin would make it infinite)
_HISTORY = 50  # windows remembered per model in the state file


class DriftConfig(BaseModel):
    """Every threshold of the drift statistics and of the decision."""

    stat_test_max_rows: int = Field(1_000, ge=1, description="<= this many rows: tests")
    alpha: float = Field(0.05, gt=0, lt=1, description="false-discovery rate (BH) of tests")
    numeric_distance: NumericDistance = "wasserstein"
    categorical_distance: CategoricalDistance = "jensen_shannon"
    wasserstein_threshold: float = Field(0.1, gt=0, description="in reference std units")
    jensen_shannon_threshold: float = Field(0.1, gt=0, description="JS distance, base 2")
    psi_threshold: float = Field(0.2, gt=0)
    hellinger_threshold: float = Field(0.1, gt=0)
    bins: int = Field(20, ge=2, description="quantile bins of numeric columns for distances")
    drift_score_threshold: float = Field(
        0.3, gt=0, le=1, description="importance-weighted share of drifted features"
    )
    min_window_rows: int = Field(200, ge=1, description="smaller windows decide nothing")
    hysteresis_windows: int = Field(2, ge=1, description="consecutive drifting windows to fire")
    cooldown_minutes: float = Field(360, ge=0, description="quiet time after a fire/retrain")

    def distance_threshold(self, method: str) -> float:
        return float(getattr(self, f"{method}_threshold"))


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift: the statistic that decided, plus every distance for the record."""

    feature: str
    kind: Literal["numeric", "categorical", "prediction"]
    method: str
    drifted: bool
    importance: float
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    threshold: float | None = None
    jensen_shannon: float | None = None
    wasserstein: float | None = None
    psi: float | None = None
    hellinger: float | None = None
    reference_rows: int = 0
    current_rows: int = 0


@dataclass(frozen=True)
class DriftResult:
    """The window's drift: per feature, the weighted score and whether the window drifts."""

    mode: Literal["tests", "distances"]
    score: float
    threshold: float
    drifting: bool
    window_rows: int
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    class_predictions: list[FeatureDrift] = field(default_factory=list)  # multiclass: per class

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.class_predictions:  # only a multiclass model has them: others keep their keys
            del out["class_predictions"]
        out["drifted_features"] = self.drifted_features
        return out


# --- distances ----------------------------------------------------------------------------


def _distances(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """JS distance (base 2), PSI and Hellinger between two share vectors over the same bins."""
    p = p / p.sum()
    q = q / q.sum()
    pc, qc = np.clip(p, _EPS, None), np.clip(q, _EPS, None)
    return {
        "jensen_shannon": float(jensenshannon(p, q, base=2)),
        "psi": float(np.sum((qc - pc) * np.log(qc / pc))),
        "hellinger": float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2))),
    }


def _wasserstein_normed(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    """W1 between the two samples (via 1,000 quantiles), in units of the reference's std."""
    grid = (np.arange(1_000) + 0.5) / 1_000
    qr = ref_sorted[(grid * len(ref_sorted)).astype(int)]
    qc = cur_sorted[(grid * len(cur_sorted)).astype(int)]
    scale = float(np.std(ref_sorted)) or 1.0
    return float(np.mean(np.abs(qr - qc)) / scale)


def numeric_drift(ref: pl.Series, cur: pl.Series, *, bins: int, test: bool) -> dict[str, Any]:
    """KS test (when ``test``) and all distances of a numeric column; nulls ignored."""
    r = np.sort(ref.drop_nulls().cast(pl.Float64).drop_nans().to_numpy())
    c = np.sort(cur.drop_nulls().cast(pl.Float64).drop_nans().to_numpy())
    if len(r) == 0 or len(c) == 0:
        return {"reference_rows": len(r), "current_rows": len(c)}
    edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = [
        np.diff(np.concatenate([[0], np.searchsorted(x, edges, side="right"), [len(x)]]))
        for x in (r, c)
    ]
    out: dict[str, Any] = _distances(counts[0].astype(float), counts[1].astype(float))
    out["wasserstein"] = _wasserstein_normed(r, c)
    if test:
        ks = stats.ks_2samp(r, c)
        out |= {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)}
    return out | {"reference_rows": len(r), "current_rows": len(c)}


def categorical_drift(ref: pl.Series, cur: pl.Series, *, test: bool) -> dict[str, Any]:
    """Chi-square homogeneity test (when ``test``) and distances of a categorical column."""
    rc = _counts(ref)
    cc = _counts(cur)
    cats = sorted(set(rc) | set(cc))
    p = np.array([rc.get(k, 0) for k in cats], dtype=float)
    q = np.array([cc.get(k, 0) for k in cats], dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return {"reference_rows": int(p.sum()), "current_rows": int(q.sum())}
    out: dict[str, Any] = _distances(p, q)
    if test:
        if len(cats) < 2:
            out |= {"statistic": 0.0, "p_value": 1.0}
        else:
            chi = stats.chi2_contingency(np.vstack([p, q]), correction=False)
            out |= {"statistic": float(chi.statistic), "p_value": float(chi.pvalue)}
    return out | {"reference_rows": int(p.sum()), "current_rows": int(q.sum())}


def _counts(series: pl.Series) -> dict[str, int]:
    vc = series.drop_nulls().cast(pl.String).value_counts()
    return dict(zip(vc[:, 0].to_list(), vc[:, 1].to_list(), strict=True))


# --- the window's drift -------------------------------------------------------------------


def importance_weights(
    features: list[str], importance: dict[str, float] | None
) -> dict[str, float]:
    """Normalised feature importance; uniform when absent, all zero or unusable."""
    raw = {f: max(float((importance or {}).get(f, 0.0) or 0.0), 0.0) for f in features}
    total = sum(raw.values())
    if not features:
        return {}
    if total <= 0 or not np.isfinite(total):
        return {f: 1.0 / len(features) for f in features}
    return {f: v / total for f, v in raw.items()}


def compute_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    importance: dict[str, float] | None,
    config: DriftConfig,
    score_column: str | None = None,
    current_score_column: str | None = None,
    class_columns: list[str] | tuple[str, ...] = (),
) -> DriftResult:
    """Per-feature drift of ``current`` against ``reference`` and the weighted drift score.

    ``score_column`` names the model score in ``reference`` and ``current_score_column`` in
    ``current``; when both are given, prediction drift is computed the same way, and per
    class for the ``class_columns`` (a multiclass model's probabilities) present in both.
    """
    test = current.height <= config.stat_test_max_rows
    weights = importance_weights(numeric + categorical, importance)
    raw: dict[str, tuple[str, dict[str, Any]]] = {}
    for col in numeric:
        raw[col] = (
            "numeric",
            numeric_drift(reference[col], current[col], bins=config.bins, test=test),
        )
    for col in categorical:
        raw[col] = ("categorical", categorical_drift(reference[col], current[col], test=test))
    p_adj = _bh({c: r.get("p_value") for c, (_, r) in raw.items()}) if test else {}
    features = [
        _judge(col, kind, r, p_adj.get(col), weights[col], config, test)
        for col, (kind, r) in raw.items()
    ]
    score = float(sum(f.importance for f in features if f.drifted))
    prediction = None
    if score_column and current_score_column and current_score_column in current.columns:
        r = numeric_drift(
            reference[score_column], current[current_score_column], bins=config.bins, test=test
        )
        prediction = _judge("score", "prediction", r, r.get("p_value"), 0.0, config, test)
    per_class = [
        _judge(c, "prediction", r, r.get("p_value"), 0.0, config, test)
        for c in class_columns
        if c in reference.columns and c in current.columns
        for r in [numeric_drift(reference[c], current[c], bins=config.bins, test=test)]
    ]
    return DriftResult(
        mode="tests" if test else "distances",
        score=score,
        threshold=config.drift_score_threshold,
        drifting=score >= config.drift_score_threshold,
        window_rows=current.height,
        features=features,
        prediction=prediction,
        class_predictions=per_class,
    )


def _bh(pvalues: dict[str, float | None]) -> dict[str, float]:
    """Benjamini-Hochberg adjusted p-values of the features that have one."""
    names = [k for k, v in pvalues.items() if v is not None and np.isfinite(v)]
    if not names:
        return {}
    adjusted = stats.false_discovery_control([pvalues[k] for k in names], method="bh")
    return dict(zip(names, (float(a) for a in adjusted), strict=True))


def _judge(
    col: str,
    kind: str,
    r: dict[str, Any],
    p_adjusted: float | None,
    weight: float,
    config: DriftConfig,
    test: bool,
) -> FeatureDrift:
    if "jensen_shannon" not in r:  # nothing to compare (an empty side): cannot call it drift
        return FeatureDrift(col, kind, "none", False, weight, **r)  # type: ignore[arg-type]
    if test:
        method = "ks" if kind != "categorical" else "chi2"
        drifted = p_adjusted is not None and p_adjusted < config.alpha
        threshold = config.alpha
    else:
        method = config.categorical_distance if kind == "categorical" else config.numeric_distance
        threshold = config.distance_threshold(method)
        drifted = r[method] >= threshold
        r = r | {"statistic": r[method]}
    return FeatureDrift(
        col,
        kind,
        method,
        bool(drifted),
        weight,
        p_adjusted=p_adjusted,
        threshold=threshold,
        **r,  # type: ignore[arg-type]
    )


# --- the decision -------------------------------------------------------------------------

Action = Literal["fire", "drifting", "cooldown", "quiet", "insufficient", "blocked"]


@dataclass(frozen=True)
class DriftDecision:
    """What this window decided, and why (for the event payload and the report)."""

    action: Action
    fire: bool
    consecutive: int
    required: int
    reason: str
    cooldown_until: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cooldown_end(*started: datetime | None, minutes: float) -> datetime | None:
    """The one cooldown rule: quiet until ``minutes`` after the latest of ``started`` (a fired
    event, a champion change); None when nothing has started a cooldown."""
    starts = [t for t in started if t is not None]
    return max(starts) + timedelta(minutes=minutes) if starts else None


def decide(
    drift: DriftResult,
    *,
    state: MonitorState,
    config: DriftConfig,
    now: datetime,
    champion_tag: str,
    last_retrain_at: datetime | None = None,
) -> tuple[DriftDecision, MonitorState]:
    """Apply minimum window size, hysteresis and cooldown to the window's ``drift``; return the
    decision and new state.

    ``state`` is this model's state (empty at first); it is not changed. A new champion resets
    the count of consecutive drifting windows (its reference is new) and starts a cooldown.
    """
    drifting, window_rows = drift.drifting, drift.window_rows
    state = state.model_copy(deep=True)
    if state.champion_tag != champion_tag:
        state.champion_tag, state.consecutive = champion_tag, 0
    consecutive = state.consecutive
    end = cooldown_end(state.last_fired_at, last_retrain_at, minutes=config.cooldown_minutes)
    in_cooldown = end is not None and now < end
    need = config.hysteresis_windows
    if window_rows < config.min_window_rows:
        action: Action = "insufficient"
        reason = f"window has {window_rows} rows < min_window_rows {config.min_window_rows}"
    elif not drifting:
        consecutive, action = 0, "quiet"
        reason = "drift score below threshold"
    else:
        consecutive += 1
        if consecutive < need:
            action, reason = "drifting", f"drifting window {consecutive} of {need} required"
        elif in_cooldown:
            action = "cooldown"
            reason = f"drift persisted {consecutive} windows but cooldown runs until {end}"
        else:
            action = "fire"
            reason = f"drift score >= threshold in {consecutive} consecutive windows"
    fire = action == "fire"
    state.consecutive = 0 if fire else consecutive
    if fire:
        state.last_fired_at = now
        end = cooldown_end(now, minutes=config.cooldown_minutes)
    entry = HistoryEntry(at=now, score=drift.score, action=action)
    state.history = [*state.history[-(_HISTORY - 1) :], entry]
    until = end.isoformat() if end and (fire or in_cooldown) else None
    return DriftDecision(action, fire, consecutive, need, reason, until), state
