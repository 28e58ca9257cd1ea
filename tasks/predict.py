"""One model's scores for contract-typed rows: the one ``score_frame`` that serving, batch
scoring, training's evaluation and the champion-vs-challenger gate all call, and
:class:`Prediction`, what those scores mean for the model's task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.features import feature_matrix

if TYPE_CHECKING:
    import polars as pl

    from tasks.registry import LoadedModel

PROBA_PREFIX = "proba_"  # a multiclass model's per-class probability columns: proba_<class>
PREDICTED_CLASS = "predicted_class"


def score_frame(frame: pl.DataFrame, model: LoadedModel) -> np.ndarray:
    """Scores of ``model`` for the rows of ``frame``: float64, one per row, or for a
    multiclass model one row of class probabilities per row (n, K)."""
    matrix = feature_matrix(frame, model.features)
    raw = np.asarray(model.predict(matrix), dtype=np.float64)
    return raw if raw.ndim == 2 else raw.reshape(-1)


@dataclass(frozen=True)
class Prediction:
    """A model's answer for n rows, whatever its task.

    ``scores`` is one number per row: P(positive class) for binary, the value for regression,
    P(predicted class) for multiclass. ``decisions`` are a binary model's flags at its
    threshold. A multiclass model adds ``probabilities`` (n, K, in ``classes`` order) and the
    predicted class per row."""

    scores: np.ndarray
    decisions: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    classes: tuple[str, ...] = ()

    @property
    def predicted_classes(self) -> list[str] | None:
        if self.probabilities is None:
            return None
        names = np.asarray(self.classes, dtype=object)
        return names[self.probabilities.argmax(axis=1)].tolist() if len(self.scores) else []

    def class_columns(self) -> dict[str, Any]:
        """The multiclass columns of a prediction record: the predicted class, then one
        probability per class (nothing for the other tasks)."""
        if self.probabilities is None:
            return {}
        cols: dict[str, Any] = {PREDICTED_CLASS: self.predicted_classes}
        for k, name in enumerate(self.classes):
            cols[f"{PROBA_PREFIX}{name}"] = self.probabilities[:, k]
        return cols


def class_outputs(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per row, the predicted class and ``{class: probability}`` from
    :meth:`Prediction.class_columns` (what the service answers)."""
    proba = {k.removeprefix(PROBA_PREFIX): np.asarray(v).tolist()
             for k, v in columns.items() if k.startswith(PROBA_PREFIX)}  # fmt: skip
    return [
        {"predicted_class": c, "probabilities": {k: v[i] for k, v in proba.items()}}
        for i, c in enumerate(columns[PREDICTED_CLASS])
    ]


def interpret(raw: np.ndarray, model: LoadedModel) -> Prediction:
    """What ``score_frame``'s output means for ``model``'s task."""
    task = model.metadata.get("task", "binary")
    if task == "multiclass":
        classes = tuple(str(c) for c in model.metadata.get("classes") or range(raw.shape[1]))
        return Prediction(raw.max(axis=1), None, raw, classes)
    if task == "regression":
        return Prediction(raw)
    return Prediction(raw, raw >= (model.threshold or 0.5))


def predict_frame(frame: pl.DataFrame, model: LoadedModel) -> Prediction:
    """``model``'s task-aware prediction for the rows of ``frame``."""
    return interpret(score_frame(frame, model), model)
