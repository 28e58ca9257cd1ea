"""One model's scores for contract-typed rows: the one ``score_frame`` that serving, batch
scoring, training's evaluation and the champion-vs-challenger gate all call."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tasks.features import build_features, to_matrix

if TYPE_CHECKING:
    import polars as pl

    from tasks.registry import LoadedModel


def score_frame(frame: pl.DataFrame, model: LoadedModel) -> np.ndarray:
    """Scores of ``model`` for the rows of ``frame`` (float64, one per row)."""
    matrix = to_matrix(build_features(frame, model.features))
    return np.asarray(model.predict(matrix), dtype=np.float64).reshape(-1)
