"""A small synthetic binary dataset with a contract, for the estimation tests."""

from __future__ import annotations

import numpy as np
import pandera.polars as pa
import polars as pl
import pytest

from schemas.base import DatasetSpec

SEGMENTS = ["north", "south", "west"]


class Synthetic(pa.DataFrameModel):
    a: pl.Float64
    b: pl.Float64
    c: pl.Float64
    seg: str = pa.Field(isin=SEGMENTS)
    y: pl.Int64 = pa.Field(isin=[0, 1])

    class Config:
        strict = True


SPEC = DatasetSpec(name="synthetic", model=Synthetic, target="y", positive_class=1)


def make_rows(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Rows with ``a`` and ``b`` correlated (0.8), and the true P(y = 1) as a calibrated score."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n)
    b = 0.8 * a + 0.6 * rng.normal(0, 1, n)
    c = rng.normal(0, 1, n)
    seg = rng.choice(SEGMENTS, n)
    p = 1 / (1 + np.exp(-(-1.0 + 1.2 * a - 0.8 * b + 0.5 * (seg == "north"))))
    y = (rng.random(n) < p).astype(np.int64)
    frame = pl.DataFrame({"a": a, "b": b, "c": c, "seg": seg, "y": y})
    return frame, p


@pytest.fixture(scope="session")
def synthetic() -> DatasetSpec:
    return SPEC


@pytest.fixture(scope="session")
def rows():
    """The synthetic row maker (:func:`make_rows`)."""
    return make_rows
