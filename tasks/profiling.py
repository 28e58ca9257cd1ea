"""whylogs behind one module: the NumPy 2 shim, a vectorised fast path, profiles, the reference.

This is the only driftloop module that imports whylogs. whylogs 1.6.4 is unmaintained; it needs
``numpy.unicode_`` (gone in NumPy 2) and checks ``np.isinf`` element by element on float columns,
which makes profiling ~17x slower than it has to be. :func:`_whylogs` applies both fixes once,
lazily, so importing this module costs nothing.

The reference of a model is three files under ``settings.reference_profiles_dir``:

* ``<tag>.bin`` - the whylogs profile of the training features and the model's scores
  (column :data:`SCORE_COLUMN`): counts, nulls, types, KLL quantiles, frequent items.
* ``<tag>.sample.parquet`` - a bounded, seeded random sample of the same rows (with their
  label as :data:`LABEL_COLUMN` when the frame has the target: label-free performance
  estimators are fitted on it, ``tasks.monitoring.evidence``). KS and
  chi-square need samples: a KLL sketch only gives quantiles up to its rank error (~1-2%),
  which is as large as the KS critical value for a 1,000-row window, and frequent-items
  sketches drop rare categories. A bounded sample (:data:`REFERENCE_SAMPLE_ROWS`) keeps the
  tests exact and the files small whatever the size of the training set.
* ``<tag>.json`` - what the reference is (model tag, dataset, schema hash, row counts, files).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from schemas.base import DatasetSpec
from tasks.io import atomic_write
from tasks.settings import Settings, get_settings

SCORE_COLUMN = "__score__"
LABEL_COLUMN = "__label__"  # the held-out label in the sample (1/0 or the target value)
REFERENCE_SAMPLE_ROWS = 20_000
PROFILE_CHUNK_ROWS = 100_000  # profile big frames in chunks and merge: bounds pandas memory
# (1M-row window: 250k-row chunks left ~100 MiB more resident after profiling than 100k ones)
_SEED = 20_241


@dataclass(frozen=True)
class Reference:
    """A model's reference: the whylogs profile, the bounded sample and what they describe."""

    model_tag: str
    profile_path: Path
    sample_path: Path
    meta: dict[str, Any]
    sample: pl.DataFrame

    def profile(self) -> Any:
        return read_profile(self.profile_path)


# --- whylogs, fixed -----------------------------------------------------------------------


@cache
def _whylogs() -> Any:
    """Import whylogs with the NumPy 2 shim and the vectorised inf check installed (once)."""
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
    if not hasattr(np, "unicode_"):
        np.unicode_ = np.str_  # type: ignore[attr-defined]  # removed in NumPy 2
    import whylogs as why
    from whylogs.core.preprocessing import PreprocessedColumn

    if not getattr(PreprocessedColumn._pandas_split, "_driftloop_fast", False):
        PreprocessedColumn._stock_pandas_split = PreprocessedColumn._pandas_split
        PreprocessedColumn._pandas_split = _fast_pandas_split
    return why


def _fast_pandas_split(self: Any, series: Any, parse_numeric_string: bool = False) -> None:
    """Vectorised ``PreprocessedColumn._pandas_split`` for NumPy float and pandas string columns.

    Same counts as whylogs (float nulls are NaN, so ``nan_count == null_count``; infinities are
    kept in ``floats`` and counted), without a Python call per element. Other dtypes go to
    whylogs.
    """
    dtype = getattr(series, "dtype", None)
    if getattr(dtype, "type", None) is str and _fast_string_split(self, series):
        return None
    if not (isinstance(dtype, np.dtype) and dtype.kind == "f"):
        return self._stock_pandas_split(series, parse_numeric_string)
    values = series.to_numpy()
    nulls = np.isnan(values)
    n_null = int(nulls.sum())
    floats = values[~nulls] if n_null else values
    self.null_count = self.nan_count = n_null
    self.inf_count = int(np.count_nonzero(np.isinf(floats)))
    self.numpy.floats = floats.astype(float, copy=False)


def _fast_string_split(self: Any, series: Any) -> bool:
    """A pandas string column as whylogs' NumPy string view: cardinality and frequent items
    read one ``tolist()`` of an object array instead of three conversions of the Arrow array
    (whylogs' pandas path also truncates each value to ``max_frequent_item_size`` in Python, so
    a column with a longer value goes to whylogs: False). Null counts as whylogs' own."""
    values = series.to_numpy()
    nulls = series.isna().to_numpy()
    n_null = int(nulls.sum())
    strings = values[~nulls] if n_null else values
    if len(strings) and int(series.str.len().max()) > _FI_MAX_ITEM_SIZE:
        return False
    self.null_count = n_null
    self.nan_count = sum(1 for v in values[nulls] if isinstance(v, float)) if n_null else 0
    if len(strings):
        self.numpy.strings = strings
    return True


