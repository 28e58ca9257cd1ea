"""The hyperparameter search space, defined once: suggesting, clipping and defaults derive
from :data:`SPACE`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Dim:
    """One searched parameter: its bounds, LightGBM's default, and how it is sampled.

    ``high=None`` stands for the class imbalance (negatives / positives): the bound of
    ``scale_pos_weight``, which lets the tuner reweight positives up to parity."""

    low: float
    high: float | None
    default: float
    log: bool = False
    integer: bool = False
    binary_only: bool = False

    def bounds(self, imbalance: float) -> tuple[float, float]:
        return self.low, self.high if self.high is not None else max(1.0 + 1e-9, imbalance)


# Order matters: it is the order Optuna samples in, so it fixes the seeded trials.
SPACE: dict[str, Dim] = {
    "learning_rate": Dim(0.01, 0.1, default=0.1, log=True),
    "num_leaves": Dim(2, 32, default=31, log=True, integer=True),
    "min_child_samples": Dim(10, 300, default=20, log=True, integer=True),
    "feature_fraction": Dim(0.4, 1.0, default=1.0),
    "bagging_fraction": Dim(0.5, 1.0, default=1.0),
    "lambda_l2": Dim(1e-3, 100.0, default=0.0, log=True),
    "cat_smooth": Dim(1.0, 100.0, default=10.0, log=True),
    "scale_pos_weight": Dim(1.0, None, default=1.0, binary_only=True),
}


def default_search_params() -> dict[str, Any]:
    """LightGBM's defaults expressed in the search space: the first trial when no champion
    exists, so tuning can only match or beat the untuned model on the valid split."""
    return {name: dim.default for name, dim in SPACE.items()}


def suggest_params(trial: optuna.Trial, task: str, imbalance: float) -> dict[str, Any]:
    """One trial's parameters from :data:`SPACE` (``scale_pos_weight`` for binary tasks)."""
    params: dict[str, Any] = {}
    for name, dim in SPACE.items():
        if dim.binary_only and task != "binary":
            continue
        low, high = dim.bounds(imbalance)
        suggest = trial.suggest_int if dim.integer else trial.suggest_float
        params[name] = suggest(name, low, high, log=dim.log)
    return params


def in_space(params: dict[str, Any], imbalance: float) -> dict[str, Any]:
    """Clip enqueued parameters into the search space's bounds (a champion's or defaults)."""
    out = {}
    for name, dim in SPACE.items():
        if params.get(name) is not None:
            low, high = dim.bounds(imbalance)
            value = min(max(params[name], low), high)
            out[name] = int(value) if dim.integer else float(value)
    return out
