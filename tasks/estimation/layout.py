"""The feature columns a small tree model of an estimator reads (DLE's error models, the
domain classifier): their order, which of them are category codes, and a frame as the float
matrix in that order. One object, so both estimators read, index and store columns alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl


@dataclass(frozen=True)
class ColumnLayout:
    columns: tuple[str, ...]
    categorical: tuple[str, ...] = ()  # of ``columns``: category codes (LightGBM categoricals)

    @classmethod
    def of(cls, frame: pl.DataFrame, categorical: tuple[str, ...] = ()) -> ColumnLayout:
        """The layout of an encoded feature frame (``tasks.features.build_features``)."""
        missing = [c for c in categorical if c not in frame.columns]
        if missing:
            raise ValueError(f"categorical columns {missing} are not features")
        return cls(tuple(frame.columns), tuple(categorical))

    @property
    def categorical_index(self) -> list[int]:
        return [self.columns.index(c) for c in self.categorical]

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """``frame``'s columns of this layout, in its order, as floats."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks feature columns {missing}")
        return frame.select(pl.col(c).cast(pl.Float64) for c in self.columns).to_numpy()

    def to_json(self) -> dict[str, list[str]]:
        return {"columns": list(self.columns), "categorical": list(self.categorical)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ColumnLayout:
        return cls(tuple(doc["columns"]), tuple(doc["categorical"]))