_FI_MAX_ITEM_SIZE = 128  # whylogs' FrequentItemsMetric.max_frequent_item_size default

_fast_pandas_split._driftloop_fast = True  # type: ignore[attr-defined]


def use_stock_whylogs(stock: bool) -> None:
    """Switch the fast path off (``True``) or on again; for the benchmark's side-by-side run."""
    _whylogs()
    from whylogs.core.preprocessing import PreprocessedColumn

    PreprocessedColumn._pandas_split = (
        PreprocessedColumn._stock_pandas_split if stock else _fast_pandas_split
    )


# --- profiles -----------------------------------------------------------------------------


def profile_frame(frame: pl.DataFrame, chunk_rows: int = PROFILE_CHUNK_ROWS) -> Any:
    """A whylogs ``DatasetProfileView`` of a polars frame, converted to pandas chunk by chunk,
    every chunk tracked into one profile (no view built and merged per chunk)."""
    _whylogs()
    from whylogs.core import DatasetProfile

    profile = DatasetProfile(schema=_schema())
    for start in range(0, max(frame.height, 1), chunk_rows):
        chunk = _to_pandas(frame.slice(start, chunk_rows))
        with np.errstate(invalid="ignore"):  # whylogs' mean/variance of a column with inf
            profile.track(pandas=chunk)
    return profile.view()


def _schema() -> Any:
    """whylogs' standard metrics per column type through ``StandardResolver`` (the same metrics
    as its default declarative resolver, which builds and deep-copies a unicode-range metric
    per string column only to drop it); whylogs' own default when the stock path is on."""
    from whylogs.core.preprocessing import PreprocessedColumn
    from whylogs.core.resolvers import StandardResolver
    from whylogs.core.schema import DatasetSchema

    stock = PreprocessedColumn._pandas_split is not _fast_pandas_split
    return DatasetSchema() if stock else DatasetSchema(resolvers=StandardResolver())


def _to_pandas(frame: pl.DataFrame) -> Any:
    # Booleans and enums/categoricals become plain strings: whylogs counts them as categories.
    casts = [
        pl.col(c).cast(pl.String)
        for c, t in frame.schema.items()
        if t == pl.Boolean or isinstance(t, pl.Categorical | pl.Enum)
    ]
    return (frame.with_columns(casts) if casts else frame).to_pandas()


def write_profile(view: Any, path: Path) -> Path:
    """Serialise a profile view atomically (whylogs' own binary format)."""
    atomic_write(path, view.serialize())
    return path


def read_profile(path: Path) -> Any:
    """Read a profile written by :func:`write_profile`."""
    _whylogs()
    from whylogs.core.view.dataset_profile_view import DatasetProfileView

    try:
        return DatasetProfileView.deserialize(Path(path).read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"no whylogs profile at {path}") from None


def summarize_profile(view: Any) -> dict[str, dict[str, Any]]:
    """Per-column summary (count, nulls, mean, stddev, quantiles, top values) as plain JSON."""
    out: dict[str, dict[str, Any]] = {}
    for name, col in view.get_columns().items():
        m = col.to_summary_dict()
        row = {
            "n": m.get("counts/n"),
            "null": m.get("counts/null"),
            "inf": m.get("counts/inf"),
            "mean": m.get("distribution/mean"),
            "stddev": m.get("distribution/stddev"),
            "min": m.get("distribution/min"),
            "q_25": m.get("distribution/q_25"),
            "median": m.get("distribution/median"),
            "q_75": m.get("distribution/q_75"),
            "max": m.get("distribution/max"),
            "cardinality": m.get("cardinality/est"),
        }
        quantiles = _quantiles(col) if m.get("distribution/n") else None
        if quantiles:
            row["quantiles"] = quantiles  # every 5%: the distribution the report draws
        items = m.get("frequent_items/frequent_strings") or []
        if items and not m.get("distribution/n"):
            row["top"] = {str(i.value): int(i.est) for i in items[:5]}
        out[name] = {k: _plain(v) for k, v in row.items() if v is not None}
    return out


QUANTILE_STEPS = 20  # summarize_profile's quantiles: 0%, 5%, ..., 100%


