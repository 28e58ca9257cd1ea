"""The replay's generated binary dataset: features that move together, and a label that
depends on how they move together.

``num_0`` and ``num_1`` are correlated (``PAIR_CORRELATION``) and the label depends on their
difference, so a correlation flip of ``num_0`` (every marginal exactly unchanged; what
``tasks.simulate.correlation_flip`` does to the first float feature) changes the joint
distribution the model relies on: a real multivariate drift that hurts the model and that no
per-feature test can see. The other features give the table the usual mix (a second correlated
pair with an additive effect, categories, counts, a feature the label ignores), with 1% nulls
in the floats outside the first pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

PAIR_CORRELATION = 0.8  # num_0 with num_1
SECOND_PAIR_CORRELATION = 0.5  # num_2 with num_3
TARGET, POSITIVE, NEGATIVE = "target", "Yes", "No"
_CATEGORIES = {"cat_4": ("a", "b", "c", "d"), "cat_7": ("x", "y", "z")}
_NULL_SHARE = 0.01
FLOAT_COLUMNS = ("num_0", "num_1", "num_2", "num_3", "num_6")


def _pair(rng: np.random.Generator, rows: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    a = rng.standard_normal(rows)
    return a, rho * a + np.sqrt(1 - rho**2) * rng.standard_normal(rows)


def correlated_table(rows: int, seed: int = 0) -> pl.DataFrame:
    """``rows`` rows: an id, eight features and the binary ``target`` (about 35% positive)."""
    rng = np.random.default_rng(seed)
    x0, x1 = _pair(rng, rows, PAIR_CORRELATION)
    x2, x3 = _pair(rng, rows, SECOND_PAIR_CORRELATION)
    cats = {c: rng.integers(0, len(v), rows) for c, v in _CATEGORIES.items()}
    count, noise = rng.poisson(4, rows), rng.normal(10, 3, rows)
    difference = (x0 - x1) / np.sqrt(2 * (1 - PAIR_CORRELATION))  # unit variance
    logit = (1.6 * difference + 0.5 * (x2 + x3) + 0.5 * (cats["cat_4"] == 0)
             - 0.4 * (cats["cat_7"] == 2) + 0.1 * (count - 4) - 0.8)  # fmt: skip
    positive = rng.random(rows) < 1 / (1 + np.exp(-logit))
    floats = {"num_0": 3 * x0 + 50, "num_1": 2 * x1 + 20, "num_2": x2, "num_3": 5 * x3 - 3,
              "num_6": noise}  # fmt: skip
    for name in ("num_2", "num_3", "num_6"):
        floats[name][rng.random(rows) < _NULL_SHARE] = np.nan

    def text(col: str) -> pl.Series:
        return pl.Series(col, _CATEGORIES[col]).gather(cats[col])

    nums = {k: pl.Series(k, v, nan_to_null=True) for k, v in floats.items()}
    return pl.DataFrame({
        "row_id": np.arange(rows, dtype=np.int64), **{k: nums[k] for k in FLOAT_COLUMNS[:4]},
        "cat_4": text("cat_4"), "int_5": count.astype(np.int64), "num_6": nums["num_6"],
        "cat_7": text("cat_7"),
        TARGET: pl.Series(TARGET, [NEGATIVE, POSITIVE]).gather(positive.astype(np.int64)),
    })  # fmt: skip


def correlated_schema_source(name: str = "replay_synth") -> str:
    """Source of the dataset module (contract) of :func:`correlated_table`, by the renderer of
    ``driftloop schema infer``."""
    from schemas.base import DEFAULT_NULL_MARKERS
    from tasks.infer import InferredColumn, InferredSchema, render_module

    columns = [InferredColumn("row_id", "int", nullable=False, min_value=0)]
    for col in ("num_0", "num_1", "num_2", "num_3", "cat_4", "int_5", "num_6", "cat_7"):
        if col.startswith("cat"):
            columns.append(InferredColumn(col, "category", False, list(_CATEGORIES[col])))
        elif col == "int_5":
            columns.append(InferredColumn(col, "int", nullable=False, min_value=0))
        else:
            columns.append(InferredColumn(col, "float", nullable=col not in ("num_0", "num_1")))
    columns.append(InferredColumn(TARGET, "category", False, [NEGATIVE, POSITIVE]))
    schema = InferredSchema(
        name=name, target=TARGET, task="binary", positive_class=POSITIVE, id_column="row_id",
        event_time=None, null_markers=list(DEFAULT_NULL_MARKERS), columns=columns,
        source=f"the replay's generated table {name!r} (tasks.replay.synth)",
    )  # fmt: skip
    return render_module(schema)


def write_correlated(
    directory: Path, rows: int, seed: int = 0, name: str = "replay_synth"
) -> tuple[Path, Path]:
    """Write ``<name>.csv`` (rows) and ``<name>.py`` (its contract) into ``directory``."""
    from tasks.ingest.snapshot import write_table  # every CSV driftloop writes goes there

    directory.mkdir(parents=True, exist_ok=True)
    csv, module = directory / f"{name}.csv", directory / f"{name}.py"
    write_table(correlated_table(rows, seed), csv)
    module.write_text(correlated_schema_source(name))
    return csv, module
