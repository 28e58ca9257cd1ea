"""One model's scores for contract-typed rows: the one ``score_frame`` that serving, batch
scoring, training's evaluation and the champion-vs-challenger gate all call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tasks.features import build_features, to_matrix

if TYPE_CHECKING:
    import polars as pl

    from tasks.registry import LoadedModel


@dataclass(frozen=True)
class Scores:
    scores: np.ndarray  # float64, one per row
    decisions: np.ndarray | None  # score >= the model's threshold; None for regression


def score_frame(frame: pl.DataFrame, model: LoadedModel) -> Scores:
    """Scores (and decisions at the model's threshold) for contract-typed rows."""
    matrix = to_matrix(build_features(frame, model.features))
    scores = np.asarray(model.predict(matrix), dtype=np.float64).reshape(-1)
    if model.metadata.get("task", "binary") == "regression":
        return Scores(scores, None)
    return Scores(scores, scores >= model.threshold)