def _quantiles(col: Any) -> list[float] | None:
    """The KLL sketch's quantiles of a numeric column (None when it has none or not finite)."""
    dist = col.get_metric("distribution")
    if dist is None or dist.kll.value.is_empty():
        return None
    ranks = [i / QUANTILE_STEPS for i in range(QUANTILE_STEPS + 1)]
    values = [float(v) for v in dist.kll.value.get_quantiles(ranks)]
    return values if all(math.isfinite(v) for v in values) else None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- the reference ------------------------------------------------------------------------


def _safe_tag(model_tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model_tag)


def reference_paths(model_tag: str, settings: Settings | None = None) -> tuple[Path, Path, Path]:
    """(profile .bin, sample .parquet, meta .json) of a model's reference."""
    base = (settings or get_settings()).reference_profiles_dir / _safe_tag(model_tag)
    return base.with_suffix(".bin"), Path(f"{base}.sample.parquet"), base.with_suffix(".json")


def save_reference_profile(
    frame: pl.DataFrame,
    scores: np.ndarray,
    model_tag: str,
    dataset: DatasetSpec,
    settings: Settings | None = None,
    sample_rows: int = REFERENCE_SAMPLE_ROWS,
) -> Path:
    """Profile the reference rows' features and the model's scores on them (the trainer passes
    held-out valid + test rows: what production traffic looks like); store them with a sample.

    Returns the path of the whylogs profile (``<reference_profiles_dir>/<tag>.bin``). A
    multiclass model's (n, K) probabilities are stored as its serving log has them: the score
    (P(predicted class)) and one ``proba_<class>`` column per class.
    """
    from tasks.predict import Prediction

    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != frame.height:
        raise ValueError(f"{len(scores)} scores for {frame.height} reference rows")
    missing = [c for c in dataset.feature_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"reference frame lacks feature columns: {', '.join(missing)}")
    per_class: dict[str, Any] = {}
    if scores.ndim == 2:
        classes = tuple(str(c) for c in dataset.classes)
        prediction = Prediction(scores.max(axis=1), None, scores, classes)
        per_class = {k: v for k, v in prediction.class_columns().items() if k.startswith("proba_")}
        scores = prediction.scores
    rows = frame.select(dataset.feature_columns).with_columns(
        pl.Series(SCORE_COLUMN, scores), *(pl.Series(k, v) for k, v in per_class.items())
    )
    profile_path, sample_path, meta_path = reference_paths(model_tag, settings)
    write_profile(profile_frame(rows), profile_path)
    if dataset.target in frame.columns:
        rows = rows.with_columns(_label(frame[dataset.target], dataset))
    sample = rows.sample(min(sample_rows, rows.height), seed=_SEED) if rows.height else rows
    tmp = sample_path.with_name(f".{sample_path.name}.tmp")
    sample.write_parquet(tmp)
    os.replace(tmp, sample_path)
    meta = {
        "model_tag": model_tag,
        "dataset": dataset.name,
        "schema_hash": dataset.schema_hash,
        "rows": frame.height,
        "sample_rows": sample.height,
        "numeric_features": dataset.numeric_features,
        "categorical_features": dataset.categorical_features,
        "score_column": SCORE_COLUMN,
        "class_columns": list(per_class),
        "profile": str(profile_path),
        "sample": str(sample_path),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write(meta_path, json.dumps(meta, indent=2).encode())
    return profile_path


def _label(target: pl.Series, dataset: DatasetSpec) -> pl.Series:
    """The target as a number: 1/0 (positive class or not) for binary tasks, the class's
    index for multiclass ones, the value for regression."""
    if dataset.task == "binary":
        label = (target.cast(pl.String) == str(dataset.positive_class)).cast(pl.Float64)
        return label.alias(LABEL_COLUMN)
    if dataset.task == "multiclass":
        label = target.cast(pl.String).replace_strict(
            dataset.class_index, default=None, return_dtype=pl.Float64
        )
        return label.alias(LABEL_COLUMN)
    return target.cast(pl.Float64).alias(LABEL_COLUMN)


def load_reference(model_tag: str, settings: Settings | None = None) -> Reference:
    """The stored reference of ``model_tag`` (a full tag, not an alias)."""
    profile_path, sample_path, meta_path = reference_paths(model_tag, settings)
    if not meta_path.exists() or not sample_path.exists() or not profile_path.exists():
        raise FileNotFoundError(
            f"no reference profile for model {model_tag!r} under {profile_path.parent} "
            f"(the train flow writes it with save_reference_profile)"
        )
    meta = json.loads(meta_path.read_text())
    return Reference(model_tag, profile_path, sample_path, meta, pl.read_parquet(sample_path))
